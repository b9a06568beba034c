//! The vocabulary shared by every provider client: what we ask, what streams back, what can fail,
//! and how a provider is configured.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::stream::BoxStream;
use serde::{Deserialize, Deserializer};

/// Default base URL of the `openai` provider (OPENAI_BASE_URL overrides it).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default base URL of the `openrouter` provider (OPENROUTER_BASE_URL overrides it).
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// Default base URL of the `groq` provider (GROQ_BASE_URL overrides it).
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai/v1";

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One turn of the conversation history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

impl Turn {
    /// A turn written by the person chatting.
    pub fn user(text: impl Into<String>) -> Self {
        Turn {
            role: Role::User,
            text: text.into(),
        }
    }

    /// A turn the model answered earlier.
    pub fn assistant(text: impl Into<String>) -> Self {
        Turn {
            role: Role::Assistant,
            text: text.into(),
        }
    }
}

/// Everything a provider needs to answer; the last turn of `history` is the new user message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub model: String,
    /// The system message (Responses `instructions`, Chat Completions `system` message).
    pub instructions: Option<String>,
    pub history: Vec<Turn>,
    /// Sent only when set: some reasoning models answer 400 to any `temperature`.
    pub temperature: Option<f32>,
    pub max_output_tokens: Option<u32>,
    /// Files attached to the new message. Their text is in its turn already; a provider that
    /// holds every one of them gets them as files instead (see `Router`).
    pub attachments: Option<Attachments>,
    /// Set by the router for the provider that holds the attachments: their ids, sent as
    /// `input_file` parts of the last turn (Responses API).
    pub input_files: Vec<String>,
    /// The project's files as a vector store at one provider: that provider searches them
    /// itself (the `file_search` tool) instead of getting confab's passages.
    pub file_search: Option<FileSearch>,
    /// Set by the router for the provider of `file_search`: the vector stores the `file_search`
    /// tool searches.
    pub vector_store_ids: Vec<String>,
}

/// A project's vector store, and the instructions without confab's own passages (which the
/// provider's search replaces).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSearch {
    pub provider: String,
    pub vector_store_id: String,
    pub instructions: Option<String>,
}

/// The new message's attached files as a provider may receive them.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachments {
    /// The message without the files' text (the turn's text when they go as files).
    pub message: String,
    /// Where each file is kept by a provider: (provider name, the provider's file id); `None`
    /// for a file no provider has.
    pub remote: Vec<Option<(String, String)>>,
}

impl ChatRequest {
    /// This request as sent to `provider`, when it differs: a Responses provider that holds
    /// every attached file gets them as `input_file` parts (and the last turn loses their
    /// text); the provider of the project's vector store searches it with `file_search`.
    pub fn for_provider(&self, provider: &ProviderConfig) -> Option<ChatRequest> {
        if provider.api != Api::Responses {
            return None;
        }
        let with_files = self.with_input_files(provider);
        let search = self
            .file_search
            .as_ref()
            .filter(|search| search.provider == provider.name);
        let Some(search) = search else {
            return with_files;
        };
        let mut request = with_files.unwrap_or_else(|| self.clone());
        request.instructions.clone_from(&search.instructions);
        request.vector_store_ids = vec![search.vector_store_id.clone()];
        Some(request)
    }

    /// The attachments as files of `provider`, when it holds every one of them.
    fn with_input_files(&self, provider: &ProviderConfig) -> Option<ChatRequest> {
        let attachments = self.attachments.as_ref()?;
        if attachments.remote.is_empty() {
            return None;
        }
        let ids: Option<Vec<String>> = attachments
            .remote
            .iter()
            .map(|remote| match remote {
                Some((name, id)) if *name == provider.name => Some(id.clone()),
                _ => None,
            })
            .collect();
        let ids = ids?;
        let mut request = self.clone();
        if let Some(last) = request.history.last_mut() {
            last.text.clone_from(&attachments.message);
        }
        request.input_files = ids;
        Some(request)
    }
}

/// Token counts reported by the provider at the end of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Complete,
    /// Cut short by the provider, e.g. `max_output_tokens` or `content_filter`.
    Incomplete(String),
}

/// One item of an answer's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of text, shared as it is with the answer's readers (no copy per token).
    Delta(std::sync::Arc<str>),
    /// The answer cites a file the provider searched (a `file_citation` annotation).
    Cited { file_id: String, filename: String },
    /// The provider's terminal event; nothing follows it.
    Done {
        usage: Option<Usage>,
        finish: Finish,
    },
}

