//! The `sessions` table, and what a request needs to know who is asking: the part of a `users`
//! row (never the password hash), and the part of an `api_keys` row a key is checked with (the
//! keys themselves are managed in `api_keys`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::api_key::KeyScope;
use crate::db::schema::{api_keys, sessions, users};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub session_epoch: i32,
}

/// One signed-in browser or client.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub user_agent: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
}

/// What a request signed with an API key learns of the key.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyGrant {
    pub id: Uuid,
    pub scope: KeyScope,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl SessionUser {
    /// The owner of a live (unexpired) key, with the key: one query per request. A revoked key
    /// has no row, so it is refused at once.
    pub fn find_by_api_key(
        conn: &mut PgConnection,
        key_hash: &[u8],
    ) -> QueryResult<(SessionUser, KeyGrant)> {
        api_keys::table
            .inner_join(users::table)
            .filter(api_keys::key_hash.eq(key_hash))
            .filter(
                api_keys::expires_at
                    .is_null()
                    .or(api_keys::expires_at.gt(diesel::dsl::now)),
            )
            .select((SessionUser::as_select(), KeyGrant::as_select()))
            .first(conn)
    }

    /// The user of a live session, with the session: one query per request.
    pub fn find_signed_in(
        conn: &mut PgConnection,
        user_id: Uuid,
        session_id: Uuid,
    ) -> QueryResult<(SessionUser, Session)> {
        sessions::table
            .inner_join(users::table)
            .filter(sessions::id.eq(session_id))
            .filter(sessions::user_id.eq(user_id))
            .select((SessionUser::as_select(), Session::as_select()))
            .first(conn)
    }
}

impl KeyGrant {
    pub fn touch(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
        diesel::update(api_keys::table.find(id))
            .set(api_keys::last_used_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(())
    }
}

impl Session {
    pub fn create(conn: &mut PgConnection, user_id: Uuid, user_agent: &str) -> QueryResult<Uuid> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(Uuid::now_v7()),
                sessions::user_id.eq(user_id),
                sessions::user_agent.eq(user_agent),
            ))
            .returning(sessions::id)
            .get_result(conn)
    }

    pub fn touch(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
        diesel::update(sessions::table.find(id))
            .set(sessions::last_used_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(())
    }

    /// The user's sessions, most recently used first.
    pub fn list(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<Vec<Session>> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .order(sessions::last_used_at.desc())
            .select(Session::as_select())
            .load(conn)
    }

    /// Ends one of the user's sessions; NotFound when it is not theirs (or already ended).
    pub fn end(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> QueryResult<()> {
        let ended = diesel::delete(
            sessions::table
                .filter(sessions::id.eq(id))
                .filter(sessions::user_id.eq(user_id)),
        )
        .execute(conn)?;
        if ended == 0 {
            return Err(diesel::result::Error::NotFound);
        }
        Ok(())
    }

    pub fn end_all(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
    }
}
