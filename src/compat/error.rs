//! Errors under `/v1` in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with
//! OpenAI's statuses, so an OpenAI SDK raises the exception its users expect (`AuthenticationError`,
//! `NotFoundError`, `RateLimitError`, …). confab's own `AppError` converts into it; so does
//! whatever actix refuses by itself (a body that is not JSON, an unknown path), through
//! [`openai_errors`].

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::{AppError, bounded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `api_error`, `server_error`, `requests`.
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl OpenAiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after_secs: None,
        }
    }

    /// 400 `invalid_request_error` naming the request field that is wrong.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            param: Some(param.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 401, as OpenAI answers a missing or wrong key.
    pub fn invalid_api_key(message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
        }
    }

    /// 404 for a model that is not one of the caller's agents, in OpenAI's words.
    pub fn model_not_found(model: &str) -> OpenAiError {
        OpenAiError {
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    bounded(model)
                ),
            )
        }
    }

    pub fn with_code(mut self, code: &'static str) -> OpenAiError {
        self.code = Some(code);
        self
    }

    /// A validation message about confab's `message` field is about this request's `param`
    /// (`messages`, `input`), which is what the client sent.
    pub fn about(mut self, param: &str) -> OpenAiError {
        if self.param.as_deref() == Some("message") {
            self.param = Some(param.into());
        }
        self
    }

    /// What actix refused by itself, with its status.
    pub fn for_status(status: StatusCode, message: &str) -> OpenAiError {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let message = if status.is_server_error() {
            "The server had an error while processing your request.".to_string()
        } else {
            bounded(message)
        };
        Self::new(status, kind, message)
    }

    /// The same error without logging (for errors whose own response already logged them).
    fn from_app(error: &AppError) -> OpenAiError {
        use AppError as E;
        let message = error.to_string();
        match error {
            E::BadRequest(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            }
            E::Unauthorized(_) => Self::invalid_api_key(message),
            E::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "permission_error", message),
            E::NotFound => Self::new(StatusCode::NOT_FOUND, "invalid_request_error", "Not found.")
                .with_code("not_found"),
            E::Conflict(_) => Self::new(StatusCode::CONFLICT, "invalid_request_error", message)
                .with_code("conflict"),
            E::Validation(fields) => OpenAiError::invalid(
                fields.first().map_or("body", |f| f.field),
                fields
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            E::RateLimited {
                retry_after_secs, ..
            } => OpenAiError {
                code: Some("rate_limit_exceeded"),
                retry_after_secs: Some(*retry_after_secs),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "requests", message)
            },
            E::PayloadTooLarge | E::FileTooLarge(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                message,
            ),
            E::Unavailable | E::NotAvailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", message)
                    .with_code("service_unavailable")
            }
            E::Upstream(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "api_error", message).with_code("upstream_error")
            }
            E::Internal(_) => Self::for_status(StatusCode::INTERNAL_SERVER_ERROR, ""),
        }
    }

    /// The JSON body, also sent in-band when a stream fails after it started.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or_default()
    }
}

impl From<AppError> for OpenAiError {
    fn from(error: AppError) -> OpenAiError {
        if let AppError::Internal(source) = &error {
            // The cause goes to the log only, as for every other internal error.
            tracing::error!(error = %source, debug = ?source, "internal error");
        }
        OpenAiError::from_app(&error)
    }
}

/// Every error under `/v1`, as OpenAI writes them: `{"error": {"message", "type", "param",
/// "code"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OpenAiError)]
pub struct Envelope<'a> {
    error: Body<'a>,
}

/// What went wrong, in OpenAI's words.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OpenAiErrorBody)]
pub struct Body<'a> {
    message: &'a str,
    /// `invalid_request_error`, `api_error`, `requests`, …
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self.body())
    }
}

/// Body extractor errors (not JSON, a missing `model`, a wrong type) as OpenAI's 400.
pub fn from_json_payload(
    error: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    match &error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            OpenAiError::from_app(&AppError::PayloadTooLarge)
        }
        JsonPayloadError::ContentType => OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Send JSON with Content-Type: application/json.",
        ),
        other => OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "We could not parse the JSON body of your request: {}",
                bounded(&other.to_string())
            ),
        ),
    }
    .into()
}

/// Wraps `/v1`: any error that is not already OpenAI's (an `AppError` from an extractor, an
/// unknown method) is answered in OpenAI's shape.
pub async fn openai_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, BoxBody>>, actix_web::Error> {
    let response = next.call(req).await?;
    let replacement = match response.response().error() {
        Some(error) if error.as_error::<OpenAiError>().is_none() => {
            match error.as_error::<AppError>() {
                Some(app) => OpenAiError::from_app(app),
                None => OpenAiError::for_status(
                    error.as_response_error().status_code(),
                    &error.to_string(),
                ),
            }
        }
        // A path asked with a method it does not take: actix's bare 405, in OpenAI's shape.
        None if response.status() == StatusCode::METHOD_NOT_ALLOWED => OpenAiError::for_status(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{} is not allowed on {}.",
                response.request().method(),
                response.request().path()
            ),
        ),
        _ => return Ok(response.map_into_left_body()),
    };
    // The rate-limit standing (and a 405's `Allow`) stays with the answer, whatever its shape.
    let mut replaced = replacement.error_response();
    for name in ["ratelimit", "ratelimit-policy", "allow"] {
        if let Some(value) = response.headers().get(name) {
            replaced
                .headers_mut()
                .insert(header::HeaderName::from_static(name), value.clone());
        }
    }
    Ok(response.into_response(replaced).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openais_shape_and_status() {
        let missing = OpenAiError::model_not_found("x");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            missing.body(),
            serde_json::json!({"error": {
                "message": "The model `x` does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        );
        let limited = OpenAiError::from(AppError::RateLimited {
            message: "slow down".into(),
            retry_after_secs: 3,
        });
        assert_eq!(
            (limited.status.as_u16(), limited.retry_after_secs),
            (429, Some(3))
        );
        let invalid = OpenAiError::from(AppError::invalid("message", "Write a message first."))
            .about("messages");
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert_eq!(invalid.param.as_deref(), Some("messages"));
        let upstream = OpenAiError::from(AppError::Upstream("down".into()));
        assert_eq!(
            (upstream.status.as_u16(), upstream.kind),
            (502, "api_error")
        );
    }
}
