//! The part of a `users` row a request needs to know who is asking — never the password hash.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::users;

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

impl SessionUser {
    pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<SessionUser> {
        users::table
            .find(id)
            .select(SessionUser::as_select())
            .first(conn)
    }
}
