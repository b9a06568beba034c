//! Rate limits, with no knowledge of requests: [`RequestLimiter`] for the whole API (per person,
//! per API key, per client address), and the sign-in and sign-up limits below.
//!
//! Sign-in attempts are limited so guessing is slow, without letting anyone lock the owner out
//! (governor's keyed GCRA limiters):
//! - per client address, and per address and email together: over the quota, attempts are
//!   refused (429) — this stops one attacker;
//! - per email alone: over the quota, attempts are only delayed, never refused — a flood from
//!   many addresses on one account slows every guess, while the owner, from their own address,
//!   still gets in (a little later).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use std::hash::Hash;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::error::AppError;

/// The longest an attempt on a busy email waits.
const MAX_EMAIL_DELAY: Duration = Duration::from_secs(2);

pub struct LoginLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_ip_and_email: DefaultKeyedRateLimiter<(IpAddr, String)>,
    by_email: DefaultKeyedRateLimiter<String>,
}

impl LoginLimiter {
    pub fn per_minute(attempts: u32) -> LoginLimiter {
        let quota =
            Quota::per_minute(NonZeroU32::new(attempts.max(1)).expect("max(1) is non-zero"));
        LoginLimiter {
            by_ip: DefaultKeyedRateLimiter::keyed(quota),
            by_ip_and_email: DefaultKeyedRateLimiter::keyed(quota),
            by_email: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// Counts one attempt. Refuses it when its address (alone, or with this email) is over the
    /// quota; otherwise returns how long to wait first (zero unless the email is under attack).
    pub fn check(&self, ip: Option<IpAddr>, email: &str) -> Result<Duration, AppError> {
        let clock = DefaultClock::default();
        let refused = |not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>| {
            let wait = not_until.wait_time_from(clock.now()).as_secs() + 1;
            AppError::RateLimited {
                message: format!(
                    "Too many sign-in attempts. Try again in {}.",
                    crate::domain::seconds(wait)
                ),
                retry_after_secs: wait,
            }
        };
        let ip = limited_address(ip);
        let email = crate::domain::email_key(email);
        self.by_ip.check_key(&ip).map_err(refused)?;
        self.by_ip_and_email
            .check_key(&(ip, email.clone()))
            .map_err(refused)?;
        let delay = match self.by_email.check_key(&email) {
            Ok(()) => Duration::ZERO,
            Err(not_until) => not_until.wait_time_from(clock.now()).min(MAX_EMAIL_DELAY),
        };
        // Forget keys whose quota has fully refilled, so the maps do not grow without bound.
        if self.by_ip_and_email.len() > 10_000 {
            self.by_ip.retain_recent();
            self.by_ip_and_email.retain_recent();
            self.by_email.retain_recent();
        }
        Ok(delay)
    }
}

/// New accounts per client address: one address cannot mint accounts by the hundred (each costs
/// a bcrypt hash, and each could start answers of its own).
pub struct RegistrationLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl RegistrationLimiter {
    pub fn per_hour(accounts: u32) -> RegistrationLimiter {
        let quota = Quota::per_hour(NonZeroU32::new(accounts.max(1)).expect("max(1) is non-zero"));
        RegistrationLimiter {
            by_ip: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), AppError> {
        let ip = limited_address(ip);
        self.by_ip.check_key(&ip).map_err(|not_until| {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1;
            AppError::RateLimited {
                message: format!(
                    "Too many accounts were created from your address. Try again in {} minutes.",
                    wait.div_ceil(60)
                ),
                retry_after_secs: wait,
            }
        })?;
        if self.by_ip.len() > 10_000 {
            self.by_ip.retain_recent();
        }
        Ok(())
    }
}

/// The address a limit counts a client by. An IPv6 client is its /64: one subscriber or host
/// usually holds a whole /64, and counting each of its 2^64 addresses apart would let it send
/// as many requests as it likes. (An unknown address counts as one shared "unspecified".)
pub fn limited_address(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(std::net::Ipv6Addr::from(segments))
        }
        Some(IpAddr::V6(v6)) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
        Some(ip) => ip,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Who an API request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// A signed request: its person, and the API key that signed it, if one did.
    User { id: Uuid, key: Option<Uuid> },
    /// A request that is not signed: its client address.
    Address(IpAddr),
}

type StatefulLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One limit of the API, named as the `RateLimit` headers name it.
struct Policy<K: Hash + Eq + Clone> {
    name: &'static str,
    per_minute: u32,
    limiter: StatefulLimiter<K>,
}

/// The most keys one limit remembers before forgetting those whose allowance has refilled.
const REMEMBERED_KEYS: usize = 10_000;

impl<K: Hash + Eq + Clone> Policy<K> {
    fn new(name: &'static str, per_minute: u32, burst: Option<u32>) -> Policy<K> {
        let per_minute = per_minute.max(1);
        let burst = burst.unwrap_or(per_minute).max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).expect("max(1) is non-zero"))
            .allow_burst(NonZeroU32::new(burst).expect("max(1) is non-zero"));
        Policy {
            name,
            per_minute,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn count(&self, key: &K) -> Standing {
        let standing = match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let remaining = snapshot.remaining_burst_capacity();
                // Until every used request has refilled.
                let used = quota.burst_size().get().saturating_sub(remaining);
                Standing {
                    policy: self.name,
                    per_minute: self.per_minute,
                    remaining,
                    reset_secs: whole_seconds(quota.replenish_interval() * used),
                    refused: false,
                }
            }
            Err(not_until) => Standing {
                policy: self.name,
                per_minute: self.per_minute,
                remaining: 0,
                reset_secs: whole_seconds(not_until.wait_time_from(DefaultClock::default().now())),
                refused: true,
            },
        };
        if self.limiter.len() > REMEMBERED_KEYS {
            self.limiter.retain_recent();
        }
        standing
    }
}

