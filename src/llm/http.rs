//! What both wire formats share: sending a request (over a client of `clients`), turning a
//! non-2xx answer into an `LlmError`, and driving an SSE body through a format-specific decoder.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::clients::{Clients, OnLane};
use super::provider::{EventStream, LlmError, ProviderConfig, StreamEvent};
use super::sse::{Event, SseReader};

/// The provider's key and extra headers on a request.
pub(crate) fn authorized(
    mut request: reqwest::RequestBuilder,
    provider: &ProviderConfig,
) -> reqwest::RequestBuilder {
    if let Some(key) = provider.api_key.as_deref().filter(|key| !key.is_empty()) {
        request = request.bearer_auth(key);
    }
    for (name, value) in &provider.extra_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

/// Sends a request and returns its response once its status is 2xx; anything else is an
/// [`LlmError`] read from the provider's error body.
pub(crate) async fn send_checked(
    request: reqwest::RequestBuilder,
    provider: &ProviderConfig,
) -> Result<reqwest::Response, LlmError> {
    let response = send(request, provider).await?;
    if response.status().is_success() {
        return Ok(response);
    }
    Err(error_from_response(&provider.name, response).await)
}

/// Sends a request; only a request that could not be sent, or had no answer, is an error.
async fn send(
    request: reqwest::RequestBuilder,
    provider: &ProviderConfig,
) -> Result<reqwest::Response, LlmError> {
    request.send().await.map_err(|error| {
        if error.is_builder() {
            LlmError::Config(format!("provider {}: {}", provider.name, describe(&error)))
        } else if error.is_timeout() {
            LlmError::Stalled
        } else if refused_certificate(&error) {
            LlmError::Certificate(describe(&error))
        } else {
            LlmError::Connect(describe(&error))
        }
    })
}

/// Whether the provider's certificate was refused (rustls's `InvalidCertificate`, somewhere in
/// the chain): asking again cannot help, and the person needs to be told why.
fn refused_certificate(error: &reqwest::Error) -> bool {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = cause.downcast_ref::<rustls::Error>() {
            return true;
        }
        // An io::Error's `source()` skips the error it wraps (here an io::Error wrapping
        // rustls's), so step into that instead.
        next = match cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped),
            None => cause.source(),
        };
    }
    false
}

/// An answer's response, and its place on the client it came over.
pub(crate) struct Opened {
    response: reqwest::Response,
    // Dropped after the response (fields drop in order): the place is given back once the
    // answer's stream is closed, not while it still occupies the connection.
    _lane: OnLane,
}

/// POST `body` as JSON to `{base_url}/{path}` and return the response once its status is 2xx.
pub(crate) async fn post_stream(
    clients: &Clients,
    provider: &ProviderConfig,
    path: &str,
    body: &Value,
) -> Result<Opened, LlmError> {
    let (client, lane) = clients.for_answer();
    let request = client
        .post(provider.url(path))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(body);
    let response = send(authorized(request, provider), provider).await?;
    // OpenAI's request id, for a support ticket about this answer.
    let request_id = header_str(response.headers(), "x-request-id").unwrap_or("-");
    if !response.status().is_success() {
        let request_id = request_id.to_owned();
        let error = error_from_response(&provider.name, response).await;
        tracing::warn!(provider = %provider.name, %request_id, %error, "provider refused the request");
        return Err(error);
    }
    tracing::debug!(provider = %provider.name, %request_id, "stream opened");
    Ok(Opened {
        response,
        _lane: lane,
    })
}

/// Map a non-2xx answer: the body is read as text first because 5xx bodies are not guaranteed
/// to be JSON, and `error.code` may be a number (OpenRouter) or a string (OpenAI).
async fn error_from_response(provider: &str, response: reqwest::Response) -> LlmError {
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let should_retry = match header_str(response.headers(), "x-should-retry") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return LlmError::Auth {
            provider: provider.to_owned(),
        };
    }
    let body = response.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<Value>(&body) {
        Ok(json) => error_fields(&json),
        Err(_) => (None, None),
    };
    let message = message.unwrap_or_else(|| {
        let text = body.trim();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        } else {
            truncate(text, 300)
        }
    });
    LlmError::Http {
        status: status.as_u16(),
        code,
        message,
        retry_after,
        should_retry,
    }
}

