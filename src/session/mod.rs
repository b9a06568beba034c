//! Who is asking: the signed-in user of a request (from `Authorization: Bearer` or the session
//! cookie), the client's address, the session cookie itself, CSRF protection for
//! cookie-authenticated requests, and the API's rate limit.
pub mod cache;
pub mod client;
pub mod csrf;
pub mod extract;
pub mod limit;
pub mod model;
pub mod service;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};

pub use client::client_ip;
pub use extract::{Credential, CurrentUser};

use crate::state::AppState;

/// Name of the HttpOnly cookie that carries the session token.
pub const SESSION_COOKIE: &str = "confab_session";

/// The session cookie for a freshly issued token: HttpOnly, SameSite=Lax, Secure behind https.
pub fn session_cookie(state: &AppState, token: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .secure(state.settings.cookie_secure())
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(state.tokens.ttl_secs()))
        .finish()
}

/// A cookie that makes the browser forget its session.
pub fn cleared_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(state, String::new());
    cookie.make_removal();
    cookie
}
