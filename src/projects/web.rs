//! Project pages: the dashboard and a project's page, which shows the project's agents and
//! prompts and so also answers the forms that add them.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::agents::service::AgentInput;
use crate::agents::web::AgentsSection;
use crate::error::{AppError, AppResult};
use crate::files::web::FilesSection;
use crate::projects::model::Project;
use crate::projects::service::{self, ProjectInput, ProjectSummary};
use crate::prompts::model::PromptOwner;
use crate::prompts::service::PromptInput;
use crate::prompts::web::PromptsSection;
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, PageForm, html, refused, reply, see_other,
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

impl ProjectsSection {
    /// The list, and the new-project form: empty, or as it was sent with its messages.
    async fn load(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        refused: Option<(ProjectInput, FormErrors)>,
    ) -> AppResult<ProjectsSection> {
        let (input, errors) = refused.unwrap_or_default();
        Ok(ProjectsSection {
            csrf: csrf.0.clone(),
            projects: service::list(&state.pool, user).await?,
            name: input.name.unwrap_or_default(),
            description: input.description.unwrap_or_default(),
            errors,
        })
    }
}

#[derive(Template)]
#[template(path = "pages/projects/index.html")]
struct DashboardPage {
    chrome: Chrome,
    section: ProjectsSection,
}

