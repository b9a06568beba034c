//! Pages speak HTML: an `AppError` raised under a page route becomes an error page, and "not
//! signed in" becomes a redirect to the login page (htmx gets `HX-Redirect`, or the error in the
//! page's flash area).

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use askama::Template;

use crate::error::AppError;
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::Chrome;

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    title: &'a str,
    message: String,
}

#[derive(Template)]
#[template(path = "partials/flash.html")]
struct Flash {
    message: String,
}

/// An error message as a page's flash fragment (escaped).
pub fn flash(message: &str) -> String {
    Flash {
        message: message.to_string(),
    }
    .render()
    .unwrap_or_default()
}

/// A refusal for htmx: `message` as a flash swapped into `target`, with the status (and a rate
/// limit's `Retry-After`).
pub fn flash_into(
    target: &str,
    status: StatusCode,
    error: Option<&AppError>,
    message: &str,
) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    if let Some(AppError::RateLimited {
        retry_after_secs, ..
    }) = error
    {
        builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
    }
    builder
        .insert_header(("HX-Retarget", target))
        .insert_header(("HX-Reswap", "innerHTML"))
        .content_type("text/html; charset=utf-8")
        .body(flash(message))
}

/// Wraps the whole app. Under `/api/`, an error actix raised itself (not an `AppError`) gets the
/// API's JSON envelope; `/health` and `/static/` keep what they answer; pages get HTML.
pub async fn html_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, BoxBody>>, actix_web::Error> {
    let path = req.path();
    let is_api = path.starts_with("/api/") || path == "/api";
    // `/v1` (the OpenAI-compatible API) renders its own errors in OpenAI's shape.
    let is_openai = path.starts_with("/v1/") || path == "/v1";
    let is_page = !(is_api || is_openai || path == "/health" || path.starts_with("/static/"));
    // The request must not be cloned across `next.call`: routing needs it uniquely owned.
    let response = next.call(req).await?;
    let mut replacement = match response.response().error() {
        Some(error) if is_page => error_response(response.request(), error),
        Some(error) if is_api && error.as_error::<AppError>().is_none() => {
            let status = error.as_response_error().status_code();
            crate::error::envelope_for(status, &error.to_string())
        }
        // A path that exists, asked with a method it does not take: actix's bare 405 (with its
        // `Allow` header) gets the page or the envelope every other refusal has.
        None if response.status() == StatusCode::METHOD_NOT_ALLOWED && (is_api || is_page) => {
            let message = "This address does not take that method.";
            if is_page {
                let error = actix_web::error::InternalError::new(message, response.status());
                error_response(response.request(), &error.into())
            } else {
                crate::error::envelope_for(response.status(), message)
            }
        }
        _ => return Ok(response.map_into_left_body()),
    };
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replacement
            .headers_mut()
            .insert(header::ALLOW, allow.clone());
    }
    Ok(response.into_response(replacement).map_into_right_body())
}

fn error_response(req: &actix_web::HttpRequest, error: &actix_web::Error) -> HttpResponse {
    let app_error = error.as_error::<AppError>();
    let status = error.as_response_error().status_code();
    let htmx = crate::site::is_htmx(req);
    if status == StatusCode::UNAUTHORIZED {
        let next = req
            .uri()
            .path_and_query()
            .map_or("/", actix_http::uri::PathAndQuery::as_str);
        let location = format!("/login?next={}", urlencode(next));
        return if htmx {
            HttpResponse::Ok()
                .insert_header(("HX-Redirect", location))
                .finish()
        } else {
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .finish()
        };
    }
    let message = match app_error {
        Some(AppError::NotFound) | None if status == StatusCode::NOT_FOUND => {
            "This page does not exist, or it is not yours.".to_string()
        }
        // The detail was logged when actix built the error's own response; never shown here.
        Some(AppError::Internal(_)) => {
            "Something went wrong on our side. Try again; if it keeps happening, tell the administrator.".into()
        }
        // The API's message is a lowercase clause, as its other messages are; a page speaks in
        // sentences.
        Some(AppError::Unavailable) => {
            "The database is not answering right now. Try again in a few seconds.".into()
        }
        Some(e) => e.to_string(),
        None => error.to_string(),
    };
    if htmx {
        return flash_into("#flash", status, app_error, &message);
    }
    let mut builder = HttpResponse::build(status);
    if let Some(AppError::RateLimited {
        retry_after_secs, ..
    }) = app_error
    {
        builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
    }
    let csrf = req
        .extensions()
        .get::<CsrfToken>()
        .cloned()
        .unwrap_or(CsrfToken(String::new()));
    let user = req.extensions().get::<CurrentUser>().cloned();
    let page = ErrorPage {
        chrome: Chrome::new(user.as_ref(), &csrf),
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    builder
        .content_type("text/html; charset=utf-8")
        .body(page.render().unwrap_or_default())
}

fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

/// Only local paths are followed after login, never another site. Browsers drop tabs and
/// newlines from URLs and read `\` as `/`, so `/\t/evil.com` would be `//evil.com`: anything but
/// printable ASCII without a backslash is refused, as is a second leading slash.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n[1..].starts_with('/')
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => crate::urls::HOME,
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        for ok in ["/projects/3", "/agents/x?tab=1", "/a%20b"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n",
            "https://evil.com",
            "evil.com",
            "/ /x",
            "/caf\u{e9}",
        ] {
            assert_eq!(safe_next(Some(bad)), crate::urls::HOME, "{bad:?}");
        }
        assert_eq!(safe_next(None), crate::urls::HOME);
    }
}
