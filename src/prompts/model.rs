//! The `prompts` and `prompt_versions` tables. A prompt belongs to a project or to an agent;
//! its text lives in immutable versions and `current_version` says which one is in use.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agents, projects, prompt_versions, prompts};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = prompts)]
pub struct Prompt {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub title: String,
    pub position: i32,
    pub enabled: bool,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = prompt_versions)]
pub struct PromptVersion {
    #[serde(skip)]
    pub id: Uuid,
    #[serde(skip)]
    pub prompt_id: Uuid,
    pub version: i32,
    pub title: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// A prompt with the text of its current version.
#[derive(Debug, Clone)]
pub struct PromptWithText {
    pub prompt: Prompt,
    pub current: PromptVersion,
}

/// Where a prompt lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptOwner {
    Project(Uuid),
    Agent(Uuid),
}

impl PromptOwner {
    pub fn of(prompt: &Prompt) -> PromptOwner {
        match (prompt.project_id, prompt.agent_id) {
            (Some(project), _) => PromptOwner::Project(project),
            (None, Some(agent)) => PromptOwner::Agent(agent),
            (None, None) => unreachable!("the prompts_exactly_one_owner constraint forbids this"),
        }
    }
}

/// What a prompt's pages show of its owner.
pub struct OwnerSummary {
    pub name: String,
    /// The project's own id and name, or the agent's project's.
    pub project_id: Uuid,
    pub project_name: String,
}

impl PromptOwner {
    /// The owner's name and project, if the user owns it (NotFound otherwise).
    pub fn find_owned(self, conn: &mut PgConnection, user: Uuid) -> QueryResult<OwnerSummary> {
        let (name, project_id, project_name) = match self {
            PromptOwner::Project(id) => projects::table
                .filter(projects::id.eq(id))
                .filter(projects::owner_id.eq(user))
                .select((projects::name, projects::id, projects::name))
                .first::<(String, Uuid, String)>(conn)?,
            PromptOwner::Agent(id) => agents::table
                .inner_join(projects::table)
                .filter(agents::id.eq(id))
                .filter(projects::owner_id.eq(user))
                .select((agents::name, agents::project_id, projects::name))
                .first::<(String, Uuid, String)>(conn)?,
        };
        Ok(OwnerSummary {
            name,
            project_id,
            project_name,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = prompts)]
struct NewPrompt<'a> {
    id: Uuid,
    project_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    title: &'a str,
    position: i32,
    enabled: bool,
    current_version: i32,
}

#[derive(Insertable)]
#[diesel(table_name = prompt_versions)]
struct NewPromptVersion<'a> {
    id: Uuid,
    prompt_id: Uuid,
    version: i32,
    title: &'a str,
    content: &'a str,
}

type BoxedPrompts<'a> = prompts::BoxedQuery<'a, diesel::pg::Pg>;

fn owned_by(owner: PromptOwner) -> BoxedPrompts<'static> {
    match owner {
        PromptOwner::Project(id) => prompts::table
            .filter(prompts::project_id.eq(id))
            .into_boxed(),
        PromptOwner::Agent(id) => prompts::table.filter(prompts::agent_id.eq(id)).into_boxed(),
    }
}

/// Serializes changes to one owner's list until the transaction ends, so two concurrent moves
/// cannot interleave their renumbering and two new prompts cannot take the same position.
fn lock_siblings(conn: &mut PgConnection, owner: PromptOwner) -> QueryResult<()> {
    let (PromptOwner::Project(id) | PromptOwner::Agent(id)) = owner;
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(conn)?;
    Ok(())
}

impl Prompt {
    /// The prompt, if it sits under a project the user owns, directly or through an agent.
    pub fn find_owned(conn: &mut PgConnection, user: Uuid, id: Uuid) -> QueryResult<Prompt> {
        let user_projects = projects::table
            .filter(projects::owner_id.eq(user))
            .select(projects::id.nullable());
        let user_agents = agents::table
            .inner_join(projects::table)
            .filter(projects::owner_id.eq(user))
            .select(agents::id.nullable());
        prompts::table
            .filter(prompts::id.eq(id))
            .filter(
                prompts::project_id
                    .eq_any(user_projects)
                    .or(prompts::agent_id.eq_any(user_agents)),
            )
            .select(Prompt::as_select())
            .first(conn)
    }

