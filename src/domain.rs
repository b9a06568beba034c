//! Parse, don't validate: each function turns raw input into a value that obeys the product's
//! rules, or into a message for the field it came from. `Checks` collects every field's message
//! so a form shows them all at once. This is the one validator: services parse their input here
//! (or with a type's own `parse`, such as `auth::password::Password`), nowhere else.

use serde::{Deserialize, Deserializer};

use crate::error::{AppError, AppResult, FieldError};

#[derive(Default)]
pub struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Keeps the value, or records the field's message and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    pub fn finish(self) -> AppResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.errors))
        }
    }

    /// Like [`Checks::finish`], handing back the checked values (every `check` kept one when
    /// no field failed).
    pub fn finish_with<T>(self, values: Option<T>) -> AppResult<T> {
        self.finish()?;
        values.ok_or_else(|| AppError::internal("a checked value is missing"))
    }
}

fn field_error(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Trimmed text of 1..=max characters with no control characters (newlines allowed if `multiline`).
pub fn text(
    field: &'static str,
    label: &str,
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(field_error(field, format!("{label} cannot be empty.")));
    }
    optional_text(field, label, value, max, multiline)
}

/// Like [`text`] but empty is fine.
pub fn optional_text(
    field: &'static str,
    label: &str,
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    let value = raw.trim();
    let count = value.chars().count();
    if count > max {
        return Err(field_error(
            field,
            format!("{label} can be at most {max} characters (this is {count})."),
        ));
    }
    let bad_control = value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad_control {
        return Err(field_error(
            field,
            format!("{label} contains characters that are not allowed."),
        ));
    }
    Ok(value.to_string())
}

pub fn name(raw: &str) -> Result<String, FieldError> {
    text("name", "Name", raw, 100, false)
}

pub fn description(raw: &str) -> Result<String, FieldError> {
    optional_text("description", "Description", raw, 2000, true)
}

/// Provider names are identifiers from configuration, e.g. `openai`, `openrouter`, `ollama`.
pub fn provider(raw: &str) -> Result<String, FieldError> {
    let value = raw.trim().to_lowercase();
    let ok = !value.is_empty()
        && value.len() <= 40
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value)
    } else {
        Err(field_error(
            "provider",
            "Use a provider name such as openai or openrouter.",
        ))
    }
}

pub fn model(raw: &str) -> Result<String, FieldError> {
    let value = raw.trim();
    if value.is_empty()
        || value.len() > 200
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(field_error(
            "model",
            "Enter a model name such as gpt-4o-mini (no spaces).",
        ));
    }
    Ok(value.to_string())
}

pub fn temperature(value: Option<f64>) -> Result<Option<f32>, FieldError> {
    match value {
        None => Ok(None),
        Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => Ok(Some(t as f32)),
        Some(_) => Err(field_error(
            "temperature",
            "Temperature must be between 0 and 2.",
        )),
    }
}

/// The Responses API refuses fewer than 16 output tokens.
pub fn max_output_tokens(value: Option<f64>) -> Result<Option<i32>, FieldError> {
    match value {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (16.0..=1_000_000.0).contains(&n) => Ok(Some(n as i32)),
        Some(_) => Err(field_error(
            "max_output_tokens",
            "Max output tokens must be a whole number between 16 and 1000000.",
        )),
    }
}

/// A number as JSON sends it, or as typed into a form, where an empty box means "not set".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberInput {
    Number(f64),
    Text(String),
}

impl NumberInput {
    pub fn parse(&self, field: &'static str, label: &str) -> Result<Option<f64>, FieldError> {
        match self {
            NumberInput::Number(n) => Ok(Some(*n)),
            NumberInput::Text(text) if text.trim().is_empty() => Ok(None),
            NumberInput::Text(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| field_error(field, format!("{label} must be a number."))),
        }
    }
}

impl std::fmt::Display for NumberInput {
    /// As the form shows it again.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberInput::Number(n) => write!(f, "{n}"),
            NumberInput::Text(text) => f.write_str(text),
        }
    }
}

impl NumberInput {
    /// JSON sends numbers as numbers; text is how forms send them.
    pub fn is_text(&self) -> bool {
        matches!(self, NumberInput::Text(_))
    }
}

/// A yes/no as JSON sends it (`true`/`false`), or as a form checkbox does (`true` or `on` when
/// ticked; nothing when not).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    pub fn parse(&self, field: &'static str) -> Result<bool, FieldError> {
        match self {
            Flag::Bool(value) => Ok(*value),
            Flag::Text(text) if matches!(text.as_str(), "true" | "on") => Ok(true),
            Flag::Text(text) if text == "false" => Ok(false),
            Flag::Text(_) => Err(field_error(field, "Use true or false.")),
        }
    }

    /// JSON sends booleans as booleans; text is how forms send them.
    pub fn is_text(&self) -> bool {
        matches!(self, Flag::Text(_))
    }
}

