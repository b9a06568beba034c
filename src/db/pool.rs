//! The r2d2 pool and the one way handlers reach the database: `db::run` on the blocking pool,
//! with a deadline, so a database that is down or frozen answers 503 instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::db::group::Pending;
use crate::error::{AppError, AppResult};

/// Connections, and how long one request's database work may take.
#[derive(Clone)]
pub struct PgPool {
    connections: Pool<Manager>,
    /// The manager's outage count, to bump from outside (the embedded server was restarted).
    outages: Arc<AtomicU64>,
    /// Statements sent on any of the pool's connections, BEGIN and COMMIT included.
    statements: Arc<AtomicU64>,
    /// Connections the manager started to open.
    opened: Arc<AtomicU64>,
    /// Waiting for a connection plus running the work.
    deadline: Duration,
    /// Connections kept open while nothing happens ([`PgPool::keep_warm`]).
    warm: u32,
    /// How long a connection may stay unused before the pool closes it.
    idle_timeout: Duration,
    /// Checkouts waiting for a connection to be handed back before the pool opens another.
    returns: Arc<Returns>,
    /// How long a checkout that finds every open connection busy waits for one to be handed
    /// back before the pool opens another.
    wait_before_opening: Duration,
}

impl PgPool {
    /// A connection, waiting at most the pool's connect timeout. When every open connection
    /// is busy, it first waits up to `wait_before_opening` for one to be handed back: opening
    /// one starts a PostgreSQL process whose first statements run with cold caches, tens of ms
    /// of CPU. r2d2 opens one for every checkout that finds none idle, so a crowd of a few
    /// milliseconds grew the pool to its limit, and the new processes' start took the CPU
    /// from the requests, which crowded more (docs/measurements.md, "The pool grows only when
    /// a crowd lasts").
    ///
    /// A crowd that outlasts the wait opens one connection at a time: r2d2 would open one for
    /// each checkout whose wait ran out, and a stall of a few tens of ms (another process had
    /// the CPU) made a crowd of requests each open one, whose cold starts stalled the rest, and
    /// the pool grew to its limit again. The others keep waiting, for a connection handed back
    /// or for their turn to open one.
    pub fn get(&self) -> Result<Checkout, r2d2::Error> {
        let idle = || self.connections.try_get();
        let connection = match idle() {
            Some(connection) => connection,
            // With none open, none can be handed back; with no patience, r2d2's way.
            None if self.connections.state().connections == 0
                || self.wait_before_opening.is_zero() =>
            {
                self.connections.get()?
            }
            None => {
                let give_up = Instant::now() + self.connections.connection_timeout();
                loop {
                    if let Some(connection) = self.returns.wait(self.wait_before_opening, idle) {
                        break connection;
                    }
                    // With no time to wait, r2d2 asks for one connection (if it may open more)
                    // and returns; a later look finds it. Its blocking `get` would ask for
                    // another at every hand-back that a waiting checkout took first: at 500
                    // requests/s, up to the pool's limit.
                    if Instant::now() >= give_up {
                        break self.connections.get_timeout(Duration::ZERO)?;
                    }
                    let open = self.connections.state().connections;
                    if open < self.connections.max_size()
                        && self
                            .returns
                            .start_opening(open, self.connections.connection_timeout())
                    {
                        match self.connections.get_timeout(Duration::ZERO) {
                            Ok(connection) => {
                                // It found one idle, and so asked for none.
                                self.returns.done_opening();
                                break connection;
                            }
                            Err(_) => continue,
                        }
                    }
                }
            }
        };
        Ok(Checkout {
            connection: Some(connection),
            returns: self.returns.clone(),
        })
    }

    /// Checkouts waiting now for a connection to be handed back.
    pub fn waiting_for_connections(&self) -> usize {
        self.returns.waiting.load(Ordering::SeqCst)
    }

    /// How many connections the pool has started to open so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// How many statements the pool's connections have sent so far: what a piece of work
    /// costs the database, in round trips.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The most connections it opens.
    pub fn max_size(&self) -> u32 {
        self.connections.max_size()
    }

