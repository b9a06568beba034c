//! What both OpenAI APIs share: the caller, `/v1/models`, starting a turn through confab's chat
//! pipeline, and following the answer as a stream of events.

use std::collections::VecDeque;
use std::convert::Infallible;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::chat::service::{self as chat, ClientTurn, Sent, To};
use crate::compat::error::OpenAiError;
use crate::compat::service::{self, AgentModel};
use crate::conversations::model::{Message, Status};
use crate::error::AppError;
use crate::generation::registry::{Piece, Subscription};
use crate::session::CurrentUser;
use crate::session::extract::bearer_token;
use crate::state::AppState;

/// The header that names the conversation a call continues; every answer carries it.
pub const CONVERSATION_HEADER: &str = "x-confab-conversation-id";

/// The person calling, from `Authorization: Bearer` only: OpenAI clients always send it, and a
/// session cookie is never enough here (these routes have no CSRF check).
pub struct Caller(pub CurrentUser);

impl FromRequest for Caller {
    type Error = OpenAiError;
    type Future = LocalBoxFuture<'static, Result<Caller, OpenAiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if bearer_token(req.headers()).is_none() {
            return Box::pin(async {
                Err(OpenAiError::invalid_api_key(
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                ))
            });
        }
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            match user.await {
                Ok(user) => Ok(Caller(user)),
                Err(AppError::Unauthorized(_)) => Err(OpenAiError::invalid_api_key(
                    "Incorrect API key provided: sign in to confab again or use a valid key.",
                )),
                Err(other) => Err(other.into()),
            }
        })
    }
}

/// One entry of `GET /v1/models`.
#[derive(Serialize)]
pub struct Model {
    /// The agent's readable id (`<project-slug>/<agent-slug>`) or its UUID.
    pub id: String,
    pub object: &'static str,
    /// When the agent was made, in Unix seconds.
    pub created: i64,
    pub owned_by: &'static str,
}

impl From<&AgentModel> for Model {
    fn from(model: &AgentModel) -> Model {
        Model {
            id: model.id.clone(),
            object: "model",
            created: model.agent.created_at.timestamp(),
            owned_by: "confab",
        }
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// `GET /v1/models`: the caller's agents.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("bearer" = [])),
    description = "Your agents as OpenAI models: `{\"object\": \"list\", \"data\": [{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}]}`; an id is `<project-slug>/<agent-slug>` (or the agent's UUID). Errors have OpenAI's shape, `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`: 401 `invalid_api_key`, 400 `invalid_request_error` with `param`, 404 `model_not_found`, 409 an answer still being written in that conversation, 429 with `Retry-After`, 502/503 `api_error`.",
    responses((status = 200, description = "OpenAI's model list", body = Object)))]
pub async fn list_models(
    state: web::Data<AppState>,
    Caller(user): Caller,
) -> Result<HttpResponse, OpenAiError> {
    let models = service::models(&state.pool, &user).await?;
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data: models.iter().map(Model::from).collect(),
    }))
}

/// `GET /v1/models/{id}`: one agent, by its readable id (which holds a `/`) or its UUID.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`<project-slug>/<agent-slug>` or the agent's UUID")),
    description = "Errors have OpenAI's shape, `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`: 401 `invalid_api_key`, 400 `invalid_request_error` with `param`, 404 `model_not_found`, 409 an answer still being written in that conversation, 429 with `Retry-After`, 502/503 `api_error`.",
    responses((status = 200, description = "OpenAI's model object", body = Object)))]
pub async fn get_model(
    state: web::Data<AppState>,
    Caller(user): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let model = agent(&state, &user, &id).await?;
    Ok(HttpResponse::Ok().json(Model::from(&model)))
}

/// The agent a request's `model` names, or OpenAI's 404.
pub async fn agent(
    state: &AppState,
    user: &CurrentUser,
    model: &str,
) -> Result<AgentModel, OpenAiError> {
    service::agent_for_model(&state.pool, user, model)
        .await?
        .ok_or_else(|| OpenAiError::model_not_found(model))
}

/// The conversation `X-Confab-Conversation-Id` names, if the request has one.
pub fn conversation_header(req: &HttpRequest) -> Result<Option<Uuid>, OpenAiError> {
    let Some(value) = req.headers().get(CONVERSATION_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| Uuid::parse_str(text.trim()).ok())
        .map(Some)
        .ok_or_else(|| {
            OpenAiError::invalid(
                CONVERSATION_HEADER,
                "X-Confab-Conversation-Id must be the id (a UUID) of one of your conversations.",
            )
        })
}

/// Where a call goes on: the conversation, and the request field or header that named it.
pub struct Continuing<'a> {
    pub conversation_id: Uuid,
    pub named_by: &'a str,
}

