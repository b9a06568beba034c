//! CORS for the API (and the OpenAI-compatible routes): the web origins in
//! `server.cors_origins` may call them with `fetch` from their own pages — the seeds' front ends
//! on another origin. No origin by default and never a wildcard. Credentials are not allowed:
//! another origin signs in with a token or an API key (`Authorization: Bearer`), which carries
//! no ambient authority, so the session cookie and its CSRF check stay same-origin only.

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderName};

/// How long a browser may keep a preflight's answer (Chromium keeps at most two hours).
const PREFLIGHT_MAX_AGE_SECS: usize = 7200;

/// The CORS middleware for `origins` (already checked to be plain origins at start).
pub fn for_api(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("x-confab-conversation-id"),
        ])
        // What a script on that origin may read of an answer besides the basic headers.
        .expose_headers([
            header::RETRY_AFTER,
            header::CONTENT_DISPOSITION,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("x-confab-conversation-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
