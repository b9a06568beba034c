//! Rules for API keys: who may manage them (a signed-in session, never a key), what a name and
//! an expiry may be, and how many one person may hold.

use serde::Deserialize;
use uuid::Uuid;

use crate::api_keys::model::{ApiKey, NewApiKey};
use crate::auth::api_key::{self, KeyScope};
use crate::db::{self, PgPool};
use crate::domain::{self, Checks, NumberInput};
use crate::error::{AppError, AppResult, FieldError};
use crate::session::CurrentUser;
use crate::settings::Secret;

/// The most keys one person may hold: enough for every script, few enough to review.
pub const MAX_KEYS_PER_USER: i64 = 50;

/// The longest expiry offered: ten years.
const MAX_EXPIRY_DAYS: f64 = 3650.0;

/// A new key, from the account page's form or `POST /api/keys`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// What the key is for ("backup script").
    pub name: String,
    /// Days until the key stops working; absent, `null` or an empty box: never.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub expires_in_days: Option<NumberInput>,
    /// `full` (the default) or `read_only`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A key just made: its one and only showing, with what the list will show of it.
pub struct CreatedKey {
    pub key: Secret,
    pub metadata: ApiKey,
}

struct CheckedKey {
    name: String,
    scope: KeyScope,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TryFrom<KeyInput> for CheckedKey {
    type Error = AppError;

    fn try_from(input: KeyInput) -> AppResult<CheckedKey> {
        let mut checks = Checks::new();
        let name = checks.check(domain::name(&input.name));
        let expires_at = checks.check(expiry(input.expires_in_days.as_ref()));
        let scope = checks.check(scope(input.scope.as_deref()));
        let ((name, expires_at), scope) = checks.finish_with(name.zip(expires_at).zip(scope))?;
        Ok(CheckedKey {
            name,
            scope,
            expires_at,
        })
    }
}

fn expiry(days: Option<&NumberInput>) -> Result<Option<chrono::DateTime<chrono::Utc>>, FieldError> {
    let Some(days) = days
        .map(|d| d.parse("expires_in_days", "Expiry"))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    if days.fract() != 0.0 || !(1.0..=MAX_EXPIRY_DAYS).contains(&days) {
        return Err(FieldError {
            field: "expires_in_days",
            message: format!(
                "Expiry must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, or empty for never."
            ),
        });
    }
    Ok(Some(
        chrono::Utc::now() + chrono::Duration::days(days as i64),
    ))
}

fn scope(text: Option<&str>) -> Result<KeyScope, FieldError> {
    match text.filter(|t| !t.trim().is_empty()) {
        None => Ok(KeyScope::Full),
        Some(text) => KeyScope::parse(text).ok_or_else(|| FieldError {
            field: "scope",
            message: "Scope must be full or read_only.".into(),
        }),
    }
}

/// Makes a key for the signed-in user. Only a session may: a leaked key cannot mint more.
pub async fn create(pool: &PgPool, user: &CurrentUser, input: KeyInput) -> AppResult<CreatedKey> {
    user.require_session()?;
    let checked = CheckedKey::try_from(input)?;
    let made = api_key::generate();
    let user_id = user.id;
    let metadata = db::transaction(pool, move |conn| {
        if ApiKey::count(conn, user_id)? >= MAX_KEYS_PER_USER {
            return Err(AppError::Conflict(format!(
                "You have {MAX_KEYS_PER_USER} keys, the most one person may hold; revoke one first."
            )));
        }
        Ok(ApiKey::insert(
            conn,
            &NewApiKey {
                id: Uuid::now_v7(),
                user_id,
                name: &checked.name,
                prefix: &made.prefix,
                key_hash: &made.hash,
                scope: checked.scope,
                expires_at: checked.expires_at,
            },
        )?)
    })
    .await?;
    Ok(CreatedKey {
        key: made.key,
        metadata,
    })
}

/// The user's keys, newest first. Listing needs a session too: a key has no business learning
/// which other keys exist.
pub async fn list(pool: &PgPool, user: &CurrentUser) -> AppResult<Vec<ApiKey>> {
    user.require_session()?;
    let user_id = user.id;
    db::run(pool, move |conn| Ok(ApiKey::list(conn, user_id)?)).await
}

/// Revokes one of the user's keys (another user's is NotFound); it stops working at once.
pub async fn revoke(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<()> {
    user.require_session()?;
    let user_id = user.id;
    db::run(pool, move |conn| Ok(ApiKey::delete(conn, user_id, id)?)).await
}