/// Stores the message and starts the answer, through confab's one chat pipeline (the message is
/// saved before any LLM call; the answer is generated by a task that outlives this request).
/// `param` is the request field that holds the messages (for validation errors).
pub async fn start_turn(
    state: &AppState,
    user: &CurrentUser,
    agent: &AgentModel,
    continuing: Option<Continuing<'_>>,
    (text, client): (String, ClientTurn),
    param: &str,
) -> Result<Sent, OpenAiError> {
    let conversation_id = continuing.as_ref().map(|c| c.conversation_id);
    let named_by = continuing.map_or(CONVERSATION_HEADER, |c| c.named_by);
    let to = To::Agent {
        agent_id: agent.agent.id,
        conversation_id,
    };
    chat::send_with(
        &state.pool,
        &state.generations,
        &state.settings.chat,
        user,
        to,
        chat::Outgoing {
            text: &text,
            attached: Vec::new(),
            client,
        },
    )
    .await
    .map_err(|error| match error {
        // The agent was found a moment ago: what is not found is the conversation.
        AppError::NotFound => OpenAiError {
            code: Some("conversation_not_found"),
            ..OpenAiError::invalid(
                named_by,
                "That conversation does not exist, is not yours, or belongs to another model.",
            )
        },
        other => OpenAiError::from(other).about(param),
    })
}

/// The answer read to its end, or the error it failed with (502/503).
pub async fn whole_answer(
    state: &AppState,
    sent: &mut Sent,
) -> Result<std::sync::Arc<Message>, OpenAiError> {
    let answer = chat::finished(&mut sent.reader).await?;
    match chat::failure(&state.generations, &answer) {
        Some(error) => Err(error.into()),
        None => Ok(answer),
    }
}

/// The answer's first piece. An answer that fails before its first word (every provider and
/// retry spent) is an HTTP error, as OpenAI's own refusals are, rather than a stream that fails.
pub async fn first_piece(state: &AppState, sent: &mut Sent) -> Result<Piece, OpenAiError> {
    let snapshot = sent.reader.take_snapshot();
    if !snapshot.is_empty() {
        let end = snapshot.len();
        return Ok(Piece::Text {
            text: snapshot.into(),
            end,
        });
    }
    match sent.reader.next().await {
        Some(Piece::Done(answer)) if answer.content.is_empty() => {
            match chat::failure(&state.generations, &answer) {
                Some(error) => Err(error.into()),
                None => Ok(Piece::Done(answer)),
            }
        }
        Some(piece) => Ok(piece),
        None => Err(AppError::Upstream("the answer was lost".into()).into()),
    }
}

/// How an answer ended, in the terms both APIs report.
pub enum Ending {
    Complete,
    /// Cut short: `max_output_tokens` or `content_filter` (OpenAI's words for why).
    CutShort(&'static str),
    /// Stopped in confab (Stop on its page, shutdown); the text so far is the answer.
    Stopped,
    /// Failed after it began; the message says why.
    Failed(String),
}

impl Ending {
    pub fn of(answer: &Message) -> Ending {
        match answer.status {
            Status::Failed => Ending::Failed(
                [answer.error.as_deref(), answer.error_detail.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" — "),
            ),
            Status::Stopped => Ending::Stopped,
            // A complete answer with a note was cut short (generation's "The answer was cut
            // short (reason)." or its size limit).
            _ => match &answer.error {
                Some(note) if note.contains("content_filter") => Ending::CutShort("content_filter"),
                Some(_) => Ending::CutShort("max_output_tokens"),
                None => Ending::Complete,
            },
        }
    }
}

/// Turns an answer's pieces into one API's events.
pub trait Encoder: 'static {
    /// What goes out before the first piece.
    fn opening(&mut self) -> Vec<sse::Event>;
    fn text(&mut self, text: &str) -> Vec<sse::Event>;
    /// The last events, from the answer as stored.
    fn done(&mut self, answer: &Message) -> Vec<sse::Event>;
}

struct Following<E> {
    encoder: E,
    reader: Subscription,
    first: Option<Piece>,
    queue: VecDeque<sse::Event>,
    started: bool,
    finished: bool,
}

/// The answer as a `text/event-stream` in `encoder`'s format, from its first piece on. The
/// client going away drops only this reader: the answer is still generated and stored.
pub fn follow(
    req: &HttpRequest,
    first: Piece,
    reader: Subscription,
    encoder: impl Encoder,
) -> HttpResponse {
    let state = Following {
        encoder,
        reader,
        first: Some(first),
        queue: VecDeque::new(),
        started: false,
        finished: false,
    };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), state));
            }
            if state.finished {
                return None;
            }
            if !state.started {
                state.started = true;
                let opening = state.encoder.opening();
                state.queue.extend(opening);
                continue;
            }
            let piece = match state.first.take() {
                Some(piece) => Some(piece),
                None => state.reader.next().await,
            };
            let events = match piece {
                Some(Piece::Text { text, .. }) => state.encoder.text(&text),
                Some(Piece::Done(answer)) => {
                    state.finished = true;
                    state.encoder.done(&answer)
                }
                // The generator is gone without a word (it always finishes): end the stream
                // without its terminal event, which clients report as cut off.
                None => return None,
            };
            state.queue.extend(events);
        }
    });
    crate::chat::stream::event_stream(req, events)
}

/// Adds `X-Confab-Conversation-Id`, so a client can continue the conversation.
pub fn with_conversation(mut response: HttpResponse, conversation_id: Uuid) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(&conversation_id.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(CONVERSATION_HEADER), value);
    }
    response
}

/// Unknown paths under `/v1`, in OpenAI's words.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, OpenAiError> {
    Err(OpenAiError::for_status(
        actix_web::http::StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", req.method(), req.path()),
    ))
}
