//! Project pages: the dashboard and a project's page.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::agents;
use crate::error::AppResult;
use crate::projects::model::Project;
use crate::projects::service::{self, ProjectInput, ProjectSummary};
use crate::prompts;
use crate::prompts::model::PromptOwner;
use crate::prompts::web::PromptForm;
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, FormReply, html, is_htmx, see_other, validation_or,
};
use crate::state::AppState;
use crate::urls;

#[derive(Template)]
#[template(path = "partials/projects/section.html")]
pub struct ProjectsSection {
    csrf: String,
    projects: Vec<ProjectSummary>,
    name: String,
    description: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "pages/projects/index.html")]
struct DashboardPage {
    chrome: Chrome,
    section: ProjectsSection,
}

#[derive(Template)]
#[template(path = "partials/projects/details.html")]
pub struct DetailsSection {
    csrf: String,
    project: Project,
    name: String,
    description: String,
    errors: FormErrors,
    saved: bool,
}

#[derive(Template)]
#[template(path = "pages/projects/show.html")]
struct ProjectPage {
    chrome: Chrome,
    project: Project,
    details: DetailsSection,
    agents: agents::web::AgentsSection,
    prompts: prompts::web::PromptsSection,
}

#[derive(Deserialize)]
pub struct ProjectForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn index() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", "/projects"))
        .finish()
}

pub async fn list_projects(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
) -> AppResult<HttpResponse> {
    let projects = service::list(&state.pool, &user).await?;
    let section = ProjectsSection {
        csrf: csrf.0.clone(),
        projects,
        name: String::new(),
        description: String::new(),
        errors: FormErrors::default(),
    };
    html(
        StatusCode::OK,
        &DashboardPage {
            chrome: Chrome::new(Some(&user), &csrf),
            section,
        },
    )
}

pub async fn create_project(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    form: web::Form<ProjectForm>,
) -> AppResult<HttpResponse> {
    let ProjectForm { name, description } = form.into_inner();
    let input = ProjectInput {
        name: Some(name.clone()),
        description: Some(description.clone()),
    };
    let (status, section) = match validation_or(service::create(&state.pool, &user, input).await)? {
        Ok(project) if !is_htmx(&req) => {
            return Ok(see_other(&req, &urls::project(project.id)));
        }
        Ok(_) => (
            StatusCode::OK,
            ProjectsSection {
                csrf: csrf.0.clone(),
                projects: service::list(&state.pool, &user).await?,
                name: String::new(),
                description: String::new(),
                errors: FormErrors::default(),
            },
        ),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            ProjectsSection {
                csrf: csrf.0.clone(),
                projects: service::list(&state.pool, &user).await?,
                name,
                description,
                errors,
            },
        ),
    };
    if is_htmx(&req) {
        html(status, &section)
    } else {
        html(
            status,
            &DashboardPage {
                chrome: Chrome::new(Some(&user), &csrf),
                section,
            },
        )
    }
}

/// `POST /projects/{id}/agents`: an agent of this project.
pub async fn create_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<agents::web::AgentForm>,
) -> AppResult<HttpResponse> {
    match agents::web::create(&req, &state, &user, &csrf, *id, form.into_inner()).await? {
        FormReply::Done(reply) => Ok(reply),
        FormReply::Invalid(section) => {
            let parts = ProjectPageParts {
                agents: Some(section),
                ..Default::default()
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            project_page(&state, &user, &csrf, *id, status, parts).await
        }
    }
}

/// `POST /projects/{id}/prompts`: a prompt of this project.
pub async fn create_project_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<PromptForm>,
) -> AppResult<HttpResponse> {
    let owner = PromptOwner::Project(*id);
    match prompts::web::create(&req, &state, &user, &csrf, owner, form.into_inner()).await? {
        FormReply::Done(reply) => Ok(reply),
        FormReply::Invalid(section) => {
            let parts = ProjectPageParts {
                prompts: Some(section),
                ..Default::default()
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            project_page(&state, &user, &csrf, *id, status, parts).await
        }
    }
}

/// Sections that replace the freshly loaded ones, e.g. a form with the user's input and errors.
#[derive(Default)]
pub struct ProjectPageParts {
    pub details: Option<DetailsSection>,
    pub agents: Option<agents::web::AgentsSection>,
    pub prompts: Option<prompts::web::PromptsSection>,
}

/// The full project page; used when a form without JavaScript needs to show its errors.
pub async fn project_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    project_id: Uuid,
    status: StatusCode,
    parts: ProjectPageParts,
) -> AppResult<HttpResponse> {
    let project = service::get(&state.pool, user, project_id).await?;
    let details = match parts.details {
        Some(d) => d,
        None => details(csrf, project.clone(), false),
    };
    let agents = match parts.agents {
        Some(a) => a,
        None => agents::web::AgentsSection::load(state, user, csrf, project.id).await?,
    };
    let prompts = match parts.prompts {
        Some(p) => p,
        None => {
            prompts::web::PromptsSection::load(state, user, csrf, PromptOwner::Project(project.id))
                .await?
        }
    };
    html(
        status,
        &ProjectPage {
            chrome: Chrome::new(Some(user), csrf),
            project,
            details,
            agents,
            prompts,
        },
    )
}

fn details(csrf: &CsrfToken, project: Project, saved: bool) -> DetailsSection {
    DetailsSection {
        csrf: csrf.0.clone(),
        name: project.name.clone(),
        description: project.description.clone(),
        project,
        errors: FormErrors::default(),
        saved,
    }
}

pub async fn show_project(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    project_page(
        &state,
        &user,
        &csrf,
        *id,
        StatusCode::OK,
        ProjectPageParts::default(),
    )
    .await
}

pub async fn update_project(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<ProjectForm>,
) -> AppResult<HttpResponse> {
    let ProjectForm { name, description } = form.into_inner();
    let input = ProjectInput {
        name: Some(name.clone()),
        description: Some(description.clone()),
    };
    let (status, section) =
        match validation_or(service::update(&state.pool, &user, *id, input).await)? {
            Ok(project) if !is_htmx(&req) => {
                return Ok(see_other(&req, &urls::project(project.id)));
            }
            Ok(project) => (StatusCode::OK, details(&csrf, project, true)),
            Err(errors) => {
                let project = service::get(&state.pool, &user, *id).await?;
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    DetailsSection {
                        csrf: csrf.0.clone(),
                        project,
                        name,
                        description,
                        errors,
                        saved: false,
                    },
                )
            }
        };
    if is_htmx(&req) {
        return html(status, &section);
    }
    project_page(
        &state,
        &user,
        &csrf,
        *id,
        status,
        ProjectPageParts {
            details: Some(section),
            ..Default::default()
        },
    )
    .await
}

pub async fn confirm_delete_project(
    user: CurrentUser,
    state: web::Data<AppState>,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let project = service::get(&state.pool, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: project.name,
            warning: "This deletes the project with all its agents, prompts and conversations. It cannot be undone.",
            action: urls::project_delete(project.id),
            back: urls::project(project.id),
        },
    )
}

pub async fn delete_project(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(see_other(&req, "/projects"))
}
