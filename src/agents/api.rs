//! JSON API: `/api/projects/{id}/agents` and `/api/agents/{id}`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use uuid::Uuid;

use crate::agents::model::Agent;
use crate::agents::service::{self, AgentInput};
use crate::error::AppResult;
use crate::session::CurrentUser;
use crate::state::AppState;

/// An agent and the system message it sends.
#[derive(Serialize, utoipa::ToSchema)]
struct AgentDetail {
    #[serde(flatten)]
    agent: Agent,
    system_message: String,
}

#[utoipa::path(get, path = "/api/projects/{id}/agents", tag = "agents",
    responses((status = 200, description = "The project's agents", body = [Agent])))]
pub async fn list_agents(
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *project_id).await?))
}

#[utoipa::path(post, path = "/api/projects/{id}/agents", tag = "agents", request_body = AgentInput,
    responses((status = 201, description = "The new agent", body = Agent)))]
pub async fn create_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
    body: web::Json<AgentInput>,
) -> AppResult<HttpResponse> {
    let agent = service::create(
        &state.pool,
        &user,
        *project_id,
        body.into_inner().json_types()?,
    )
    .await?;
    Ok(HttpResponse::Created().json(agent))
}

#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents",
    responses((status = 200, description = "The agent and the system message its prompts compose", body = AgentDetail)))]
pub async fn get_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let agent = service::get(&state.pool, &user, *id).await?;
    let system_message = service::system_message(
        &state.pool,
        &agent,
        &state.settings.chat.default_system_prompt,
    )
    .await?
    .text;
    Ok(HttpResponse::Ok().json(AgentDetail {
        agent,
        system_message,
    }))
}

#[utoipa::path(patch, path = "/api/agents/{id}", tag = "agents", request_body = AgentInput,
    responses((status = 200, description = "The agent as changed", body = Agent)))]
pub async fn update_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<AgentInput>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(service::update(&state.pool, &user, *id, body.into_inner().json_types()?).await?))
}

#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents",
    responses((status = 204, description = "Deleted, with its prompts and conversations")))]
pub async fn delete_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
