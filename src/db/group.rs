//! Group commit: the same kind of write, brought by many requests at the same moment (a burst of
//! people starting conversations), is done in one statement and one commit instead of one each.
//! On a small machine a burst of a thousand single-row statements kept PostgreSQL's backends
//! planning, executing and committing on every core while the provider requests waited for CPU;
//! see docs/measurements.md, "Group commit".
//!
//! Nothing waits for a group to fill: a piece of work starts at once while fewer than its kind's
//! [`Writers`] are writing groups, so one person alone pays nothing. Otherwise it joins the next
//! group, which the first writer to finish takes up, on the connection it already holds, with
//! everything that arrived meanwhile (at most [`LARGEST`]).
//!
//! The writers are blocking-pool threads, not the requests' futures: a request that goes away
//! (its client disconnected, its deadline passed) cannot strand the rest of its group, and each
//! result arrives on its own channel once its group's statement is done, whoever still waits.
//! Such a request takes its piece of work back ([`Group::withdraw`]) if no writer has yet.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::{PgConnection, QueryResult};
use tokio::sync::oneshot;

use crate::db::PgPool;
use crate::error::{AppError, AppResult};

/// How many groups of one kind are written at the same time, each on a connection of its own.
#[derive(Clone, Copy, Debug)]
pub enum Writers {
    /// A quarter of the pool's connections (a held-up database must not take every connection
    /// from the other requests), at least one: for work someone waits on to go on, as a new
    /// conversation's first token waits for its turn to be stored.
    QuarterOfPool,
    /// One: for work nobody's next step waits on. While it writes, whatever arrives waits for
    /// the next group, so work that comes one piece at a time over a few hundred milliseconds (a
    /// burst's answers ending) is still done in a few statements rather than in one each. While
    /// it is held up (work has waited [`HELD_UP`] for a writer: its statement waits on a lock, say
    /// a delete's), work that arrives starts more, up to a quarter of the pool, so one stuck
    /// statement does not hold up everyone's.
    One,
}

/// How long work waits for a [`Writers::One`] group's writer before more may start.
const HELD_UP: Duration = Duration::from_millis(100);

impl Writers {
    /// Writers that start as work arrives, and the most that may run while they are held up.
    fn counts(self, pool: &PgPool) -> (usize, usize) {
        let quarter = (pool.max_size() as usize / 4).max(1);
        match self {
            Writers::QuarterOfPool => (quarter, quarter),
            Writers::One => (1, quarter),
        }
    }
}

/// The most pieces of work in one statement.
const LARGEST: usize = 100;

/// Does each piece of `items` in one statement; returns one output per item, in their order.
pub type Work<I, O> = fn(&mut PgConnection, &[I]) -> QueryResult<Vec<O>>;

/// Where a piece of work's result arrives.
pub type Pending<O> = oneshot::Receiver<AppResult<O>>;

/// Pieces of work of one kind (`I` in, `O` out), done in groups by [`Work`]. Clones share the
/// queue and the writers.
pub struct Group<I, O> {
    inner: Arc<Inner<I, O>>,
}