/// An email address of plausible shape: one `@`, a dot in the domain, no spaces. `address` is
/// what the person typed (trimmed, NFC); `key` is how addresses are compared and kept unique.
pub struct Email {
    pub address: String,
    pub key: String,
}

/// The one way emails are compared: Unicode canonical caseless matching (NFD, full case
/// folding, then NFC to store it compactly), so "ΟΔΥΣΣΕΥΣ" and "οδυσσευς", or "İlker" typed
/// either way, are one address — in Rust, never by the database's `lower()`.
pub fn email_key(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded = caseless::default_case_fold_str(&raw.trim().nfd().collect::<String>());
    folded.nfc().collect()
}

impl Email {
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        use unicode_normalization::UnicodeNormalization;
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
            Ok(Email {
                address: email.nfc().collect(),
                key: email_key(email),
            })
        } else {
            Err(field_error(
                "email",
                "Enter an email address like name@example.com.",
            ))
        }
    }
}

/// What someone says in a chat: 1..=100,000 characters, trimmed, no NUL (PostgreSQL cannot
/// store it).
pub fn message(raw: &str) -> Result<String, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(field_error("message", "Write a message first."));
    }
    if text.contains('\0') {
        return Err(field_error(
            "message",
            "The message contains a NUL character, which cannot be stored. Remove it and send again.",
        ));
    }
    let count = text.chars().count();
    if count > MAX_MESSAGE_CHARS {
        return Err(field_error(
            "message",
            format!("Messages can be at most {MAX_MESSAGE_CHARS} characters (this is {count})."),
        ));
    }
    Ok(text.to_string())
}

/// The longest message a person can send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;

pub fn prompt_title(raw: &str) -> Result<String, FieldError> {
    text("title", "Title", raw, 200, false)
}

pub fn prompt_content(raw: &str) -> Result<String, FieldError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(field_error("content", "Content cannot be empty."));
    }
    optional_text("content", "Content", value, 100_000, true)
}

/// For JSON PATCH bodies: absent → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The first ~`max` characters of a text as plain words (its Markdown dropped), cut at a word
/// when possible: a conversation's title from its first message, a prompt's from its content.
pub fn title_from(text: &str, max: usize) -> String {
    // Titles are plain text: a first message's Markdown would show as raw ``` and ** otherwise.
    let plain = crate::render::markdown::plain_text(text);
    let line = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > max / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// "1 second", "30 seconds": a wait, as people read it.
pub fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Research  ").unwrap(), "Research");
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(101)).is_err());
        assert!(name("a\u{0}b").is_err());
        assert_eq!(
            name("<script>alert(1)</script>").unwrap(),
            "<script>alert(1)</script>"
        );
    }

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

    #[test]
    fn emails_compare_by_unicode_case_folding() {
        assert_eq!(
            email_key("ΟΔΥΣΣΕΥΣ@example.com"),
            email_key("οδυσσευς@Example.COM")
        );
        assert_eq!(
            email_key("İlker@example.com"),
            email_key("i\u{307}lker@example.com")
        );
        assert_eq!(email_key(" Pad@Example.com "), "pad@example.com");
        // The same letter, precomposed or not.
        assert_eq!(email_key("Jos\u{e9}@x.org"), email_key("jose\u{301}@x.org"));
    }

    #[test]
    fn settings_ranges() {
        assert!(temperature(Some(2.1)).is_err());
        assert!(temperature(Some(f64::NAN)).is_err());
        assert_eq!(temperature(Some(0.0)).unwrap(), Some(0.0));
        assert!(max_output_tokens(Some(15.0)).is_err());
        assert!(max_output_tokens(Some(100.5)).is_err());
        assert_eq!(max_output_tokens(Some(4096.0)).unwrap(), Some(4096));
        assert!(provider("Open AI").is_err());
        assert_eq!(provider("OpenRouter").unwrap(), "openrouter");
        assert!(model("gpt 4").is_err());
        let typed = |t: &str| NumberInput::Text(t.into()).parse("temperature", "T");
        assert_eq!(typed(" ").unwrap(), None);
        assert_eq!(typed("0.5").unwrap(), Some(0.5));
        assert!(typed("hot").is_err());
        assert_eq!(NumberInput::Number(1.0).parse("t", "T").unwrap(), Some(1.0));
        assert!(Flag::Text("on".into()).parse("f").unwrap());
        assert!(Flag::Text("no".into()).parse("f").is_err());
    }
}