/// The stream of an answer; it always ends with `Done` or with one `Err`.
pub type EventStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// Everything that can go wrong talking to a provider, shaped so the router can decide what to do.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A non-2xx answer before the stream started.
    #[error("the provider answered {status}: {message}")]
    Http {
        status: u16,
        /// `error.code` (numbers turned into strings), else `error.type`.
        code: Option<String>,
        message: String,
        /// From `retry-after-ms` or `Retry-After` (seconds or HTTP date).
        retry_after: Option<Duration>,
        /// The `x-should-retry` header, which overrides our own judgement.
        should_retry: Option<bool>,
    },
    /// No answer at all: DNS, refused connection, TLS other than a refused certificate, connect
    /// timeout.
    #[error("could not reach the provider: {0}")]
    Connect(String),
    /// The provider's TLS certificate was refused (an unknown authority, a wrong name, expired).
    #[error("the provider's certificate was refused: {0}")]
    Certificate(String),
    /// The connection is open but the provider has sent nothing (not even a keepalive) for the
    /// client's read timeout (`llm.stall_timeout_secs`).
    #[error("the provider stopped sending anything")]
    Stalled,
    /// The stream started and then failed: dropped connection, `response.failed`, an error event
    /// or chunk, or an end without the terminal event.
    #[error("{0}")]
    Stream(String),
    /// The connection broke mid-stream, or it ended without the terminal event.
    #[error("the connection was lost: {0}")]
    Dropped(String),
    /// 401: the key is wrong, revoked, or missing.
    #[error("the API key for {provider} was refused")]
    Auth { provider: String },
    /// No provider is configured at all.
    #[error("no LLM provider is configured")]
    NoProviders,
    /// The agent names a provider that is not configured (and no fallback answered).
    #[error("no provider named {name} is configured")]
    UnknownProvider {
        name: String,
        /// The providers that are configured, to tell the person what to choose instead.
        configured: Vec<String>,
    },
    /// Our own configuration is unusable (e.g. a header that is not a valid value).
    #[error("{0}")]
    Config(String),
}

impl LlmError {
    /// The `status` label of the upstream-errors metric: the HTTP status or the kind of failure.
    pub fn metric_label(&self) -> String {
        match self {
            LlmError::Http { status, .. } => status.to_string(),
            LlmError::Auth { .. } => "401".into(),
            LlmError::Connect(_) => "connect".into(),
            LlmError::Certificate(_) => "certificate".into(),
            LlmError::Stalled => "stalled".into(),
            LlmError::Stream(_) | LlmError::Dropped(_) => "stream".into(),
            LlmError::Config(_) | LlmError::NoProviders | LlmError::UnknownProvider { .. } => {
                "config".into()
            }
        }
    }

    /// Whether trying the same provider again can help (openai-python's rules).
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Http {
                status,
                code,
                message,
                should_retry,
                ..
            } => {
                // Retrying a quota or size problem only burns time: it cannot succeed.
                if is_hopeless(code.as_deref(), message) {
                    return false;
                }
                if let Some(decided) = should_retry {
                    return *decided;
                }
                matches!(status, 408 | 409 | 429) || *status >= 500
            }
            LlmError::Connect(_) => true,
            // It stays refused until someone changes the provider's certificate or llm.ca_file.
            LlmError::Certificate(_) => false,
            // Asking a silent provider again would make the person wait another full timeout;
            // the next provider in the fallback order is the better bet.
            LlmError::Stalled => false,
            // Before the first token a failed stream is the provider's hiccup (the router only
            // retries it then); the message carries the code, so quota problems are still spotted.
            LlmError::Stream(message) => !is_hopeless(None, message),
            LlmError::Dropped(_) => true,
            LlmError::Auth { .. }
            | LlmError::Config(_)
            | LlmError::NoProviders
            | LlmError::UnknownProvider { .. } => false,
        }
    }

    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// insufficient_quota and "Request too large" are 429s that no amount of waiting fixes.
fn is_hopeless(code: Option<&str>, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    code == Some("insufficient_quota")
        || message.contains("insufficient_quota")
        || message.contains("request too large")
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI Responses API, `POST {base}/responses`.
    Responses,
    /// OpenAI-compatible Chat Completions, `POST {base}/chat/completions`. The default because
    /// every compatible server has it, while their Responses support is partial (docs/llm-wire.md §3.4).
    #[default]
    ChatCompletions,
}

/// One configured provider, e.g. a `[[llm.providers]]` table in confab.toml.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// Up to and including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; local servers (Ollama, LM Studio) need none.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api: Api,
    /// Sent with every request, e.g. OpenRouter's `HTTP-Referer` and `X-OpenRouter-Title`.
    /// In TOML either a table (`{ "HTTP-Referer" = "…" }`) or a list of `[name, value]` pairs.
    #[serde(default, deserialize_with = "deserialize_headers")]
    pub extra_headers: Vec<(String, String)>,
    /// The model to ask for when this provider is reached by fallback from another one, whose
    /// model names differ (OpenRouter wants `openai/gpt-4o-mini` where OpenAI wants `gpt-4o-mini`).
    /// None: the agent's model name is sent unchanged.
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// It has OpenAI's Files API (`POST {base}/files`): confab sends project files there too.
    /// True for `openai`; set it for a compatible server that has one.
    #[serde(default)]
    pub files_api: bool,
}

