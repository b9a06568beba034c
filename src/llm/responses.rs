//! OpenAI Responses API client: `POST {base}/responses` with `stream: true` (docs/llm-wire.md §2).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};

use super::clients::Clients;
use super::http::{
    Decoded, Decoder, describe_error_json, json_data, post_stream, sse_stream, token_count,
};
use super::provider::{
    ChatRequest, EventStream, Finish, LlmError, ProviderConfig, Role, StreamEvent, Usage,
};
use super::sse::Event;

/// The API rejects `max_output_tokens` below this (spec minimum), so a smaller setting is raised.
const MIN_OUTPUT_TOKENS: u32 = 16;

/// Send `request` and return its stream once the provider has accepted it (2xx).
pub async fn stream(
    clients: &Clients,
    provider: &ProviderConfig,
    request: &ChatRequest,
) -> Result<EventStream, LlmError> {
    let response = post_stream(clients, provider, "responses", &request_body(request)).await?;
    Ok(sse_stream(response, ResponsesDecoder))
}

/// The JSON body: stateless (`store: false`, the whole history resent) because compatible
/// servers only support that and we keep the conversation ourselves.
pub fn request_body(request: &ChatRequest) -> Value {
    let last = request.history.len().saturating_sub(1);
    let input: Vec<Value> = request
        .history
        .iter()
        .enumerate()
        .map(|(index, turn)| {
            // Plain string content for both roles: an assistant turn sent as `input_text` is a
            // 400 ("Supported values are: 'output_text' and 'refusal'"), a string never is.
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            if index == last && turn.role == Role::User && !request.input_files.is_empty() {
                // The new message with its files (docs/llm-wire.md §4.3).
                let mut content = vec![json!({"type": "input_text", "text": turn.text})];
                content.extend(
                    request
                        .input_files
                        .iter()
                        .map(|id| json!({"type": "input_file", "file_id": id})),
                );
                return json!({"role": role, "content": content});
            }
            json!({"role": role, "content": turn.text})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    if let Some(instructions) = request
        .instructions
        .as_deref()
        .filter(|text| !text.is_empty())
    {
        body.insert("instructions".into(), json!(instructions));
    }
    body.insert("input".into(), Value::Array(input));
    if !request.vector_store_ids.is_empty() {
        // The provider searches the project's files itself (docs/llm-wire.md §2.4).
        body.insert(
            "tools".into(),
            json!([{"type": "file_search", "vector_store_ids": request.vector_store_ids}]),
        );
    }
    body.insert("stream".into(), json!(true));
    body.insert("store".into(), json!(false));
    // Sampling settings only when the agent sets them: reasoning models refuse `temperature`.
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max) = request.max_output_tokens {
        body.insert(
            "max_output_tokens".into(),
            json!(max.max(MIN_OUTPUT_TOKENS)),
        );
    }
    Value::Object(body)
}

/// Dispatches on the JSON `type` (not the SSE event name) and ignores every type it does not
/// need, so `keepalive` and future event types cannot break a stream.
pub(crate) struct ResponsesDecoder;

/// The fields that decide what an event is, borrowed from the event's data: almost every event
/// of a stream is a text delta or a lifecycle event confab does not read, and reading only these
/// (the rest is skipped, not built) costs a fraction of a whole `Value` with its map, its strings
/// and its `logprobs` array or its whole `response` object.
#[derive(Deserialize)]
struct Glance<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
    /// Present and not null makes any event a failure, which the whole reading below explains.
    error: Option<IgnoredAny>,
}

impl Glance<'_> {
    /// What a text delta or a lifecycle event decodes to; `None` for anything the whole reading
    /// must judge (errors, citations, terminal events, a delta that is not a string, odd JSON
    /// such as a repeated key, which this struct refuses and a `Value` reads as the last one).
    fn read(data: &str) -> Option<Decoded> {
        let event: Glance<'_> = serde_json::from_str(data).ok()?;
        if event.error.is_some() {
            return None;
        }
        match &*event.kind {
            "response.output_text.delta" | "response.refusal.delta" => Some(match event.delta {
                Some(delta) if !delta.is_empty() => {
                    Decoded::Event(StreamEvent::Delta(Arc::from(delta)))
                }
                _ => Decoded::Skip,
            }),
            "error"
            | "response.output_text.annotation.added"
            | "response.completed"
            | "response.incomplete"
            | "response.failed" => None,
            // Lifecycle events (created, in_progress, output_item.added, …) and unknown types.
            _ => Some(Decoded::Skip),
        }
    }
}

