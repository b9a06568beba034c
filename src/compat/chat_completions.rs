//! `POST /v1/chat/completions`, as OpenAI's Chat Completions API answers it (docs/llm-wire.md
//! §3): a `chat.completion`, or `chat.completion.chunk`s ending with `data: [DONE]`.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::compat::api::{self, Caller, Encoder, Ending};
use crate::compat::error::OpenAiError;
use crate::compat::service::{self, Content, Incoming};
use crate::conversations::model::Message;
use crate::state::AppState;

/// The request; fields confab does not use (`top_p`, `user`, `seed`, `metadata`, …) are
/// ignored, as SDKs send many.
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// The agent: its readable id or its UUID (`GET /v1/models`).
    pub model: String,
    /// The conversation: system and developer messages are added after the agent's own system
    /// message; the last message must be the user's.
    pub messages: Vec<InputMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Instead of the agent's max output tokens (`max_completion_tokens` wins over the
    /// deprecated `max_tokens`).
    pub max_completion_tokens: Option<i64>,
    pub max_tokens: Option<i64>,
    /// Instead of the agent's temperature, 0–2.
    pub temperature: Option<f32>,
    /// How many answers: only 1.
    pub n: Option<i64>,
    /// Refused when not empty: confab agents call no client tools.
    pub tools: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// A last chunk with `usage` and no choices, before `[DONE]`.
    pub include_usage: Option<bool>,
}

/// What every chunk and the completion repeat.
struct Completion {
    id: String,
    created: i64,
    model: String,
}

impl Completion {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }
}

fn usage(answer: &Message) -> Value {
    let (input, output) = (
        answer.input_tokens.unwrap_or(0),
        answer.output_tokens.unwrap_or(0),
    );
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

fn finish_reason(ending: &Ending) -> &'static str {
    match ending {
        Ending::Complete | Ending::Stopped => "stop",
        Ending::CutShort("content_filter") => "content_filter",
        Ending::CutShort(_) => "length",
        Ending::Failed(_) => "error",
    }
}

struct Chunks {
    completion: Completion,
    include_usage: bool,
}

impl Chunks {
    fn data(value: &Value) -> sse::Event {
        sse::Event::Data(sse::Data::new(value.to_string()))
    }

    /// `usage: null` on every chunk but the last when usage was asked for, as OpenAI does.
    fn no_usage(&self) -> Option<Value> {
        self.include_usage.then_some(Value::Null)
    }
}

impl Encoder for Chunks {
    fn opening(&mut self) -> Vec<sse::Event> {
        let choices = json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]);
        vec![Self::data(&self.completion.chunk(choices, self.no_usage()))]
    }

    fn text(&mut self, text: &str) -> Vec<sse::Event> {
        let choices = json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]);
        vec![Self::data(&self.completion.chunk(choices, self.no_usage()))]
    }

    fn done(&mut self, answer: &Message) -> Vec<sse::Event> {
        let ending = Ending::of(answer);
        if let Ending::Failed(why) = &ending {
            // In-band, as OpenAI reports a failure after the stream began; no [DONE] follows,
            // so a client knows the answer is cut off.
            let error = OpenAiError::from(crate::error::AppError::Upstream(why.clone()));
            return vec![Self::data(&error.body())];
        }
        let choices = json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(&ending)}]);
        let mut events = vec![Self::data(&self.completion.chunk(choices, self.no_usage()))];
        if self.include_usage {
            events.push(Self::data(
                &self.completion.chunk(json!([]), Some(usage(answer))),
            ));
        }
        events.push(sse::Event::Data(sse::Data::new("[DONE]")));
        events
    }
}

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("bearer" = [])), operation_id = "create_chat_completion",
    params(("X-Confab-Conversation-Id" = Option<String>, Header, description = "Continue this conversation (the id an earlier answer carried): only your last message is stored, and the agent gets the conversation's own history")),
    request_body(content = Object, description = "OpenAI's Chat Completions request: `model` (an agent), `messages`, `stream`, `stream_options`, `max_completion_tokens`, `temperature`; other fields are ignored"),
    description = "The agent answers as an OpenAI model: a `chat.completion`, or with `stream` `chat.completion.chunk` events ending with `data: [DONE]`. Send `X-Confab-Conversation-Id` (every answer carries it) to continue a conversation. Errors have OpenAI's shape, `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`: 401 `invalid_api_key`, 400 `invalid_request_error` with `param`, 404 `model_not_found`, 409 an answer still being written in that conversation, 429 with `Retry-After`, 502/503 `api_error`.",
    responses((status = 200, description = "A `chat.completion`, or its chunks as `text/event-stream`", body = Object, headers(("X-Confab-Conversation-Id" = String, description = "The conversation this call is stored in: send it back to continue")))))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    Caller(user): Caller,
    body: web::Json<ChatCompletionRequest>,
) -> Result<HttpResponse, OpenAiError> {
    let body = body.into_inner();
    if body.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::invalid(
            "n",
            "confab agents give one answer: `n` must be 1.",
        ));
    }
    service::no_tools(body.tools.as_ref())?;
    let temperature = service::temperature(body.temperature)?;
    let max_output_tokens = match body.max_completion_tokens {
        Some(_) => service::max_tokens("max_completion_tokens", body.max_completion_tokens)?,
        None => service::max_tokens("max_tokens", body.max_tokens)?,
    };
    let mut incoming = Incoming::default();
    for (index, message) in body.messages.iter().enumerate() {
        incoming.push(
            &format!("messages[{index}]"),
            &message.role,
            message.content.as_ref(),
        )?;
    }
    let conversation_id = api::conversation_header(&req)?;
    let agent = api::agent(&state, &user, &body.model).await?;
    let (text, mut client) = incoming.into_turn("messages", conversation_id.is_some())?;
    client.temperature = temperature;
    client.max_output_tokens = max_output_tokens;
    let continuing = conversation_id.map(|conversation_id| api::Continuing {
        conversation_id,
        named_by: api::CONVERSATION_HEADER,
    });
    let mut sent = api::start_turn(
        &state,
        &user,
        &agent,
        continuing,
        (text, client),
        "messages",
    )
    .await?;
    let completion = Completion {
        id: format!("chatcmpl-{}", sent.answer.id.simple()),
        created: sent.answer.created_at.timestamp(),
        model: body.model,
    };
    let conversation = sent.conversation.id;
    if body.stream == Some(true) {
        let first = api::first_piece(&state, &mut sent).await?;
        let include_usage = body
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let encoder = Chunks {
            completion,
            include_usage,
        };
        let response = api::follow(&req, first, sent.reader, encoder);
        return Ok(api::with_conversation(response, conversation));
    }
    let answer = api::whole_answer(&state, &mut sent).await?;
    let reply = json!({
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": finish_reason(&Ending::of(&answer)),
        }],
        "usage": usage(&answer),
    });
    Ok(api::with_conversation(
        HttpResponse::Ok().json(reply),
        conversation,
    ))
}
