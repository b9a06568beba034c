//! Credentials, with no knowledge of requests or the app: password hashing (bcrypt), session
//! tokens (JWT) and sign-in rate limits. `session` uses them to know who is asking.
pub mod password;
pub mod rate_limit;
pub mod token;
