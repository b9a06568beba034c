//! OpenAI-compatible Chat Completions client: `POST {base}/chat/completions` with `stream: true`
//! (docs/llm-wire.md §3). OpenRouter, Groq, Ollama, vLLM, LM Studio and llama.cpp all speak it.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::clients::Clients;
use super::http::{
    Decoded, Decoder, describe_error_json, json_data, post_stream, sse_stream, token_count,
};
use super::provider::{
    ChatRequest, EventStream, Finish, LlmError, ProviderConfig, Role, StreamEvent, Usage,
};
use super::sse::Event;

/// Send `request` and return its stream once the provider has accepted it (2xx).
pub async fn stream(
    clients: &Clients,
    provider: &ProviderConfig,
    request: &ChatRequest,
) -> Result<EventStream, LlmError> {
    let response = post_stream(
        clients,
        provider,
        "chat/completions",
        &request_body(request),
    )
    .await?;
    Ok(sse_stream(response, ChatDecoder::default()))
}

/// The JSON body: the instructions become the `system` message, then the history.
pub fn request_body(request: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(request.history.len() + 1);
    if let Some(instructions) = request
        .instructions
        .as_deref()
        .filter(|text| !text.is_empty())
    {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(request.history.iter().map(|turn| {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        json!({"role": role, "content": turn.text})
    }));
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    // Without it there is no usage in a stream at all.
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    // `max_tokens` is deprecated and refused by OpenAI's reasoning models.
    if let Some(max) = request.max_output_tokens {
        body.insert("max_completion_tokens".into(), json!(max));
    }
    Value::Object(body)
}

/// Collects the finish reason and the usage chunk, which both arrive before `[DONE]`.
#[derive(Default)]
pub(crate) struct ChatDecoder {
    finish: Option<Finish>,
    usage: Option<Usage>,
}

impl Decoder for ChatDecoder {
    fn decode(&mut self, event: &Event<'_>) -> Result<Decoded, LlmError> {
        if event.data.starts_with("[DONE]") {
            let finish = self.finish.take().unwrap_or(Finish::Complete);
            return Ok(Decoded::Last(StreamEvent::Done {
                usage: self.usage.take(),
                finish,
            }));
        }
        let chunk = json_data(event)?;
        // In-band errors come as a top-level `error` (OpenAI, OpenRouter, with a string or a
        // numeric code) or as vLLM's `object: "error"`; check before reading the chunk.
        let has_error = chunk.get("error").is_some_and(|error| !error.is_null());
        if has_error || chunk.get("object").and_then(Value::as_str) == Some("error") {
            return Err(LlmError::Stream(describe_error_json(
                &chunk,
                "the provider reported an error",
            )));
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(Usage {
                input_tokens: token_count(usage.get("prompt_tokens")),
                output_tokens: token_count(usage.get("completion_tokens")),
            });
        }
        // The usage chunk has `choices: []`, so never index blindly.
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first())
        else {
            return Ok(Decoded::Skip);
        };
        match choice.get("finish_reason").and_then(Value::as_str) {
            // OpenRouter's non-standard failure: the error sits on the choice, if anywhere.
            Some("error") => {
                let error = json!({"error": choice.get("error").cloned().unwrap_or(Value::Null)});
                return Err(LlmError::Stream(describe_error_json(
                    &error,
                    "the provider reported an error",
                )));
            }
            Some(reason) => self.finish = Some(finish(reason)),
            None => {}
        }
        let delta = choice.get("delta");
        // Some servers put the last text and the finish reason in one chunk, so read both.
        let text = ["content", "refusal"]
            .into_iter()
            .find_map(|field| {
                delta
                    .and_then(|delta| delta.get(field))
                    .and_then(Value::as_str)
            })
            .filter(|text| !text.is_empty());
        Ok(match text {
            Some(text) => Decoded::Event(StreamEvent::Delta(Arc::from(text))),
            None => Decoded::Skip,
        })
    }
}

/// Chat's finish reasons in the Responses vocabulary, so callers see one set of reasons.
fn finish(reason: &str) -> Finish {
    match reason {
        "stop" | "tool_calls" | "function_call" => Finish::Complete,
        "length" => Finish::Incomplete("max_output_tokens".into()),
        other => Finish::Incomplete(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::Turn;

    fn data(data: &str) -> Event<'_> {
        Event {
            event: "message",
            data,
        }
    }

    #[test]
    fn body_has_system_message_usage_and_no_unset_sampling() {
        let request = ChatRequest {
            model: "openai/gpt-4o-mini".into(),
            instructions: Some("Be brief.".into()),
            history: vec![Turn::user("Hi")],
            temperature: Some(0.5),
            max_output_tokens: None,
            ..ChatRequest::default()
        };
        let body = request_body(&request);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "Hi"})
        );
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["temperature"], json!(0.5));
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn decoder_reads_content_finish_usage_and_done() {
        let mut decoder = ChatDecoder::default();
        let role = data(
            r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert!(matches!(decoder.decode(&role), Ok(Decoded::Skip)));
        let content =
            data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#);
        assert!(
            matches!(decoder.decode(&content), Ok(Decoded::Event(StreamEvent::Delta(t))) if &*t == "Hi")
        );
        let stop = data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#);
        assert!(matches!(decoder.decode(&stop), Ok(Decoded::Skip)));
        let usage = data(
            r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#,
        );
        assert!(matches!(decoder.decode(&usage), Ok(Decoded::Skip)));
        match decoder.decode(&data("[DONE]")) {
            Ok(Decoded::Last(StreamEvent::Done { usage, finish })) => {
                assert_eq!(
                    usage,
                    Some(Usage {
                        input_tokens: 10,
                        output_tokens: 5
                    })
                );
                assert_eq!(finish, Finish::Incomplete("max_output_tokens".into()));
            }
            _ => panic!("[DONE] is terminal"),
        }
    }

    #[test]
    fn decoder_turns_every_in_band_error_shape_into_a_stream_error() {
        let shapes = [
            (
                r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
                "The server had an error (server_error)",
            ),
            (
                r#"{"id":"x","error":{"code":502,"message":"Network connection lost."},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#,
                "Network connection lost. (502)",
            ),
            (
                r#"{"object":"error","message":"model crashed","type":"InternalServerError","code":500}"#,
                "model crashed (500)",
            ),
            (
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"error","error":{"message":"upstream"}}]}"#,
                "upstream",
            ),
        ];
        for (chunk, message) in shapes {
            let mut decoder = ChatDecoder::default();
            match decoder.decode(&data(chunk)) {
                Err(LlmError::Stream(text)) => assert_eq!(text, message),
                _ => panic!("{chunk} must be a stream error"),
            }
        }
    }
}