    /// How long a request waits for its database work: a connection, then the work.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Every pooled connection is checked before its next use: the server was restarted.
    pub fn distrust_connections(&self) {
        self.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the warm connections open (after [`PgPool::open_warm`]): every half idle timeout
    /// they are checked out together and handed back, which pings the ones idle for a while and
    /// opens any that went. r2d2's own `min_idle` keeps that many connections *spare* beyond
    /// those in use, and tops them up at every checkout without counting the ones still
    /// connecting: at start-up, with a few checkouts at once, it opened 7 connections for a
    /// pool meant to keep 2, each a PostgreSQL process of 1.6–2.6 MB.
    pub async fn keep_warm(self) {
        if self.warm == 0 {
            return;
        }
        loop {
            tokio::time::sleep(self.idle_timeout / 2).await;
            self.open_warm().await;
        }
    }

    /// [`PgPool::keep_warm`]'s first round, to wait for before serving.
    pub async fn open_warm(&self) {
        let pool = self.clone();
        let _ = tokio::task::spawn_blocking(move || pool.warm_up()).await;
    }

    fn warm_up(&self) {
        /// How long a round waits for a connection it opens, holding the idle ones (so that
        /// opening takes a new one rather than one of them): a request that wants one meanwhile
        /// waits at most this long. One not open by then is still being opened by r2d2 and
        /// joins the idle ones when it is; while the database is away r2d2 keeps trying.
        const OPENING: Duration = Duration::from_secs(1);
        let warm = self.warm as usize;
        // The connections used most recently (r2d2 hands out the last returned first); the
        // others, if any, are left to close when idle.
        let mut held: Vec<_> = std::iter::from_fn(|| self.connections.try_get())
            .take(warm)
            .collect();
        let open = self.connections.state().connections as usize;
        for _ in open..warm {
            let Ok(connection) = self.connections.get_timeout(OPENING) else {
                break;
            };
            held.push(connection);
        }
        // Back among the idle ones: a request that came meanwhile waits for none of them.
        let back = held.len();
        drop(held);
        for _ in 0..back {
            self.returns.handed_back();
        }
    }
}

/// A checked-out connection; handing it back (dropping this) wakes a checkout waiting for one.
pub struct Checkout {
    connection: Option<PooledConnection<Manager>>,
    returns: Arc<Returns>,
}

impl std::ops::Deref for Checkout {
    type Target = Tracked;

