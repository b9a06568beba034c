//! The `files` table. Ownership goes through the file's project.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{files, projects};

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
