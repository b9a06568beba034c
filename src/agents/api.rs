//! JSON API: `/api/projects/{id}/agents` and `/api/agents/{id}`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agents::model::Agent;
use crate::agents::service::{self, AgentInput};
use crate::domain::double_option;
use crate::error::AppResult;
use crate::session::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    name: Option<String>,
    description: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    temperature: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    max_output_tokens: Option<Option<i64>>,
    is_default: Option<bool>,
}

impl From<AgentBody> for AgentInput {
    fn from(b: AgentBody) -> AgentInput {
        AgentInput {
            name: b.name,
            description: b.description,
            provider: b.provider,
            model: b.model,
            temperature: b.temperature,
            max_output_tokens: b.max_output_tokens,
            is_default: b.is_default,
        }
    }
}

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
    body: web::Json<AgentBody>,
) -> AppResult<HttpResponse> {
    let agent = service::create(&state.pool, &user, *project_id, body.into_inner().into()).await?;
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
    body: web::Json<AgentBody>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(service::update(&state.pool, &user, *id, body.into_inner().into()).await?))
}

pub async fn delete_agent(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(&state.pool, &state.generations, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