impl Decoder for ResponsesDecoder {
    fn decode(&mut self, event: &Event<'_>) -> Result<Decoded, LlmError> {
        // Its data is not promised to be JSON, and it carries nothing we need.
        if event.event == "keepalive" {
            return Ok(Decoded::Skip);
        }
        match Glance::read(event.data) {
            Some(decoded) => Ok(decoded),
            None => decode_whole(event),
        }
    }
}

/// Any event, read as a whole `Value`: everything but plain text deltas.
fn decode_whole(event: &Event<'_>) -> Result<Decoded, LlmError> {
    let json = json_data(event)?;
    let kind = json.get("type").and_then(Value::as_str).unwrap_or_default();
    // Any event with a top-level `error` is a failure (openai-python's rule); the `error`
    // event comes both flat and nested, and `error_fields` reads both.
    if kind == "error" || json.get("error").is_some_and(|error| !error.is_null()) {
        return Err(LlmError::Stream(describe_error_json(
            &json,
            "the provider reported an error",
        )));
    }
    match kind {
        // A refusal is what the person gets to read instead of an answer, so it is text too.
        "response.output_text.delta" | "response.refusal.delta" => {
            match json.get("delta").and_then(Value::as_str) {
                Some(delta) if !delta.is_empty() => {
                    Ok(Decoded::Event(StreamEvent::Delta(Arc::from(delta))))
                }
                _ => Ok(Decoded::Skip),
            }
        }
        // A citation of a searched file (docs/llm-wire.md §2.4).
        "response.output_text.annotation.added" => {
            let annotation = json.get("annotation").unwrap_or(&Value::Null);
            match (
                annotation.get("type").and_then(Value::as_str),
                annotation.get("file_id").and_then(Value::as_str),
            ) {
                (Some("file_citation"), Some(file_id)) => Ok(Decoded::Event(StreamEvent::Cited {
                    file_id: file_id.to_owned(),
                    filename: annotation
                        .get("filename")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })),
                _ => Ok(Decoded::Skip),
            }
        }
        "response.completed" => Ok(Decoded::Last(StreamEvent::Done {
            usage: usage(&json),
            finish: Finish::Complete,
        })),
        "response.incomplete" => {
            let reason = json
                .pointer("/response/incomplete_details/reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            Ok(Decoded::Last(StreamEvent::Done {
                usage: usage(&json),
                finish: Finish::Incomplete(reason.to_owned()),
            }))
        }
        "response.failed" => {
            let response = json.get("response").unwrap_or(&Value::Null);
            Err(LlmError::Stream(describe_error_json(
                response,
                "the model failed to generate a response",
            )))
        }
        _ => Ok(Decoded::Skip),
    }
}

