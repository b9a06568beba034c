//! Project rules: names, the default agent every project starts with, cascading deletes.

use serde::Deserialize;
use uuid::Uuid;

use crate::agents::model::{Agent, NewAgent};
use crate::agents::service::{DEFAULT_AGENT_NAME, DEFAULT_MODEL, DEFAULT_PROVIDER};
use crate::conversations::model::{Message, Scope};
use crate::db;
use crate::db::PgPool;
use crate::domain::{self, Checks};
use crate::error::{AppError, AppResult};
use crate::files::model::StoredFile;
use crate::files::store::Store;
use crate::generation::Generations;
use crate::projects::model::{NewProject, Project, ProjectChanges};
use crate::session::CurrentUser;

/// A project as the form or the JSON API sends it; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl TryFrom<ProjectInput> for ProjectChanges {
    type Error = AppError;

    /// Every field's message at once, or changes that obey the rules.
    fn try_from(input: ProjectInput) -> AppResult<ProjectChanges> {
        let mut checks = Checks::new();
        let name = input.name.as_deref().map(|n| checks.check(domain::name(n)));
        let description = input
            .description
            .as_deref()
            .map(|d| checks.check(domain::description(d)));
        checks.finish()?;
        Ok(ProjectChanges {
            name: name.flatten(),
            description: description.flatten(),
        })
    }
}

pub struct ProjectSummary {
    pub project: Project,
    pub agent_count: i64,
}

pub async fn list(pool: &PgPool, user: &CurrentUser) -> AppResult<Vec<ProjectSummary>> {
    let owner = user.id;
    db::run(pool, move |conn| {
        let projects = Project::list_for_owner(conn, owner)?;
        let counts = Project::agent_counts(conn, owner)?;
        Ok(projects
            .into_iter()
            .map(|project| {
                let agent_count = counts
                    .iter()
                    .find(|(id, _)| *id == project.id)
                    .map_or(0, |(_, n)| *n);
                ProjectSummary {
                    project,
                    agent_count,
                }
            })
            .collect())
    })
    .await
}

/// Creates the project and its default agent together.
pub async fn create(pool: &PgPool, user: &CurrentUser, input: ProjectInput) -> AppResult<Project> {
    // A new project needs a name: a missing one is an empty one.
    let mut changes = ProjectChanges::try_from(ProjectInput {
        name: Some(input.name.unwrap_or_default()),
        ..input
    })?;
    let name = changes.name.take().unwrap_or_default();
    let description = changes.description.take().unwrap_or_default();
    let owner = user.id;
    db::transaction(pool, move |conn| {
        create_in(conn, owner, &name, &description)
    })
    .await
}

/// Inserts a project with its default agent on `conn` (inside the caller's transaction).
pub fn create_in(
    conn: &mut diesel::PgConnection,
    owner: Uuid,
    name: &str,
    description: &str,
) -> AppResult<Project> {
    let project = Project::insert(
        conn,
        &NewProject {
            id: Uuid::now_v7(),
            owner_id: owner,
            name,
            description,
        },
    )?;
    Agent::insert(
        conn,
        &NewAgent {
            id: Uuid::now_v7(),
            project_id: project.id,
            name: DEFAULT_AGENT_NAME,
            description: "Created with the project.",
            provider: DEFAULT_PROVIDER,
            model: DEFAULT_MODEL,
            temperature: None,
            max_output_tokens: None,
            is_default: true,
        },
    )?;
    Ok(project)
}

/// Project knowledge on or off: its agents answer from its files' passages and cite them.
pub async fn set_knowledge(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    enabled: bool,
) -> AppResult<Project> {
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(Project::set_knowledge(conn, owner, id, enabled)?)
    })
    .await
}

pub async fn get(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<Project> {
    let owner = user.id;
    db::run(pool, move |conn| Ok(Project::find_owned(conn, owner, id)?)).await
}

pub async fn update(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    input: ProjectInput,
) -> AppResult<Project> {
    let changes = ProjectChanges::try_from(input)?;
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(Project::update_owned(conn, owner, id, &changes)?)
    })
    .await
}

pub async fn delete(
    pool: &PgPool,
    generations: &Generations,
    store: &Store,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<()> {
    let owner = user.id;
    let removed = db::transaction(pool, move |conn| {
        // Owner first (someone else's project is not found and nothing is touched), then its
        // answers still streaming (in id order, before the cascade meets them), then its
        // files' rows, returning exactly the bytes they named, then the project.
        // The row stays locked to the end, so a vector store claimed for the project meanwhile
        // is either read here (and deleted with it) or finds no project (and is deleted by
        // its sync): never left behind.
        Project::lock_owned(conn, owner, id)?;
        Message::lock_streaming_in(conn, Scope::Project(id))?;
        let vector_store = StoredFile::vector_store_of(conn, id)?;
        let removed = StoredFile::delete_for_project(conn, id)?;
        Project::delete_owned(conn, owner, id)?;
        Ok((removed, vector_store))
    })
    .await?;
    let (removed, vector_store) = removed;
    // Its answers' rows are gone with it; their tasks stop rather than bill for nothing.
    generations.stop_project(id);
    // Its files go too: the providers' copies and the bytes no other project has.
    crate::files::knowledge::forget_vector_store(generations.router(), vector_store).await;
    crate::files::service::forget_all(pool, store, generations.router(), removed).await;
    Ok(())
}
