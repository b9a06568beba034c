//! Prompt lists (on project and agent pages) and a prompt's own page with its history.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::agents::web::{AgentPageParts, SystemMessagePreview, agent_page};
use crate::agents::{self};
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::error::AppResult;
use crate::projects::web::{ProjectPageParts, project_page};
use crate::prompts::model::{PromptOwner, PromptVersion, PromptWithText};
use crate::prompts::service::{self, PromptInput};
use crate::site::{Chrome, ConfirmDeletePage, FormErrors, html, is_htmx, see_other, validation_or};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "partials/prompts/list.html")]
pub struct PromptsSection {
    csrf: String,
    heading: &'static str,
    create_url: String,
    prompts: Vec<PromptWithText>,
    title: String,
    content: String,
    errors: FormErrors,
    /// On agent pages, a prompt change also updates the system message preview.
    system_message: Option<SystemMessagePreview>,
}

impl PromptsSection {
    pub async fn load(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        owner: PromptOwner,
    ) -> AppResult<PromptsSection> {
        let prompts = service::list(state, user, owner).await?;
        let (heading, create_url) = match owner {
            PromptOwner::Project(id) => ("Project prompts", format!("/projects/{id}/prompts")),
            PromptOwner::Agent(id) => ("Agent prompts", format!("/agents/{id}/prompts")),
        };
        Ok(PromptsSection {
            csrf: csrf.0.clone(),
            heading,
            create_url,
            prompts,
            title: String::new(),
            content: String::new(),
            errors: FormErrors::default(),
            system_message: None,
        })
    }

    /// The fragment htmx swaps in after a change, with the agent's new system message riding along.
    async fn fragment(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        owner: PromptOwner,
    ) -> AppResult<PromptsSection> {
        let mut section = Self::load(state, user, csrf, owner).await?;
        if let PromptOwner::Agent(id) = owner {
            let agent = agents::service::get(state, user, id).await?;
            let text = agents::service::system_message(state, &agent).await?.text;
            section.system_message = Some(SystemMessagePreview { text, oob: true });
        }
        Ok(section)
    }
}

fn owner_url(owner: PromptOwner) -> String {
    match owner {
        PromptOwner::Project(id) => format!("/projects/{id}"),
        PromptOwner::Agent(id) => format!("/agents/{id}"),
    }
}

/// After a list action: the new list for htmx, back to the owner's page otherwise.
async fn after_change(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    owner: PromptOwner,
) -> AppResult<HttpResponse> {
    if is_htmx(req) {
        html(
            StatusCode::OK,
            &PromptsSection::fragment(state, user, csrf, owner).await?,
        )
    } else {
        Ok(see_other(req, &owner_url(owner)))
    }
}

#[derive(Deserialize)]
pub struct PromptForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
}

async fn create(
    req: HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    owner: PromptOwner,
    form: PromptForm,
) -> AppResult<HttpResponse> {
    let input = PromptInput {
        title: Some(form.title.clone()),
        content: Some(form.content.clone()),
        ..Default::default()
    };
    let errors = match validation_or(service::create(state, user, owner, input).await)? {
        Ok(_) => return after_change(&req, state, user, csrf, owner).await,
        Err(errors) => errors,
    };
    let mut section = PromptsSection::fragment(state, user, csrf, owner).await?;
    section.title = form.title;
    section.content = form.content;
    section.errors = errors;
    if is_htmx(&req) {
        return html(StatusCode::UNPROCESSABLE_ENTITY, &section);
    }
    section.system_message = None;
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    match owner {
        PromptOwner::Project(id) => {
            project_page(
                state,
                user,
                csrf,
                id,
                status,
                ProjectPageParts {
                    prompts: Some(section),
                    ..Default::default()
                },
            )
            .await
        }
        PromptOwner::Agent(id) => {
            agent_page(
                state,
                user,
                csrf,
                id,
                status,
                None,
                AgentPageParts {
                    prompts: Some(section),
                },
            )
            .await
        }
    }
}

pub async fn create_project_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<PromptForm>,
) -> AppResult<HttpResponse> {
    create(
        req,
        &state,
        &user,
        &csrf,
        PromptOwner::Project(*id),
        form.into_inner(),
    )
    .await
}

pub async fn create_agent_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<PromptForm>,
) -> AppResult<HttpResponse> {
    create(
        req,
        &state,
        &user,
        &csrf,
        PromptOwner::Agent(*id),
        form.into_inner(),
    )
    .await
}

#[derive(Template)]
#[template(path = "partials/prompts/editor.html")]
struct EditorSection {
    csrf: String,
    prompt: PromptWithText,
    versions: Vec<PromptVersion>,
    title: String,
    content: String,
    errors: FormErrors,
    notice: Option<String>,
    owner_url: String,
}

