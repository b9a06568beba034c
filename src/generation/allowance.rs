//! How many answers one person may have generating at once, and start per minute: every
//! answer is billed to the operator's provider account, so no single account can run up the
//! bill or crowd out everyone else. Answers over either limit are refused (429 with
//! `Retry-After`) before anything is stored. A conversation has one answer generating at a time
//! (a second one would be written without the first as context): a slot also holds its
//! conversation, and a second claim on it is refused with 409.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::error::AppError;

/// When a person at the concurrency limit may try again: answers take seconds, not minutes.
const RETRY_WHEN_BUSY_SECS: u64 = 5;

pub struct Allowance {
    live_per_user: usize,
    per_minute: DefaultKeyedRateLimiter<Uuid>,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    /// Answers generating per person.
    per_user: HashMap<Uuid, usize>,
    /// Conversations with an answer generating.
    conversations: HashSet<Uuid>,
}

/// One answer's place within its person's allowance (and its conversation's [`Claim`]), given
/// back when it is dropped (the answer ended, or was never started).
pub struct Slot {
    allowance: Arc<Allowance>,
    user: Uuid,
    claim: Option<Claim>,
}

/// A conversation's one answer being written, given back when dropped.
pub struct Claim {
    allowance: Arc<Allowance>,
    conversation: Uuid,
}

impl Allowance {
    pub fn new(live_per_user: usize, per_minute: u32) -> Arc<Allowance> {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("max(1) is non-zero"));
        Arc::new(Allowance {
            live_per_user: live_per_user.max(1),
            per_minute: DefaultKeyedRateLimiter::keyed(quota),
            live: Mutex::new(Live::default()),
        })
    }

    /// A slot for one more answer of `user`, or why not.
    pub fn take(self: &Arc<Allowance>, user: Uuid) -> Result<Slot, AppError> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let count = live.per_user.entry(user).or_insert(0);
        if *count >= self.live_per_user {
            return Err(AppError::RateLimited {
                message: format!(
                    "You already have {} answers being written; wait for one to finish or stop one.",
                    self.live_per_user
                ),
                retry_after_secs: RETRY_WHEN_BUSY_SECS,
            });
        }
        if let Err(not_until) = self.per_minute.check_key(&user) {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1;
            return Err(AppError::RateLimited {
                message: format!("That is a lot of messages in a minute; try again in {wait} s."),
                retry_after_secs: wait,
            });
        }
        *count += 1;
        if self.per_minute.len() > 10_000 {
            self.per_minute.retain_recent();
        }
        Ok(Slot {
            allowance: self.clone(),
            user,
            claim: None,
        })
    }

    /// Makes the next answer the one written in `conversation` (whose owner was checked), or
    /// refuses when another is still being written there. Claim before taking a [`Slot`], so a
    /// burst of refused sends never holds places a real one needs.
    pub fn claim(self: &Arc<Allowance>, conversation: Uuid) -> Result<Claim, AppError> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if !live.conversations.insert(conversation) {
            return Err(AppError::Conflict(
                "An answer is still being written in this conversation; wait for it or stop it first."
                    .into(),
            ));
        }
        Ok(Claim {
            allowance: self.clone(),
            conversation,
        })
    }
}

impl Slot {
    /// The slot, now also holding its conversation until it is dropped.
    #[must_use]
    pub fn holding(mut self, claim: Claim) -> Slot {
        self.claim = Some(claim);
        self
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self
            .allowance
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        live.conversations.remove(&self.conversation);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut live = self
            .allowance
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = live.per_user.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                live.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_person_and_given_back() {
        let allowance = Allowance::new(2, 100);
        let (me, you) = (Uuid::now_v7(), Uuid::now_v7());
        let first = allowance.take(me).unwrap();
        let _second = allowance.take(me).unwrap();
        assert!(allowance.take(me).is_err());
        assert!(
            allowance.take(you).is_ok(),
            "another person is not affected"
        );
        drop(first);
        assert!(allowance.take(me).is_ok());
    }

    #[test]
    fn a_conversation_has_one_answer_generating_at_a_time() {
        let allowance = Allowance::new(4, 100);
        let (me, conversation) = (Uuid::now_v7(), Uuid::now_v7());
        let first = allowance
            .take(me)
            .unwrap()
            .holding(allowance.claim(conversation).unwrap());
        assert!(matches!(
            allowance.claim(conversation),
            Err(AppError::Conflict(_))
        ));
        assert!(allowance.claim(Uuid::now_v7()).is_ok());
        drop(first);
        assert!(
            allowance.claim(conversation).is_ok(),
            "given back with its slot"
        );
    }

    #[test]
    fn starts_per_minute_are_limited() {
        let allowance = Allowance::new(100, 2);
        let me = Uuid::now_v7();
        drop(allowance.take(me).unwrap());
        drop(allowance.take(me).unwrap());
        let Err(AppError::RateLimited {
            retry_after_secs, ..
        }) = allowance.take(me)
        else {
            panic!("a third start within the minute is refused");
        };
        assert!(retry_after_secs > 0);
    }
}
