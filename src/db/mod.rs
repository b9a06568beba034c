//! Database: connection pool, schema, and the private embedded PostgreSQL.
pub mod embedded;
pub mod pool;
pub mod schema;

pub use pool::{PgPool, run, transaction};
