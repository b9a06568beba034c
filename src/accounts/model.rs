//! The `users` table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::users;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub display_name: String,
    pub is_admin: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub session_epoch: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the API shows of a user (never the hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub email_key: &'a str,
    pub password_hash: &'a str,
    pub display_name: &'a str,
}

impl User {
    pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<User> {
        users::table.find(id).select(User::as_select()).first(conn)
    }

    /// The account whose address has this key (`domain::email_key`).
    pub fn find_by_email_key(conn: &mut PgConnection, key: &str) -> QueryResult<Option<User>> {
        users::table
            .filter(users::email_key.eq(key))
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    /// Addresses with non-ASCII characters, whose stored key may predate `domain::email_key`.
    pub fn non_ascii_emails(conn: &mut PgConnection) -> QueryResult<Vec<(Uuid, String, String)>> {
        users::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "email ~ '[^[:ascii:]]'",
            ))
            .select((users::id, users::email, users::email_key))
            .load(conn)
    }

    pub fn set_email_key(conn: &mut PgConnection, id: Uuid, key: &str) -> QueryResult<()> {
        diesel::update(users::table.find(id))
            .set(users::email_key.eq(key))
            .execute(conn)?;
        Ok(())
    }

    pub fn insert(conn: &mut PgConnection, new: &NewUser) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(new)
            .returning(User::as_returning())
            .get_result(conn)
    }

    /// Invalidates every token issued so far; returns the new epoch.
    pub fn bump_session_epoch(conn: &mut PgConnection, id: Uuid) -> QueryResult<i32> {
        diesel::update(users::table.find(id))
            .set((
                users::session_epoch.eq(users::session_epoch + 1),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .returning(users::session_epoch)
            .get_result(conn)
    }

    /// Stores the new hash and revokes all earlier sessions in one statement; returns the new epoch.
    pub fn set_password(conn: &mut PgConnection, id: Uuid, hash: &str) -> QueryResult<i32> {
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(hash),
                users::session_epoch.eq(users::session_epoch + 1),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .returning(users::session_epoch)
            .get_result(conn)
    }
}
