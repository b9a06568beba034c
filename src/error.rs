//! One error type for the whole app, and the policy for using it:
//!
//! - Every handler and service returns `AppResult<T>`. A variant says what went wrong in the
//!   product's terms and decides the status; the JSON API renders it as
//!   `{"error": {"code", "message", "fields"?}}`, pages as HTML in `site::errors::html_errors`
//!   (or a redirect to sign-in for 401).
//! - Messages of client errors (4xx, 503) are written for the person who caused them and are
//!   shown as they are. `Validation` carries one message per form field, shown next to it.
//! - `Internal` is for what the user cannot fix: it keeps its source error for the log and
//!   shows only "internal error". It is logged once, where actix builds the response.
//! - A lookup of something that is not the caller's is `NotFound`, never `Forbidden`, so ids
//!   of other people's things cannot be probed.
//! - Database errors convert with `?`: not found → 404, unique violation → 409, a lost
//!   connection or an exhausted pool → 503 (try again), anything else → `Internal`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub type AppResult<T> = Result<T, AppError>;

/// The largest request body read, forms and JSON alike: room for the longest message or prompt
/// (100,000 characters) however it is encoded — a 4-byte character is 12 bytes in a form.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// The longest piece of someone's input quoted back in an error, or written to the log.
const MAX_DETAIL_CHARS: usize = 200;

/// Input quoted in an error message: at most [`MAX_DETAIL_CHARS`] characters — the start and
/// the end, where parsers say what they expected — with control characters escaped, so no
/// request can make a huge answer or a huge (or forged) log line.
pub fn bounded(detail: &str) -> String {
    let escape = |text: &mut String, c: char| {
        if c.is_control() {
            text.extend(c.escape_default());
        } else {
            text.push(c);
        }
    };
    let count = detail.chars().count();
    let mut out = String::new();
    if count <= MAX_DETAIL_CHARS {
        detail.chars().for_each(|c| escape(&mut out, c));
        return out;
    }
    let tail = MAX_DETAIL_CHARS / 3;
    let head = MAX_DETAIL_CHARS - tail;
    detail.chars().take(head).for_each(|c| escape(&mut out, c));
    out.push('…');
    detail
        .chars()
        .skip(count - tail)
        .for_each(|c| escape(&mut out, c));
    out
}

/// A message for one form field, shown next to it on the page and under `fields` in JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{}", .0.first().map_or("invalid input", |e| e.message.as_str()))]
    Validation(Vec<FieldError>),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("the request body is over the limit of {} bytes", MAX_REQUEST_BYTES)]
    PayloadTooLarge,
    /// An upload over `files.max_upload_bytes`.
    #[error("The file is over the upload limit of {}.", limit_text(*.0))]
    FileTooLarge(u64),
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// Something confab depends on is not there (no LLM provider, shutting down).
    #[error("{0}")]
    NotAvailable(String),
    /// The LLM provider failed to answer.
    #[error("{0}")]
    Upstream(String),
    /// A fault of ours; the source goes to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An upload limit as people say it: "512 MB", "64 KB".
fn limit_text(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MB", bytes >> 20)
    } else {
        format!("{} KB", (bytes >> 10).max(1))
    }
}

impl AppError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::Validation(vec![FieldError {
            field,
            message: message.into(),
        }])
    }

    /// A fault of ours, keeping its cause for the log.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AppError {
        AppError::Internal(source.into())
    }

    /// Extractor errors of JSON bodies (bad JSON, wrong types, missing fields, too large) as
    /// the API's error envelope.
    pub fn from_json_payload(
        error: actix_web::error::JsonPayloadError,
        _: &actix_web::HttpRequest,
    ) -> actix_web::Error {
        use actix_web::error::JsonPayloadError;
        let app = match &error {
            JsonPayloadError::Deserialize(e) if e.is_data() => AppError::invalid(
                "body",
                format!("invalid request body: {}", bounded(&e.to_string())),
            ),
            JsonPayloadError::ContentType => {
                AppError::BadRequest("send JSON with Content-Type: application/json".into())
            }
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                AppError::PayloadTooLarge
            }
            other => AppError::BadRequest(format!("invalid JSON: {}", bounded(&other.to_string()))),
        };
        app.into()
    }

    /// Extractor errors of form bodies, as for JSON.
    pub fn from_form_payload(
        error: actix_web::error::UrlencodedError,
        _: &actix_web::HttpRequest,
    ) -> actix_web::Error {
        use actix_web::error::UrlencodedError;
        let app = match &error {
            UrlencodedError::Overflow { .. } => AppError::PayloadTooLarge,
            other => AppError::BadRequest(format!("invalid form: {}", bounded(&other.to_string()))),
        };
        app.into()
    }

    pub fn unauthorized() -> AppError {
        AppError::Unauthorized("sign in to continue".into())
    }

    /// Stable machine-readable code for the JSON envelope.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::Validation(_) => "validation_failed",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::PayloadTooLarge | AppError::FileTooLarge(_) => "payload_too_large",
            AppError::Unavailable | AppError::NotAvailable(_) => "service_unavailable",
            AppError::Upstream(_) => "upstream_error",
            AppError::Internal(_) => "internal_error",
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            AppError::Validation(errors) => errors,
            _ => &[],
        }
    }
}

