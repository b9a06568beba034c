//! The r2d2 pool and the one way handlers reach the database: `db::run` on the blocking pool.

use std::time::Duration;

use actix_web::web;
use diesel::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{AppError, AppResult};

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// The same `migrations/` the diesel CLI runs, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the pool without connecting: a database that is down at start-up or later makes
/// requests answer 503 after `connect_timeout`, and the pool recovers when it is back.
pub fn build_pool(url: &str, max_size: u32, connect_timeout: Duration) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(url);
    Pool::builder()
        .max_size(max_size)
        // Keep every connection open: a burst of requests should not pay for connecting.
        .min_idle(None)
        .connection_timeout(connect_timeout)
        .test_on_check_out(true)
        .build_unchecked(manager)
}

/// Runs pending migrations; returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, String> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// Runs blocking Diesel work on actix's blocking pool, never on an async worker.
pub async fn run<T, F>(pool: &PgPool, work: F) -> AppResult<T>
where
    F: FnOnce(&mut PgConnection) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get()?;
        work(&mut conn)
    })
    .await
    .map_err(AppError::from)?
}

/// Like [`run`] but inside one transaction.
pub async fn transaction<T, F>(pool: &PgPool, work: F) -> AppResult<T>
where
    F: FnOnce(&mut PgConnection) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    use diesel::Connection;
    run(pool, move |conn| conn.transaction(work)).await
}
