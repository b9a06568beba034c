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

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

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
                message: format!("Too many sign-in attempts. Try again in {wait} seconds."),
                retry_after_secs: wait,
            }
        };
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
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
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
