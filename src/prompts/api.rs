//! JSON API: `/api/projects/{id}/prompts`, `/api/agents/{id}/prompts`, `/api/prompts/{id}…`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::AppResult;
use crate::prompts::model::{PromptOwner, PromptWithText};
use crate::prompts::service::{self, PromptInput};
use crate::session::CurrentUser;
use crate::state::AppState;

/// A prompt as the JSON API takes it; `None` leaves a field as it is.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    /// Also read as `name`, as other clients send it. A new prompt without one takes its
    /// content's first line.
    #[serde(alias = "name")]
    title: Option<String>,
    content: Option<String>,
    enabled: Option<bool>,
    /// 0-based place among its siblings.
    position: Option<i64>,
}

impl From<PromptBody> for PromptInput {
    fn from(body: PromptBody) -> PromptInput {
        PromptInput {
            title: body.title,
            content: body.content,
            enabled: body.enabled,
            position: body.position,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PromptView {
    id: Uuid,
    project_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    title: String,
    content: String,
    position: i32,
    enabled: bool,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PromptWithText> for PromptView {
    fn from(p: PromptWithText) -> PromptView {
        PromptView {
            id: p.prompt.id,
            project_id: p.prompt.project_id,
            agent_id: p.prompt.agent_id,
            title: p.current.title,
            content: p.current.content,
            position: p.prompt.position,
            enabled: p.prompt.enabled,
            version: p.prompt.current_version,
            created_at: p.prompt.created_at,
            updated_at: p.prompt.updated_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct VersionView {
    version: i32,
    title: String,
    content: String,
    created_at: DateTime<Utc>,
    current: bool,
}

async fn list(state: &AppState, user: &CurrentUser, owner: PromptOwner) -> AppResult<HttpResponse> {
    let prompts: Vec<PromptView> = service::list(&state.pool, user, owner)
        .await?
        .into_iter()
        .map(PromptView::from)
        .collect();
    Ok(HttpResponse::Ok().json(prompts))
}

async fn create(
    state: &AppState,
    user: &CurrentUser,
    owner: PromptOwner,
    input: PromptInput,
) -> AppResult<HttpResponse> {
    let prompt = service::create(&state.pool, user, owner, input).await?;
    Ok(HttpResponse::Created().json(PromptView::from(prompt)))
}

#[utoipa::path(get, path = "/api/projects/{id}/prompts", tag = "prompts",
    responses((status = 200, description = "The project's prompts, in order (every agent of the project sends the enabled ones first)", body = [PromptView])))]
pub async fn list_project_prompts(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    list(&state, &user, PromptOwner::Project(*id)).await
}

#[utoipa::path(post, path = "/api/projects/{id}/prompts", tag = "prompts", request_body = PromptBody,
    responses((status = 201, description = "The new prompt, version 1", body = PromptView)))]
pub async fn create_project_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<PromptBody>,
) -> AppResult<HttpResponse> {
    create(
        &state,
        &user,
        PromptOwner::Project(*id),
        body.into_inner().into(),
    )
    .await
}

#[utoipa::path(get, path = "/api/agents/{id}/prompts", tag = "prompts",
    responses((status = 200, description = "The agent's own prompts, in order", body = [PromptView])))]
pub async fn list_agent_prompts(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    list(&state, &user, PromptOwner::Agent(*id)).await
}

#[utoipa::path(post, path = "/api/agents/{id}/prompts", tag = "prompts", request_body = PromptBody,
    responses((status = 201, description = "The new prompt, version 1", body = PromptView)))]
pub async fn create_agent_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<PromptBody>,
) -> AppResult<HttpResponse> {
    create(
        &state,
        &user,
        PromptOwner::Agent(*id),
        body.into_inner().into(),
    )
    .await
}

#[utoipa::path(get, path = "/api/prompts/{id}", tag = "prompts",
    responses((status = 200, description = "The prompt at its current version", body = PromptView)))]
pub async fn get_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(PromptView::from(
        service::get(&state.pool, &user, *id).await?,
    )))
}

#[utoipa::path(method(put, patch), path = "/api/prompts/{id}", tag = "prompts", request_body = PromptBody,
    responses((status = 200, description = "The prompt; a changed title or content makes a new version", body = PromptView)))]
pub async fn update_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<PromptBody>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(PromptView::from(
        service::update(&state.pool, &user, *id, body.into_inner().into()).await?,
    )))
}

#[utoipa::path(delete, path = "/api/prompts/{id}", tag = "prompts",
    responses((status = 204, description = "Deleted, with its versions")))]
pub async fn delete_prompt(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/prompts/{id}/versions", tag = "prompts",
    responses((status = 200, description = "Every version, newest first", body = [VersionView])))]
pub async fn list_prompt_versions(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let (current, versions) = service::versions(&state.pool, &user, *id).await?;
    let views: Vec<VersionView> = versions
        .into_iter()
        .map(|v| VersionView {
            current: v.version == current.prompt.current_version,
            version: v.version,
            title: v.title,
            content: v.content,
            created_at: v.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(post, path = "/api/prompts/{id}/versions/{version}/restore", tag = "prompts",
    params(("version" = i32, Path, description = "The version to bring back (it becomes a new version)")),
    responses((status = 200, description = "The prompt at its new version", body = PromptView)))]
pub async fn restore_prompt_version(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(Uuid, i32)>,
) -> AppResult<HttpResponse> {
    let (id, version) = path.into_inner();
    Ok(HttpResponse::Ok().json(PromptView::from(
        service::restore(&state.pool, &user, id, version).await?,
    )))
}
