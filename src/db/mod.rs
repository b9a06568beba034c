//! Database: connection pool, schema, and the private embedded PostgreSQL.
pub mod embedded;
