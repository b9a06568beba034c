//! Chat pages: a conversation with its messages, the composer, and the answer streaming in.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::agents;
use crate::agents::model::Agent;
use crate::agents::model::ProjectRef;
use crate::chat::service::{self, History, To};
use crate::chat::stream::{self, Format, Params};
use crate::conversations::model::{Conversation, Message, Status};
use crate::error::{AppError, AppResult};
use crate::render::markdown;
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, PageForm, Refusal, html, is_htmx, refused, reply,
    see_other,
};
use crate::state::AppState;
use crate::urls;

/// One message as the page shows it.
pub struct MessageView {
    pub id: Uuid,
    pub is_user: bool,
    pub streaming: bool,
    /// Sanitized HTML of a finished answer, or of the settled blocks of one that streams.
    pub html: String,
    /// The last, still growing block of a streaming answer, rendered.
    pub tail: String,
    /// A user's message, as plain text.
    pub text: String,
    pub status: Status,
    pub error: Option<String>,
    pub meta: Option<String>,
}

impl MessageView {
    pub fn of(message: &Message) -> MessageView {
        let status = message.status;
        let streaming = status == Status::Streaming;
        let is_user = !message.is_assistant();
        let meta = (!is_user && !streaming)
            .then(|| meta_line(message))
            .filter(|m| !m.is_empty());
        let (html, tail, text) = if is_user {
            (String::new(), String::new(), message.content.clone())
        } else if streaming {
            // As the stream's first events would show it (the page then follows them).
            let (settled, tail) = markdown::Progressive::default().render(&message.content);
            (settled, tail, String::new())
        } else {
            let html = markdown::to_safe_html(&message.content);
            (html, String::new(), String::new())
        };
        MessageView {
            id: message.id,
            is_user,
            streaming,
            html,
            tail,
            text,
            status,
            error: message.error.clone(),
            meta,
        }
    }
}

/// "gpt-4o-mini · openai · 13 → 52 tokens · first token 420 ms · 2.1 s"
fn meta_line(message: &Message) -> String {
    let mut parts = Vec::new();
    if let Some(model) = &message.model {
        parts.push(model.clone());
    }
    if let Some(provider) = &message.provider {
        parts.push(provider.clone());
    }
    match (message.input_tokens, message.output_tokens) {
        (Some(input), Some(output)) => parts.push(format!("{input} → {output} tokens")),
        (None, Some(output)) => parts.push(format!("{output} tokens")),
        _ => {}
    }
    if let Some(ttft) = message.ttft_ms {
        parts.push(format!("first token {ttft} ms"));
    }
    if let Some(duration) = message.duration_ms {
        parts.push(format!("{:.1} s", f64::from(duration) / 1000.0));
    }
    parts.join(" · ")
}

#[derive(Template)]
#[template(path = "partials/chat/bubble.html")]
pub struct Bubble {
    pub m: MessageView,
    pub csrf: String,
}

/// What htmx appends after a send. When the message started a conversation, the sidebar, the
/// heading and the composer (which must now post to the conversation) ride along out of band.
#[derive(Template)]
#[template(path = "partials/chat/turn.html")]
struct Turn {
    csrf: String,
    user: Bubble,
    answer: Bubble,
    sidebar: Option<Sidebar>,
    head: Option<TitleSection>,
    next_post_url: Option<String>,
}

#[derive(Template)]
#[template(path = "partials/chat/sidebar.html")]
struct Sidebar {
    agent_id: Uuid,
    conversations: Vec<Conversation>,
    current: Option<Uuid>,
    oob: bool,
}

impl Sidebar {
    fn is_current(&self, id: &Uuid) -> bool {
        self.current.as_ref() == Some(id)
    }
}

#[derive(Template)]
#[template(path = "partials/chat/title.html")]
struct TitleSection {
    csrf: String,
    conversation: Conversation,
    /// What the rename box shows: the title, or what was typed when it was refused.
    title: String,
    errors: FormErrors,
    oob: bool,
}

