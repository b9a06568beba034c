//! `POST /v1/responses`, as OpenAI's Responses API answers it (docs/llm-wire.md §2): a Response
//! object, or its events (`response.created` … `response.completed`, numbered from 0).

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::compat::api::{self, Caller, Encoder, Ending};
use crate::compat::error::OpenAiError;
use crate::compat::service::{self, Content, Incoming};
use crate::conversations::model::Message;
use crate::state::AppState;

/// The request; fields confab does not use (`store`, `top_p`, `metadata`, `user`, …) are
/// ignored. Every call is recorded in confab whatever `store` says.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    /// The agent: its readable id or its UUID (`GET /v1/models`).
    pub model: String,
    /// A user message as a string, or message items (the last must be the user's).
    pub input: Input,
    /// Added after the agent's own system message, for this answer.
    pub instructions: Option<String>,
    pub stream: Option<bool>,
    /// An earlier answer's id (`resp_…`): this call continues its conversation, and every
    /// message of `input` is new to it.
    pub previous_response_id: Option<String>,
    /// Instead of the agent's max output tokens.
    pub max_output_tokens: Option<i64>,
    /// Instead of the agent's temperature, 0–2.
    pub temperature: Option<f32>,
    /// Refused when not empty: confab agents call no client tools.
    pub tools: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

/// A message item (`{"role", "content"}`, `type` `message` or absent); other item types
/// (function call outputs, references) are refused.
#[derive(Debug, Deserialize)]
pub struct InputItem {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub role: Option<String>,
    pub content: Option<Content>,
}

/// The answer's id as a Response id, and back.
fn response_id(answer: Uuid) -> String {
    format!("resp_{}", answer.simple())
}

fn answer_id(response_id: &str) -> Option<Uuid> {
    Uuid::parse_str(response_id.strip_prefix("resp_").unwrap_or(response_id)).ok()
}

/// What every event's Response object repeats.
struct Reply {
    id: String,
    message_id: String,
    created_at: i64,
    model: String,
    instructions: Option<String>,
    previous_response_id: Option<String>,
    temperature: Option<f32>,
    max_output_tokens: Option<u32>,
    conversation_id: Uuid,
}

