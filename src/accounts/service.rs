//! Account rules: who may register, how sign-in is checked, how sessions are revoked.

use std::net::IpAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::accounts::model::{NewUser, User};
use crate::auth::password::{self, Password};
use crate::auth::rate_limit::{LoginLimiter, RegistrationLimiter};
use crate::db;
use crate::db::PgPool;
use crate::domain::{self, Checks, Email};
use crate::error::{AppError, AppResult};
use crate::session::CurrentUser;
use crate::session::cache::SESSIONS;
use crate::session::model::Session;
use crate::settings::AuthSettings;

/// A sign-up, from the form or the JSON API.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Registration {
    pub email: String,
    pub password: String,
    /// Also read as `name`.
    #[serde(default, alias = "name")]
    pub display_name: String,
}

/// A sign-in: JSON `{"email"|"username", "password"}`, the form, or an OAuth2-style form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    #[serde(alias = "username")]
    pub email: String,
    pub password: String,
}

/// A password change, from the form or the JSON API.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

pub async fn register(
    pool: &PgPool,
    settings: &AuthSettings,
    limiter: &RegistrationLimiter,
    ip: Option<IpAddr>,
    registration: Registration,
) -> AppResult<User> {
    let Registration {
        email,
        password,
        display_name,
    } = registration;
    if !settings.allow_registration {
        return Err(AppError::Forbidden(
            "Registration is closed on this server.".into(),
        ));
    }
    limiter.check(ip)?;
    let mut checks = Checks::new();
    let email = checks.check(Email::parse(&email));
    let password = checks.check(Password::parse("password", password));
    let display_name = checks.check(domain::optional_text(
        "display_name",
        "Display name",
        &display_name,
        100,
        false,
    ));
    let ((email, password), display_name) =
        checks.finish_with(email.zip(password).zip(display_name))?;
    let hash = password::hash(password, settings.bcrypt_cost).await?;
    let result = db::run(pool, move |conn| {
        let new = NewUser {
            id: Uuid::now_v7(),
            email: &email.address,
            email_key: &email.key,
            password_hash: &hash,
            display_name: &display_name,
        };
        Ok(User::insert(conn, &new)?)
    })
    .await;
    match result {
        Err(AppError::Conflict(_)) => Err(AppError::Conflict(
            "An account with this email already exists.".into(),
        )),
        other => other,
    }
}

/// The same message for an unknown email and a wrong password, so nobody can probe for accounts.
pub async fn authenticate(
    pool: &PgPool,
    limiter: &LoginLimiter,
    dummy_password_hash: &str,
    ip: Option<IpAddr>,
    credentials: Credentials,
) -> AppResult<User> {
    let Credentials { email, password } = credentials;
    let delay = limiter.check(ip, &email)?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Anything that is not an email cannot be an account; it still pays for a bcrypt check
    // below, so it takes as long as a wrong password.
    let user = match Email::parse(&email) {
        Ok(Email { key, .. }) => {
            db::run(pool, move |conn| Ok(User::find_by_email_key(conn, &key)?)).await?
        }
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = password::verify(password, hash, dummy_password_hash).await?;
    match user {
        Some(user) if ok && user.disabled_at.is_none() => Ok(user),
        _ => Err(AppError::Unauthorized("Wrong email or password.".into())),
    }
}

pub async fn change_password(
    pool: &PgPool,
    settings: &AuthSettings,
    dummy_password_hash: &str,
    user: &CurrentUser,
    change: PasswordChange,
) -> AppResult<i32> {
    let PasswordChange {
        current_password: current,
        new_password: new,
    } = change;
    // A key that could change the password could lock its owner out.
    user.require_session()?;
    let new = Password::parse("new_password", new)?;
    let id = user.id;
    let stored = db::run(pool, move |conn| Ok(User::find(conn, id)?)).await?;
    if !password::verify(current, Some(stored.password_hash), dummy_password_hash).await? {
        return Err(AppError::invalid(
            "current_password",
            "That is not your current password.",
        ));
    }
    let hash = password::hash(new, settings.bcrypt_cost).await?;
    // Every session ends with the old password; the caller begins a new one for this browser.
    let epoch = db::transaction(pool, move |conn| {
        let epoch = User::set_password(conn, id, &hash)?;
        Session::end_all(conn, id)?;
        Ok(epoch)
    })
    .await;
    // Whether or not the answer arrived in time, the change may have committed.
    SESSIONS.forget_user(id);
    epoch
}

/// The signed-in user's own account.
pub async fn profile(pool: &PgPool, user: &CurrentUser) -> AppResult<User> {
    let id = user.id;
    db::run(pool, move |conn| Ok(User::find(conn, id)?)).await
}

pub async fn log_out_everywhere(pool: &PgPool, user: &CurrentUser) -> AppResult<i32> {
    user.require_session()?;
    let id = user.id;
    let epoch = db::transaction(pool, move |conn| {
        let epoch = User::bump_session_epoch(conn, id)?;
        Session::end_all(conn, id)?;
        Ok(epoch)
    })
    .await;
    // Whether or not the answer arrived in time, the change may have committed.
    SESSIONS.forget_user(id);
    epoch
}

/// Gives every stored address with non-ASCII characters the key `domain::email_key` computes
/// (the migration that added keys could only use the database's `lower()`). Run at start-up;
/// returns how many changed. Two accounts that turn out to be one address keep their old keys
/// and are named in the log for the operator.
pub async fn rekey_stored_emails(pool: &PgPool) -> AppResult<usize> {
    db::run(pool, |conn| {
        let mut changed = 0;
        for (id, email, stored) in User::non_ascii_emails(conn)? {
            let key = domain::email_key(&email);
            if key == stored {
                continue;
            }
            match User::set_email_key(conn, id, &key) {
                Ok(()) => changed += 1,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => tracing::warn!(%id, "another account has the same address; left as it was"),
                Err(other) => return Err(other.into()),
            }
        }
        Ok(changed)
    })
    .await
}
