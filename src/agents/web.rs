//! Agent pages: the agents list on a project page, and an agent's own page, which shows its
//! prompts and so also answers the form that adds one.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use uuid::Uuid;

use crate::agents::model::{Agent, ProjectRef};
use crate::agents::service::{self, AgentInput, DEFAULT_MODEL, DEFAULT_PROVIDER};
use crate::error::AppResult;
use crate::llm::Router;
use crate::prompts::model::PromptOwner;
use crate::prompts::service::PromptInput;
use crate::prompts::web::{PromptsSection, SystemMessagePreview};
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, PageForm, html, refused, reply, see_other,
};
use crate::state::AppState;
use crate::urls;

/// What the agent form shows: the person's input as typed, so nothing is lost on an error.
#[derive(Default, Clone)]
pub struct AgentForm {
    pub name: String,
    pub description: String,
    pub provider: String,
    pub model: String,
    pub temperature: String,
    pub max_output_tokens: String,
}

impl AgentForm {
    fn blank() -> AgentForm {
        AgentForm {
            provider: DEFAULT_PROVIDER.into(),
            model: DEFAULT_MODEL.into(),
            ..Default::default()
        }
    }

    fn of(agent: &Agent) -> AgentForm {
        let text = |n: Option<String>| n.unwrap_or_default();
        AgentForm {
            name: agent.name.clone(),
            description: agent.description.clone(),
            provider: agent.provider.clone(),
            model: agent.model.clone(),
            temperature: text(agent.temperature.map(|t| t.to_string())),
            max_output_tokens: text(agent.max_output_tokens.map(|t| t.to_string())),
        }
    }

    fn sent(input: AgentInput) -> AgentForm {
        let text = |n: Option<Option<crate::domain::NumberInput>>| {
            n.flatten().map(|n| n.to_string()).unwrap_or_default()
        };
        AgentForm {
            name: input.name.unwrap_or_default(),
            description: input.description.unwrap_or_default(),
            provider: input.provider.unwrap_or_default(),
            model: input.model.unwrap_or_default(),
            temperature: text(input.temperature),
            max_output_tokens: text(input.max_output_tokens),
        }
    }
}

#[derive(Template)]
#[template(path = "partials/agents/list.html")]
pub struct AgentsSection {
    csrf: String,
    project_id: Uuid,
    agents: Vec<Agent>,
    form: AgentForm,
    errors: FormErrors,
}

impl AgentsSection {
    /// The project's agents, and the new-agent form: blank, or as sent with its messages.
    pub async fn load(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        project_id: Uuid,
        refused: Option<(AgentInput, FormErrors)>,
    ) -> AppResult<AgentsSection> {
        let (form, errors) = match refused {
            Some((input, errors)) => (AgentForm::sent(input), errors),
            None => (AgentForm::blank(), FormErrors::default()),
        };
        Ok(AgentsSection {
            csrf: csrf.0.clone(),
            project_id,
            agents: service::list(&state.pool, user, project_id).await?,
            form,
            errors,
        })
    }
}

#[derive(Template)]
#[template(path = "partials/agents/settings.html")]
pub struct SettingsSection {
    csrf: String,
    agent: Agent,
    form: AgentForm,
    errors: FormErrors,
    saved: bool,
    /// Said when confab has no provider by the agent's name (see [`provider_note`]).
    provider_note: Option<String>,
}

impl SettingsSection {
    fn of(csrf: &CsrfToken, router: &Router, agent: Agent, saved: bool) -> SettingsSection {
        SettingsSection {
            csrf: csrf.0.clone(),
            form: AgentForm::of(&agent),
            provider_note: provider_note(router, &agent.provider),
            agent,
            errors: FormErrors::default(),
            saved,
        }
    }
}

/// An agent may name a provider before it is configured (its key comes later); meanwhile its
/// answers go to the fallback, or fail. Its page says which, as its settings alone would not.
fn provider_note(router: &Router, provider: &str) -> Option<String> {
    match router.answering_for(provider) {
        Some(answering) if answering == provider => None,
        Some(answering) => Some(format!(
            "confab has no provider named “{provider}”: this agent's answers go to {answering}, \
             the next in the fallback order, until the administrator configures it."
        )),
        None => Some(format!(
            "confab has no provider named “{provider}”: this agent's answers fail until the \
             administrator configures it."
        )),
    }
}

