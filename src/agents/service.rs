//! Agent rules: settings ranges, the default agent, and the composed system message.

use uuid::Uuid;

use crate::agents::model::{Agent, AgentChanges, NewAgent, ProjectRef};
use crate::db;
use crate::db::PgPool;
use crate::domain::{self, Checks};
use crate::error::{AppError, AppResult};
use crate::generation::Generations;
use crate::prompts;
use crate::prompts::service::SystemMessage;
use crate::session::CurrentUser;

/// The agent every new project starts with.
pub const DEFAULT_AGENT_NAME: &str = "Assistant";
pub const DEFAULT_PROVIDER: &str = "openai";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Raw input; `None` leaves a field alone, `Some(None)` clears an optional setting.
#[derive(Default, Debug)]
pub struct AgentInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub temperature: Option<Option<f64>>,
    pub max_output_tokens: Option<Option<i64>>,
    pub is_default: Option<bool>,
}

impl AgentInput {
    fn parse(&self) -> AppResult<AgentChanges> {
        let mut c = Checks::new();
        let changes = AgentChanges {
            name: self.name.as_deref().and_then(|v| c.check(domain::name(v))),
            description: self
                .description
                .as_deref()
                .and_then(|v| c.check(domain::description(v))),
            provider: self
                .provider
                .as_deref()
                .and_then(|v| c.check(domain::provider(v))),
            model: self
                .model
                .as_deref()
                .and_then(|v| c.check(domain::model(v))),
            temperature: self
                .temperature
                .and_then(|v| c.check(domain::temperature(v))),
            max_output_tokens: self
                .max_output_tokens
                .and_then(|v| c.check(domain::max_output_tokens(v))),
        };
        c.finish()?;
        Ok(changes)
    }
}

pub async fn list(pool: &PgPool, user: &CurrentUser, project_id: Uuid) -> AppResult<Vec<Agent>> {
    let owner = user.id;
    db::run(pool, move |conn| {
        Agent::project_of(conn, owner, project_id)?;
        Ok(Agent::list_for_project(conn, project_id)?)
    })
    .await
}

pub async fn create(
    pool: &PgPool,
    user: &CurrentUser,
    project_id: Uuid,
    input: AgentInput,
) -> AppResult<Agent> {
    let mut changes = AgentInput {
        name: Some(input.name.clone().unwrap_or_default()),
        ..input
    }
    .parse()?;
    let is_default = input.is_default.unwrap_or(false);
    let owner = user.id;
    db::transaction(pool, move |conn| {
        Agent::project_of(conn, owner, project_id)?;
        let agent = Agent::insert(
            conn,
            &NewAgent {
                id: Uuid::now_v7(),
                project_id,
                name: &changes.name.take().unwrap_or_default(),
                description: &changes.description.take().unwrap_or_default(),
                provider: &changes
                    .provider
                    .take()
                    .unwrap_or_else(|| DEFAULT_PROVIDER.into()),
                model: &changes.model.take().unwrap_or_else(|| DEFAULT_MODEL.into()),
                temperature: changes.temperature.flatten(),
                max_output_tokens: changes.max_output_tokens.flatten(),
                is_default: false,
            },
        )?;
        // The first agent of a project (or one asked for) becomes the default.
        let has_default = Agent::find_default(conn, project_id)?.is_some_and(|a| a.is_default);
        if is_default || !has_default {
            Agent::make_default(conn, &agent)?;
            return Ok(Agent::find_owned(conn, owner, agent.id)?);
        }
        Ok(agent)
    })
    .await
}

pub async fn get(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<Agent> {
    let owner = user.id;
    db::run(pool, move |conn| Ok(Agent::find_owned(conn, owner, id)?)).await
}

/// The agent with its project, for pages that show both.
pub async fn get_with_project(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<(Agent, ProjectRef)> {
    let owner = user.id;
    db::run(pool, move |conn| {
        let agent = Agent::find_owned(conn, owner, id)?;
        let project = Agent::project_of(conn, owner, agent.project_id)?;
        Ok((agent, project))
    })
    .await
}

pub async fn update(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    input: AgentInput,
) -> AppResult<Agent> {
    let changes = input.parse()?;
    let owner = user.id;
    let make_default = input.is_default == Some(true);
    if input.is_default == Some(false) {
        return Err(AppError::invalid(
            "is_default",
            "Make another agent the default instead.",
        ));
    }
    db::transaction(pool, move |conn| {
        let agent = Agent::find_owned(conn, owner, id)?;
        let agent = if changes.name.is_none()
            && changes.description.is_none()
            && changes.provider.is_none()
            && changes.model.is_none()
            && changes.temperature.is_none()
            && changes.max_output_tokens.is_none()
        {
            agent
        } else {
            Agent::update(conn, agent.id, &changes)?
        };
        if make_default {
            Agent::make_default(conn, &agent)?;
            return Ok(Agent::find_owned(conn, owner, id)?);
        }
        Ok(agent)
    })
    .await
}

pub async fn delete(
    pool: &PgPool,
    generations: &Generations,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<Agent> {
    let owner = user.id;
    let agent = db::transaction(pool, move |conn| {
        let agent = Agent::find_owned(conn, owner, id)?;
        Agent::delete(conn, &agent)?;
        Ok(agent)
    })
    .await?;
    // Its answers' rows are gone with it; their tasks stop rather than bill for nothing.
    generations.stop_agent(agent.id);
    Ok(agent)
}

pub async fn system_message(pool: &PgPool, agent: &Agent) -> AppResult<SystemMessage> {
    prompts::service::system_message(pool, agent.project_id, agent.id).await
}
