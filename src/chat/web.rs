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
    /// The names of the files sent with a user's message.
    pub attachments: Vec<String>,
    /// An answer's sources: (number, file name, excerpt).
    pub citations: Vec<(u64, String, String)>,
    /// The technical side of a failure, folded away under the plain words.
    pub error_detail: Option<String>,
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
            // Rendered when the answer ended; an older answer's is rendered here (and kept by
            // `keep_rendered`).
            let html = match message.html_by(markdown::renderer_version()) {
                Some(stored) => stored.to_owned(),
                None => markdown::to_safe_html(&message.content),
            };
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
            attachments: message
                .attachments
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|a| a["filename"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            citations: message
                .citations
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|c| {
                            (
                                c["n"].as_u64().unwrap_or_default(),
                                c["filename"].as_str().unwrap_or_default().to_string(),
                                c["excerpt"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            error_detail: message.error_detail.clone(),
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

/// What htmx appends after a send. When the message started a conversation, the sidebar's
/// list, the heading, the tab title and the composer (which must now post to the conversation)
/// ride along out of band.
#[derive(Template)]
#[template(path = "partials/chat/turn.html")]
struct Turn {
    user: Bubble,
    answer: Bubble,
    list: Option<ConversationList>,
    trail: Option<Trail>,
    head: Option<TitleSection>,
    composer: Option<Composer>,
}

/// A chat's breadcrumb: Projects › its project › its agent › Chat (nothing on the chat home).
#[derive(Template)]
#[template(path = "partials/chat/trail.html")]
struct Trail {
    crumbs: Option<Crumbs>,
    oob: bool,
}

struct Crumbs {
    project: ProjectRef,
    agent_id: Uuid,
    agent_name: String,
}

impl Crumbs {
    fn of(project: ProjectRef, agent: &Agent) -> Crumbs {
        Crumbs {
            project,
            agent_id: agent.id,
            agent_name: agent.name.clone(),
        }
    }
}

/// The sidebar: "New chat", the search, and the list.
#[derive(Template)]
#[template(path = "partials/chat/sidebar.html")]
struct Sidebar {
    new_chat_url: String,
    search: String,
    list: ConversationList,
}

#[derive(Template)]
#[template(path = "partials/chat/conversations.html")]
struct ConversationList {
    conversations: Vec<(Conversation, String)>,
    current: Option<Uuid>,
    searching: bool,
    oob: bool,
}

impl ConversationList {
    fn is_current(&self, id: &Uuid) -> bool {
        self.current.as_ref() == Some(id)
    }

    /// The person's recent conversations, `current` marked.
    async fn load(
        state: &AppState,
        user: &CurrentUser,
        search: Option<String>,
        current: Option<Uuid>,
        oob: bool,
    ) -> AppResult<ConversationList> {
        let searching = search.as_deref().is_some_and(|s| !s.trim().is_empty());
        Ok(ConversationList {
            conversations: service::recent(&state.pool, user, search).await?,
            current,
            searching,
            oob,
        })
    }
}

#[derive(Template)]
#[template(path = "partials/chat/composer.html")]
struct Composer {
    csrf: String,
    url: String,
    placeholder: String,
    draft: String,
    enabled: bool,
    /// The agents a new chat may go to (a picker when more than one).
    picker: Vec<(Agent, String)>,
    chosen: Option<Uuid>,
    /// The agent's project: where "Add file" uploads (none before the first project exists).
    project: Option<Uuid>,
    /// The files of the agent's project that can go with a message: (id, name), newest first.
    files: Vec<(Uuid, String)>,
    oob: bool,
}

/// How many files the composer shows as chips; the others are under "More files".
const CHIPS_SHOWN: usize = 8;

/// The files a message to this agent's project may carry.
async fn attachable_files(
    state: &AppState,
    user: &CurrentUser,
    project_id: Uuid,
) -> AppResult<Vec<(Uuid, String)>> {
    Ok(crate::files::service::list(&state.pool, user, project_id)
        .await?
        .into_iter()
        .map(|f| (f.id, f.filename))
        .collect())
}

impl Composer {
    fn is_chosen(&self, id: &Uuid) -> bool {
        self.chosen.as_ref() == Some(id)
    }

    /// The newest files, shown as chips.
    fn first_files(&self) -> &[(Uuid, String)] {
        &self.files[..self.files.len().min(CHIPS_SHOWN)]
    }

    /// Where "Add file" uploads (the API), and where it leads without JavaScript.
    fn upload_url(&self) -> String {
        self.project
            .map(urls::api_project_files)
            .unwrap_or_default()
    }
    fn files_url(&self) -> String {
        self.project
            .map(|p| format!("{}#files-heading", urls::project(p)))
            .unwrap_or_default()
    }

    /// The rest, folded under "More files".
    fn more_files(&self) -> &[(Uuid, String)] {
        &self.files[self.files.len().min(CHIPS_SHOWN)..]
    }

    /// The box under a conversation: posts to it, with whichever agent it has.
    fn reply(
        csrf: &CsrfToken,
        conversation: Uuid,
        project: Option<Uuid>,
        files: Vec<(Uuid, String)>,
        enabled: bool,
        oob: bool,
    ) -> Composer {
        Composer {
            csrf: csrf.0.clone(),
            url: urls::conversation_messages(conversation),
            placeholder: "Reply…".into(),
            draft: String::new(),
            enabled,
            picker: Vec::new(),
            chosen: None,
            project,
            files,
            oob,
        }
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

    fn heading(&self) -> &str {
        if self.conversation.title.is_empty() {
            "Untitled"
        } else {
            &self.conversation.title
        }
    }
}

/// A rename's answer to htmx: the heading and, when it was renamed, the sidebar's list and the
/// tab title, so every place that shows the title shows the new one.
#[derive(Template)]
#[template(
    source = "{{ head|safe }}{% if let Some(list) = list %}{{ list|safe }}<title>{{ head.heading() }} · confab</title>{% endif %}",
    ext = "html"
)]
struct Renamed {
    head: TitleSection,
    list: Option<ConversationList>,
}

#[derive(Template)]
#[template(path = "pages/chat/show.html")]
struct ChatPage {
    chrome: Chrome,
    /// The breadcrumb: an agent's chat has one, the chat home not.
    trail: Trail,
    /// Who answers; `None` on the chat home of a person without any agent yet.
    agent: Option<Agent>,
    sidebar: Sidebar,
    title: Option<TitleSection>,
    /// The messages shown, with the link to earlier ones.
    earlier: Earlier,
    composer: Composer,
    providers_configured: bool,
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

/// Which chat a page is.
#[derive(Clone, Copy)]
enum Which {
    /// The chat home: a new chat with `wanted` (if it is the person's) or the default agent.
    Home { wanted: Option<Uuid> },
    /// An agent's page: a new chat with it, or one of its conversations.
    Agent(Uuid),
}

/// What a chat page shows besides the agent and the sidebar.
#[derive(Default)]
struct Shown {
    /// The open conversation and the messages shown; none for a new chat.
    conversation: Option<(Conversation, History)>,
    /// A message that was refused, kept in the box.
    draft: String,
    errors: FormErrors,
    /// The rename form as it was sent, when it was refused.
    title: Option<TitleSection>,
    /// The sidebar's search.
    search: Option<String>,
    /// A confirmation at the top of the page (the welcome after sign-up).
    notice: Option<String>,
}

async fn chat_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    which: Which,
    status: StatusCode,
    shown: Shown,
) -> AppResult<HttpResponse> {
    let Shown {
        conversation,
        draft,
        errors,
        title,
        search,
        notice,
    } = shown;
    let providers_configured = !state.generations.router().providers.is_empty();
    let is_new = conversation.is_none();
    let wanted = match which {
        Which::Home { wanted } => wanted,
        Which::Agent(id) => Some(id),
    };
    // A new chat offers the person's agents; a conversation keeps its own.
    let (agent, trail, picker) = match which {
        Which::Agent(id) => {
            let (agent, project) = agents::service::get_with_project(&state.pool, user, id).await?;
            let picker = if is_new {
                service::choices(&state.pool, user, wanted).await?.agents
            } else {
                Vec::new()
            };
            (Some(agent), Some(project), picker)
        }
        Which::Home { .. } => {
            let choices = service::choices(&state.pool, user, wanted).await?;
            (choices.chosen, None, choices.agents)
        }
    };
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
    let current = conversation.as_ref().map(|c| c.id);
    let project = agent.as_ref().map(|a| a.project_id);
    let files = match project {
        Some(id) => attachable_files(state, user, id).await?,
        None => Vec::new(),
    };
    let composer = match &conversation {
        Some(c) => Composer {
            draft,
            ..Composer::reply(csrf, c.id, project, files, providers_configured, false)
        },
        None => Composer {
            csrf: csrf.0.clone(),
            url: urls::HOME.into(),
            placeholder: match (&agent, picker.len()) {
                (Some(a), 0 | 1) => format!("Message {}…", a.name),
                _ => "Message…".into(),
            },
            draft,
            enabled: providers_configured,
            chosen: agent.as_ref().map(|a| a.id),
            picker,
            project,
            files,
            oob: false,
        },
    };
    let new_chat_url = match (which, &agent) {
        (Which::Agent(_), Some(a)) => urls::agent_chat(a.id),
        _ => urls::HOME.into(),
    };
    let page = ChatPage {
        chrome: Chrome::new(Some(user), csrf).with_notice(notice),
        sidebar: Sidebar {
            new_chat_url,
            search: search.clone().unwrap_or_default(),
            list: ConversationList::load(state, user, search, current, false).await?,
        },
        title: title.or_else(|| {
            conversation
                .clone()
                .map(|c| TitleSection::of(csrf, c, false))
        }),
        earlier: Earlier::of(csrf, conversation.as_ref(), &history),
        trail: Trail {
            crumbs: trail
                .zip(agent.as_ref())
                .map(|(project, agent)| Crumbs::of(project, agent)),
            oob: false,
        },
        agent,
        composer,
        providers_configured,
        errors,
    };
    html(status, &page)
}

#[derive(Deserialize)]
pub struct HomeQuery {
    /// Start the new chat with this agent (anything that is not one of the person's agents,
    /// malformed ids included, falls back to the default). Also read as `agent_id`, the
    /// composer's picker, whose change asks this page for the chosen agent's files.
    #[serde(alias = "agent_id")]
    agent: Option<String>,
    /// Search the sidebar's conversations.
    q: Option<String>,
    /// Set by sign-up's redirect: the page greets (a fixed text; nothing from the URL is shown).
    welcome: Option<String>,
}

/// `GET /chat`: where a signed-in person lands, ready to type.
pub async fn home(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    query: web::Query<HomeQuery>,
) -> AppResult<HttpResponse> {
    let HomeQuery { agent, q, welcome } = query.into_inner();
    let shown = Shown {
        search: q,
        notice: welcome.map(|_| {
            format!(
                "Welcome to confab, {}! Type a message below to start your first chat.",
                user.email
            )
        }),
        ..Shown::default()
    };
    chat_page(
        &state,
        &user,
        &csrf,
        Which::Home {
            wanted: agent.and_then(|id| Uuid::parse_str(id.trim()).ok()),
        },
        StatusCode::OK,
        shown,
    )
    .await
}

/// `GET /chat/conversations?q=`: the sidebar's list for a search (htmx swaps it in).
pub async fn search_conversations(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<HomeQuery>,
) -> AppResult<HttpResponse> {
    let list = ConversationList::load(&state, &user, query.into_inner().q, None, false).await?;
    html(StatusCode::OK, &list)
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
        Which::Agent(*agent_id),
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
    let (conversation, mut history) = service::get(
        &state.pool,
        &user,
        *id,
        window.before,
        service::PAGE_MESSAGES,
    )
    .await?;
    service::render_missing(&state.pool, &mut history.messages).await;
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
    chat_page(
        &state,
        &user,
        &csrf,
        Which::Agent(agent_id),
        StatusCode::OK,
        shown,
    )
    .await
}

/// The composer's fields. `attach` is a checkbox per file, so a plain form repeats it (`attach=…
/// &attach=…`); `PageForm` reads every one into the list.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct MessageForm {
    message: String,
    /// On a new chat: the agent picked (the default one when absent).
    agent_id: Option<String>,
    /// The files of the project to send with the message.
    attach: Vec<String>,
}

/// A refused message under htmx: the reason goes right above the composer (which keeps the
/// text), with the refusal's status. Failures of our own go the usual way (logged, generic).
fn refused_in_composer(error: AppError) -> AppResult<HttpResponse> {
    if matches!(error, AppError::Internal(_)) {
        return Err(error);
    }
    let status = actix_web::ResponseError::status_code(&error);
    Ok(crate::site::flash_into(
        "#composer-error",
        status,
        Some(&error),
        &error.to_string(),
    ))
}

async fn send(
    req: HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    to: To,
    form: MessageForm,
) -> AppResult<HttpResponse> {
    // Blank ones (e.g. an old page's "No file") are no file.
    let file_ids = form
        .attach
        .iter()
        .filter(|id| !id.trim().is_empty())
        .map(|id| Uuid::parse_str(id.trim()).map_err(|_| AppError::NotFound))
        .collect::<AppResult<Vec<Uuid>>>()?;
    let result = match crate::chat::api::attachments(state, user, &file_ids).await {
        Ok(attached) => {
            service::send(
                &state.pool,
                &state.generations,
                &state.settings.chat,
                user,
                to,
                &form.message,
                attached,
            )
            .await
        }
        Err(error) => Err(error),
    };
    let sent = match result {
        Ok(sent) => sent,
        Err(error) if is_htmx(&req) => return refused_in_composer(error),
        Err(error) => {
            let Refusal { status, errors } =
                refused::<()>(Err(error), "message")?.expect_err("an error stays a refusal");
            let (which, conversation) = match to {
                To::Agent {
                    agent_id,
                    conversation_id: None,
                } => (
                    Which::Home {
                        wanted: Some(agent_id),
                    },
                    None,
                ),
                To::Default => (Which::Home { wanted: None }, None),
                To::Agent {
                    conversation_id: Some(id),
                    ..
                }
                | To::Conversation(id) => {
                    let conversation =
                        service::get(&state.pool, user, id, None, service::PAGE_MESSAGES).await?;
                    (Which::Agent(conversation.0.agent_id), Some(conversation))
                }
            };
            let shown = Shown {
                conversation,
                draft: form.message,
                errors,
                ..Shown::default()
            };
            return chat_page(state, user, csrf, which, status, shown).await;
        }
    };
    let url = urls::conversation(sent.conversation.id);
    if !is_htmx(&req) {
        // Without JavaScript the page opens at the composer, under the newest messages.
        return Ok(see_other(&req, &format!("{url}#composer")));
    }
    let new = sent.new_conversation;
    let (list, trail) = if new {
        // The page was the chat home, which has no breadcrumb, or an agent's new chat. The
        // answer is under way: if the names cannot be read now, the breadcrumb waits for a
        // reload rather than the turn failing.
        let named =
            agents::service::get_with_project(&state.pool, user, sent.conversation.agent_id)
                .await
                .ok();
        (
            Some(
                ConversationList::load(state, user, None, Some(sent.conversation.id), true).await?,
            ),
            named.map(|(agent, project)| Trail {
                crumbs: Some(Crumbs::of(project, &agent)),
                oob: true,
            }),
        )
    } else {
        (None, None)
    };
    let turn = Turn {
        user: Bubble {
            m: MessageView::of(&sent.user_message),
            csrf: csrf.0.clone(),
        },
        answer: Bubble {
            m: MessageView::of(&sent.answer),
            csrf: csrf.0.clone(),
        },
        list,
        trail,
        head: new.then(|| TitleSection::of(csrf, sent.conversation.clone(), true)),
        composer: match new {
            true => Some(Composer::reply(
                csrf,
                sent.conversation.id,
                Some(sent.project_id),
                attachable_files(state, user, sent.project_id).await?,
                true,
                true,
            )),
            false => None,
        },
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

/// `POST /chat`: a new chat's first message, to the agent picked or the default one.
pub async fn send_from_home(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    PageForm(form): PageForm<MessageForm>,
) -> AppResult<HttpResponse> {
    let to = match form.agent_id.as_deref().map(str::trim) {
        None | Some("") => To::Default,
        Some(id) => To::Agent {
            agent_id: Uuid::parse_str(id).map_err(|_| AppError::NotFound)?,
            conversation_id: None,
        },
    };
    send(req, &state, &user, &csrf, to, form).await
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
            Ok(conversation) => Ok(Renamed {
                list: Some(
                    ConversationList::load(&state, &user, None, Some(conversation.id), true)
                        .await?,
                ),
                head: TitleSection::of(&csrf, conversation, false),
            }),
            Err(errors) => Ok(Renamed {
                head: TitleSection {
                    title: form.title,
                    errors,
                    ..TitleSection::of(
                        &csrf,
                        service::conversation(&state.pool, &user, *id).await?,
                        false,
                    )
                },
                list: None,
            }),
        },
        async |renamed, status| {
            let (conversation, history) =
                service::get(&state.pool, &user, *id, None, service::PAGE_MESSAGES).await?;
            let agent_id = conversation.agent_id;
            let shown = Shown {
                conversation: Some((conversation, history)),
                title: Some(renamed.head),
                ..Default::default()
            };
            chat_page(&state, &user, &csrf, Which::Agent(agent_id), status, shown).await
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