/// `code` and `message` from any error shape we know: `{"error":{…}}`, `{"error":"text"}`, a
/// flat `{"code","message"}` (Responses `error` event, vLLM `object: "error"`), FastAPI `detail`.
pub(crate) fn error_fields(json: &Value) -> (Option<String>, Option<String>) {
    let (inner, nested) = match json.get("error") {
        Some(Value::String(text)) => return (None, Some(text.clone())),
        Some(object @ Value::Object(_)) => (object, true),
        _ => (json, false),
    };
    // Inside an error object `type` classifies the error (insufficient_quota); at the top level
    // of a flat Responses event it is just the event type "error".
    let kind = if nested { inner.get("type") } else { None };
    let code = [inner.get("code"), kind]
        .into_iter()
        .flatten()
        .find_map(|value| match value {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        });
    let message = [inner.get("message"), json.get("detail")]
        .into_iter()
        .flatten()
        .find_map(|value| {
            value
                .as_str()
                .filter(|text| !text.is_empty())
                .map(String::from)
        });
    (code, message)
}

/// A readable one-liner for an in-band error: its message, then its classification (type and
/// code) when that adds something; the router reads it to spot quota errors.
pub(crate) fn describe_error_json(json: &Value, fallback: &str) -> String {
    let (code, message) = error_fields(json);
    let message = message.unwrap_or_else(|| fallback.to_owned());
    // `error_fields` prefers the code; the nested `type` may still say insufficient_quota.
    let kind = json
        .get("error")
        .and_then(|error| error.get("type"))
        .and_then(Value::as_str);
    let mut tags: Vec<&str> = Vec::new();
    for tag in [kind, code.as_deref()].into_iter().flatten() {
        if !tags.contains(&tag) && !message.contains(tag) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        message
    } else {
        format!("{message} ({})", tags.join(", "))
    }
}

/// The delay a provider asks for: `retry-after-ms` first (OpenAI's own), then `Retry-After` as
/// seconds (fractions allowed) or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// reqwest's top-level message ("error sending request") hides the cause; append the chain.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    // People read this (an answer's error): the provider's address is the operator's business.
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// What a decoder makes of one SSE event.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// Nothing for the caller (lifecycle events, keepalives, unknown types).
    Skip,
    Event(StreamEvent),
    /// The terminal event: nothing is read after it.
    Last(StreamEvent),
}

/// Decodes a whole SSE body the way a live stream of `api` is read: the events a reader would
/// get, up to the terminal event or the first error. For recorded streams, and for fuzzing.
pub fn decode_body(api: crate::llm::Api, body: &[u8]) -> Vec<Result<StreamEvent, LlmError>> {
    use futures_util::FutureExt;
    // The body is all there: the stream never waits, so the future is ready at once.
    let decoded = match api {
        crate::llm::Api::Responses => {
            decode_all(crate::llm::responses::ResponsesDecoder, body).now_or_never()
        }
        crate::llm::Api::ChatCompletions => {
            decode_all(crate::llm::chat_completions::ChatDecoder::default(), body).now_or_never()
        }
    };
    decoded.unwrap_or_default()
}

async fn decode_all(mut decoder: impl Decoder, body: &[u8]) -> Vec<Result<StreamEvent, LlmError>> {
    let mut reader = SseReader::default();
    reader.feed(body);
    let mut out = Vec::new();
    while let Some(event) = reader.next_event() {
        match decoder.decode(&event) {
            Ok(Decoded::Skip) => {}
            Ok(Decoded::Event(event)) => out.push(Ok(event)),
            Ok(Decoded::Last(event)) => {
                out.push(Ok(event));
                return out;
            }
            Err(error) => {
                out.push(Err(error));
                return out;
            }
        }
    }
    if let Some(error) = reader.finish() {
        out.push(Err(malformed(error)));
    }
    out
}

fn malformed(error: String) -> LlmError {
    LlmError::Stream(format!("malformed event stream: {error}"))
}

/// One wire format's view of an SSE stream.
pub(crate) trait Decoder: Send + 'static {
    fn decode(&mut self, event: &Event<'_>) -> Result<Decoded, LlmError>;
}

/// Turn a 2xx SSE body into our stream. The response is owned by the stream, so dropping the
/// stream drops the connection, which is how a stopped chat stops the upstream request (and
/// gives back its place on its client).
pub(crate) fn sse_stream(opened: Opened, decoder: impl Decoder) -> EventStream {
    struct Reading<D> {
        opened: Opened,
        reader: SseReader,
        decoder: D,
    }
    let state = Reading {
        opened,
        reader: SseReader::default(),
        decoder,
    };
    stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            // Every event already in the buffer is decoded before the network is read again.
            while let Some(event) = state.reader.next_event() {
                match state.decoder.decode(&event) {
                    Ok(Decoded::Skip) => {}
                    Ok(Decoded::Event(event)) => return Some((Ok(event), Some(state))),
                    Ok(Decoded::Last(event)) => return Some((Ok(event), None)),
                    Err(error) => return Some((Err(error), None)),
                }
            }
            match state.opened.response.chunk().await {
                Ok(Some(chunk)) => state.reader.feed(&chunk),
                Err(error) if error.is_timeout() => return Some((Err(LlmError::Stalled), None)),
                Err(error) => return Some((Err(LlmError::Dropped(describe(&error))), None)),
                // Both formats end with an explicit terminal event; a bare EOF means truncation.
                Ok(None) => {
                    let cause = state
                        .reader
                        .finish()
                        .unwrap_or_else(|| "the stream ended early".into());
                    return Some((Err(LlmError::Dropped(cause)), None));
                }
            }
        }
    })
    .boxed()
}