impl TitleSection {
    fn of(csrf: &CsrfToken, conversation: Conversation, oob: bool) -> TitleSection {
        TitleSection {
            csrf: csrf.0.clone(),
            title: conversation.title.clone(),
            conversation,
            errors: FormErrors::default(),
            oob,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/chat/show.html")]
struct ChatPage {
    chrome: Chrome,
    project: ProjectRef,
    agent: Agent,
    sidebar: Sidebar,
    title: Option<TitleSection>,
    conversation: Option<Conversation>,
    /// The messages shown, with the link to earlier ones.
    earlier: Earlier,
    post_url: String,
    providers_configured: bool,
    draft: String,
    errors: FormErrors,
}

/// A window of a conversation's messages and, when there are earlier ones, the link to them.
#[derive(Template)]
#[template(path = "partials/chat/earlier.html")]
struct Earlier {
    earlier_url: Option<String>,
    messages: Vec<Bubble>,
}

impl Earlier {
    fn of(csrf: &CsrfToken, conversation: Option<&Conversation>, history: &History) -> Earlier {
        let earlier_url = match (conversation, history.messages.first()) {
            (Some(c), Some(first)) if history.earlier => {
                Some(format!("{}?before={}", urls::conversation(c.id), first.id))
            }
            _ => None,
        };
        Earlier {
            earlier_url,
            messages: history
                .messages
                .iter()
                .map(|m| Bubble {
                    m: MessageView::of(m),
                    csrf: csrf.0.clone(),
                })
                .collect(),
        }
    }
}

/// The final bubble, sent as the stream's `done` event (no CSRF token needed: a retry form in it
/// takes the token from the page's `hx-headers`).
fn final_bubble(message: &Message) -> String {
    Bubble {
        m: MessageView::of(message),
        csrf: String::new(),
    }
    .render()
    .unwrap_or_default()
}

/// What a chat page shows besides the agent and its conversations.
#[derive(Default)]
struct Shown {
    /// The open conversation and the messages shown; none for a new chat.
    conversation: Option<(Conversation, History)>,
    /// A message that was refused, kept in the box.
    draft: String,
    errors: FormErrors,
    /// The rename form as it was sent, when it was refused.
    title: Option<TitleSection>,
}

async fn chat_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    agent_id: Uuid,
    status: StatusCode,
    shown: Shown,
) -> AppResult<HttpResponse> {
    let Shown {
        conversation,
        draft,
        errors,
        title,
    } = shown;
    let (agent, project) = agents::service::get_with_project(&state.pool, user, agent_id).await?;
    let conversations = service::list(&state.pool, user, agent_id).await?;
    let (conversation, history) = match conversation {
        Some((c, h)) => (Some(c), h),
        None => (
            None,
            History {
                messages: Vec::new(),
                earlier: false,
            },
        ),
    };
    let post_url = match &conversation {
        Some(c) => urls::conversation_messages(c.id),
        None => urls::agent_chat(agent_id),
    };
    let page = ChatPage {
        chrome: Chrome::new(Some(user), csrf),
        sidebar: Sidebar {
            agent_id,
            conversations,
            current: conversation.as_ref().map(|c| c.id),
            oob: false,
        },
        title: title.or_else(|| {
            conversation
                .clone()
                .map(|c| TitleSection::of(csrf, c, false))
        }),
        earlier: Earlier::of(csrf, conversation.as_ref(), &history),
        conversation,
        project,
        agent,
        post_url,
        providers_configured: !state.generations.router().providers.is_empty(),
        draft,
        errors,
    };
    html(status, &page)
}

pub async fn new_chat(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    agent_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    chat_page(
        &state,
        &user,
        &csrf,
        *agent_id,
        StatusCode::OK,
        Shown::default(),
    )
    .await
}

#[derive(Deserialize)]
pub struct Window {
    /// Show the messages before this one (the link to earlier messages).
    before: Option<Uuid>,
}

/// A conversation opens at its newest messages; earlier ones come a page at a time (htmx adds
/// them above, without JavaScript the page shows that window).
pub async fn show_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    window: web::Query<Window>,
) -> AppResult<HttpResponse> {
    let (conversation, history) = service::get(
        &state.pool,
        &user,
        *id,
        window.before,
        service::PAGE_MESSAGES,
    )
    .await?;
    if is_htmx(&req) && window.before.is_some() {
        return html(
            StatusCode::OK,
            &Earlier::of(&csrf, Some(&conversation), &history),
        );
    }
    let agent_id = conversation.agent_id;
    let shown = Shown {
        conversation: Some((conversation, history)),
        ..Default::default()
    };
    chat_page(&state, &user, &csrf, agent_id, StatusCode::OK, shown).await
}

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    message: String,
}

