//! Agent rules: settings ranges, the default agent, and the composed system message.

use serde::Deserialize;
use uuid::Uuid;

use crate::agents::model::{Agent, AgentChanges, NewAgent, ProjectRef};
use crate::conversations::model::{Message, Scope};
use crate::db;
use crate::db::PgPool;
use crate::domain::{self, Checks, Flag, NumberInput, double_option};
use crate::error::{AppError, AppResult, FieldError};
use crate::generation::Generations;
use crate::prompts;
use crate::prompts::model::{Prompt, PromptOwner};
use crate::prompts::service::SystemMessage;
use crate::session::CurrentUser;

/// The agent every new project starts with.
pub const DEFAULT_AGENT_NAME: &str = "Assistant";
pub const DEFAULT_PROVIDER: &str = "openai";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// An agent as the form or the JSON API sends it. `None` leaves a field alone; for the
/// optional settings `Some(None)` (JSON `null`, or an empty box in the form) clears it.
#[derive(Default, Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Also read as `model_provider`.
    #[serde(alias = "model_provider")]
    pub provider: Option<String>,
    /// Also read as `model_name`.
    #[serde(alias = "model_name")]
    pub model: Option<String>,
    /// The agent's first prompt (titled "System prompt"), as clients that keep one system
    /// prompt per agent send it: made with a new agent; on a change, the first prompt's new
    /// version (or a new first prompt).
    pub system_prompt: Option<String>,
    /// 0–2; `null` clears it (the provider's default).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, nullable)]
    pub temperature: Option<Option<NumberInput>>,
    /// 16–1,000,000; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, nullable)]
    pub max_output_tokens: Option<Option<NumberInput>>,
    /// Makes it the project's default agent.
    #[schema(value_type = Option<bool>)]
    pub is_default: Option<Flag>,
}

impl AgentInput {
    /// The JSON API takes numbers and booleans as JSON types, as it always has; only forms send
    /// them as text.
    pub fn json_types(self) -> AppResult<AgentInput> {
        let mut c = Checks::new();
        let text_number =
            |n: &Option<Option<NumberInput>>| n.iter().flatten().any(NumberInput::is_text);
        if text_number(&self.temperature) {
            c.check::<()>(Err(FieldError {
                field: "temperature",
                message: "Send temperature as a number.".into(),
            }));
        }
        if text_number(&self.max_output_tokens) {
            c.check::<()>(Err(FieldError {
                field: "max_output_tokens",
                message: "Send max_output_tokens as a number.".into(),
            }));
        }
        if self.is_default.as_ref().is_some_and(Flag::is_text) {
            c.check::<()>(Err(FieldError {
                field: "is_default",
                message: "Send is_default as true or false.".into(),
            }));
        }
        c.finish()?;
        Ok(self)
    }

    fn makes_default(&self) -> AppResult<Option<bool>> {
        Ok(self
            .is_default
            .as_ref()
            .map(|flag| flag.parse("is_default"))
            .transpose()?)
    }
}

impl TryFrom<AgentInput> for AgentChanges {
    type Error = AppError;

    /// Every field's message at once, or changes that obey the rules.
    fn try_from(input: AgentInput) -> AppResult<AgentChanges> {
        let mut c = Checks::new();
        let number = |c: &mut Checks, value: Option<Option<NumberInput>>, field, label| {
            value.map(|v| v.and_then(|n| c.check(n.parse(field, label)).flatten()))
        };
        let temperature = number(&mut c, input.temperature, "temperature", "Temperature");
        let max_output_tokens = number(
            &mut c,
            input.max_output_tokens,
            "max_output_tokens",
            "Max output tokens",
        );
        let changes = AgentChanges {
            name: input.name.as_deref().and_then(|v| c.check(domain::name(v))),
            description: input
                .description
                .as_deref()
                .and_then(|v| c.check(domain::description(v))),
            provider: input
                .provider
                .as_deref()
                .and_then(|v| c.check(domain::provider(v))),
            model: input
                .model
                .as_deref()
                .and_then(|v| c.check(domain::model(v))),
            temperature: temperature.and_then(|v| c.check(domain::temperature(v))),
            max_output_tokens: max_output_tokens
                .and_then(|v| c.check(domain::max_output_tokens(v))),
        };
        c.finish()?;
        Ok(changes)
    }
}

/// The title of the prompt `system_prompt` makes.
const SYSTEM_PROMPT_TITLE: &str = "System prompt";

/// A `system_prompt` checked as a prompt's content is.
fn checked_system_prompt(raw: Option<&str>) -> AppResult<Option<String>> {
    raw.map(|content| {
        domain::prompt_content(content).map_err(|mut error| {
            error.field = "system_prompt";
            AppError::Validation(vec![error])
        })
    })
    .transpose()
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
    let is_default = input.makes_default()?.unwrap_or(false);
    let system_prompt = checked_system_prompt(input.system_prompt.as_deref())?;
    // A new agent needs a name: a missing one is an empty one.
    let mut changes = AgentChanges::try_from(AgentInput {
        name: Some(input.name.clone().unwrap_or_default()),
        ..input
    })?;
    let owner = user.id;
    db::transaction(pool, move |conn| {
        Agent::project_of(conn, owner, project_id)?;
        Agent::lock_project_agents(conn, project_id)?;
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
        if let Some(content) = &system_prompt {
            Prompt::create(
                conn,
                PromptOwner::Agent(agent.id),
                SYSTEM_PROMPT_TITLE,
                content,
                true,
            )?;
        }
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
    let make_default = input.makes_default()?;
    let system_prompt = checked_system_prompt(input.system_prompt.as_deref())?;
    let changes = AgentChanges::try_from(input)?;
    let owner = user.id;
    if make_default == Some(false) {
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
        if let Some(content) = &system_prompt {
            let owner = PromptOwner::Agent(agent.id);
            match Prompt::list_with_text(conn, owner)?.into_iter().next() {
                Some(first) if first.current.content == *content => {}
                Some(first) => {
                    Prompt::add_version(conn, &first.prompt, &first.current.title, content)?;
                }
                None => {
                    Prompt::create(conn, owner, SYSTEM_PROMPT_TITLE, content, true)?;
                }
            }
        }
        if make_default == Some(true) {
            Agent::lock_project_agents(conn, agent.project_id)?;
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
        // Deleting the default promotes another agent.
        Agent::lock_project_agents(conn, agent.project_id)?;
        let agent = Agent::find_owned(conn, owner, id)?;
        Message::lock_streaming_in(conn, Scope::Agent(agent.id))?;
        Agent::delete(conn, &agent)?;
        Ok(agent)
    })
    .await?;
    // Its answers' rows are gone with it; their tasks stop rather than bill for nothing.
    generations.stop_agent(agent.id);
    Ok(agent)
}

/// The system message the agent sends: its prompts', or `default` when they say nothing.
pub async fn system_message(
    pool: &PgPool,
    agent: &Agent,
    default: &str,
) -> AppResult<SystemMessage> {
    Ok(
        prompts::service::system_message(pool, agent.project_id, agent.id)
            .await?
            .or_default(default),
    )
}
