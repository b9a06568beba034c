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
#[derive(Debug, Serialize)]
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
    pub password_hash: &'a str,
    pub display_name: &'a str,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

impl User {
    pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<User> {
        users::table.find(id).select(User::as_select()).first(conn)
    }

    /// Emails are unique regardless of case.
    pub fn find_by_email(conn: &mut PgConnection, email: &str) -> QueryResult<Option<User>> {
        users::table
            .filter(lower(users::email).eq(email.to_lowercase()))
            .select(User::as_select())
            .first(conn)
            .optional()
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
