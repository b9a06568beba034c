//! Database: connection pool, schema, and the private embedded PostgreSQL.
pub mod group;
pub mod pool;
pub mod schema;
pub mod statement;

pub use group::Group;
pub use pool::{PgPool, detached, run, run_within, transaction};

// The embedded PostgreSQL is a workspace crate of its own (crates/embedded-pg); re-exported here
// so `confab::db::embedded::…` paths keep working.
pub use confab_embedded_pg as embedded;

use std::sync::atomic::{AtomicU64, Ordering};

/// Changes this process made to what a chat turn takes from an agent (the agent, its project,
/// their prompts), counted by the model functions that make them, so remembered agent cards
/// (`chat::cards`) are read again after one instead of failing their turn's revision check.
static AGENT_CHANGES: AtomicU64 = AtomicU64::new(0);

pub fn agents_changed() {
    AGENT_CHANGES.fetch_add(1, Ordering::AcqRel);
}

pub fn agent_changes() -> u64 {
    AGENT_CHANGES.load(Ordering::Acquire)
}
