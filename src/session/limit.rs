//! The API's rate limit, as middleware: every request under a scope it wraps (`/api`, and any
//! other API scope such as a future `/v1`) is counted against its user and its API key when it
//! is signed, or against its client address when it is not (`session::client_ip`). Answers carry
//! the IETF `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers,
//! structured fields); a request over a limit is refused with 429 and `Retry-After`.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::auth::rate_limit::{Counted, Requester};
use crate::error::AppError;
use crate::session::Credential;
use crate::session::client::client_ip;
use crate::session::extract::authenticate;
use crate::state::AppState;

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Counts the request; refuses it (429) when over a limit.
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // The same lookup the handler's `CurrentUser` uses, kept in the request: no second query.
    let requester = match authenticate(req.request()).await {
        Ok(user) => Requester::User {
            id: user.id,
            key: match user.credential {
                Credential::ApiKey { id, .. } => Some(id),
                Credential::Session { .. } => None,
            },
        },
        // Not signed (or not validly): the handler answers that; the address pays for it.
        Err(_) => Requester::Address(
            client_ip(req.request()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ),
    };
    let counted = state.request_limiter.count(&requester);
    if let Some(wait) = counted.retry_after_secs {
        // Built from the error, which stays on the response: a scope that answers errors in
        // its own shape (`/v1`, OpenAI's) can still tell what this one was.
        let mut response = HttpResponse::from_error(AppError::RateLimited {
            message: format!(
                "Too many requests. Try again in {}.",
                crate::domain::seconds(wait)
            ),
            retry_after_secs: wait,
        });
        add_headers(response.headers_mut(), &counted);
        // `ServiceResponse::new` keeps the error on the response (`into_response` would drop it).
        let (request, _) = req.into_parts();
        return Ok(ServiceResponse::new(request, response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    add_headers(response.headers_mut(), &counted);
    Ok(response.map_into_left_body())
}

fn add_headers(headers: &mut HeaderMap, counted: &Counted) {
    if let Ok(policy) = HeaderValue::from_str(&counted.policy_header()) {
        headers.insert(RATELIMIT_POLICY, policy);
    }
    if let Ok(standing) = HeaderValue::from_str(&counted.ratelimit_header()) {
        headers.insert(RATELIMIT, standing);
    }
}