impl<I, O> Clone for Group<I, O> {
    fn clone(&self) -> Self {
        Group {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<I, O> {
    pool: PgPool,
    /// Writers started as work arrives ...
    writers: usize,
    /// ... and the most while work has waited [`HELD_UP`] for one.
    most_writers: usize,
    work: Work<I, O>,
    /// Where writers run: a runtime that lives as long as the group (not the calling request's
    /// HTTP worker, which may be stopping).
    runtime: tokio::runtime::Handle,
    queue: Mutex<Queue<I, O>>,
}

struct Queue<I, O> {
    waiting: Vec<Queued<I, O>>,
    writers: usize,
    /// The ticket the next piece of work gets.
    next: u64,
}

struct Queued<I, O> {
    ticket: Ticket,
    queued_at: Instant,
    item: I,
    sender: oneshot::Sender<AppResult<O>>,
}

/// A piece of work's place in the queue, to [`Group::withdraw`] it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl<I: Send + 'static, O: Send + 'static> Group<I, O> {
    pub fn new(
        pool: PgPool,
        runtime: tokio::runtime::Handle,
        work: Work<I, O>,
        writers: Writers,
    ) -> Self {
        let (writers, most_writers) = writers.counts(&pool);
        Group {
            inner: Arc::new(Inner {
                writers,
                most_writers,
                pool,
                work,
                runtime,
                queue: Mutex::new(Queue {
                    waiting: Vec::new(),
                    writers: 0,
                    next: 0,
                }),
            }),
        }
    }

    /// Queues `item` for the next group; its result arrives on the returned channel once that
    /// group's statement is done (committed or failed).
    pub fn submit(&self, item: I) -> (Ticket, Pending<O>) {
        let (sender, pending) = oneshot::channel();
        let (ticket, start_writer) = {
            let mut queue = self.inner.queue();
            let ticket = Ticket(queue.next);
            queue.next += 1;
            queue.waiting.push(Queued {
                ticket,
                queued_at: Instant::now(),
                item,
                sender,
            });
            let held_up = || {
                queue
                    .waiting
                    .first()
                    .is_some_and(|oldest| oldest.queued_at.elapsed() >= HELD_UP)
            };
            let start = queue.writers < self.inner.writers
                || (queue.writers < self.inner.most_writers && held_up());
            if start {
                queue.writers += 1;
            }
            (ticket, start)
        };
        if start_writer {
            Inner::start_writer(&self.inner);
        }
        (ticket, pending)
    }

    /// Takes a piece of work back if no writer has taken it yet (its request gave up: a frozen
    /// or overloaded database); true when it will never be done.
    pub fn withdraw(&self, ticket: Ticket) -> bool {
        let mut queue = self.inner.queue();
        let before = queue.waiting.len();
        queue.waiting.retain(|queued| queued.ticket != ticket);
        queue.waiting.len() < before
    }
}

impl<I: Send + 'static, O: Send + 'static> Inner<I, O> {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<I, O>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a writer already counted in `writers`.
    fn start_writer(inner: &Arc<Self>) {
        let writer = Writer {
            inner: inner.clone(),
            ran: false,
        };
        inner.runtime.spawn_blocking(move || writer.write());
    }
}

/// A writer: counted in `writers` from before it starts until it finds nothing waiting. One
/// that ends otherwise (a panic in the work) starts another if work is waiting, so nothing
/// queued is left without a writer; its own group's senders are dropped with it, and those
/// requests get an error rather than a hang.
struct Writer<I: Send + 'static, O: Send + 'static> {
    inner: Arc<Inner<I, O>>,
    /// It was run. One dropped unrun belongs to a runtime that is shutting down, which would
    /// drop the next one unrun as well: starting another from `drop` recursed until the stack
    /// overflowed (a test's confab stopped while an answer's save was queued).
    ran: bool,
}

impl<I: Send + 'static, O: Send + 'static> Drop for Writer<I, O> {
    fn drop(&mut self) {
        let mut queue = self.inner.queue();
        if queue.waiting.is_empty() || !self.ran {
            queue.writers -= 1;
            // Nobody will write them: their requests are told now instead of at their deadline.
            let abandoned = std::mem::take(&mut queue.waiting);
            drop(queue);
            for queued in abandoned {
                let _ = queued.sender.send(Err(AppError::Unavailable));
            }
        } else {
            drop(queue);
            Inner::start_writer(&self.inner);
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Writer<I, O> {
    /// Takes what is waiting, group after group, until nothing is.
    fn write(mut self) {
        self.ran = true;
        let inner = &*self.inner;
        let mut held = None;
        loop {
            let group: Vec<_> = {
                let mut queue = inner.queue();
                if queue.waiting.is_empty() {
                    // Counted out (in `drop`) under the lock a new piece of work takes to
                    // decide whether to start a writer, so nothing waits without one.
                    drop(queue);
                    break;
                }
                let take = queue.waiting.len().min(LARGEST);
                queue.waiting.drain(..take).collect()
            };
            if held.is_none() {
                match inner.pool.get() {
                    Ok(conn) => held = Some(conn),
                    Err(_) => {
                        for queued in group {
                            let _ = queued.sender.send(Err(AppError::Unavailable));
                        }
                        continue;
                    }
                }
            }
            let Some(conn) = held.as_mut() else {
                continue;
            };
            let (items, senders): (Vec<I>, Vec<_>) = group
                .into_iter()
                .map(|queued| (queued.item, queued.sender))
                .unzip();
            let error = match (inner.work)(&mut conn.conn, &items) {
                Ok(outputs) => {
                    for (sender, output) in senders.into_iter().zip(outputs) {
                        let _ = sender.send(Ok(output));
                    }
                    continue;
                }
                Err(error) => AppError::from(error),
            };
            // Like `db::run`: a connection whose work failed this way is replaced when it is
            // handed back.
            conn.suspect |= super::pool::is_suspect(&error);
            if matches!(error, AppError::Unavailable) {
                held = None;
                for sender in senders {
                    let _ = sender.send(Err(AppError::Unavailable));
                }
            } else if let [_] = items[..] {
                if let Some(sender) = senders.into_iter().next() {
                    let _ = sender.send(Err(error));
                }
            } else {
                // One of them is at fault, not the server: each alone, so only that one fails
                // (and after an outage the rest fail at once rather than one by one).
                let mut gone = false;
                for (item, sender) in items.iter().zip(senders) {
                    let alone = if gone {
                        Err(AppError::Unavailable)
                    } else {
                        (inner.work)(&mut conn.conn, std::slice::from_ref(item))
                            .map_err(AppError::from)
                            .and_then(|mut outputs| outputs.pop().ok_or(AppError::NotFound))
                    };
                    if let Err(error) = &alone {
                        conn.suspect |= super::pool::is_suspect(error);
                        gone |= matches!(error, AppError::Unavailable);
                    }
                    let _ = sender.send(alone);
                }
                if gone {
                    held = None;
                }
            }
        }
        // `held` goes back to the pool first, then `self` counts the writer out.
        drop(held);
    }
}