/// Seconds, rounded up (a client told 0 would ask again at once), at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Where a request left one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub policy: &'static str,
    pub per_minute: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the whole allowance is back (when refused: until the next request may go).
    pub reset_secs: u64,
    pub refused: bool,
}

/// What counting one request found.
#[derive(Debug, Clone)]
pub struct Counted {
    pub standings: Vec<Standing>,
    /// Set when the request is over a limit: the seconds to wait.
    pub retry_after_secs: Option<u64>,
}

impl Counted {
    /// `RateLimit-Policy`: each limit that applies, as a structured-field list, e.g.
    /// `"user";q=600;w=60, "key";q=600;w=60`.
    pub fn policy_header(&self) -> String {
        self.standings
            .iter()
            .map(|s| format!("\"{}\";q={};w=60", s.policy, s.per_minute))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `RateLimit`: where the request left each limit, e.g. `"user";r=599;t=1`.
    pub fn ratelimit_header(&self) -> String {
        self.standings
            .iter()
            .map(|s| format!("\"{}\";r={};t={}", s.policy, s.remaining, s.reset_secs))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The API's rate limits: per person, per API key, and per client address for requests that
/// are not signed. Memory stays bounded: each limit forgets keys whose allowance has refilled
/// once it remembers more than [`REMEMBERED_KEYS`].
pub struct RequestLimiter {
    by_user: Policy<Uuid>,
    by_key: Policy<Uuid>,
    by_address: Policy<IpAddr>,
}

impl RequestLimiter {
    pub fn new(
        per_user: u32,
        per_key: u32,
        per_address: u32,
        burst: Option<u32>,
    ) -> RequestLimiter {
        RequestLimiter {
            by_user: Policy::new("user", per_user, burst),
            by_key: Policy::new("key", per_key, burst),
            by_address: Policy::new("address", per_address, burst),
        }
    }

    /// Counts one request against every limit that applies to it. A key's own limit is counted
    /// first, so a key over its limit does not use up its owner's allowance.
    pub fn count(&self, requester: &Requester) -> Counted {
        let mut standings = Vec::with_capacity(2);
        match requester {
            Requester::User { id, key } => {
                if let Some(key) = key {
                    standings.push(self.by_key.count(key));
                }
                if !standings.iter().any(|s| s.refused) {
                    standings.push(self.by_user.count(id));
                }
            }
            Requester::Address(ip) => {
                standings.push(self.by_address.count(&limited_address(Some(*ip))));
            }
        }
        let retry_after_secs = standings
            .iter()
            .filter(|s| s.refused)
            .map(|s| s.reset_secs)
            .max();
        Counted {
            standings,
            retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limited_address(Some(one)), limited_address(Some(other)));
        assert_ne!(limited_address(Some(one)), limited_address(Some(next)));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(limited_address(Some(v4)), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(limited_address(Some(mapped)), v4);
    }

    #[test]
    fn an_attacker_is_refused_while_the_owner_is_only_slowed() {
        let limiter = LoginLimiter::per_minute(3);
        let attacker = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
        let owner = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
        for _ in 0..3 {
            assert!(limiter.check(attacker, "me@example.com").is_ok());
        }
        assert!(limiter.check(attacker, "me@example.com").is_err());
        let delay = limiter.check(owner, "Me@Example.com ").unwrap();
        assert!(
            delay > Duration::ZERO && delay <= MAX_EMAIL_DELAY,
            "{delay:?}"
        );
    }

    #[test]
    fn a_key_counts_against_itself_and_its_owner_and_reports_both() {
        let limiter = RequestLimiter::new(3, 2, 5, None);
        let (owner, key) = (Uuid::now_v7(), Uuid::now_v7());
        let by_key = Requester::User {
            id: owner,
            key: Some(key),
        };
        let first = limiter.count(&by_key);
        assert_eq!(first.retry_after_secs, None);
        assert_eq!(first.policy_header(), "\"key\";q=2;w=60, \"user\";q=3;w=60");
        assert_eq!(
            first.ratelimit_header(),
            "\"key\";r=1;t=30, \"user\";r=2;t=20"
        );
        assert_eq!(limiter.count(&by_key).retry_after_secs, None);
        let refused = limiter.count(&by_key);
        assert_eq!(refused.retry_after_secs, Some(30));
        assert_eq!(refused.ratelimit_header(), "\"key\";r=0;t=30");
        // The key's refusal did not use the owner's last request.
        let by_session = Requester::User {
            id: owner,
            key: None,
        };
        assert_eq!(limiter.count(&by_session).retry_after_secs, None);
        assert!(limiter.count(&by_session).retry_after_secs.is_some());
        // Someone else is not affected.
        let other = Requester::User {
            id: Uuid::now_v7(),
            key: None,
        };
        assert_eq!(limiter.count(&other).retry_after_secs, None);
    }
}