/// Usage is only filled in the terminal event (it is `null` in `response.created`).
fn usage(json: &Value) -> Option<Usage> {
    let usage = json
        .pointer("/response/usage")
        .filter(|usage| usage.is_object())?;
    Some(Usage {
        input_tokens: token_count(usage.get("input_tokens")),
        output_tokens: token_count(usage.get("output_tokens")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::Turn;

    fn event<'a>(event: &'a str, data: &'a str) -> Event<'a> {
        Event { event, data }
    }

    #[test]
    fn body_is_stateless_and_omits_unset_sampling() {
        let request = ChatRequest {
            model: "gpt-4o-mini".into(),
            instructions: Some("Be brief.".into()),
            history: vec![
                Turn::user("Hi"),
                Turn::assistant("Hello!"),
                Turn::user("Bye"),
            ],
            temperature: None,
            max_output_tokens: Some(4),
            ..ChatRequest::default()
        };
        let body = request_body(&request);
        assert_eq!(body["store"], json!(false));
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["instructions"], json!("Be brief."));
        assert_eq!(
            body["input"][1],
            json!({"role": "assistant", "content": "Hello!"})
        );
        assert_eq!(body["max_output_tokens"], json!(16));
        assert!(body.get("temperature").is_none());
    }

    /// The borrowed reading gives what the whole reading gives, for every event
    /// type of the wire format and for the odd ones it must leave to the whole reading.
    #[test]
    fn text_deltas_read_borrowed_as_the_whole_reading_reads_them() {
        let cases = [
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"sequence_number":4}"#,
            // Escapes, a surrogate pair, characters of 2 to 4 bytes, an escaped NUL.
            r#"{"type":"response.output_text.delta","delta":"caf\u00e9 \"q\" \\ \n\t\ud83c\udf89 Grüße 東京 🎉 \u0000"}"#,
            r#"{"delta":"late type","type":"response.output_text.delta"}"#,
            r#"{"type":"response.refusal.delta","delta":"I can't help with that."}"#,
            r#"{"type":"response.output_text.delta","delta":""}"#,
            r#"{"type":"response.output_text.delta"}"#,
            r#"{"type":"response.output_text.delta","delta":null}"#,
            r#"{"type":"response.output_text.delta","delta":42}"#,
            r#"{"type":"response.output_text.delta","delta":"a","delta":"b"}"#,
            r#"{"type":"response.output_text.delta","delta":"x","error":null}"#,
            r#"{"type":"response.output_text.delta","delta":"x","error":{"message":"boom"}}"#,
            r#"{"type":"response.output_text.\u0064elta","delta":"escaped type"}"#,
            r#"{"type":7,"delta":"x"}"#,
            r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress","usage":null}}"#,
            r#"{"type":"response.output_text.done","text":"Hi"}"#,
            r#"{"type":"response.in_progress","response":{"status":"in_progress","output":[]},"delta":7}"#,
            r#"{"type":"response.output_item.done","item":{"content":[{"type":"output_text","text":"Hi"}]}}"#,
            r#"{"type":"response.unknown_future_event","payload":{"a":[1,2,{"b":null}]}}"#,
            r#"{"type":"response.created","error":"x"}"#,
            r#"{"type":"response.output_text.annotation.added","annotation":{"type":"file_citation","file_id":"file-1","filename":"a.pdf"}}"#,
            r#"{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":5}}}"#,
            r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}"#,
            r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"The model failed."}}}"#,
            r#"{"type":"error","code":"ERR_X","message":"Something went wrong"}"#,
            r#"{"type":"keepalive","sequence_number":3}"#,
            r#"{"type":"response.output_text.delta","delta":"cut"#,
            "not json",
            "[1,2]",
        ];
        for data in cases {
            let event = Event {
                event: "response.output_text.delta",
                data,
            };
            assert_eq!(
                format!("{:?}", ResponsesDecoder.decode(&event)),
                format!("{:?}", decode_whole(&event)),
                "{data}"
            );
        }
        let unicode = Event {
            event: "message",
            data: cases[1],
        };
        assert!(matches!(
            Glance::read(unicode.data),
            Some(Decoded::Event(StreamEvent::Delta(text))) if &*text == "café \"q\" \\ \n\t🎉 Grüße 東京 🎉 \0"
        ));
    }

    #[test]
    fn decoder_reads_deltas_terminals_and_both_error_shapes() {
        let mut decoder = ResponsesDecoder;
        let delta = event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        );
        assert!(
            matches!(decoder.decode(&delta), Ok(Decoded::Event(StreamEvent::Delta(text))) if &*text == "Hi")
        );
        let keepalive = event("keepalive", r#"{"type":"keepalive","sequence_number":3}"#);
        assert!(matches!(decoder.decode(&keepalive), Ok(Decoded::Skip)));
        let incomplete = event(
            "response.incomplete",
            r#"{"type":"response.incomplete","response":{"status":"incomplete",
               "incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":3,"output_tokens":16}}}"#,
        );
        match decoder.decode(&incomplete) {
            Ok(Decoded::Last(StreamEvent::Done { usage, finish })) => {
                assert_eq!(
                    usage,
                    Some(Usage {
                        input_tokens: 3,
                        output_tokens: 16
                    })
                );
                assert_eq!(finish, Finish::Incomplete("max_output_tokens".into()));
            }
            _ => panic!("incomplete is terminal"),
        }
        let flat = event(
            "error",
            r#"{"type":"error","code":"ERR_X","message":"Something went wrong","param":null}"#,
        );
        assert!(
            matches!(decoder.decode(&flat), Err(LlmError::Stream(m)) if m == "Something went wrong (ERR_X)")
        );
        let nested = event(
            "error",
            r#"{"type":"error","error":{"type":"insufficient_quota","code":"credit_balance_exhausted","message":"No credits"}}"#,
        );
        match decoder.decode(&nested) {
            Err(error @ LlmError::Stream(_)) => {
                assert_eq!(
                    error.to_string(),
                    "No credits (insufficient_quota, credit_balance_exhausted)"
                );
                assert!(
                    !error.is_retryable(),
                    "a quota error is not retried even in-band"
                );
            }
            _ => panic!("a nested error event is a stream error"),
        }
        let failed = event(
            "response.failed",
            r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."}}}"#,
        );
        assert!(
            matches!(decoder.decode(&failed), Err(LlmError::Stream(m)) if m.contains("The model failed"))
        );
    }
}
