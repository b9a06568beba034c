//! Account rules: who may register, how sign-in is checked, how sessions are revoked.

use std::net::IpAddr;

use uuid::Uuid;

use crate::accounts::model::{NewUser, User};
use crate::auth::password::{self, Password};
use crate::auth::rate_limit::LoginLimiter;
use crate::db;
use crate::db::PgPool;
use crate::error::{AppError, AppResult, FieldError};
use crate::session::CurrentUser;
use crate::settings::AuthSettings;

/// An email address of plausible shape: one `@`, a dot in the domain, no spaces.
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> AppResult<Email> {
        let email = raw.trim();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        if valid {
            Ok(Email(email.to_string()))
        } else {
            Err(AppError::invalid(
                "email",
                "Enter an email address like name@example.com.",
            ))
        }
    }
}

/// Collects every field's error rather than stopping at the first.
fn all_valid<A, B>(a: AppResult<A>, b: AppResult<B>) -> AppResult<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => {
            let errors: Vec<FieldError> = [a.err(), b.err()]
                .into_iter()
                .flatten()
                .flat_map(|e| match e {
                    AppError::Validation(errors) => errors,
                    other => vec![FieldError {
                        field: "form",
                        message: other.to_string(),
                    }],
                })
                .collect();
            Err(AppError::Validation(errors))
        }
    }
}

pub async fn register(
    pool: &PgPool,
    settings: &AuthSettings,
    email: &str,
    password: String,
    display_name: &str,
) -> AppResult<User> {
    if !settings.allow_registration {
        return Err(AppError::Forbidden(
            "Registration is closed on this server.".into(),
        ));
    }
    let display_name =
        crate::domain::optional_text("display_name", "Display name", display_name, 100, false)
            .map_err(|error| AppError::Validation(vec![error]));
    let ((email, password), display_name) = all_valid(
        all_valid(Email::parse(email), Password::parse("password", password)),
        display_name,
    )?;
    let hash = password::hash(password, settings.bcrypt_cost).await?;
    let result = db::run(pool, move |conn| {
        let new = NewUser {
            id: Uuid::now_v7(),
            email: &email.0,
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
    email: &str,
    password: String,
) -> AppResult<User> {
    limiter.check(ip, email)?;
    // Anything that is not an email cannot be an account; it still pays for a bcrypt check
    // below, so it takes as long as a wrong password.
    let user = match Email::parse(email) {
        Ok(Email(lookup)) => {
            db::run(pool, move |conn| Ok(User::find_by_email(conn, &lookup)?)).await?
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
    current: String,
    new: String,
) -> AppResult<i32> {
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
    db::run(pool, move |conn| Ok(User::set_password(conn, id, &hash)?)).await
}

pub async fn log_out_everywhere(pool: &PgPool, user: &CurrentUser) -> AppResult<i32> {
    let id = user.id;
    db::run(pool, move |conn| Ok(User::bump_session_epoch(conn, id)?)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            " Pad@Example.com ",
        ] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@x.com",
            "a@b",
            "a@.com",
            "a@b.",
            "a b@c.com",
            "a@b@c.com",
            "a@b..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
