//! Password rules and bcrypt hashing. bcrypt is slow on purpose, so it always runs on the
//! blocking pool.

use actix_web::web;

use crate::error::{AppError, AppResult, FieldError};

/// bcrypt reads at most 72 bytes; longer passwords would be silently truncated, so refuse them.
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_BYTES: usize = 8;

/// A password that satisfies the rules. The only way to get one is [`Password::parse`].
pub struct Password(String);

impl Password {
    pub fn parse(field: &'static str, raw: String) -> Result<Password, FieldError> {
        let message = if raw.len() < MIN_PASSWORD_BYTES {
            Some(format!("Use at least {MIN_PASSWORD_BYTES} characters."))
        } else if raw.len() > MAX_PASSWORD_BYTES {
            Some(format!(
                "Use at most {MAX_PASSWORD_BYTES} bytes (this one has {}); longer passwords cannot be stored safely.",
                raw.len()
            ))
        } else if !raw.chars().any(char::is_alphabetic) || !raw.chars().any(|c| c.is_ascii_digit())
        {
            Some("Use at least one letter and one digit.".to_string())
        } else {
            None
        };
        match message {
            Some(message) => Err(FieldError { field, message }),
            None => Ok(Password(raw)),
        }
    }
}

/// bcrypt runs on the blocking pool, which every database call shares: at most one hash per
/// core at a time, so a flood of sign-ups or sign-ins waits its turn (as cheap futures) instead
/// of taking every thread from the queries of everyone else.
static BCRYPT_SLOTS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    tokio::sync::Semaphore::new(cores)
});

async fn on_a_bcrypt_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> AppResult<T> {
    let _slot = BCRYPT_SLOTS.acquire().await.map_err(AppError::internal)?;
    Ok(web::block(work).await?)
}

pub async fn hash(password: Password, cost: u32) -> AppResult<String> {
    on_a_bcrypt_slot(move || bcrypt::hash(password.0, cost))
        .await?
        .map_err(AppError::internal)
}

/// Checks `candidate` against `hash`, or against `dummy_hash` when the account is unknown, so an
/// unknown email takes as long as a wrong password. bcrypt reads only the first 72 bytes, so a
/// longer candidate (which no stored password can be) never matches, in the same time.
pub async fn verify(candidate: String, hash: Option<String>, dummy_hash: &str) -> AppResult<bool> {
    let storable = candidate.len() <= MAX_PASSWORD_BYTES;
    let known = hash.is_some() && storable;
    let hash = hash.unwrap_or_else(|| dummy_hash.to_string());
    let matches =
        on_a_bcrypt_slot(move || bcrypt::verify(candidate, &hash).unwrap_or(false)).await?;
    Ok(known && matches)
}

/// A real hash of a random password, made once at start-up for [`verify`].
pub fn make_dummy_hash(cost: u32) -> String {
    bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost).expect("bcrypt with a valid cost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Password::parse("password", "short1".into()).is_err());
        assert!(Password::parse("password", "lettersonly".into()).is_err());
        assert!(Password::parse("password", "1234567890".into()).is_err());
        assert!(Password::parse("password", "a".repeat(72) + "1").is_err());
        assert!(Password::parse("password", "correct horse 1".into()).is_ok());
        // 72 bytes exactly is fine; multi-byte characters count as bytes.
        assert!(Password::parse("password", "a1".repeat(36)).is_ok());
        assert!(Password::parse("password", "é1".repeat(25)).is_err());
    }
}