impl ProviderConfig {
    /// The `openai` provider (Responses API).
    pub fn openai(api_key: impl Into<String>, base_url: Option<String>) -> Self {
        ProviderConfig {
            name: "openai".into(),
            base_url: base_url.unwrap_or_else(|| OPENAI_BASE_URL.into()),
            api_key: Some(api_key.into()),
            api: Api::Responses,
            extra_headers: Vec::new(),
            fallback_model: None,
            files_api: true,
        }
    }

    /// The `openrouter` provider (Chat Completions), attributed to our app as OpenRouter asks.
    pub fn openrouter(
        api_key: impl Into<String>,
        base_url: Option<String>,
        app_url: &str,
        app_title: &str,
    ) -> Self {
        ProviderConfig {
            name: "openrouter".into(),
            base_url: base_url.unwrap_or_else(|| OPENROUTER_BASE_URL.into()),
            api_key: Some(api_key.into()),
            api: Api::ChatCompletions,
            extra_headers: vec![
                ("HTTP-Referer".into(), app_url.into()),
                ("X-OpenRouter-Title".into(), app_title.into()),
            ],
            fallback_model: None,
            files_api: false,
        }
    }

    /// Groq's OpenAI-compatible Chat Completions endpoint.
    pub fn groq(api_key: impl Into<String>, base_url: Option<String>) -> Self {
        ProviderConfig {
            name: "groq".into(),
            base_url: base_url.unwrap_or_else(|| GROQ_BASE_URL.into()),
            api_key: Some(api_key.into()),
            api: Api::ChatCompletions,
            extra_headers: Vec::new(),
            fallback_model: None,
            files_api: false,
        }
    }

    /// `{base_url}/{path}` without a doubled slash, whichever way the base was written.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url.trim_end_matches('/'), path)
    }
}

// API keys must never reach a log line, and `{:?}` on a config is the easiest way to leak one.
impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api", &self.api)
            .field("extra_headers", &self.extra_headers)
            .field("fallback_model", &self.fallback_model)
            .finish()
    }
}

fn deserialize_headers<'de, D>(deserializer: D) -> Result<Vec<(String, String)>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Table(BTreeMap<String, String>),
        Pairs(Vec<(String, String)>),
    }
    Ok(match Headers::deserialize(deserializer)? {
        Headers::Table(table) => table.into_iter().collect(),
        Headers::Pairs(pairs) => pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<&str>, message: &str) -> LlmError {
        LlmError::Http {
            status,
            code: code.map(String::from),
            message: message.into(),
            retry_after: None,
            should_retry: None,
        }
    }

    #[test]
    fn retryable_statuses_follow_openai_python() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(http(status, None, "x").is_retryable(), "{status}");
        }
        for status in [400, 401, 402, 403, 404, 422] {
            assert!(!http(status, None, "x").is_retryable(), "{status}");
        }
        assert!(LlmError::Connect("refused".into()).is_retryable());
        assert!(!LlmError::Certificate("UnknownIssuer".into()).is_retryable());
        assert!(
            !LlmError::Auth {
                provider: "openai".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn quota_and_request_too_large_are_never_retried() {
        assert!(!http(429, Some("insufficient_quota"), "You exceeded your quota").is_retryable());
        assert!(
            !http(
                429,
                Some("rate_limit_exceeded"),
                "Request too large for o3 in organization"
            )
            .is_retryable()
        );
        let mut forced = http(429, Some("insufficient_quota"), "quota");
        if let LlmError::Http { should_retry, .. } = &mut forced {
            *should_retry = Some(true);
        }
        assert!(!forced.is_retryable());
        assert!(!LlmError::Stream("no credits (insufficient_quota)".into()).is_retryable());
        assert!(LlmError::Stream("The model failed (server_error)".into()).is_retryable());
    }

    #[test]
    fn should_retry_header_overrides_the_status() {
        let mut error = http(400, None, "x");
        if let LlmError::Http { should_retry, .. } = &mut error {
            *should_retry = Some(true);
        }
        assert!(error.is_retryable());
        let mut error = http(503, None, "x");
        if let LlmError::Http { should_retry, .. } = &mut error {
            *should_retry = Some(false);
        }
        assert!(!error.is_retryable());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = ProviderConfig::openai("sk-secret", None);
        assert!(!format!("{config:?}").contains("sk-secret"));
    }

    #[test]
    fn headers_deserialize_from_a_table_or_pairs() {
        let table: ProviderConfig = serde_json::from_str(
            r#"{"name":"or","base_url":"http://x","api":"chat_completions",
                "extra_headers":{"HTTP-Referer":"https://confab.example"}}"#,
        )
        .unwrap();
        assert_eq!(
            table.extra_headers,
            [("HTTP-Referer".into(), "https://confab.example".into())]
        );
        let pairs: ProviderConfig = serde_json::from_str(
            r#"{"name":"or","base_url":"http://x","api":"responses",
                "extra_headers":[["X-OpenRouter-Title","confab"]]}"#,
        )
        .unwrap();
        assert_eq!(
            pairs.extra_headers,
            [("X-OpenRouter-Title".into(), "confab".into())]
        );
        assert_eq!(pairs.api, Api::Responses);
    }
}
