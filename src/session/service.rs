//! Signing in and out: each sign-in is a `sessions` row its token names, so ending the row ends
//! the token at once, wherever it is.

use uuid::Uuid;

use crate::auth::token::TokenKeys;
use crate::db::{self, PgPool};
use crate::error::AppResult;
use crate::session::cache::SESSIONS;
use crate::session::model::Session;

/// The longest user agent kept to recognise a device by.
const MAX_USER_AGENT_CHARS: usize = 300;

/// A signed-in session: its id and the token that names it.
pub struct Began {
    pub id: Uuid,
    pub token: String,
}

/// A new session for the user.
pub async fn begin(
    pool: &PgPool,
    tokens: &TokenKeys,
    user_id: Uuid,
    epoch: i32,
    user_agent: &str,
) -> AppResult<Began> {
    let user_agent: String = user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect();
    let id = db::run(pool, move |conn| {
        Ok(Session::create(conn, user_id, &user_agent)?)
    })
    .await?;
    Ok(Began {
        id,
        token: tokens.issue(user_id, id, epoch),
    })
}

/// The user's sessions, most recently used first.
pub async fn list(pool: &PgPool, user_id: Uuid) -> AppResult<Vec<Session>> {
    db::run(pool, move |conn| Ok(Session::list(conn, user_id)?)).await
}

/// Ends one session of the user's (another user's is NotFound).
pub async fn end(pool: &PgPool, user_id: Uuid, id: Uuid) -> AppResult<()> {
    let ended = db::run(pool, move |conn| Ok(Session::end(conn, user_id, id)?)).await;
    // Whether or not the answer arrived in time, the row may be gone.
    SESSIONS.forget_session(id);
    ended
}

/// Ends every session of the user's.
pub async fn end_all(pool: &PgPool, user_id: Uuid) -> AppResult<usize> {
    let ended = db::run(pool, move |conn| Ok(Session::end_all(conn, user_id)?)).await;
    SESSIONS.forget_user(user_id);
    ended
}
