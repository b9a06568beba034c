//! The `files` table. Ownership goes through the file's project.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agents, file_chunks, files, projects};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, utoipa::ToSchema)]
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
    /// In the project's vector store at its provider: `indexing`, `indexed`, `index_failed`
    /// or `index_waiting` (for the provider to answer again; tried again on its own), with
    /// the reason in `index_error`; null when it is in none.
    pub index_status: Option<String>,
    pub index_error: Option<String>,
    /// Passages confab's own search has of it (0: no text it reads, or too big to search).
    pub passages: i32,
}

/// A file being indexed in its project's vector store, with what polling it needs.
#[derive(Debug, Clone, Queryable)]
pub struct Indexing {
    pub file_id: Uuid,
    pub provider: String,
    pub vector_store_id: String,
    pub provider_file_id: String,
}

/// What deciding on a project's vector store needs: whether knowledge is on, the provider of
/// its default agent, and its vector store (provider, id) if it has one.
pub struct KnowledgeSetup {
    pub knowledge: bool,
    pub default_provider: Option<String>,
    pub vector_store: Option<(String, String)>,
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
    /// The provider that got the bytes as they came in, its id for them, and `status`.
    pub provider: Option<&'a str>,
    pub provider_file_id: Option<&'a str>,
    pub status: &'a str,
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
    ) -> QueryResult<Option<StoredFile>> {
        diesel::update(files::table.find(id))
            .set((
                files::provider.eq(provider),
                files::provider_file_id.eq(provider_file_id),
                files::status.eq(status),
            ))
            .returning(StoredFile::as_returning())
            .get_result(conn)
            .optional()
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

    pub fn knowledge_setup(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<KnowledgeSetup> {
        let (knowledge, provider, id): (bool, Option<String>, Option<String>) = projects::table
            .find(project_id)
            .select((
                projects::knowledge,
                projects::vector_store_provider,
                projects::vector_store_id,
            ))
            .first(conn)?;
        Ok(KnowledgeSetup {
            knowledge,
            default_provider: StoredFile::default_provider_of(conn, project_id)?,
            vector_store: provider.zip(id),
        })
    }

    /// Records the project's new vector store, unless it got one meanwhile: `false` then (and
    /// the caller deletes the one it made).
    pub fn claim_vector_store(
        conn: &mut PgConnection,
        project_id: Uuid,
        provider: &str,
        id: &str,
    ) -> QueryResult<bool> {
        // The project row changes, so do its agents' revisions (`chat::cards`).
        crate::db::agents_changed();
        let claimed = diesel::update(
            projects::table
                .find(project_id)
                .filter(projects::vector_store_id.is_null()),
        )
        .set((
            projects::vector_store_provider.eq(provider),
            projects::vector_store_id.eq(id),
        ))
        .execute(conn)?;
        Ok(claimed == 1)
    }

    /// How the project's answers use its files: `None` when knowledge is off; else the vector
    /// store (provider, id) its provider searches, once at least one file is indexed in it. One
    /// query, made for every message.
    #[allow(clippy::type_complexity)]
    pub fn knowledge_for_answers(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<Option<Option<(String, String)>>> {
        let (knowledge, provider, id, indexed): (bool, Option<String>, Option<String>, bool) =
            projects::table
                .find(project_id)
                .select((
                    projects::knowledge,
                    projects::vector_store_provider,
                    projects::vector_store_id,
                    diesel::dsl::exists(
                        files::table
                            .filter(files::project_id.eq(project_id))
                            .filter(files::index_status.eq("indexed")),
                    ),
                ))
                .first(conn)?;
        Ok(knowledge.then(|| provider.zip(id).filter(|_| indexed)))
    }

    /// The project's vector store (provider, id), if it has one.
    pub fn vector_store_of(
        conn: &mut PgConnection,
        project_id: Uuid,
    ) -> QueryResult<Option<(String, String)>> {
        let (provider, id): (Option<String>, Option<String>) = projects::table
            .find(project_id)
            .select((projects::vector_store_provider, projects::vector_store_id))
            .first(conn)?;
        Ok(provider.zip(id))
    }

    /// Projects with knowledge on whose files wait for their provider to answer again.
    pub fn projects_waiting(conn: &mut PgConnection) -> QueryResult<Vec<Uuid>> {
        files::table
            .inner_join(projects::table)
            .filter(files::index_status.eq("index_waiting"))
            .filter(projects::knowledge.eq(true))
            .select(files::project_id)
            .distinct()
            .load(conn)
    }

    /// The project's files not in its vector store yet, or waiting for its provider to answer
    /// again (failed ones too, when `retry`).
    pub fn not_indexed(
        conn: &mut PgConnection,
        project_id: Uuid,
        retry: bool,
    ) -> QueryResult<Vec<StoredFile>> {
        let mut query = files::table
            .filter(files::project_id.eq(project_id))
            .select(StoredFile::as_select())
            .order(files::id.asc())
            .into_boxed();
        query = if retry {
            query.filter(
                files::index_status
                    .is_null()
                    .or(files::index_status.eq_any(["index_waiting", "index_failed"])),
            )
        } else {
            query.filter(
                files::index_status
                    .is_null()
                    .or(files::index_status.eq("index_waiting")),
            )
        };
        query.load(conn)
    }

    /// Records how the file stands in its project's vector store.
    pub fn set_index(
        conn: &mut PgConnection,
        id: Uuid,
        status: &str,
        error: Option<&str>,
    ) -> QueryResult<()> {
        diesel::update(files::table.find(id))
            .set((files::index_status.eq(status), files::index_error.eq(error)))
            .execute(conn)?;
        Ok(())
    }

    /// Files being indexed in their project's vector store, oldest first, at most `limit`.
    pub fn being_indexed(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Indexing>> {
        files::table
            .inner_join(projects::table)
            .filter(files::index_status.eq("indexing"))
            .filter(projects::vector_store_id.is_not_null())
            .filter(files::provider_file_id.is_not_null())
            .select((
                files::id,
                projects::vector_store_provider.assume_not_null(),
                projects::vector_store_id.assume_not_null(),
                files::provider_file_id.assume_not_null(),
            ))
            .order(files::id.asc())
            .limit(limit)
            .load(conn)
    }

    /// How many passages confab's own search has of the file.
    pub fn set_passages(conn: &mut PgConnection, id: Uuid, passages: i32) -> QueryResult<()> {
        diesel::update(files::table.find(id))
            .set(files::passages.eq(passages))
            .execute(conn)?;
        Ok(())
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
    /// full-text search); asked only when the project answers from its files.
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
