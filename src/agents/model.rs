//! The `agents` table. Ownership goes through the agent's project.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agents, projects};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = agents)]
pub struct Agent {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    pub provider: String,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_output_tokens: Option<i32>,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = agents)]
pub struct NewAgent<'a> {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub temperature: Option<f32>,
    pub max_output_tokens: Option<i32>,
    pub is_default: bool,
}

/// `None` leaves a column alone; `Some(None)` clears a nullable one.
#[derive(AsChangeset, Default, Debug)]
#[diesel(table_name = agents)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub temperature: Option<Option<f32>>,
    pub max_output_tokens: Option<Option<i32>>,
}

/// What an agent's pages show of its project: a link back.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = projects)]
pub struct ProjectRef {
    pub id: Uuid,
    pub name: String,
}

impl Agent {
    pub fn list_for_project(conn: &mut PgConnection, project_id: Uuid) -> QueryResult<Vec<Agent>> {
        agents::table
            .filter(agents::project_id.eq(project_id))
            .order(agents::id.asc())
            .select(Agent::as_select())
            .load(conn)
    }

    /// Every agent of the owner with its project's name: projects oldest first, each project's
    /// default agent first.
    pub fn list_for_owner(
        conn: &mut PgConnection,
        owner: Uuid,
    ) -> QueryResult<Vec<(Agent, String)>> {
        agents::table
            .inner_join(projects::table)
            .filter(projects::owner_id.eq(owner))
            .order((
                projects::id.asc(),
                agents::is_default.desc(),
                agents::id.asc(),
            ))
            .select((Agent::as_select(), projects::name))
            .load(conn)
    }

    /// The project agents are listed in or added to, if the user owns it (NotFound otherwise).
    pub fn project_of(
        conn: &mut PgConnection,
        owner: Uuid,
        project_id: Uuid,
    ) -> QueryResult<ProjectRef> {
        projects::table
            .filter(projects::id.eq(project_id))
            .filter(projects::owner_id.eq(owner))
            .select(ProjectRef::as_select())
            .first(conn)
    }

    pub fn find_owned(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> QueryResult<Agent> {
        agents::table
            .inner_join(projects::table)
            .filter(agents::id.eq(id))
            .filter(projects::owner_id.eq(owner))
            .select(Agent::as_select())
            .first(conn)
    }

    /// [`Agent::find_owned`], with its revision (see the `agent_revisions` migration) read in
    /// the same statement, before anything else is read about it.
    pub fn find_owned_revised(
        conn: &mut PgConnection,
        owner: Uuid,
        id: Uuid,
    ) -> QueryResult<(Agent, i64)> {
        agents::table
            .inner_join(projects::table)
            .filter(agents::id.eq(id))
            .filter(projects::owner_id.eq(owner))
            .select((Agent::as_select(), agents::revision))
            .first(conn)
    }

    pub fn find_default(conn: &mut PgConnection, project_id: Uuid) -> QueryResult<Option<Agent>> {
        agents::table
            .filter(agents::project_id.eq(project_id))
            .order((agents::is_default.desc(), agents::id.asc()))
            .select(Agent::as_select())
            .first(conn)
            .optional()
    }

    pub fn insert(conn: &mut PgConnection, new: &NewAgent) -> QueryResult<Agent> {
        diesel::insert_into(agents::table)
            .values(new)
            .returning(Agent::as_returning())
            .get_result(conn)
    }

    pub fn update(conn: &mut PgConnection, id: Uuid, changes: &AgentChanges) -> QueryResult<Agent> {
        crate::db::agents_changed();
        diesel::update(agents::table.find(id))
            .set((changes, agents::updated_at.eq(diesel::dsl::now)))
            .returning(Agent::as_returning())
            .get_result(conn)
    }

    /// Holds the project's agent list until the transaction ends, so changes of which agent is
    /// the default happen one at a time (the database allows one default per project).
    pub fn lock_project_agents(conn: &mut PgConnection, project_id: Uuid) -> QueryResult<()> {
        projects::table
            .find(project_id)
            .select(projects::id)
            .for_update()
            .first::<Uuid>(conn)?;
        Ok(())
    }

    /// Makes this the project's default agent (and no other). Call under
    /// [`Agent::lock_project_agents`]: the old default is cleared before the new one is set, as
    /// the unique index checks each row.
    pub fn make_default(conn: &mut PgConnection, agent: &Agent) -> QueryResult<()> {
        crate::db::agents_changed();
        diesel::update(
            agents::table
                .filter(agents::project_id.eq(agent.project_id))
                .filter(agents::is_default)
                .filter(agents::id.ne(agent.id)),
        )
        .set(agents::is_default.eq(false))
        .execute(conn)?;
        diesel::update(agents::table.find(agent.id))
            .set(agents::is_default.eq(true))
            .execute(conn)?;
        Ok(())
    }

    /// Deletes the agent; if it was the default, the oldest remaining agent takes its place.
    pub fn delete(conn: &mut PgConnection, agent: &Agent) -> QueryResult<()> {
        crate::db::agents_changed();
        diesel::delete(agents::table.find(agent.id)).execute(conn)?;
        if agent.is_default
            && let Some(next) = Self::find_default(conn, agent.project_id)?
        {
            Self::make_default(conn, &next)?;
        }
        Ok(())
    }
}
