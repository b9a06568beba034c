//! Credentials, with no knowledge of requests or the app: password hashing (bcrypt), session
//! tokens (JWT), API keys and rate limits. `session` uses them to know who is asking.
pub mod api_key;
pub mod password;
pub mod rate_limit;
pub mod token;

/// Equal-time comparison of secrets, so one cannot be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
