//! Database: connection pool, schema, and the private embedded PostgreSQL.
pub mod pool;
pub mod schema;

pub use pool::{PgPool, run, run_within, transaction};

// The embedded PostgreSQL is a workspace crate of its own (crates/embedded-pg); re-exported here
// so `confab::db::embedded::…` paths keep working.
pub use confab_embedded_pg as embedded;
