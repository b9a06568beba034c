//! The r2d2 pool and the one way handlers reach the database: `db::run` on the blocking pool,
//! with a deadline, so a database that is down or frozen answers 503 instead of hanging.

use std::time::Duration;

use actix_web::web;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{AppError, AppResult};

/// Connections, and how long one request's database work may take.
#[derive(Clone)]
pub struct PgPool {
    connections: Pool<ConnectionManager<PgConnection>>,
    /// Waiting for a connection plus running the work.
    deadline: Duration,
}

impl PgPool {
    /// A connection, waiting at most the pool's connect timeout.
    pub fn get(&self) -> Result<PooledConnection<ConnectionManager<PgConnection>>, r2d2::Error> {
        self.connections.get()
    }
}

/// r2d2 reports every failed connection attempt; while the database is away that is several a
/// second, so they are logged at most every 30 s, with a count.
#[derive(Debug)]
struct QuietErrors;

static CONNECTION_ERRORS: crate::error::LogThrottle =
    crate::error::LogThrottle::new(Duration::from_secs(30));

impl r2d2::HandleError<diesel::r2d2::Error> for QuietErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        if let Some(held_back) = CONNECTION_ERRORS.admit() {
            tracing::error!(%error, held_back, "cannot connect to the database");
        }
    }
}

/// Every connection gets the statement deadline on the server too.
#[derive(Debug)]
struct SessionDefaults {
    statement_timeout: Duration,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionDefaults {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query(format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis()
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// For a PostgreSQL reached over TCP: keepalives and a TCP user timeout, so a server that
/// vanished from the network is noticed in seconds, not after the kernel's hours. Parameters
/// already in the URL win.
fn with_network_deadlines(url: &str) -> String {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_url || url.contains("tcp_user_timeout") || url.contains("keepalives") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=30000"
    )
}

/// The same `migrations/` the diesel CLI runs, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the pool without connecting: a database that is down at start-up or later makes
/// requests answer 503 after `connect_timeout`, one that is frozen after `connect_timeout` plus
/// `query_timeout`, and the pool recovers when it is back.
pub fn build_pool(
    url: &str,
    max_size: u32,
    connect_timeout: Duration,
    query_timeout: Duration,
    warm: u32,
    idle_timeout: Duration,
) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(with_network_deadlines(url));
    let connections = Pool::builder()
        .max_size(max_size)
        // A few connections stay open for the next request; a burst opens more (a few ms each)
        // and they close again when idle: each is a PostgreSQL process of 1–2 MB.
        .min_idle(Some(warm))
        .idle_timeout(Some(idle_timeout))
        .connection_timeout(connect_timeout)
        .test_on_check_out(true)
        .connection_customizer(Box::new(SessionDefaults {
            statement_timeout: query_timeout,
        }))
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(manager);
    PgPool {
        connections,
        deadline: connect_timeout + query_timeout,
    }
}

/// Runs pending migrations; returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, String> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// Runs blocking Diesel work on actix's blocking pool, never on an async worker; past the
/// pool's deadline the request answers 503. (Work already sent to a frozen server may still
/// complete when it wakes: the deadline bounds the wait, not the server.)
pub async fn run<T, F>(pool: &PgPool, work: F) -> AppResult<T>
where
    F: FnOnce(&mut PgConnection) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    let deadline = pool.deadline;
    run_within(pool, deadline, work).await
}

/// [`run`] with a deadline of its own (the health check answers within 2 s).
pub async fn run_within<T, F>(pool: &PgPool, deadline: Duration, work: F) -> AppResult<T>
where
    F: FnOnce(&mut PgConnection) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    let blocking = web::block(move || {
        let mut conn = pool.get()?;
        work(&mut conn)
    });
    match tokio::time::timeout(deadline, blocking).await {
        Ok(finished) => finished.map_err(AppError::from)?,
        Err(_) => Err(AppError::Unavailable),
    }
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

#[cfg(test)]
mod tests {
    use super::with_network_deadlines;

    #[test]
    fn tcp_urls_get_keepalives_unless_they_say_otherwise() {
        let url = with_network_deadlines("postgres://u:p@db.example.com/confab?sslmode=require");
        assert!(
            url.ends_with("tcp_user_timeout=30000") && url.contains("sslmode=require&keepalives=1")
        );
        let mine = "postgres://db/confab?keepalives=0";
        assert_eq!(with_network_deadlines(mine), mine);
        assert_eq!(
            with_network_deadlines("host=/tmp dbname=x"),
            "host=/tmp dbname=x"
        );
    }
}
