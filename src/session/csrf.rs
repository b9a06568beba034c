//! CSRF protection for cookie-authenticated requests: a per-browser random token kept in an
//! HttpOnly cookie must come back in the `X-CSRF-Token` header (htmx sends it from `hx-headers`)
//! or the `csrf_token` form field (plain forms), and a present `Origin` must be our own.
//! Bearer-token requests carry no ambient authority and are exempt.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use rand::RngCore;

use crate::auth::constant_time_eq;
use crate::error::AppError;
use crate::session::SESSION_COOKIE;
use crate::state::AppState;

pub const CSRF_COOKIE: &str = "confab_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";

/// Set on a plain (no-JavaScript) file upload, whose token is inside a multipart body that is
/// streamed, not read ahead: its `Origin` was present and ours, and the handler must check the
/// `csrf_token` field (the form's first) with [`check_field`] before it reads anything else.
#[derive(Clone, Copy, Debug)]
pub struct TokenInBody;

/// The refusal of a request whose token is missing or wrong.
pub fn refused() -> AppError {
    AppError::Forbidden(
        "The form expired or came from another site. Reload the page and try again.".into(),
    )
}

/// A form field's token against this browser's (constant time); 403 when they differ.
pub fn check_field(req: &HttpRequest, sent: &str) -> Result<(), AppError> {
    let expected = req.cookie(CSRF_COOKIE).map(|c| c.value().to_string());
    match expected {
        Some(expected)
            if expected.len() == 64 && constant_time_eq(expected.as_bytes(), sent.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(refused()),
    }
}

/// Only the page route that takes files may defer the token into its body.
fn is_upload(req: &ServiceRequest) -> bool {
    let multipart = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.essence_str() == "multipart/form-data");
    // Exactly `/projects/<uuid>/files`, nothing that merely looks like it.
    let upload_path = req
        .path()
        .strip_prefix("/projects/")
        .and_then(|rest| rest.strip_suffix("/files"))
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok() && id.len() == 36);
    multipart
        && upload_path
        && req.headers().contains_key(header::ORIGIN)
        && !req.headers().contains_key(CSRF_HEADER)
}

/// This browser's CSRF token, for templates to put in forms and `hx-headers`.
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

impl FromRequest for CsrfToken {
    type Error = AppError;
    type Future = std::future::Ready<Result<CsrfToken, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<CsrfToken>()
                .cloned()
                .ok_or_else(|| AppError::Internal("csrf middleware not installed".into())),
        )
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new token in a new cookie, for the response that signs someone in: a token planted in the
/// browser before (by someone else on a shared machine, or a subdomain) stops working.
pub fn rotated_cookie(secure: bool) -> Cookie<'static> {
    csrf_cookie(new_token(), secure)
}

fn csrf_cookie(token: String, secure: bool) -> Cookie<'static> {
    Cookie::build(CSRF_COOKIE, token)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish()
}

pub async fn protect(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, BoxBody>>, actix_web::Error> {
    let existing = req
        .cookie(CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64);
    let token = existing.clone().unwrap_or_else(new_token);
    req.extensions_mut().insert(CsrfToken(token.clone()));

    if needs_check(&req) {
        let verdict = match check_origin(&req) {
            Err(error) => Err(error),
            // A plain upload: the Origin was checked above (and must be there); the token is
            // checked by the handler, in the body's first field.
            Ok(()) if existing.is_some() && is_upload(&req) => {
                req.extensions_mut().insert(TokenInBody);
                Ok(())
            }
            Ok(()) => match (&existing, sent_token(&mut req).await) {
                // A body too big to read is refused as that, not as a missing token.
                (_, Err(too_large)) => Err(too_large),
                (Some(expected), Ok(Some(sent)))
                    if constant_time_eq(expected.as_bytes(), sent.as_bytes()) =>
                {
                    Ok(())
                }
                _ => Err(refused()),
            },
        };
        if let Err(error) = verdict {
            // A response (not an Err) so the page layer can still render it as HTML.
            return Ok(req.error_response(error).map_into_right_body());
        }
    }

    let secure = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.settings.cookie_secure());
    let mut response = next.call(req).await?;
    let rotated = response
        .response()
        .cookies()
        .any(|c| c.name() == CSRF_COOKIE);
    if existing.is_none() && !rotated {
        response
            .response_mut()
            .add_cookie(&csrf_cookie(token, secure))?;
    }
    Ok(response.map_into_left_body())
}

/// Unsafe methods, unless authenticated by a Bearer token. API calls with no session cookie
/// (API login and registration from scripts) have no ambient authority to abuse either.
fn needs_check(req: &ServiceRequest) -> bool {
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return false;
    }
    if crate::session::extract::bearer_token(req.headers()).is_some() {
        return false;
    }
    let api = req.path().starts_with("/api/");
    !(api && req.cookie(SESSION_COOKIE).is_none())
}

fn check_origin(req: &ServiceRequest) -> Result<(), AppError> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        // Browsers send Origin on cross-site POSTs; without one we rely on the token alone.
        return Ok(());
    };
    let expected = match req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.settings.server.public_url.clone())
    {
        Some(public) => origin_of(&public),
        // The request's own Host, never `X-Forwarded-Host`/`Forwarded`, which anyone can send;
        // behind a proxy that rewrites Host, set `server.public_url`.
        None => {
            let scheme = if req.app_config().secure() {
                "https"
            } else {
                "http"
            };
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| {
                    req.uri()
                        .authority()
                        .map(actix_web::http::uri::Authority::as_str)
                })
                .unwrap_or_default();
            format!("{scheme}://{host}")
        }
    };
    if origin.eq_ignore_ascii_case(&expected) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Cross-site requests are not allowed.".into(),
        ))
    }
}

/// `https://host:port/path` → `https://host:port`.
fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_string()
}

/// The token from the header or a urlencoded form body (never the query string: URLs end up in
/// logs, history and Referer headers). The body is read and put back so the handler still sees it.
async fn sent_token(req: &mut ServiceRequest) -> Result<Option<String>, AppError> {
    if let Some(value) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Ok(Some(value.to_string()));
    }
    let is_form = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.essence_str() == "application/x-www-form-urlencoded");
    if !is_form {
        return Ok(None);
    }
    // Read up to the request limit (`PayloadConfig`), the same a form handler reads.
    let body = match req.extract::<web::Bytes>().await {
        Ok(body) => body,
        Err(error)
            if error.as_response_error().status_code()
                == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            return Err(AppError::PayloadTooLarge);
        }
        Err(_) => return Ok(None),
    };
    let found = std::str::from_utf8(&body).ok().and_then(field_in);
    let (_, mut payload) = actix_http::h1::Payload::create(true);
    payload.unread_data(body);
    req.set_payload(payload.into());
    Ok(found)
}

fn field_in(encoded: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(encoded)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_strips_the_path() {
        assert_eq!(
            origin_of("https://chat.example.com/app"),
            "https://chat.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn finds_the_token_among_form_fields() {
        assert_eq!(field_in("a=1&csrf_token=abc&b=2").as_deref(), Some("abc"));
        assert_eq!(field_in("a=1"), None);
    }
}