    fn deref(&self) -> &Tracked {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut Tracked {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        // Back among the idle ones first, then the waiting are told.
        drop(self.connection.take());
        self.returns.handed_back();
    }
}

/// Where checkouts wait for a connection to be handed back.
#[derive(Default)]
struct Returns {
    waiting: AtomicUsize,
    /// Connections handed back while someone waited.
    handed_back: Mutex<u64>,
    wakeup: Condvar,
    /// A connection asked for by a checkout whose wait ran out: since when, and how many were
    /// open then. It is open once more are (whoever asked for them).
    opening: Mutex<Option<(Instant, u32)>>,
}

impl Returns {
    fn count(&self) -> std::sync::MutexGuard<'_, u64> {
        self.handed_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `patience` for `idle` to find a connection handed back meanwhile. `idle` runs
    /// without the lock: taking a connection may check it with a round trip to the server.
    fn wait<C>(&self, patience: Duration, idle: impl Fn() -> Option<C>) -> Option<C> {
        if patience.is_zero() {
            return None;
        }
        let until = Instant::now() + patience;
        // Counted before looking: a connection handed back after the look sees this waiter,
        // and its count tells the waiter to look again rather than wait.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Uncount(&self.waiting);
        loop {
            let seen = *self.count();
            if let Some(connection) = idle() {
                return Some(connection);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let count = self.count();
            if *count == seen {
                drop(
                    self.wakeup
                        .wait_timeout(count, left)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
        }
    }

    /// The right to have a connection opened (`open` are now), unless one asked for earlier is
    /// not open yet. One that fails to open (the database is away; r2d2 keeps trying) or that
    /// r2d2 never opened stops counting after `stale`: at most one more is asked for meanwhile.
    fn start_opening(&self, open: u32, stale: Duration) -> bool {
        let mut opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        match *opening {
            Some((since, then)) if open <= then && since.elapsed() < stale => false,
            _ => {
                *opening = Some((Instant::now(), open));
                true
            }
        }
    }

    /// Nothing was opened after all: the next may be asked for.
    fn done_opening(&self) {
        *self.opening.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A connection is back among the idle ones.
    fn handed_back(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            *self.count() += 1;
            self.wakeup.notify_one();
        }
    }
}

/// Takes a waiter out of the count however its wait ends.
struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pooled connection, with what the pool needs to know to skip checking it.
pub struct Tracked {
    pub conn: PgConnection,
    /// When it was last handed back to the pool.
    returned_at: Instant,
    /// The pool's [`Manager::outages`] count when it was last known good.
    outages_seen: u64,
    /// Work on it failed in a way that may mean the server or the socket is gone.
    pub(super) suspect: bool,
}

/// How long after its last use a connection is trusted without a `SELECT 1`. Under load every
/// checkout would otherwise cost a round trip (it was one in three statements of a chat turn);
/// a connection that went bad while in use is marked and dropped when it comes back instead.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// Diesel's manager, checking a connection on checkout only when it has been idle for a while
/// (the server may have restarted meanwhile), and dropping one whose work failed like an outage.
/// (Diesel's own `is_broken` sees only a broken transaction, not a dead socket.)
pub struct Manager {
    diesel: ConnectionManager<PgConnection>,
    statement_timeout: Duration,
    /// Bumped when any connection fails like an outage: the server may have restarted under all
    /// of them, so each is checked at its next checkout however recently it was used.
    outages: Arc<AtomicU64>,
    statements: Arc<AtomicU64>,
    opened: Arc<AtomicU64>,
    /// Told when a connection is open, so that a waiter looks again.
    returns: Arc<Returns>,
}

/// Counts each statement a connection starts.
struct CountStatements(Arc<AtomicU64>);

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Manager {
    fn open(&self) -> Result<Tracked, diesel::r2d2::Error> {
        let mut conn = self.diesel.connect()?;
        conn.set_instrumentation(CountStatements(self.statements.clone()));
        // Every connection gets the statement deadline on the server too.
        diesel::sql_query(format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis()
        ))
        .execute(&mut conn)
        .map_err(diesel::r2d2::Error::QueryError)?;
        Ok(Tracked {
            conn,
            returned_at: Instant::now(),
            outages_seen: self.outages.load(Ordering::Relaxed),
            suspect: false,
        })
    }
}

impl ManageConnection for Manager {
    type Connection = Tracked;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Tracked, Self::Error> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let connected = self.open();
        // A waiter looks again. r2d2 adds the connection to the idle ones just after this
        // returns, so the look may come too soon; then the waiter finds it at the next hand-back
        // or when its wait runs out, as it would without being told.
        self.returns.handed_back();
        connected
    }

    fn is_valid(&self, tracked: &mut Tracked) -> Result<(), Self::Error> {
        let outages = self.outages.load(Ordering::Relaxed);
        if tracked.outages_seen == outages && tracked.returned_at.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        tracked.conn.ping().map_err(|error| {
            self.outages.fetch_add(1, Ordering::Relaxed);
            diesel::r2d2::Error::QueryError(error)
        })?;
        tracked.outages_seen = outages;
        Ok(())
    }

    fn has_broken(&self, tracked: &mut Tracked) -> bool {
        tracked.returned_at = Instant::now();
        if tracked.suspect {
            self.outages.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.diesel.has_broken(&mut tracked.conn)
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
    wait_before_opening: Duration,
) -> PgPool {
    let (outages, statements, opened) = (Arc::default(), Arc::default(), Arc::default());
    let returns = Arc::<Returns>::default();
    let manager = Manager {
        diesel: ConnectionManager::new(with_network_deadlines(url)),
        statement_timeout: query_timeout,
        outages: Arc::clone(&outages),
        statements: Arc::clone(&statements),
        opened: Arc::clone(&opened),
        returns: Arc::clone(&returns),
    };
    let connections = Pool::builder()
        .max_size(max_size)
        // A burst opens connections (a few ms each) and they close again when idle: each is a
        // PostgreSQL process of 1–2 MB. The warm ones are kept by `PgPool::keep_warm`.
        .min_idle(Some(0))
        .idle_timeout(Some(idle_timeout))
        .connection_timeout(connect_timeout)
        // Only connections idle past `TRUSTED_FOR` are actually checked (see `Manager`).
        .test_on_check_out(true)
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(manager);
    PgPool {
        connections,
        outages,
        statements,
        opened,
        deadline: connect_timeout + query_timeout,
        warm,
        idle_timeout,
        returns,
        wait_before_opening,
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
    let (_, pending) = detached(pool, work);
    match tokio::time::timeout(deadline, pending).await {
        Ok(finished) => finished.unwrap_or_else(|_| Err(ended_without_answer())),
        Err(_) => Err(AppError::Unavailable),
    }
}

/// Starts blocking Diesel work on the blocking pool, like [`run`], and returns where its result
/// will arrive: the work runs to its end whether or not anyone still waits for it (a turn whose
/// request gave up must still learn whether its statement committed), unless it is
/// [`Withdraw`]n before it has a connection.
pub fn detached<T, F>(pool: &PgPool, work: F) -> (Withdraw, Pending<T>)
where
    F: FnOnce(&mut PgConnection) -> AppResult<T> + Send + 'static,
    T: Send + 'static,
{
    let (sender, pending) = tokio::sync::oneshot::channel();
    let withdraw = Withdraw(Arc::new(AtomicBool::new(false)));
    let (pool, started) = (pool.clone(), withdraw.clone());
    tokio::task::spawn_blocking(move || {
        let done = pool.get().map_err(AppError::from).and_then(|mut tracked| {
            if started.0.swap(true, Ordering::AcqRel) {
                // Withdrawn while it waited for a connection: nobody waits for it.
                return Err(AppError::Unavailable);
            }
            let done = work(&mut tracked.conn);
            if let Err(error) = &done {
                tracked.suspect = is_suspect(error);
            }
            done
        });
        let _ = sender.send(done);
    });
    (withdraw, pending)
}

/// Takes [`detached`] work back if it has not started.
#[derive(Clone)]
pub struct Withdraw(Arc<AtomicBool>);

impl Withdraw {
    /// True when the work will never run.
    pub fn withdraw(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

/// What a [`Pending`] whose sender was dropped (its work panicked) stands for.
pub fn ended_without_answer() -> AppError {
    AppError::Internal("the database work ended without an answer".into())
}

/// An outage-like failure: the connection goes rather than fail the next request too.
pub(super) fn is_suspect(error: &AppError) -> bool {
    matches!(error, AppError::Unavailable | AppError::Internal(_))
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
