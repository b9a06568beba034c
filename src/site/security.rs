//! Headers on every response: no inline script, no framing, no MIME sniffing, no referrer leaks,
//! nothing stored by caches unless a response says otherwise (static assets do) — pages and JSON
//! carry people's data and tokens. And HEAD, answered as the GET it stands for.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::middleware::{DefaultHeaders, Next};

/// htmx is configured (in the layout's `htmx-config` meta) not to inject inline styles or eval
/// code, so this policy needs no `'unsafe-inline'` at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
form-action 'self'; frame-ancestors 'none'";

pub fn headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        // Only where a response sets none of its own (static assets are cached for a year).
        .add(("Cache-Control", "no-store"))
}

/// The longest request target (path and query) confab reads; no page or API route comes near.
const MAX_TARGET_BYTES: usize = 2048;

/// Requests no route could take are answered before anything logs or counts them: a method that
/// is not HTTP's usual (405) or an enormous target (414). Without this, anyone could write
/// kilobytes into a log line per request.
pub async fn refuse_odd_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let known = matches!(
        req.method().as_str(),
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
    );
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let refusal = if !known {
        Some(StatusCode::METHOD_NOT_ALLOWED)
    } else if target_len > MAX_TARGET_BYTES {
        Some(StatusCode::URI_TOO_LONG)
    } else {
        None
    };
    match refusal {
        Some(status) => {
            let response = crate::error::envelope_for(status, "the request cannot be served");
            Ok(req.into_response(response).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// HEAD is GET without the body: routes are declared for GET, so a HEAD request is routed as
/// one, and the HTTP layer, which saw the HEAD, sends no body.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}
