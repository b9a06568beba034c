//! JSON API for chat: streaming and non-streaming sends, conversations, stop.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::service::{self, To};
use crate::chat::stream::{self, Format, Params, Source};
use crate::conversations::model::{Conversation, Message, Status};
use crate::error::{AppError, AppResult};
use crate::files::service::Attached;
use crate::session::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    message: String,
    conversation_id: Option<Uuid>,
    /// Files of the agent's project whose text goes with the message.
    #[serde(default)]
    file_ids: Vec<Uuid>,
}

/// The files to send with a message, read and checked; half the history budget is theirs at most.
pub async fn attachments(
    state: &AppState,
    user: &CurrentUser,
    ids: &[Uuid],
) -> AppResult<Vec<Attached>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::files::service::attachable(
        &state.pool,
        &crate::files::api::store(state),
        (
            state.generations.router(),
            &state.settings.files.provider_purpose,
        ),
        user,
        ids,
        state.settings.chat.history_budget_chars / 2,
    )
    .await
}

fn json_final(_: &Message) -> String {
    String::new()
}

/// `POST /api/chat/agents/{agent_id}`: `text/event-stream`, one `data: {"text", "conversation_id",
/// "message_id"}` per chunk (with `id:` = byte offset, for `Last-Event-ID`), then a final
/// `{"done": true, "status", "usage", …}`.
pub async fn stream_chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    agent_id: web::Path<Uuid>,
    body: web::Json<ChatBody>,
) -> AppResult<HttpResponse> {
    let ChatBody {
        message,
        conversation_id,
        file_ids,
    } = body.into_inner();
    let attached = attachments(&state, &user, &file_ids).await?;
    let to = To::Agent {
        agent_id: *agent_id,
        conversation_id,
    };
    let sent = service::send(
        &state.pool,
        &state.generations,
        &state.settings.chat,
        &user,
        to,
        &message,
        attached,
    )
    .await?;
    let params = Params {
        conversation_id: sent.conversation.id,
        message_id: sent.answer.id,
        resume_from: None,
        render_final: json_final,
    };
    Ok(stream::respond(
        &req,
        Source::Live(sent.reader),
        Format::Json,
        params,
    ))
}

/// `GET /api/messages/{id}/stream`: the same events for an answer already under way or done;
/// send `Last-Event-ID` to continue after what you have.
pub async fn resume_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let (source, conversation) =
        service::open_answer(&state.pool, &state.generations, &user, *id).await?;
    let params = Params {
        conversation_id: conversation.id,
        message_id: *id,
        resume_from: stream::last_event_id(&req),
        render_final: json_final,
    };
    Ok(stream::respond(&req, source, Format::Json, params))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectChatBody {
    /// Without a project (and without a conversation), the person's last used or default agent
    /// answers, as on the chat home; a person with no agent gets a first project.
    project_id: Option<Uuid>,
    message: String,
    conversation_id: Option<Uuid>,
    #[serde(default)]
    file_ids: Vec<Uuid>,
}

#[derive(Serialize)]
struct Reply {
    reply: String,
    conversation_id: Uuid,
    message_id: Uuid,
    status: Status,
    provider: Option<String>,
    model: Option<String>,
    usage: Usage,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
}

/// `POST /api/chat`: the project's default agent answers; the reply comes whole.
pub async fn chat(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<ProjectChatBody>,
) -> AppResult<HttpResponse> {
    let ProjectChatBody {
        project_id,
        message,
        conversation_id,
        file_ids,
    } = body.into_inner();
    let attached = attachments(&state, &user, &file_ids).await?;
    let to = match (project_id, conversation_id) {
        (Some(project_id), conversation_id) => To::Agent {
            agent_id: service::default_agent(&state.pool, &user, project_id)
                .await?
                .id,
            conversation_id,
        },
        (None, Some(id)) => To::Conversation(id),
        (None, None) => To::Default,
    };
    let mut sent = service::send(
        &state.pool,
        &state.generations,
        &state.settings.chat,
        &user,
        to,
        &message,
        attached,
    )
    .await?;
    let finished = service::finished(&mut sent.reader).await?;
    if let Some(error) = service::failure(&state.generations, &finished) {
        return Err(error);
    }
    Ok(HttpResponse::Ok().json(Reply {
        reply: finished.content.clone(),
        conversation_id: sent.conversation.id,
        message_id: finished.id,
        status: finished.status,
        provider: finished.provider.clone(),
        model: finished.model.clone(),
        usage: Usage {
            input_tokens: finished.input_tokens,
            output_tokens: finished.output_tokens,
        },
    }))
}

pub async fn list_conversations(
    state: web::Data<AppState>,
    user: CurrentUser,
    agent_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *agent_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentQuery {
    /// Only conversations whose title contains this (any case).
    q: Option<String>,
}

#[derive(Serialize)]
struct RecentConversation {
    #[serde(flatten)]
    conversation: Conversation,
    agent_name: String,
}

/// `GET /api/conversations?q=`: the person's most recent conversations across all agents (at
/// most 50, newest first), each with its agent's name; `q` searches titles.
pub async fn recent_conversations(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<RecentQuery>,
) -> AppResult<HttpResponse> {
    let recent = service::recent(&state.pool, &user, query.into_inner().q).await?;
    let list: Vec<RecentConversation> = recent
        .into_iter()
        .map(|(conversation, agent_name)| RecentConversation {
            conversation,
            agent_name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Serialize)]
struct ConversationDetail {
    #[serde(flatten)]
    conversation: Conversation,
    /// Oldest first: the newest `limit`, or those before `before`.
    messages: Vec<Message>,
    /// There are earlier messages: ask with `before` = the first message's id.
    has_earlier: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    before: Option<Uuid>,
    /// 1–500; 100 unless given.
    limit: Option<usize>,
}

/// `GET /api/conversations/{id}?before=&limit=`: the conversation and a page of its messages,
/// so a long conversation is never sent (or held in memory) whole.
pub async fn get_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    window: web::Query<Window>,
) -> AppResult<HttpResponse> {
    let limit = window.limit.unwrap_or(100);
    if !(1..=service::MAX_PAGE_MESSAGES).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("limit must be between 1 and {}", service::MAX_PAGE_MESSAGES),
        ));
    }
    let (conversation, history) =
        service::get(&state.pool, &user, *id, window.before, limit).await?;
    Ok(HttpResponse::Ok().json(ConversationDetail {
        conversation,
        messages: history.messages,
        has_earlier: history.earlier,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    title: String,
}

pub async fn update_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<RenameBody>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::rename(&state.pool, &user, *id, &body.title).await?))
}

pub async fn delete_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/messages/{id}/stop`: 202 when a live answer was stopped, 409 when it had ended.
pub async fn stop_message(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    if service::stop(&state.pool, &state.generations, &user, *id).await? {
        Ok(HttpResponse::Accepted().json(serde_json::json!({"stopped": true})))
    } else {
        Err(AppError::Conflict(
            "That answer is not being generated.".into(),
        ))
    }
}