#[derive(Template)]
#[template(path = "pages/agents/show.html")]
struct AgentPage {
    chrome: Chrome,
    project: ProjectRef,
    agent: Agent,
    settings: SettingsSection,
    system_message: SystemMessagePreview,
    prompts: PromptsSection,
}

/// Sections that replace the freshly loaded ones: a form with the person's input and messages.
#[derive(Default)]
struct AgentPageParts {
    settings: Option<SettingsSection>,
    prompts: Option<PromptsSection>,
}

/// The full agent page.
async fn agent_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    agent_id: Uuid,
    status: StatusCode,
    parts: AgentPageParts,
) -> AppResult<HttpResponse> {
    let (agent, project) = service::get_with_project(&state.pool, user, agent_id).await?;
    let system = service::system_message(
        &state.pool,
        &agent,
        &state.settings.chat.default_system_prompt,
    )
    .await?;
    let prompts = match parts.prompts {
        Some(section) => section,
        None => PromptsSection::load(state, user, csrf, PromptOwner::Agent(agent.id)).await?,
    };
    let settings = match parts.settings {
        Some(section) => section,
        None => SettingsSection::of(csrf, state.generations.router(), agent.clone(), false),
    };
    let page = AgentPage {
        chrome: Chrome::new(Some(user), csrf),
        project,
        agent,
        settings,
        system_message: SystemMessagePreview {
            text: system.text,
            oob: false,
        },
        prompts,
    };
    html(status, &page)
}

pub async fn show_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let parts = AgentPageParts::default();
    agent_page(&state, &user, &csrf, *id, StatusCode::OK, parts).await
}

pub async fn update_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(input): PageForm<AgentInput>,
) -> AppResult<HttpResponse> {
    let result = service::update(&state.pool, &user, *id, input.clone()).await;
    let router = state.generations.router();
    reply(
        &req,
        refused(result, "form")?,
        |agent| Some(urls::agent(agent.id)),
        async |outcome| match outcome {
            Ok(agent) => Ok(SettingsSection::of(&csrf, router, agent, true)),
            Err(errors) => Ok(SettingsSection {
                form: AgentForm::sent(input),
                errors,
                ..SettingsSection::of(
                    &csrf,
                    router,
                    service::get(&state.pool, &user, *id).await?,
                    false,
                )
            }),
        },
        async |section, status| {
            let parts = AgentPageParts {
                settings: Some(section),
                ..Default::default()
            };
            agent_page(&state, &user, &csrf, *id, status, parts).await
        },
    )
    .await
}

/// `POST /agents/{id}/prompts`: a prompt of this agent.
pub async fn create_agent_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(input): PageForm<PromptInput>,
) -> AppResult<HttpResponse> {
    let owner = PromptOwner::Agent(*id);
    let result = crate::prompts::service::create(&state.pool, &user, owner, input.clone()).await;
    reply(
        &req,
        refused(result, "form")?,
        |_| Some(urls::agent(*id)),
        async |outcome| {
            let refused = outcome.err().map(|errors| (input, errors));
            PromptsSection::after_change(&state, &user, &csrf, owner, refused).await
        },
        async |section, status| {
            let parts = AgentPageParts {
                // The page renders the system message itself.
                prompts: Some(section.without_preview()),
                ..Default::default()
            };
            agent_page(&state, &user, &csrf, *id, status, parts).await
        },
    )
    .await
}

pub async fn confirm_delete_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let agent = service::get(&state.pool, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: agent.name,
            warning: "This deletes the agent with its prompts and conversations. It cannot be undone.",
            action: urls::agent_delete(agent.id),
            back: urls::agent(agent.id),
        },
    )
}

pub async fn delete_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let agent = service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(see_other(&req, &urls::project(agent.project_id)))
}