/// Parse an event's data as JSON; a malformed event means we cannot trust the rest of the stream.
pub(crate) fn json_data(event: &Event<'_>) -> Result<Value, LlmError> {
    serde_json::from_str(event.data).map_err(|_| {
        LlmError::Stream(format!(
            "the provider sent an event that is not JSON: {}",
            truncate(event.data, 120)
        ))
    })
}

/// Token counts are read leniently: a missing or odd field is "unknown", not an error.
pub(crate) fn token_count(value: Option<&Value>) -> u32 {
    value
        .and_then(Value::as_u64)
        .map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_bodies_decode_like_live_streams() {
        use crate::llm::Api;
        let hello = include_bytes!("../../fuzz/corpus/responses_stream/hello");
        let events = decode_body(Api::Responses, hello);
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::Delta(d)) => Some(&**d),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Hello");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))));
        let failed = decode_body(
            Api::Responses,
            include_bytes!("../../fuzz/corpus/responses_stream/failed"),
        );
        assert!(matches!(failed.as_slice(), [Err(LlmError::Stream(_))]));
        let chat = decode_body(
            Api::ChatCompletions,
            include_bytes!("../../fuzz/corpus/chat_completions_stream/hello"),
        );
        assert!(matches!(chat.first(), Some(Ok(StreamEvent::Delta(d))) if &**d == "Hi"));
        assert!(decode_body(Api::Responses, b"\xff\xfe garbage").len() <= 1);
    }
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn retry_after_reads_ms_then_seconds_then_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "7"), ("retry-after-ms", "120")]),
                now
            ),
            Some(Duration::from_millis(120))
        );
        // 2015-10-21 07:28:00 GMT is 10 s after `now`.
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                now
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn error_fields_accept_every_known_shape() {
        let openai = json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error",
                                      "param": null, "code": "invalid_api_key"}});
        assert_eq!(
            error_fields(&openai),
            (
                Some("invalid_api_key".into()),
                Some("Incorrect API key".into())
            )
        );
        let openrouter = json!({"error": {"code": 402, "message": "Insufficient credits"}});
        assert_eq!(
            error_fields(&openrouter),
            (Some("402".into()), Some("Insufficient credits".into()))
        );
        let quota =
            json!({"error": {"message": "quota", "type": "insufficient_quota", "code": null}});
        assert_eq!(
            error_fields(&quota).0.as_deref(),
            Some("insufficient_quota")
        );
        let vllm = json!({"object": "error", "message": "model not loaded", "code": 404});
        assert_eq!(
            error_fields(&vllm),
            (Some("404".into()), Some("model not loaded".into()))
        );
        assert_eq!(
            error_fields(&json!({"error": "boom"})),
            (None, Some("boom".into()))
        );
        assert_eq!(
            error_fields(&json!({"detail": "Not Found"})),
            (None, Some("Not Found".into()))
        );
    }

    #[tokio::test]
    async fn a_connection_error_does_not_name_the_providers_address() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let error = reqwest::Client::new()
            .post("http://127.0.0.1:1/secret-path/v1/responses")
            .send()
            .await
            .unwrap_err();
        let text = describe(&error);
        assert!(
            !text.contains("127.0.0.1") && !text.contains("secret-path"),
            "{text}"
        );
        assert!(text.contains("error sending request"), "{text}");
    }

    #[test]
    fn describe_error_json_adds_the_code_once() {
        let nested = json!({"type": "error", "error": {"code": "too_many_requests", "message": "Too Many Requests"}});
        assert_eq!(
            describe_error_json(&nested, "x"),
            "Too Many Requests (too_many_requests)"
        );
        assert_eq!(
            describe_error_json(&json!({"type": "error"}), "an error event"),
            "an error event"
        );
        let flat = json!({"type": "error", "code": null, "message": "Something went wrong"});
        assert_eq!(describe_error_json(&flat, "x"), "Something went wrong");
    }
}