#[derive(Template)]
#[template(path = "pages/prompts/show.html")]
struct PromptPage {
    chrome: Chrome,
    prompt: PromptWithText,
    owner_url: String,
    owner_name: String,
    editor: EditorSection,
}

async fn editor(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    id: Uuid,
    notice: Option<String>,
) -> AppResult<EditorSection> {
    let (prompt, versions) = service::versions(state, user, id).await?;
    let owner_url = owner_url(PromptOwner::of(&prompt.prompt));
    Ok(EditorSection {
        owner_url,
        csrf: csrf.0.clone(),
        title: prompt.current.title.clone(),
        content: prompt.current.content.clone(),
        prompt,
        versions,
        errors: FormErrors::default(),
        notice,
    })
}

async fn prompt_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    status: StatusCode,
    editor: EditorSection,
) -> AppResult<HttpResponse> {
    let owner = PromptOwner::of(&editor.prompt.prompt);
    let owner_name = match owner {
        PromptOwner::Project(id) => crate::projects::service::get(state, user, id).await?.name,
        PromptOwner::Agent(id) => agents::service::get(state, user, id).await?.name,
    };
    let page = PromptPage {
        chrome: Chrome::new(Some(user), csrf),
        prompt: editor.prompt.clone(),
        owner_url: owner_url(owner),
        owner_name,
        editor,
    };
    html(status, &page)
}

/// Responds with the editor fragment (htmx) or the whole prompt page.
async fn editor_response(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    status: StatusCode,
    section: EditorSection,
) -> AppResult<HttpResponse> {
    if is_htmx(req) {
        html(status, &section)
    } else {
        prompt_page(state, user, csrf, status, section).await
    }
}

pub async fn show_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let section = editor(&state, &user, &csrf, *id, None).await?;
    editor_response(&req, &state, &user, &csrf, StatusCode::OK, section).await
}

pub async fn update_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<PromptForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let before = service::get(&state, &user, *id)
        .await?
        .prompt
        .current_version;
    let input = PromptInput {
        title: Some(form.title.clone()),
        content: Some(form.content.clone()),
        ..Default::default()
    };
    match validation_or(service::update(&state, &user, *id, input).await)? {
        Ok(updated) => {
            let notice = if updated.prompt.current_version == before {
                "Nothing changed, so no new version was made.".to_string()
            } else {
                format!("Saved as version {}.", updated.prompt.current_version)
            };
            let section = editor(&state, &user, &csrf, *id, Some(notice)).await?;
            editor_response(&req, &state, &user, &csrf, StatusCode::OK, section).await
        }
        Err(errors) => {
            let mut section = editor(&state, &user, &csrf, *id, None).await?;
            section.title = form.title;
            section.content = form.content;
            section.errors = errors;
            editor_response(
                &req,
                &state,
                &user,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                section,
            )
            .await
        }
    }
}

pub async fn restore_prompt_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    path: web::Path<(Uuid, i32)>,
) -> AppResult<HttpResponse> {
    let (id, version) = path.into_inner();
    service::restore(&state, &user, id, version).await?;
    let section = editor(
        &state,
        &user,
        &csrf,
        id,
        Some(format!("Version {version} is current again.")),
    )
    .await?;
    editor_response(&req, &state, &user, &csrf, StatusCode::OK, section).await
}

pub async fn toggle_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let current = service::get(&state, &user, *id).await?;
    let input = PromptInput {
        enabled: Some(!current.prompt.enabled),
        ..Default::default()
    };
    let updated = service::update(&state, &user, *id, input).await?;
    after_change(&req, &state, &user, &csrf, PromptOwner::of(&updated.prompt)).await
}

#[derive(Deserialize)]
pub struct MoveForm {
    direction: String,
}

pub async fn move_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    form: web::Form<MoveForm>,
) -> AppResult<HttpResponse> {
    let delta = if form.direction == "up" { -1 } else { 1 };
    let prompt = service::step(&state, &user, *id, delta).await?;
    after_change(&req, &state, &user, &csrf, PromptOwner::of(&prompt)).await
}

pub async fn confirm_delete_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let prompt = service::get(&state, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: prompt.current.title,
            warning: "This deletes the prompt and its whole history. It cannot be undone.",
            action: format!("/prompts/{}/delete", prompt.prompt.id),
            back: owner_url(PromptOwner::of(&prompt.prompt)),
        },
    )
}

pub async fn delete_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let prompt = service::delete(&state, &user, *id).await?;
    after_change(&req, &state, &user, &csrf, PromptOwner::of(&prompt)).await
}