/// Every error of the JSON API: `{"error": {"code", "message", "fields"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Envelope<'a> {
    error: Body<'a>,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub struct Body<'a> {
    /// Stable and machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `validation_failed`, `rate_limited`, `payload_too_large`,
    /// `service_unavailable`, `upstream_error`, `internal_error`.
    #[schema(example = "validation_failed")]
    code: &'a str,
    /// For people: what happened and what to do.
    message: String,
    /// With `validation_failed`: a message per field that was refused, by field name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge | AppError::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable | AppError::NotAvailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(source) = self {
            // The cause goes to the log only; the client learns nothing about internals.
            tracing::error!(error = %source, debug = ?source, "internal error");
        }
        let fields = match self {
            AppError::Validation(errors) => Some(
                errors
                    .iter()
                    .map(|e| {
                        (
                            e.field.to_string(),
                            serde_json::Value::from(e.message.clone()),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if let AppError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if matches!(self, AppError::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(Envelope {
            error: Body {
                code: self.code(),
                message: self.to_string(),
                fields,
            },
        })
    }
}

/// Lets a repeated warning through at most once per `every`, so an outage (the database gone,
/// ~10 failures a second) writes a line now and then with how many were held back, not a flood.
pub struct LogThrottle {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(every: std::time::Duration) -> LogThrottle {
        LogThrottle {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many were held back since
    /// the last one that was.
    pub fn admit(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now), 0);
                Some(held_back)
            }
        }
    }
}

/// The envelope for an error actix raised itself (an extractor's, a method no route takes), so
/// every API answer has the same shape whatever refused the request.
pub fn envelope_for(status: StatusCode, message: &str) -> HttpResponse {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge.to_string(),
        s if s.is_server_error() => "internal error".into(),
        _ => bounded(message),
    };
    HttpResponse::build(status).json(Envelope {
        error: Body {
            code,
            message,
            fields: None,
        },
    })
}

/// Bodies that are too large or cannot be read, from extractors that are not JSON's.
impl From<actix_web::error::PayloadError> for AppError {
    fn from(error: actix_web::error::PayloadError) -> AppError {
        match error {
            actix_web::error::PayloadError::Overflow => AppError::PayloadTooLarge,
            other => {
                AppError::BadRequest(format!("unreadable body: {}", bounded(&other.to_string())))
            }
        }
    }
}

/// One field's message, for services that parse a single value with `?`.
impl From<FieldError> for AppError {
    fn from(error: FieldError) -> AppError {
        AppError::Validation(vec![error])
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> AppError {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => AppError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AppError::Conflict("that already exists".into())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => AppError::Unavailable,
            Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info)
                if info.message().contains("connection") =>
            {
                AppError::Unavailable
            }
            // The server went away or is restarting under the query (a crash, a restart, a
            // cancelled statement past statement_timeout): try again shortly, not a fault of ours.
            Error::DatabaseError(_, info) if is_outage(info.message()) => AppError::Unavailable,
            other => AppError::Internal(Box::new(other)),
        }
    }
}

/// PostgreSQL's words for "not now": the server is shutting down, restarting, recovering, or
/// the connection was lost or the statement ran out of time.
fn is_outage(message: &str) -> bool {
    [
        "terminating connection",
        "server closed the connection",
        "the database system is",
        "could not receive data from server",
        "no connection to the server",
        "canceling statement due to statement timeout",
        "connection to server",
    ]
    .iter()
    .any(|words| message.contains(words))
}

impl From<r2d2::Error> for AppError {
    fn from(_: r2d2::Error) -> AppError {
        // The pool's only error is "no connection within connection_timeout": the database is
        // down or saturated. Answer fast and let the client retry.
        AppError::Unavailable
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(error: actix_web::error::BlockingError) -> AppError {
        AppError::Internal(Box::new(error))
    }
}

impl From<askama::Error> for AppError {
    fn from(error: askama::Error) -> AppError {
        AppError::Internal(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_let_through_once_per_period_with_a_count() {
        let throttle = LogThrottle::new(std::time::Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..10 {
            assert_eq!(throttle.admit(), None);
        }
        let throttle = LogThrottle::new(std::time::Duration::ZERO);
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), Some(0));
    }

    #[test]
    fn an_outage_under_a_query_is_503_not_500() {
        assert!(is_outage(
            "terminating connection due to administrator command"
        ));
        assert!(is_outage("the database system is in recovery mode"));
        assert!(is_outage("canceling statement due to statement timeout"));
        assert!(!is_outage("duplicate key value violates unique constraint"));
    }

    #[test]
    fn quoted_input_is_short_and_escaped() {
        let quoted = bounded(&format!("a\0b\n{}, expected a boolean", "x".repeat(10_000)));
        assert!(quoted.starts_with("a\\u{0}b\\n"), "{quoted}");
        assert!(quoted.chars().count() <= MAX_DETAIL_CHARS + 8);
        assert!(
            quoted.contains('…') && quoted.ends_with("expected a boolean"),
            "{quoted}"
        );
    }
}
