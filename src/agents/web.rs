//! Agent pages: the agents list on a project page, and an agent's own page.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::agents::model::{Agent, ProjectRef};
use crate::agents::service::{self, AgentInput, DEFAULT_MODEL, DEFAULT_PROVIDER};
use crate::domain::{self, Checks};
use crate::error::AppResult;
use crate::prompts;
use crate::prompts::model::PromptOwner;
use crate::prompts::web::{PromptForm, PromptsSection, SystemMessagePreview};
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, FormReply, html, is_htmx, see_other, validation_or,
};
use crate::state::AppState;
use crate::urls;

/// What the agent form shows: the user's input as typed, so nothing is lost on an error.
#[derive(Deserialize, Default, Clone)]
pub struct AgentForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub temperature: String,
    #[serde(default)]
    pub max_output_tokens: String,
    pub is_default: Option<String>,
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
        AgentForm {
            name: agent.name.clone(),
            description: agent.description.clone(),
            provider: agent.provider.clone(),
            model: agent.model.clone(),
            temperature: agent.temperature.map(|t| t.to_string()).unwrap_or_default(),
            max_output_tokens: agent
                .max_output_tokens
                .map(|t| t.to_string())
                .unwrap_or_default(),
            is_default: None,
        }
    }

    /// Numbers arrive as text; an empty box means "not set".
    fn to_input(&self, creating: bool) -> AppResult<AgentInput> {
        let mut c = Checks::new();
        let temperature = c.check(domain::form_number::<f64>(
            "temperature",
            "Temperature",
            &self.temperature,
        ));
        let max_output_tokens = c.check(domain::form_number::<i64>(
            "max_output_tokens",
            "Max output tokens",
            &self.max_output_tokens,
        ));
        c.finish()?;
        Ok(AgentInput {
            name: Some(self.name.clone()),
            description: (!creating || !self.description.is_empty())
                .then(|| self.description.clone()),
            provider: Some(self.provider.clone()),
            model: Some(self.model.clone()),
            temperature,
            max_output_tokens,
            is_default: self.is_default.as_ref().map(|_| true),
        })
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
    pub async fn load(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        project_id: Uuid,
    ) -> AppResult<AgentsSection> {
        let agents = service::list(&state.pool, user, project_id).await?;
        Ok(AgentsSection {
            csrf: csrf.0.clone(),
            project_id,
            agents,
            form: AgentForm::blank(),
            errors: FormErrors::default(),
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

/// Creates an agent from its project's page. Without JavaScript, invalid input comes back as
/// the section for the project page to show in place of its fresh one.
pub async fn create(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    project_id: Uuid,
    form: AgentForm,
) -> AppResult<FormReply<AgentsSection>> {
    let result = match form.to_input(true) {
        Ok(input) => service::create(&state.pool, user, project_id, input).await,
        Err(e) => Err(e),
    };
    let reply = match validation_or(result)? {
        Ok(agent) if !is_htmx(req) => see_other(req, &urls::agent(agent.id)),
        Ok(_) => html(
            StatusCode::OK,
            &AgentsSection::load(state, user, csrf, project_id).await?,
        )?,
        Err(errors) => {
            let mut section = AgentsSection::load(state, user, csrf, project_id).await?;
            section.form = form;
            section.errors = errors;
            if !is_htmx(req) {
                return Ok(FormReply::Invalid(section));
            }
            html(StatusCode::UNPROCESSABLE_ENTITY, &section)?
        }
    };
    Ok(FormReply::Done(reply))
}

/// `POST /agents/{id}/prompts`: a prompt of this agent.
pub async fn create_agent_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<PromptForm>,
) -> AppResult<HttpResponse> {
    let owner = PromptOwner::Agent(*id);
    match prompts::web::create(&req, &state, &user, &csrf, owner, form.into_inner()).await? {
        FormReply::Done(reply) => Ok(reply),
        FormReply::Invalid(section) => {
            let parts = AgentPageParts {
                prompts: Some(section),
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            agent_page(&state, &user, &csrf, *id, status, None, parts).await
        }
    }
}

/// Sections that replace the freshly loaded ones, e.g. a form with the user's input and errors.
#[derive(Default)]
pub struct AgentPageParts {
    pub prompts: Option<PromptsSection>,
}

/// The full agent page; used when a form without JavaScript needs to show its errors.
pub async fn agent_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    agent_id: Uuid,
    status: StatusCode,
    settings: Option<SettingsSection>,
    parts: AgentPageParts,
) -> AppResult<HttpResponse> {
    let (agent, project) = service::get_with_project(&state.pool, user, agent_id).await?;
    let system = service::system_message(&state.pool, &agent).await?;
    let prompts = match parts.prompts {
        Some(p) => p,
        None => PromptsSection::load(state, user, csrf, PromptOwner::Agent(agent.id)).await?,
    };
    let settings = settings.unwrap_or_else(|| SettingsSection {
        csrf: csrf.0.clone(),
        form: AgentForm::of(&agent),
        agent: agent.clone(),
        errors: FormErrors::default(),
        saved: false,
    });
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
    agent_page(
        &state,
        &user,
        &csrf,
        *id,
        StatusCode::OK,
        None,
        AgentPageParts::default(),
    )
    .await
}

pub async fn update_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<AgentForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let result = match form.to_input(false) {
        Ok(input) => service::update(&state.pool, &user, *id, input).await,
        Err(e) => Err(e),
    };
    let (status, settings) = match validation_or(result)? {
        Ok(agent) if !is_htmx(&req) => {
            return Ok(see_other(&req, &urls::agent(agent.id)));
        }
        Ok(agent) => (
            StatusCode::OK,
            SettingsSection {
                csrf: csrf.0.clone(),
                form: AgentForm::of(&agent),
                agent,
                errors: FormErrors::default(),
                saved: true,
            },
        ),
        Err(errors) => {
            let agent = service::get(&state.pool, &user, *id).await?;
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                SettingsSection {
                    csrf: csrf.0.clone(),
                    agent,
                    form,
                    errors,
                    saved: false,
                },
            )
        }
    };
    if is_htmx(&req) {
        return html(status, &settings);
    }
    agent_page(
        &state,
        &user,
        &csrf,
        *id,
        status,
        Some(settings),
        AgentPageParts::default(),
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
