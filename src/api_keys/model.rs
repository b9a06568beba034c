//! The `api_keys` table, as its owner manages it. The hash is written here and never read back:
//! no query of this file selects it (the request-time lookup by hash is `session::model`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::api_key::KeyScope;
use crate::db::schema::api_keys;

/// A key as its owner sees it listed: never the key, never its hash.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart (`cfk_1a2b3c4d`).
    pub prefix: String,
    pub scope: KeyScope,
    pub created_at: DateTime<Utc>,
    /// Updated at most every five minutes.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub scope: KeyScope,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn insert(conn: &mut PgConnection, new: &NewApiKey) -> QueryResult<ApiKey> {
        diesel::insert_into(api_keys::table)
            .values(new)
            .returning(ApiKey::as_returning())
            .get_result(conn)
    }

    /// The user's keys, newest first.
    pub fn list(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::user_id.eq(user_id))
            .order(api_keys::created_at.desc())
            .select(ApiKey::as_select())
            .load(conn)
    }

    pub fn count(conn: &mut PgConnection, user_id: Uuid) -> QueryResult<i64> {
        api_keys::table
            .filter(api_keys::user_id.eq(user_id))
            .count()
            .get_result(conn)
    }

    /// Revokes one of the user's keys; NotFound when it is not theirs (or already revoked).
    pub fn delete(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> QueryResult<()> {
        let deleted = diesel::delete(
            api_keys::table
                .filter(api_keys::id.eq(id))
                .filter(api_keys::user_id.eq(user_id)),
        )
        .execute(conn)?;
        if deleted == 0 {
            return Err(diesel::result::Error::NotFound);
        }
        Ok(())
    }
}