async fn send(
    req: HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    to: To,
    form: MessageForm,
) -> AppResult<HttpResponse> {
    let result = service::send(
        &state.pool,
        &state.generations,
        &state.settings.chat,
        user,
        to,
        &form.message,
    )
    .await;
    let sent = match refused(result, "message")? {
        Ok(sent) => sent,
        Err(Refusal { status, errors }) => {
            if is_htmx(&req) {
                let message = errors
                    .get("message")
                    .unwrap_or("Invalid message.")
                    .to_string();
                return Err(AppError::BadRequest(message));
            }
            let (agent_id, conversation) = match to {
                To::Agent {
                    agent_id,
                    conversation_id: None,
                } => (agent_id, None),
                To::Agent {
                    conversation_id: Some(id),
                    ..
                }
                | To::Conversation(id) => {
                    let conversation =
                        service::get(&state.pool, user, id, None, service::PAGE_MESSAGES).await?;
                    (conversation.0.agent_id, Some(conversation))
                }
            };
            let shown = Shown {
                conversation,
                draft: form.message,
                errors,
                title: None,
            };
            return chat_page(state, user, csrf, agent_id, status, shown).await;
        }
    };
    let url = urls::conversation(sent.conversation.id);
    if !is_htmx(&req) {
        return Ok(see_other(&req, &url));
    }
    let sidebar = if sent.new_conversation {
        let agent_id = sent.conversation.agent_id;
        let conversations = service::list(&state.pool, user, agent_id).await?;
        Some(Sidebar {
            agent_id,
            conversations,
            current: Some(sent.conversation.id),
            oob: true,
        })
    } else {
        None
    };
    let new = sent.new_conversation;
    let turn = Turn {
        csrf: csrf.0.clone(),
        user: Bubble {
            m: MessageView::of(&sent.user_message),
            csrf: csrf.0.clone(),
        },
        answer: Bubble {
            m: MessageView::of(&sent.answer),
            csrf: csrf.0.clone(),
        },
        sidebar,
        head: new.then(|| TitleSection::of(csrf, sent.conversation.clone(), true)),
        next_post_url: new.then(|| urls::conversation_messages(sent.conversation.id)),
    };
    let mut response = HttpResponse::Ok();
    if sent.new_conversation {
        // The page becomes the conversation's page, so a refresh or a shared link finds it.
        response
            .insert_header(("HX-Push-Url", url.clone()))
            .insert_header(("HX-Trigger", "confab:conversation-started"));
    }
    Ok(response
        .content_type("text/html; charset=utf-8")
        .body(turn.render()?))
}

pub async fn send_first_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    agent_id: web::Path<Uuid>,
    PageForm(form): PageForm<MessageForm>,
) -> AppResult<HttpResponse> {
    send(
        req,
        &state,
        &user,
        &csrf,
        To::Agent {
            agent_id: *agent_id,
            conversation_id: None,
        },
        form,
    )
    .await
}

pub async fn send_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(form): PageForm<MessageForm>,
) -> AppResult<HttpResponse> {
    send(req, &state, &user, &csrf, To::Conversation(*id), form).await
}

/// `GET /messages/{id}/stream`: the answer as server-sent events for htmx-ext-sse.
pub async fn stream_message(
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
        render_final: final_bubble,
    };
    Ok(stream::respond(&req, source, Format::Html, params))
}

pub async fn stop_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::stop(&state.pool, &state.generations, &user, *id).await?;
    if is_htmx(&req) {
        // The stream's `done` event brings the final bubble.
        return Ok(HttpResponse::NoContent().finish());
    }
    let (_, conversation) = service::message(&state.pool, &user, *id).await?;
    Ok(see_other(&req, &urls::conversation(conversation.id)))
}

pub async fn retry_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let (conversation, answer, _reader) = service::retry(
        &state.pool,
        &state.generations,
        &state.settings.chat,
        &user,
        *id,
    )
    .await?;
    if !is_htmx(&req) {
        return Ok(see_other(&req, &urls::conversation(conversation.id)));
    }
    html(
        StatusCode::OK,
        &Bubble {
            m: MessageView::of(&answer),
            csrf: csrf.0.clone(),
        },
    )
}

#[derive(Deserialize)]
pub struct TitleForm {
    #[serde(default)]
    title: String,
}

pub async fn rename_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(form): PageForm<TitleForm>,
) -> AppResult<HttpResponse> {
    let result = service::rename(&state.pool, &user, *id, &form.title).await;
    reply(
        &req,
        refused(result, "title")?,
        |conversation| Some(urls::conversation(conversation.id)),
        async |outcome| match outcome {
            Ok(conversation) => Ok(TitleSection::of(&csrf, conversation, false)),
            Err(errors) => Ok(TitleSection {
                title: form.title,
                errors,
                ..TitleSection::of(
                    &csrf,
                    service::conversation(&state.pool, &user, *id).await?,
                    false,
                )
            }),
        },
        async |section, status| {
            let (conversation, history) =
                service::get(&state.pool, &user, *id, None, service::PAGE_MESSAGES).await?;
            let agent_id = conversation.agent_id;
            let shown = Shown {
                conversation: Some((conversation, history)),
                title: Some(section),
                ..Default::default()
            };
            chat_page(&state, &user, &csrf, agent_id, status, shown).await
        },
    )
    .await
}

pub async fn confirm_delete_conversation(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let conversation = service::conversation(&state.pool, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: if conversation.title.is_empty() {
                "this conversation".into()
            } else {
                conversation.title.clone()
            },
            warning: "This deletes the conversation and all its messages. It cannot be undone.",
            action: urls::conversation_delete(conversation.id),
            back: urls::conversation(conversation.id),
        },
    )
}

pub async fn delete_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let conversation = service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(see_other(&req, &urls::agent_chat(conversation.agent_id)))
}