impl Reply {
    fn object(&self, status: &str, output: Value, usage: Value) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": self.previous_response_id,
            "reasoning": {"effort": null, "summary": null},
            "store": true,
            "temperature": self.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {"confab_conversation_id": self.conversation_id.to_string()},
        })
    }

    fn part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn item(&self, status: &str, content: Value) -> Value {
        json!({"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    /// The whole Response of an ended answer (not a failed one: that is an error).
    fn finished(&self, answer: &Message) -> Value {
        let ending = Ending::of(answer);
        let (status, reason) = match &ending {
            Ending::Complete => ("completed", None),
            Ending::CutShort(reason) => ("incomplete", Some(*reason)),
            Ending::Stopped => ("incomplete", Some("stopped")),
            Ending::Failed(_) => ("failed", None),
        };
        let item = self.item(
            if status == "completed" {
                "completed"
            } else {
                "incomplete"
            },
            json!([Self::part(&answer.content)]),
        );
        let mut object = self.object(status, json!([item]), usage(answer));
        if let Some(reason) = reason {
            object["incomplete_details"] = json!({"reason": reason});
        }
        if let Ending::Failed(why) = ending {
            object["error"] = json!({"code": "server_error", "message": why});
        }
        object
    }
}

fn usage(answer: &Message) -> Value {
    let (input, output) = (
        answer.input_tokens.unwrap_or(0),
        answer.output_tokens.unwrap_or(0),
    );
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

/// The events of docs/llm-wire.md §2.6, numbered from 0 across the stream.
struct Events {
    reply: Reply,
    sequence: u64,
}

impl Events {
    fn event(&mut self, kind: &str, mut fields: Value) -> sse::Event {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        sse::Event::Data(sse::Data::new(fields.to_string()).event(kind.to_string()))
    }

    fn at_text(&self) -> Value {
        json!({"item_id": self.reply.message_id, "output_index": 0, "content_index": 0})
    }
}

impl Encoder for Events {
    fn opening(&mut self) -> Vec<sse::Event> {
        let in_progress = self.reply.object("in_progress", json!([]), Value::Null);
        let item = self.reply.item("in_progress", json!([]));
        let mut part = self.at_text();
        part["part"] = Reply::part("");
        vec![
            self.event("response.created", json!({"response": in_progress})),
            self.event("response.in_progress", json!({"response": in_progress})),
            self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ),
            self.event("response.content_part.added", part),
        ]
    }

    fn text(&mut self, text: &str) -> Vec<sse::Event> {
        let mut delta = self.at_text();
        delta["delta"] = json!(text);
        delta["logprobs"] = json!([]);
        vec![self.event("response.output_text.delta", delta)]
    }

    fn done(&mut self, answer: &Message) -> Vec<sse::Event> {
        let response = self.reply.finished(answer);
        let terminal = match response["status"].as_str() {
            Some("completed") => "response.completed",
            Some("incomplete") => "response.incomplete",
            _ => return vec![self.event("response.failed", json!({"response": response}))],
        };
        let mut text_done = self.at_text();
        text_done["text"] = json!(answer.content);
        text_done["logprobs"] = json!([]);
        let mut part_done = self.at_text();
        part_done["part"] = Reply::part(&answer.content);
        let item = response["output"][0].clone();
        vec![
            self.event("response.output_text.done", text_done),
            self.event("response.content_part.done", part_done),
            self.event(
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            ),
            self.event(terminal, json!({"response": response})),
        ]
    }
}

/// `POST /v1/responses`.
#[utoipa::path(post, path = "/v1/responses", tag = "openai", security(("bearer" = [])), operation_id = "create_response",
    params(("X-Confab-Conversation-Id" = Option<String>, Header, description = "Continue this conversation (the id an earlier answer carried): only your last message is stored, and the agent gets the conversation's own history")),
    request_body(content = Object, description = "OpenAI's Responses request: `model` (an agent), `input`, `instructions`, `stream`, `previous_response_id`, `max_output_tokens`, `temperature`; other fields are ignored"),
    description = "The agent answers as an OpenAI model: a `response`, or with `stream` the Responses events (`response.created` … `response.completed`). Errors have OpenAI's shape, `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`: 401 `invalid_api_key`, 400 `invalid_request_error` with `param`, 404 `model_not_found`, 409 an answer still being written in that conversation, 429 with `Retry-After`, 502/503 `api_error`.",
    responses((status = 200, description = "A `response`, or its events as `text/event-stream`", body = Object, headers(("X-Confab-Conversation-Id" = String, description = "The conversation this call is stored in: send it back to continue")))))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    Caller(user): Caller,
    body: web::Json<ResponsesRequest>,
) -> Result<HttpResponse, OpenAiError> {
    let body = body.into_inner();
    service::no_tools(body.tools.as_ref())?;
    let temperature = service::temperature(body.temperature)?;
    let max_output_tokens = service::max_tokens("max_output_tokens", body.max_output_tokens)?;
    let mut incoming = Incoming::default();
    match &body.input {
        Input::Text(text) => incoming.push("input", "user", Some(&Content::Text(text.clone())))?,
        Input::Items(items) => {
            for (index, item) in items.iter().enumerate() {
                let param = format!("input[{index}]");
                match (item.kind.as_deref(), item.role.as_deref()) {
                    (None | Some("message"), Some(role)) => {
                        incoming.push(&param, role, item.content.as_ref())?;
                    }
                    (kind, _) => {
                        return Err(OpenAiError::invalid(
                            param,
                            format!(
                                "confab agents take message items only, not `{}`.",
                                crate::error::bounded(kind.unwrap_or("an item without a role"))
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(instructions) = &body.instructions {
        incoming.instructions.insert(0, instructions.clone());
    }
    // A previous response names its conversation, and `input` is all new; the header alone is
    // a client that resends its history, of which only the last message is new.
    let (continuing, all_new) = match &body.previous_response_id {
        Some(previous) => {
            let not_found = || {
                OpenAiError::invalid(
                    "previous_response_id",
                    format!(
                        "Previous response with id '{}' not found.",
                        crate::error::bounded(previous)
                    ),
                )
                .with_code("previous_response_not_found")
            };
            let id = answer_id(previous).ok_or_else(not_found)?;
            let (_, conversation) = crate::chat::service::message(&state.pool, &user, id)
                .await
                .map_err(|error| match error {
                    crate::error::AppError::NotFound => not_found(),
                    other => other.into(),
                })?;
            let continuing = api::Continuing {
                conversation_id: conversation.id,
                named_by: "previous_response_id",
            };
            (Some(continuing), true)
        }
        None => {
            let continuing =
                api::conversation_header(&req)?.map(|conversation_id| api::Continuing {
                    conversation_id,
                    named_by: api::CONVERSATION_HEADER,
                });
            (continuing, false)
        }
    };
    let agent = api::agent(&state, &user, &body.model).await?;
    let continuing_with_history = continuing.is_some() && !all_new;
    let (text, mut client) = incoming.into_turn("input", continuing_with_history)?;
    client.temperature = temperature;
    client.max_output_tokens = max_output_tokens;
    let mut sent =
        api::start_turn(&state, &user, &agent, continuing, (text, client), "input").await?;
    let reply = Reply {
        id: response_id(sent.answer.id),
        message_id: format!("msg_{}", sent.answer.id.simple()),
        created_at: sent.answer.created_at.timestamp(),
        model: body.model,
        instructions: body.instructions,
        previous_response_id: body.previous_response_id,
        temperature,
        max_output_tokens,
        conversation_id: sent.conversation.id,
    };
    let conversation = sent.conversation.id;
    if body.stream == Some(true) {
        let first = api::first_piece(&state, &mut sent).await?;
        let events = Events { reply, sequence: 0 };
        let response = api::follow(&req, first, sent.reader, events);
        return Ok(api::with_conversation(response, conversation));
    }
    let answer = api::whole_answer(&state, &mut sent).await?;
    Ok(api::with_conversation(
        HttpResponse::Ok().json(reply.finished(&answer)),
        conversation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_id_is_its_answers_id() {
        let id = Uuid::now_v7();
        assert_eq!(answer_id(&response_id(id)), Some(id));
        assert_eq!(answer_id(&id.to_string()), Some(id));
        assert_eq!(answer_id("resp_nope"), None);
    }
}
