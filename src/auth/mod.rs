//! Authentication: passwords, session tokens, the current-user extractor, CSRF and rate limits.
pub mod csrf;
pub mod extract;
pub mod password;
pub mod rate_limit;
pub mod token;

pub use extract::CurrentUser;

/// Name of the HttpOnly cookie that carries the session token.
pub const SESSION_COOKIE: &str = "confab_session";