    /// Like [`Prompt::find_owned`], and holds the row until the transaction ends, so two edits
    /// of one prompt cannot both pick the same next version number.
    pub fn find_owned_for_update(
        conn: &mut PgConnection,
        user: Uuid,
        id: Uuid,
    ) -> QueryResult<Prompt> {
        let prompt = Self::find_owned(conn, user, id)?;
        prompts::table
            .find(prompt.id)
            .for_update()
            .select(Prompt::as_select())
            .first(conn)
    }

    /// Holds the prompt's list (its siblings' order) until the transaction ends.
    pub fn lock_list(conn: &mut PgConnection, prompt: &Prompt) -> QueryResult<()> {
        lock_siblings(conn, PromptOwner::of(prompt))
    }

    /// The owner's prompts in order, each with its current text, in one query.
    pub fn list_with_text(
        conn: &mut PgConnection,
        owner: PromptOwner,
    ) -> QueryResult<Vec<PromptWithText>> {
        let rows: Vec<(Prompt, PromptVersion)> = owned_by(owner)
            .inner_join(
                prompt_versions::table.on(prompt_versions::prompt_id
                    .eq(prompts::id)
                    .and(prompt_versions::version.eq(prompts::current_version))),
            )
            .order((prompts::position.asc(), prompts::id.asc()))
            .select((Prompt::as_select(), PromptVersion::as_select()))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|(prompt, current)| PromptWithText { prompt, current })
            .collect())
    }

    /// What an agent sends as its system message: the enabled prompts of its project, then its
    /// own, each in position order at its current version — one query.
    pub fn for_system_message(
        conn: &mut PgConnection,
        project_id: Uuid,
        agent_id: Uuid,
    ) -> QueryResult<Vec<PromptWithText>> {
        let rows: Vec<(Prompt, PromptVersion)> = prompts::table
            .inner_join(
                prompt_versions::table.on(prompt_versions::prompt_id
                    .eq(prompts::id)
                    .and(prompt_versions::version.eq(prompts::current_version))),
            )
            .filter(prompts::enabled.eq(true))
            .filter(
                prompts::project_id
                    .eq(project_id)
                    .or(prompts::agent_id.eq(agent_id)),
            )
            .order((
                prompts::agent_id.is_not_null().asc(),
                prompts::position.asc(),
                prompts::id.asc(),
            ))
            .select((Prompt::as_select(), PromptVersion::as_select()))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|(prompt, current)| PromptWithText { prompt, current })
            .collect())
    }

    pub fn current_text(conn: &mut PgConnection, prompt: Prompt) -> QueryResult<PromptWithText> {
        let current = PromptVersion::find(conn, prompt.id, prompt.current_version)?;
        Ok(PromptWithText { prompt, current })
    }

    /// Adds the prompt at the end of its owner's list, with version 1.
    pub fn create(
        conn: &mut PgConnection,
        owner: PromptOwner,
        title: &str,
        content: &str,
        enabled: bool,
    ) -> QueryResult<PromptWithText> {
        crate::db::agents_changed();
        lock_siblings(conn, owner)?;
        let last: Option<i32> = owned_by(owner)
            .select(diesel::dsl::max(prompts::position))
            .first(conn)?;
        let (project_id, agent_id) = match owner {
            PromptOwner::Project(id) => (Some(id), None),
            PromptOwner::Agent(id) => (None, Some(id)),
        };
        let new = NewPrompt {
            id: Uuid::now_v7(),
            project_id,
            agent_id,
            title,
            position: last.map_or(0, |p| p + 1),
            enabled,
            current_version: 1,
        };
        let prompt = diesel::insert_into(prompts::table)
            .values(&new)
            .returning(Prompt::as_returning())
            .get_result(conn)?;
        let current = PromptVersion::insert(conn, prompt.id, 1, title, content)?;
        Ok(PromptWithText { prompt, current })
    }

    /// Saves an edit as a new version and makes it current.
    pub fn add_version(
        conn: &mut PgConnection,
        prompt: &Prompt,
        title: &str,
        content: &str,
    ) -> QueryResult<PromptWithText> {
        crate::db::agents_changed();
        let latest: Option<i32> = prompt_versions::table
            .filter(prompt_versions::prompt_id.eq(prompt.id))
            .select(diesel::dsl::max(prompt_versions::version))
            .first(conn)?;
        let version = latest.unwrap_or(0) + 1;
        let current = PromptVersion::insert(conn, prompt.id, version, title, content)?;
        let prompt = diesel::update(prompts::table.find(prompt.id))
            .set((
                prompts::title.eq(title),
                prompts::current_version.eq(version),
                prompts::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Prompt::as_returning())
            .get_result(conn)?;
        Ok(PromptWithText { prompt, current })
    }

    /// Rollback: an earlier version becomes current again (no version is changed or removed).
    pub fn restore(
        conn: &mut PgConnection,
        prompt: &Prompt,
        version: i32,
    ) -> QueryResult<PromptWithText> {
        crate::db::agents_changed();
        let current = PromptVersion::find(conn, prompt.id, version)?;
        let prompt = diesel::update(prompts::table.find(prompt.id))
            .set((
                prompts::title.eq(&current.title),
                prompts::current_version.eq(version),
                prompts::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Prompt::as_returning())
            .get_result(conn)?;
        Ok(PromptWithText { prompt, current })
    }

    pub fn set_enabled(
        conn: &mut PgConnection,
        prompt: &Prompt,
        enabled: bool,
    ) -> QueryResult<Prompt> {
        crate::db::agents_changed();
        diesel::update(prompts::table.find(prompt.id))
            .set((
                prompts::enabled.eq(enabled),
                prompts::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Prompt::as_returning())
            .get_result(conn)
    }

    /// Moves the prompt to `index` (0-based, clamped) among its siblings and renumbers them 0..n.
    pub fn move_to(conn: &mut PgConnection, prompt: &Prompt, index: usize) -> QueryResult<()> {
        crate::db::agents_changed();
        lock_siblings(conn, PromptOwner::of(prompt))?;
        let mut ids: Vec<Uuid> = owned_by(PromptOwner::of(prompt))
            .order((prompts::position.asc(), prompts::id.asc()))
            .select(prompts::id)
            .load(conn)?;
        ids.retain(|id| *id != prompt.id);
        ids.insert(index.min(ids.len()), prompt.id);
        Self::renumber(conn, &ids)
    }

    /// Index of the prompt among its siblings.
    pub fn index_of(conn: &mut PgConnection, prompt: &Prompt) -> QueryResult<usize> {
        let ids: Vec<Uuid> = owned_by(PromptOwner::of(prompt))
            .order((prompts::position.asc(), prompts::id.asc()))
            .select(prompts::id)
            .load(conn)?;
        Ok(ids.iter().position(|id| *id == prompt.id).unwrap_or(0))
    }

    pub fn delete(conn: &mut PgConnection, prompt: &Prompt) -> QueryResult<()> {
        crate::db::agents_changed();
        lock_siblings(conn, PromptOwner::of(prompt))?;
        diesel::delete(prompts::table.find(prompt.id)).execute(conn)?;
        let ids: Vec<Uuid> = owned_by(PromptOwner::of(prompt))
            .order((prompts::position.asc(), prompts::id.asc()))
            .select(prompts::id)
            .load(conn)?;
        Self::renumber(conn, &ids)
    }

    /// Positions 0..n in the given order, in one statement.
    fn renumber(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<()> {
        diesel::sql_query(
            "UPDATE prompts SET position = o.ord - 1 FROM unnest($1::uuid[]) WITH ORDINALITY AS o(id, ord) \
             WHERE prompts.id = o.id AND prompts.position <> o.ord - 1",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .execute(conn)?;
        Ok(())
    }
}

impl PromptVersion {
    fn insert(
        conn: &mut PgConnection,
        prompt_id: Uuid,
        version: i32,
        title: &str,
        content: &str,
    ) -> QueryResult<PromptVersion> {
        let new = NewPromptVersion {
            id: Uuid::now_v7(),
            prompt_id,
            version,
            title,
            content,
        };
        diesel::insert_into(prompt_versions::table)
            .values(&new)
            .returning(PromptVersion::as_returning())
            .get_result(conn)
    }

    pub fn find(
        conn: &mut PgConnection,
        prompt_id: Uuid,
        version: i32,
    ) -> QueryResult<PromptVersion> {
        prompt_versions::table
            .filter(prompt_versions::prompt_id.eq(prompt_id))
            .filter(prompt_versions::version.eq(version))
            .select(PromptVersion::as_select())
            .first(conn)
    }

    /// Newest first.
    pub fn list(conn: &mut PgConnection, prompt_id: Uuid) -> QueryResult<Vec<PromptVersion>> {
        prompt_versions::table
            .filter(prompt_versions::prompt_id.eq(prompt_id))
            .order(prompt_versions::version.desc())
            .select(PromptVersion::as_select())
            .load(conn)
    }
}
