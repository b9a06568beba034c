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
#[derive(Serialize)]
struct AgentDetail {
    #[serde(flatten)]
    agent: Agent,
    system_message: String,
}

pub async fn list_agents(
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *project_id).await?))
}

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

pub async fn get_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let agent = service::get(&state.pool, &user, *id).await?;
    let system_message = service::system_message(&state.pool, &agent).await?.text;
    Ok(HttpResponse::Ok().json(AgentDetail {
        agent,
        system_message,
    }))
}

pub async fn update_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: web::Json<AgentInput>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(service::update(&state.pool, &user, *id, body.into_inner().json_types()?).await?))
}

pub async fn delete_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
