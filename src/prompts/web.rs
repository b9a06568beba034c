//! Prompt lists (on project and agent pages) and a prompt's own page with its history.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppResult;
use crate::prompts::model::{PromptOwner, PromptVersion, PromptWithText};
use crate::prompts::service::{self, PromptInput};
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;
use crate::site::{
    Chrome, ConfirmDeletePage, FormErrors, PageForm, html, is_htmx, refused, reply, see_other,
};
use crate::state::AppState;
use crate::urls;

/// The exact system message an agent sends, shown on its page and refreshed with prompt changes.
#[derive(Template)]
#[template(path = "partials/prompts/system_message.html")]
pub struct SystemMessagePreview {
    pub text: String,
    /// Rendered as an out-of-band swap when it rides along with another fragment.
    pub oob: bool,
}

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
        let prompts = service::list(&state.pool, user, owner).await?;
        let (heading, create_url) = match owner {
            PromptOwner::Project(id) => ("Project prompts", urls::project_prompts(id)),
            PromptOwner::Agent(id) => ("Agent prompts", urls::agent_prompts(id)),
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

    /// The section after a change, with the agent's new system message riding along (htmx
    /// swaps it out of band), and the new-prompt form as sent when it was refused.
    pub async fn after_change(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        owner: PromptOwner,
        refused: Option<(PromptInput, FormErrors)>,
    ) -> AppResult<PromptsSection> {
        let mut section = Self::load(state, user, csrf, owner).await?;
        if let Some((input, errors)) = refused {
            section.title = input.title.unwrap_or_default();
            section.content = input.content.unwrap_or_default();
            section.errors = errors;
        }
        if let PromptOwner::Agent(id) = owner {
            let project_id = service::owner(&state.pool, user, owner).await?.project_id;
            let text = service::system_message(&state.pool, project_id, id)
                .await?
                .text;
            section.system_message = Some(SystemMessagePreview { text, oob: true });
        }
        Ok(section)
    }

    /// For a full page, which shows the system message itself.
    pub fn without_preview(self) -> PromptsSection {
        PromptsSection {
            system_message: None,
            ..self
        }
    }
}

fn owner_url(owner: PromptOwner) -> String {
    match owner {
        PromptOwner::Project(id) => urls::project(id),
        PromptOwner::Agent(id) => urls::agent(id),
    }
}

/// After a list action: the new list for htmx, back to the owner's page otherwise.
async fn after_list_action(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    owner: PromptOwner,
) -> AppResult<HttpResponse> {
    if is_htmx(req) {
        html(
            StatusCode::OK,
            &PromptsSection::after_change(state, user, csrf, owner, None).await?,
        )
    } else {
        Ok(see_other(req, &owner_url(owner)))
    }
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
    /// The breadcrumb's links (URL, name) after "Projects": the project, then an agent's prompt's agent.
    crumbs: Vec<(String, String)>,
    editor: EditorSection,
}

async fn editor(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    id: Uuid,
    notice: Option<String>,
) -> AppResult<EditorSection> {
    let (prompt, versions) = service::versions(&state.pool, user, id).await?;
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
    let summary = service::owner(&state.pool, user, owner).await?;
    let mut crumbs = vec![(urls::project(summary.project_id), summary.project_name)];
    if let PromptOwner::Agent(_) = owner {
        crumbs.push((owner_url(owner), summary.name));
    }
    let page = PromptPage {
        chrome: Chrome::new(Some(user), csrf),
        prompt: editor.prompt.clone(),
        crumbs,
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
    PageForm(input): PageForm<PromptInput>,
) -> AppResult<HttpResponse> {
    let before = service::get(&state.pool, &user, *id).await?;
    let result = service::update(&state.pool, &user, *id, input.clone()).await;
    reply(
        &req,
        refused(result, "form")?,
        // The editor stays open with what happened, with JavaScript or without.
        |_| None,
        async |outcome| match outcome {
            Ok(updated) => {
                let notice = if updated.prompt.current_version == before.prompt.current_version {
                    "Nothing changed, so no new version was made.".to_string()
                } else {
                    format!("Saved as version {}.", updated.prompt.current_version)
                };
                editor(&state, &user, &csrf, *id, Some(notice)).await
            }
            Err(errors) => Ok(EditorSection {
                title: input.title.unwrap_or_default(),
                content: input.content.unwrap_or_default(),
                errors,
                ..editor(&state, &user, &csrf, *id, None).await?
            }),
        },
        async |section, status| prompt_page(&state, &user, &csrf, status, section).await,
    )
    .await
}

pub async fn restore_prompt_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    path: web::Path<(Uuid, i32)>,
) -> AppResult<HttpResponse> {
    let (id, version) = path.into_inner();
    service::restore(&state.pool, &user, id, version).await?;
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
    let current = service::get(&state.pool, &user, *id).await?;
    let input = PromptInput {
        enabled: Some(!current.prompt.enabled),
        ..Default::default()
    };
    let updated = service::update(&state.pool, &user, *id, input).await?;
    after_list_action(&req, &state, &user, &csrf, PromptOwner::of(&updated.prompt)).await
}

/// Which way a prompt moves in its list.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Up,
    Down,
}

#[derive(Deserialize)]
pub struct MoveForm {
    direction: Direction,
}

pub async fn move_prompt(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
    PageForm(form): PageForm<MoveForm>,
) -> AppResult<HttpResponse> {
    let delta = match form.direction {
        Direction::Up => -1,
        Direction::Down => 1,
    };
    let prompt = service::step(&state.pool, &user, *id, delta).await?;
    after_list_action(&req, &state, &user, &csrf, PromptOwner::of(&prompt)).await
}

pub async fn confirm_delete_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let prompt = service::get(&state.pool, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: prompt.current.title,
            warning: "This deletes the prompt and its whole history. It cannot be undone.",
            action: urls::prompt_delete(prompt.prompt.id),
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
    let prompt = service::delete(&state.pool, &user, *id).await?;
    after_list_action(&req, &state, &user, &csrf, PromptOwner::of(&prompt)).await
}
