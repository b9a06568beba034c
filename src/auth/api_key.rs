//! API keys (personal access tokens): how one is made, recognised and stored.
//!
//! A key is `cfk_` and 64 hex digits (32 bytes from the operating system's CSPRNG). The prefix
//! tells a key from a session token at a glance (the extractor picks the lookup by it, and
//! secret scanners can find leaked keys). Only the key's SHA-256 is stored: a key is 256 random
//! bits, so a fast hash cannot be brute-forced, and a lookup by hash costs one index probe —
//! bcrypt would cost ~100 ms on every request and would need a lookup by some other id first.

use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::settings::Secret;

/// What every key starts with.
pub const KEY_PREFIX: &str = "cfk_";

/// Characters of a key shown in lists: the prefix and 8 hex digits (32 bits: enough to tell a
/// person's keys apart, far too few to help guess one).
const DISPLAY_CHARS: usize = KEY_PREFIX.len() + 8;

/// A newly made key: the key itself (shown once, never stored), its hash and display prefix.
pub struct NewKey {
    pub key: Secret,
    pub hash: Vec<u8>,
    pub prefix: String,
}

/// A fresh random key.
pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    NewKey {
        hash: hash(&key),
        prefix: key[..DISPLAY_CHARS].to_string(),
        key: Secret::new(key),
    }
}

/// The stored form of a key.
pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Whether a bearer value is meant as an API key (rather than a session token).
pub fn is_api_key(bearer: &str) -> bool {
    bearer.starts_with(KEY_PREFIX)
}

/// Whether a value could be a key confab made: the prefix and 64 hex digits. Anything else is
/// refused without a database lookup.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|secret| secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
    Default,
    utoipa::ToSchema,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Everything its owner can do through the API, except managing keys, sessions and the
    /// password (those need a signed-in session).
    #[default]
    Full,
    /// Reading only: GET, HEAD and OPTIONS.
    ReadOnly,
}

impl KeyScope {
    const ALL: [KeyScope; 2] = [KeyScope::Full, KeyScope::ReadOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Full => "full",
            KeyScope::ReadOnly => "read_only",
        }
    }

    /// A scope as the form or the API names it.
    pub fn parse(text: &str) -> Option<KeyScope> {
        KeyScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text.trim())
    }
}

impl ToSql<Text, Pg> for KeyScope {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Pg> for KeyScope {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = std::str::from_utf8(bytes.as_bytes())?;
        KeyScope::parse(text).ok_or_else(|| format!("unknown key scope {text:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_prefixed_random_hex_and_its_hash_is_sha256() {
        let one = generate();
        let two = generate();
        let key = one.key.expose();
        assert!(is_api_key(key) && is_well_formed(key));
        assert!(!is_well_formed(&key[..key.len() - 1]));
        assert!(!is_well_formed(&format!("{}g", &key[..key.len() - 1])));
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert!(
            key[KEY_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_ne!(key, two.key.expose());
        assert!(key.starts_with(&one.prefix));
        assert_eq!(one.hash, hash(key));
        assert_eq!(one.hash.len(), 32);
        assert!(
            !format!("{:?}", one.key).contains(key),
            "never in Debug output"
        );
    }

    #[test]
    fn scopes_read_as_they_are_written() {
        for scope in KeyScope::ALL {
            assert_eq!(KeyScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(KeyScope::parse("admin"), None);
    }
}
