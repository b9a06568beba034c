//! The `projects` table. Every lookup is scoped to its owner: someone else's project is "not found".

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agents, projects};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    #[serde(skip)]
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its agents answer from passages of its files and cite them.
    pub knowledge: bool,
}

#[derive(Insertable)]
#[diesel(table_name = projects)]
pub struct NewProject<'a> {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = projects)]
pub struct ProjectChanges {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl Project {
    /// Newest first.
    pub fn list_for_owner(conn: &mut PgConnection, owner: Uuid) -> QueryResult<Vec<Project>> {
        projects::table
            .filter(projects::owner_id.eq(owner))
            .order(projects::id.desc())
            .select(Project::as_select())
            .load(conn)
    }

    /// How many agents each of the owner's projects has, in one query.
    pub fn agent_counts(conn: &mut PgConnection, owner: Uuid) -> QueryResult<Vec<(Uuid, i64)>> {
        agents::table
            .inner_join(projects::table)
            .filter(projects::owner_id.eq(owner))
            .group_by(agents::project_id)
            .select((agents::project_id, diesel::dsl::count_star()))
            .load(conn)
    }

    /// Turns project knowledge on or off.
    pub fn set_knowledge(
        conn: &mut PgConnection,
        owner: Uuid,
        id: Uuid,
        enabled: bool,
    ) -> QueryResult<Project> {
        crate::db::agents_changed();
        diesel::update(
            projects::table
                .filter(projects::id.eq(id))
                .filter(projects::owner_id.eq(owner)),
        )
        .set((
            projects::knowledge.eq(enabled),
            projects::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Project::as_returning())
        .get_result(conn)
    }

    pub fn find_owned(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> QueryResult<Project> {
        projects::table
            .filter(projects::id.eq(id))
            .filter(projects::owner_id.eq(owner))
            .select(Project::as_select())
            .first(conn)
    }

    /// Locks the user's project row until the transaction ends (not found: someone else's).
    pub fn lock_owned(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> QueryResult<()> {
        projects::table
            .filter(projects::id.eq(id))
            .filter(projects::owner_id.eq(owner))
            .select(projects::id)
            .for_update()
            .first::<Uuid>(conn)
            .map(|_| ())
    }

    /// Serializes making a person's first project until the transaction ends: two first
    /// messages at once (two tabs, a script sending in parallel) each found no agent and made
    /// a "My chats" of their own.
    pub fn lock_first_project(conn: &mut PgConnection, owner: Uuid) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(format!("first project {owner}"))
            .execute(conn)?;
        Ok(())
    }

    pub fn insert(conn: &mut PgConnection, new: &NewProject) -> QueryResult<Project> {
        diesel::insert_into(projects::table)
            .values(new)
            .returning(Project::as_returning())
            .get_result(conn)
    }

    pub fn update_owned(
        conn: &mut PgConnection,
        owner: Uuid,
        id: Uuid,
        changes: &ProjectChanges,
    ) -> QueryResult<Project> {
        crate::db::agents_changed();
        if changes.name.is_none() && changes.description.is_none() {
            return Self::find_owned(conn, owner, id);
        }
        diesel::update(
            projects::table
                .filter(projects::id.eq(id))
                .filter(projects::owner_id.eq(owner)),
        )
        .set((changes, projects::updated_at.eq(diesel::dsl::now)))
        .returning(Project::as_returning())
        .get_result(conn)
    }

    /// Deletes the project and, by cascade, everything under it.
    pub fn delete_owned(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> QueryResult<()> {
        crate::db::agents_changed();
        let deleted = diesel::delete(
            projects::table
                .filter(projects::id.eq(id))
                .filter(projects::owner_id.eq(owner)),
        )
        .execute(conn)?;
        if deleted == 0 {
            Err(diesel::result::Error::NotFound)
        } else {
            Ok(())
        }
    }
}