/// `?created=1`, where creating a project sends you; the page confirms it with a fixed text.
#[derive(Deserialize)]
pub struct ProjectQuery {
    created: Option<String>,
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

impl DetailsSection {
    fn of(csrf: &CsrfToken, project: Project, saved: bool) -> DetailsSection {
        DetailsSection {
            csrf: csrf.0.clone(),
            name: project.name.clone(),
            description: project.description.clone(),
            project,
            errors: FormErrors::default(),
            saved,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/projects/show.html")]
struct ProjectPage {
    chrome: Chrome,
    project: Project,
    details: DetailsSection,
    agents: AgentsSection,
    prompts: PromptsSection,
    files: FilesSection,
}

/// Sections that replace the freshly loaded ones: a form with the person's input and messages.
#[derive(Default)]
pub struct ProjectPageParts {
    pub details: Option<DetailsSection>,
    pub agents: Option<AgentsSection>,
    pub prompts: Option<PromptsSection>,
    pub files: Option<FilesSection>,
    pub notice: Option<String>,
}

/// The full project page.
async fn project_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    project_id: Uuid,
    status: StatusCode,
    parts: ProjectPageParts,
) -> AppResult<HttpResponse> {
    let project = service::get(&state.pool, user, project_id).await?;
    let details = match parts.details {
        Some(section) => section,
        None => DetailsSection::of(csrf, project.clone(), false),
    };
    let agents = match parts.agents {
        Some(section) => section,
        None => AgentsSection::load(state, user, csrf, project.id, None).await?,
    };
    let prompts = match parts.prompts {
        Some(section) => section,
        None => PromptsSection::load(state, user, csrf, PromptOwner::Project(project.id)).await?,
    };
    let files = match parts.files {
        Some(section) => section,
        None => FilesSection::load(state, user, csrf, project.id, None).await?,
    };
    let page = ProjectPage {
        chrome: Chrome::new(Some(user), csrf).with_notice(parts.notice),
        project,
        files,
        details,
        agents,
        prompts,
    };
    html(status, &page)
}

/// `/`: the chat home when signed in, else the sign-in page.
pub async fn index(user: Option<CurrentUser>) -> HttpResponse {
    let to = if user.is_some() { urls::HOME } else { "/login" };
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}

pub async fn list_projects(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
) -> AppResult<HttpResponse> {
    let section = ProjectsSection::load(&state, &user, &csrf, None).await?;
    let chrome = Chrome::new(Some(&user), &csrf);
    html(StatusCode::OK, &DashboardPage { chrome, section })
}

pub async fn create_project(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    PageForm(input): PageForm<ProjectInput>,
) -> AppResult<HttpResponse> {
    let result = refused(
        service::create(&state.pool, &user, input.clone()).await,
        "form",
    )?;
    // A new project opens, with or without JavaScript, and says it was created.
    if let Ok(project) = &result {
        return Ok(see_other(
            &req,
            &format!("{}?created=1", urls::project(project.id)),
        ));
    }
    reply(
        &req,
        result,
        |project| Some(urls::project(project.id)),
        async |outcome| {
            let refused = outcome.err().map(|errors| (input, errors));
            ProjectsSection::load(&state, &user, &csrf, refused).await
        },
        async |section, status| {
            let chrome = Chrome::new(Some(&user), &csrf);
            html(status, &DashboardPage { chrome, section })
        },
    )
    .await
}

pub async fn show_project(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    query: web::Query<ProjectQuery>,
) -> AppResult<HttpResponse> {
    let parts = ProjectPageParts {
        notice: query.created.is_some().then(|| {
            "Project created, with an agent to chat with. Add prompts or more agents below.".into()
        }),
        ..ProjectPageParts::default()
    };
    project_page(&state, &user, &csrf, *id, StatusCode::OK, parts).await
}

pub async fn update_project(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(input): PageForm<ProjectInput>,
) -> AppResult<HttpResponse> {
    let result = service::update(&state.pool, &user, *id, input.clone()).await;
    reply(
        &req,
        refused(result, "form")?,
        |project| Some(urls::project(project.id)),
        async |outcome| match outcome {
            Ok(project) => Ok(DetailsSection::of(&csrf, project, true)),
            Err(errors) => Ok(DetailsSection {
                name: input.name.unwrap_or_default(),
                description: input.description.unwrap_or_default(),
                errors,
                ..DetailsSection::of(&csrf, service::get(&state.pool, &user, *id).await?, false)
            }),
        },
        async |section, status| {
            let parts = ProjectPageParts {
                details: Some(section),
                ..Default::default()
            };
            project_page(&state, &user, &csrf, *id, status, parts).await
        },
    )
    .await
}

/// `POST /projects/{id}/agents`: an agent of this project.
pub async fn create_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(input): PageForm<AgentInput>,
) -> AppResult<HttpResponse> {
    let result = crate::agents::service::create(&state.pool, &user, *id, input.clone()).await;
    reply(
        &req,
        refused(result, "form")?,
        |agent| Some(urls::agent(agent.id)),
        async |outcome| {
            let refused = outcome.err().map(|errors| (input, errors));
            AgentsSection::load(&state, &user, &csrf, *id, refused).await
        },
        async |section, status| {
            let parts = ProjectPageParts {
                agents: Some(section),
                ..Default::default()
            };
            project_page(&state, &user, &csrf, *id, status, parts).await
        },
    )
    .await
}

/// `POST /projects/{id}/prompts`: a prompt of this project.
pub async fn create_project_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(input): PageForm<PromptInput>,
) -> AppResult<HttpResponse> {
    let owner = PromptOwner::Project(*id);
    let result = crate::prompts::service::create(&state.pool, &user, owner, input.clone()).await;
    reply(
        &req,
        refused(result, "form")?,
        |_| Some(urls::project(*id)),
        async |outcome| {
            let refused = outcome.err().map(|errors| (input, errors));
            PromptsSection::after_change(&state, &user, &csrf, owner, refused).await
        },
        async |section, status| {
            let parts = ProjectPageParts {
                prompts: Some(section),
                ..Default::default()
            };
            project_page(&state, &user, &csrf, *id, status, parts).await
        },
    )
    .await
}

/// `POST /projects/{id}/files`: the files section's plain form. Stored → back to the project's
/// files; refused → the page with the reason in the files section, with the refusal's status.
pub async fn upload_files(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    let project_id = *id;
    let project = crate::files::service::check_project(&state.pool, &user, project_id).await?;
    let form = crate::files::web::Multipart::new(req.headers(), body);
    match crate::files::web::receive_all(&req, &state, project, form).await {
        Ok(_) => Ok(see_other(
            &req,
            &format!("{}#files-heading", urls::project(project_id)),
        )),
        Err(error @ (AppError::Internal(_) | AppError::Unavailable | AppError::Forbidden(_))) => {
            Err(error)
        }
        Err(refusal) => {
            let status = actix_web::ResponseError::status_code(&refusal);
            let files =
                FilesSection::load(&state, &user, &csrf, project_id, Some(refusal.to_string()))
                    .await?;
            let parts = ProjectPageParts {
                files: Some(files),
                ..Default::default()
            };
            project_page(&state, &user, &csrf, project_id, status, parts).await
        }
    }
}

#[derive(Deserialize)]
pub struct KnowledgeForm {
    #[serde(default)]
    enabled: String,
}

/// `POST /projects/{id}/knowledge`: project knowledge on or off, then back to the files.
pub async fn set_knowledge(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    PageForm(form): PageForm<KnowledgeForm>,
) -> AppResult<HttpResponse> {
    let project =
        service::set_knowledge(&state.pool, &user, *id, form.enabled.trim() == "true").await?;
    if project.knowledge {
        crate::files::knowledge::start_sync(&state, project.id, true);
    }
    Ok(see_other(
        &req,
        &format!("{}#files-heading", urls::project(project.id)),
    ))
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
    service::delete(
        &state.pool,
        &state.generations,
        &crate::files::api::store(&state),
        &user,
        *id,
    )
    .await?;
    Ok(see_other(&req, "/projects"))
}
