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

#[derive(Deserialize, utoipa::ToSchema)]
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
#[utoipa::path(post, path = "/api/chat/agents/{id}", tag = "chat", request_body = ChatBody,
    responses((status = 409, description = "An answer is still being written in that conversation", body = crate::error::Envelope),
        (status = 200, content_type = "text/event-stream", body = String, description = "`text/event-stream`. Each piece of the answer is an event whose data is a `TextEvent` and whose `id` is the answer's length in bytes so far (send it back as `Last-Event-ID` to `GET /api/messages/{id}/stream` to continue after it); an event named `snapshot` replaces the text the reader has. The last event's data is a `DoneEvent`. The user's message is saved before the provider is asked, and the answer is generated to the end even when the reader goes away.")))]
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
#[utoipa::path(get, path = "/api/messages/{id}/stream", tag = "chat",
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event you have: the stream continues after it")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`text/event-stream`. Each piece of the answer is an event whose data is a `TextEvent` and whose `id` is the answer's length in bytes so far (send it back as `Last-Event-ID` to `GET /api/messages/{id}/stream` to continue after it); an event named `snapshot` replaces the text the reader has. The last event's data is a `DoneEvent`. The user's message is saved before the provider is asked, and the answer is generated to the end even when the reader goes away.")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectChatBody {
    /// Without a project (and without a conversation), the person's last used or default agent
    /// answers, as on the chat home; a person with no agent gets a first project. Also read as
    /// `projectId`.
    #[serde(alias = "projectId")]
    project_id: Option<Uuid>,
    message: String,
    conversation_id: Option<Uuid>,
    #[serde(default)]
    file_ids: Vec<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Reply {
    reply: String,
    conversation_id: Uuid,
    message_id: Uuid,
    status: Status,
    provider: Option<String>,
    model: Option<String>,
    usage: Usage,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Usage {
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
}

/// `POST /api/chat`: the project's default agent answers; the reply comes whole.
#[utoipa::path(post, path = "/api/chat", tag = "chat", request_body = ProjectChatBody,
    responses((status = 200, description = "The whole answer, once it has ended", body = Reply),
        (status = 409, description = "An answer is still being written in that conversation", body = crate::error::Envelope),
        (status = 502, description = "The provider failed (after retries and fallback)", body = crate::error::Envelope)))]
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

#[utoipa::path(get, path = "/api/agents/{id}/conversations", tag = "conversations",
    responses((status = 200, description = "Your conversations with the agent, newest first", body = [Conversation])))]
pub async fn list_conversations(
    state: web::Data<AppState>,
    user: CurrentUser,
    agent_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *agent_id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// Only conversations whose title contains this (any case).
    q: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RecentConversation {
    #[serde(flatten)]
    conversation: Conversation,
    agent_name: String,
}

/// `GET /api/conversations?q=`: the person's most recent conversations across all agents (at
/// most 50, newest first), each with its agent's name; `q` searches titles.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(RecentQuery),
    responses((status = 200, description = "Your 50 most recent conversations across agents", body = [RecentConversation])))]
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

#[derive(Serialize, utoipa::ToSchema)]
struct ConversationDetail {
    #[serde(flatten)]
    conversation: Conversation,
    /// Oldest first: the newest `limit`, or those before `before`.
    messages: Vec<Message>,
    /// There are earlier messages: ask with `before` = the first message's id.
    has_earlier: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// Messages before this one (its id), for scrolling back.
    before: Option<Uuid>,
    /// 1–500; 100 unless given.
    limit: Option<usize>,
}

/// `GET /api/conversations/{id}?before=&limit=`: the conversation and a page of its messages,
/// so a long conversation is never sent (or held in memory) whole.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(Window),
    responses((status = 200, description = "The conversation and a page of its messages", body = ConversationDetail)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    title: String,
}

#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", request_body = RenameBody,
    responses((status = 200, description = "The conversation, renamed", body = Conversation)))]
pub async fn update_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<RenameBody>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::rename(&state.pool, &user, *id, &body.title).await?))
}

#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations",
    responses((status = 204, description = "Deleted, with its messages (a live answer stops)")))]
pub async fn delete_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The answer to a stop.
#[derive(Serialize, utoipa::ToSchema)]
struct Stopped {
    /// Always true.
    stopped: bool,
}

/// `POST /api/messages/{id}/stop`: 202 when a live answer was stopped, 409 when it had ended.
#[utoipa::path(post, path = "/api/messages/{id}/stop", tag = "chat",
    responses((status = 202, description = "The live answer was stopped; what it had is kept", body = Stopped),
        (status = 409, description = "That answer is not being generated", body = crate::error::Envelope)))]
pub async fn stop_message(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    if service::stop(&state.pool, &state.generations, &user, *id).await? {
        Ok(HttpResponse::Accepted().json(Stopped { stopped: true }))
    } else {
        Err(AppError::Conflict(
            "That answer is not being generated.".into(),
        ))
    }
}
