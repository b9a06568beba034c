//! Signed-in sessions recently looked up, so a burst of requests from the same people does not
//! ask the database who they are each time.
//!
//! An entry is trusted for [`TRUSTED_FOR`] at most. Whatever ends a session in this process
//! (signing out, signing out everywhere, a password change) forgets it right after its
//! statement commits, and an entry read before that cannot be put back afterwards (the
//! `forgotten` count is checked). Another instance sharing the database learns of a sign-out
//! within [`TRUSTED_FOR`]; making instances tell each other (PostgreSQL `NOTIFY` from these same
//! calls) would close that window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::session::model::SessionUser;

/// How long a looked-up session is trusted without asking the database again.
pub const TRUSTED_FOR: Duration = Duration::from_secs(30);

/// More entries than this and the cache starts over (a bound on memory, not a policy).
const MAX_ENTRIES: usize = 100_000;

/// The sessions of this process (one per process, like the pool's connections: what ends a
/// session is a model-level fact, and every app in the process must see it).
pub static SESSIONS: LazyLock<SessionCache> = LazyLock::new(SessionCache::default);

#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<Uuid, (Instant, SessionUser)>>,
    /// Bumped by every forget; a lookup that started before one is not cached.
    forgotten: AtomicU64,
}

/// Taken before reading the database; [`SessionCache::put`] only keeps what was read after the
/// last forget.
#[derive(Clone, Copy)]
pub struct Ticket(u64);

impl SessionCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, SessionUser)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's user, if it was looked up less than [`TRUSTED_FOR`] ago.
    pub fn get(&self, session_id: Uuid) -> Option<SessionUser> {
        let entries = self.entries();
        let (at, user) = entries.get(&session_id)?;
        (at.elapsed() < TRUSTED_FOR).then(|| user.clone())
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.forgotten.load(Ordering::Acquire))
    }

    /// Keeps what a lookup that began at `ticket` found, unless a session ended since.
    pub fn put(&self, ticket: Ticket, session_id: Uuid, user: SessionUser) {
        let mut entries = self.entries();
        if self.forgotten.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(session_id, (Instant::now(), user));
    }

    /// One session ended.
    pub fn forget_session(&self, session_id: Uuid) {
        let mut entries = self.entries();
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        entries.remove(&session_id);
    }

    /// All of a user's sessions ended, or their epoch changed.
    pub fn forget_user(&self, user_id: Uuid) {
        let mut entries = self.entries();
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (_, user)| user.id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: Uuid) -> SessionUser {
        SessionUser {
            id,
            email: "a@example.com".into(),
            display_name: "A".into(),
            is_admin: false,
            disabled_at: None,
            session_epoch: 1,
        }
    }

    #[test]
    fn a_lookup_that_began_before_a_sign_out_is_not_kept() {
        let cache = SessionCache::default();
        let (person, session) = (Uuid::new_v4(), Uuid::new_v4());
        let before = cache.ticket();
        // The sign-out commits and forgets while the lookup (which saw the row) is under way.
        cache.forget_user(person);
        cache.put(before, session, user(person));
        assert!(cache.get(session).is_none());
        cache.put(cache.ticket(), session, user(person));
        assert_eq!(cache.get(session).map(|u| u.id), Some(person));
        cache.forget_session(session);
        assert!(cache.get(session).is_none());
    }
}
