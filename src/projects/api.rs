//! JSON API: `/api/projects`.

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use crate::error::AppResult;
use crate::projects::model::Project;
use crate::projects::service::{self, ProjectInput};
use crate::session::CurrentUser;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/projects", tag = "projects",
    responses((status = 200, description = "Your projects, newest first", body = [Project])))]
pub async fn list_projects(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    let projects: Vec<_> = service::list(&state.pool, &user)
        .await?
        .into_iter()
        .map(|s| s.project)
        .collect();
    Ok(HttpResponse::Ok().json(projects))
}

#[utoipa::path(post, path = "/api/projects", tag = "projects", request_body = ProjectInput,
    responses((status = 201, description = "The new project, with a default agent", body = Project)))]
pub async fn create_project(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<ProjectInput>,
) -> AppResult<HttpResponse> {
    let project = service::create(&state.pool, &user, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(project))
}

#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects",
    responses((status = 200, description = "The project", body = Project)))]
pub async fn get_project(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state.pool, &user, *id).await?))
}

#[utoipa::path(patch, path = "/api/projects/{id}", tag = "projects", request_body = ProjectInput,
    responses((status = 200, description = "The project as changed", body = Project)))]
pub async fn update_project(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<ProjectInput>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::update(&state.pool, &user, *id, body.into_inner()).await?))
}

#[utoipa::path(delete, path = "/api/projects/{id}", tag = "projects",
    responses((status = 204, description = "Deleted, with its agents, prompts, conversations and files (here and at the provider)")))]
pub async fn delete_project(
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
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBody {
    enabled: bool,
}

/// `PUT /api/projects/{id}/knowledge` `{"enabled": true|false}` → the project.
#[utoipa::path(put, path = "/api/projects/{id}/knowledge", tag = "files", request_body = KnowledgeBody,
    responses((status = 200, description = "The project; with knowledge on, its agents answer from its files and cite them", body = Project)))]
pub async fn set_knowledge(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<KnowledgeBody>,
) -> AppResult<HttpResponse> {
    let project = service::set_knowledge(&state.pool, &user, *id, body.enabled).await?;
    // Its files go in the provider's vector store (when it has one), failed ones again.
    if project.knowledge {
        crate::files::knowledge::start_sync(&state, project.id, true);
    }
    Ok(HttpResponse::Ok().json(project))
}
