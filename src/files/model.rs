//! The `files` table. Ownership goes through the file's project.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agents, file_chunks, files, projects};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = files)]
pub struct StoredFile {
    pub id: Uuid,
    pub project_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub provider_file_id: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// The provider that holds `provider_file_id`.
    pub provider: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = files)]
pub struct NewFile<'a> {
    pub id: Uuid,
    pub project_id: Uuid,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub bytes: i64,
    pub sha256: &'a str,
}

impl StoredFile {
    /// Whether `owner` has the project (files are added to it, listed under it).
    pub fn owns_project(
        conn: &mut PgConnection,
        owner: Uuid,
        project_id: Uuid,
    ) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            projects::table
                .filter(projects::id.eq(project_id))
                .filter(projects::owner_id.eq(owner)),
        ))
        .get_result(conn)
    }

    /// The provider of the project's default agent: where its files go.
    pub fn default_provider_of(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<Option<String>> {
        agents::table
            .filter(agents::project_id.eq(project_id))
            .order((agents::is_default.desc(), agents::id.asc()))
            .select(agents::provider)
            .first(conn)
            .optional()
    }

    /// Records where the provider keeps the file (or that it could not), and its state.
    pub fn set_remote(
        conn: &mut PgConnection,
        id: Uuid,
        provider: Option<&str>,
        provider_file_id: Option<&str>,
        status: &str,
    ) -> QueryResult<StoredFile> {
        diesel::update(files::table.find(id))
            .set((
                files::provider.eq(provider),
                files::provider_file_id.eq(provider_file_id),
                files::status.eq(status),
            ))
            .returning(StoredFile::as_returning())
            .get_result(conn)
    }

    /// Marks the file (its provider's copy could not be deleted).
    pub fn set_status(conn: &mut PgConnection, id: Uuid, status: &str) -> QueryResult<()> {
        diesel::update(files::table.find(id))
            .set(files::status.eq(status))
            .execute(conn)?;
        Ok(())
    }

    /// Whether the project answers from its files.
    pub fn knowledge_of(conn: &mut PgConnection, project_id: Uuid) -> QueryResult<bool> {
        projects::table
            .find(project_id)
            .select(projects::knowledge)
            .first(conn)
    }

    /// The project's files, newest first.
    pub fn list_for_project(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<Vec<StoredFile>> {
        files::table
            .filter(files::project_id.eq(project_id))
            .order(files::id.desc())
            .select(StoredFile::as_select())
            .load(conn)
    }

    pub fn find_owned(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> QueryResult<StoredFile> {
        files::table
            .inner_join(projects::table)
            .filter(files::id.eq(id))
            .filter(projects::owner_id.eq(owner))
            .select(StoredFile::as_select())
            .first(conn)
    }

    /// Those of `ids` that are the owner's files, in one query (in no particular order).
    pub fn find_many_owned(
        conn: &mut PgConnection,
        owner: Uuid,
        ids: &[Uuid],
    ) -> QueryResult<Vec<StoredFile>> {
        files::table
            .inner_join(projects::table)
            .filter(files::id.eq_any(ids))
            .filter(projects::owner_id.eq(owner))
            .select(StoredFile::as_select())
            .load(conn)
    }

    /// Inserts the file, or returns `None` when the project already has these bytes.
    pub fn insert(conn: &mut PgConnection, new: &NewFile) -> QueryResult<Option<StoredFile>> {
        diesel::insert_into(files::table)
            .values(new)
            .on_conflict((files::project_id, files::sha256))
            .do_nothing()
            .returning(StoredFile::as_returning())
            .get_result(conn)
            .optional()
    }

    /// The project's file with these bytes.
    pub fn find_by_sha(
        conn: &mut PgConnection,
        project_id: Uuid,
        sha256: &str,
    ) -> QueryResult<StoredFile> {
        files::table
            .filter(files::project_id.eq(project_id))
            .filter(files::sha256.eq(sha256))
            .select(StoredFile::as_select())
            .first(conn)
    }

    pub fn delete(conn: &mut PgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::delete(files::table.find(id)).execute(conn)
    }

    /// Serializes everything that places, records or removes these bytes, until the transaction
    /// ends: an upload between placing the bytes and recording its row, and a delete between
    /// finding the bytes unused and removing them, never interleave.
    pub fn lock_bytes(conn: &mut PgConnection, sha256: &str) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(format!("file bytes {sha256}"))
            .execute(conn)?;
        Ok(())
    }

    /// Deletes a project's file rows, returning what they named: the bytes' hash, and the
    /// provider and id of a provider's copy (their passages go too).
    #[allow(clippy::type_complexity)]
    pub fn delete_for_project(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<Vec<(String, Option<String>, Option<String>)>> {
        diesel::delete(files::table.filter(files::project_id.eq(project_id)))
            .returning((files::sha256, files::provider, files::provider_file_id))
            .get_results(conn)
    }

    /// Whether any row still names these bytes (so they must be kept).
    pub fn sha_in_use(conn: &mut PgConnection, sha256: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            files::table.filter(files::sha256.eq(sha256)),
        ))
        .get_result(conn)
    }

    /// The content hashes of a project's files (to remove their bytes after the project goes).
    pub fn shas_of_project(conn: &mut PgConnection, project_id: Uuid) -> QueryResult<Vec<String>> {
        files::table
            .filter(files::project_id.eq(project_id))
            .select(files::sha256)
            .load(conn)
    }
}

#[derive(Insertable)]
#[diesel(table_name = file_chunks)]
pub struct NewPassage<'a> {
    pub file_id: Uuid,
    pub project_id: Uuid,
    pub position: i32,
    pub text: &'a str,
}

/// A passage of a project's file found for a question.
#[derive(Debug, Clone, QueryableByName, Serialize)]
pub struct Passage {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub file_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub filename: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub text: String,
}

impl Passage {
    pub fn insert_all(conn: &mut PgConnection, passages: &[NewPassage]) -> QueryResult<usize> {
        // PostgreSQL takes at most 65,535 parameters in a statement: 4 per row.
        let mut written = 0;
        for batch in passages.chunks(10_000) {
            written += diesel::insert_into(file_chunks::table)
                .values(batch)
                .execute(conn)?;
        }
        Ok(written)
    }

    /// The best `limit` passages of the project's files for `words` (any of them, ranked by
    /// full-text search), if the project answers from its files at all.
    pub fn search(
        conn: &mut PgConnection,
        project_id: Uuid,
        words: &[String],
        limit: i64,
    ) -> QueryResult<Vec<Passage>> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        // The words are letters and digits only (see `chat::service`), so joining them with `|`
        // makes a valid query that matches passages with any of them.
        let query = words.join(" | ");
        diesel::sql_query(
            "SELECT c.file_id, f.filename, c.text \
             FROM file_chunks c \
             JOIN files f ON f.id = c.file_id \
             JOIN projects p ON p.id = c.project_id AND p.knowledge \
             WHERE c.project_id = $1 AND c.tsv @@ to_tsquery('english', $2) \
             ORDER BY ts_rank(c.tsv, to_tsquery('english', $2)) DESC, c.id \
             LIMIT $3",
        )
        .bind::<diesel::sql_types::Uuid, _>(project_id)
        .bind::<diesel::sql_types::Text, _>(query)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)
    }
}
