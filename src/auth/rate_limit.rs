//! Login attempts are limited per client IP and per email (governor's keyed GCRA limiters).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::AppError;

pub struct LoginLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_email: DefaultKeyedRateLimiter<String>,
}

impl LoginLimiter {
    pub fn per_minute(attempts: u32) -> LoginLimiter {
        let quota =
            Quota::per_minute(NonZeroU32::new(attempts.max(1)).expect("max(1) is non-zero"));
        LoginLimiter {
            by_ip: DefaultKeyedRateLimiter::keyed(quota),
            by_email: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// Counts one attempt; refuses it once either key is over its quota.
    pub fn check(&self, ip: Option<IpAddr>, email: &str) -> Result<(), AppError> {
        let clock = DefaultClock::default();
        let refused = |not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>| {
            let wait = not_until.wait_time_from(clock.now()).as_secs() + 1;
            AppError::RateLimited {
                message: format!("Too many sign-in attempts. Try again in {wait} seconds."),
                retry_after_secs: wait,
            }
        };
        if let Some(ip) = ip {
            self.by_ip.check_key(&ip).map_err(refused)?;
        }
        self.by_email
            .check_key(&email.trim().to_lowercase())
            .map_err(refused)?;
        // Forget keys whose quota has fully refilled, so the maps do not grow without bound.
        if self.by_email.len() > 10_000 {
            self.by_email.retain_recent();
            self.by_ip.retain_recent();
        }
        Ok(())
    }
}
