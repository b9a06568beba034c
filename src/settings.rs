//! Settings: built-in defaults → optional `confab.toml` → `CONFAB_*` environment (`__` nests) →
//! the names people already use (`DATABASE_URL`, `PORT`, `JWT_SECRET`) → command-line flags.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use ipnet::IpNet;
use serde::Deserialize;

/// A string that never shows up in logs or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded PostgreSQL, the generated JWT secret and uploads live.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub llm: LlmSettings,
    pub chat: ChatSettings,
    pub files: FilesSettings,
    /// tracing filter, e.g. `info` or `confab=debug,actix_web=info`.
    pub log: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// The URL people use to reach confab (e.g. `https://chat.example.com`). Decides the cookie's
    /// `Secure` flag and which `Origin` is accepted on state-changing requests.
    pub public_url: Option<String>,
    /// Seconds that live answers get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// HTTP worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// `GET /metrics` needs `Authorization: Bearer <this>`. Unset: only clients connecting from
    /// this machine (loopback) may read it.
    pub metrics_token: Option<Secret>,
    /// Web origins (`https://app.example.com`) whose pages may call the API and the
    /// OpenAI-compatible routes with `fetch` (CORS). None by default; never `*`.
    pub cors_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (CIDRs such as `10.0.0.0/8`, or single
    /// addresses); from any other peer the header is ignored. A list in TOML, comma-separated
    /// in the environment.
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    pub rate_limit: RateLimitSettings,
}

/// Requests per minute to the API (`/api`), per who is asking. Each is a GCRA limit: requests
/// may come all at once up to `burst`, and the allowance refills evenly over the minute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Per person, whatever signs their requests (sessions and keys together).
    pub requests_per_minute: u32,
    /// Per API key (on top of its owner's limit).
    pub requests_per_minute_per_key: u32,
    /// Per client address, for requests that are not signed (sign-in, sign-up, bad tokens).
    pub requests_per_minute_per_address: u32,
    /// The most requests at once; unset: each limit's requests per minute.
    pub burst: Option<u32>,
}

/// CIDRs or single addresses, from a TOML list or a comma-separated string (the environment).
fn networks<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listed {
        List(Vec<String>),
        Text(String),
    }
    let entries = match Listed::deserialize(deserializer)? {
        Listed::List(list) => list,
        Listed::Text(text) => text.split(',').map(str::to_string).collect(),
    };
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{entry:?} is not a network (10.0.0.0/8) or an address (192.0.2.1)"
                    ))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// External PostgreSQL; when unset confab runs its own under `data_dir`.
    pub url: Option<Secret>,
    pub pool_size: u32,
    /// Connections the pool keeps open while idle, so a request after a quiet spell does not
    /// wait for one; it opens more, up to `pool_size`, when requests need them.
    pub warm_connections: u32,
    /// A connection idle this long is closed (checked every 30 s), except the warm ones, so a
    /// burst's connections, each a PostgreSQL process, do not stay.
    pub idle_timeout_secs: u64,
    /// When every open connection is busy, how long a request waits for one to be handed back
    /// before the pool opens another (each a PostgreSQL process that starts with cold caches),
    /// so that a crowd of a few milliseconds does not grow the pool.
    pub wait_before_opening_ms: u64,
    /// How long a request waits for a connection before answering 503.
    pub connect_timeout_secs: u64,
    /// The longest one statement may run (PostgreSQL's `statement_timeout`); a request whose
    /// database work takes longer in all (a frozen server) answers 503.
    pub query_timeout_secs: u64,
    /// Run pending migrations at start.
    pub migrate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 key for session tokens; generated once into `<data_dir>/jwt_secret` when unset.
    pub jwt_secret: Option<Secret>,
    pub token_ttl_hours: i64,
    pub bcrypt_cost: u32,
    /// Failed-or-not login attempts allowed per IP and per email, per minute.
    pub login_attempts_per_minute: u32,
    /// Accounts one client address may create per hour.
    pub registrations_per_hour_per_address: u32,
    /// Accounts may be created through the sign-up page and API.
    pub allow_registration: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Enables the `openai` provider (Responses API).
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: Option<String>,
    /// Enables the `openrouter` provider (Chat Completions).
    pub openrouter_api_key: Option<Secret>,
    pub openrouter_base_url: Option<String>,
    /// Enables the `groq` provider (Chat Completions; `GROQ_API_KEY`, as seeds use it).
    pub groq_api_key: Option<Secret>,
    pub groq_base_url: Option<String>,
    /// Any number of OpenAI-compatible servers: `[[llm.providers]]` with `name`, `base_url`,
    /// optional `api_key`, `api = "responses" | "chat_completions"`, `extra_headers`, `fallback_model`.
    #[serde(default)]
    pub providers: Vec<crate::llm::ProviderConfig>,
    /// Providers tried, in order, when an agent's provider fails before its first token. Unset:
    /// every configured provider, openai first, then openrouter, then the others by name.
    pub fallback: Option<Vec<String>>,
    /// Retries on one provider before falling back.
    pub max_retries: u32,
    pub retry_base_delay_ms: u64,
    /// Cap on one backoff delay.
    pub retry_max_delay_ms: u64,
    /// A `Retry-After` longer than this moves on to the next provider at once.
    pub max_retry_after_secs: u64,
    /// An answer fails when its provider sends nothing (no first token, no next token) this long.
    pub stall_timeout_secs: u64,
    /// Certificate authorities (a PEM file) trusted for providers besides the system's: a
    /// self-hosted server behind a private authority.
    pub ca_file: Option<PathBuf>,
    /// Answers one HTTP/2 connection to a provider carries at once; past it another connection
    /// is opened. At most what the provider allows per connection.
    pub streams_per_connection: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSettings {
    /// The largest file one upload may carry; a bigger one is refused (413) and nothing is kept.
    pub max_upload_bytes: u64,
    /// The `purpose` files are uploaded to a provider's Files API with: `user_data` (for
    /// `input_file`) or `assistants`.
    pub provider_purpose: String,
    /// File name endings refused at upload (programs and scripts nobody needs an agent to
    /// read); programs are also refused by their first bytes, whatever their name.
    pub refused_extensions: Vec<String>,
    /// The longest one PDF's text may take to read, in its own process; past it the file is
    /// kept without text.
    pub pdf_text_seconds: u64,
    /// The most memory (heap) reading one PDF's text may take; past it the file is kept
    /// without text.
    pub pdf_text_memory_mb: u64,
    /// The program run as `<program> extract-text FILE` to read a PDF's text; default: this
    /// confab binary.
    pub pdf_reader: Option<PathBuf>,
    /// How long indexing at a provider that did not answer waits before trying again (then 4
    /// times longer, three more times).
    pub index_retry_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Earlier turns sent upstream, newest first, until their text reaches this many characters.
    pub history_budget_chars: usize,
    /// How often streamed text is written to the database while an answer is generated.
    pub flush_interval_ms: u64,
    /// Characters of the first message that become the conversation's title.
    pub title_chars: usize,
    /// Messages one conversation may hold; past it, a new conversation is asked for.
    pub max_messages_per_conversation: u32,
    /// Answers one person may have being generated at once.
    pub max_live_answers_per_user: u32,
    /// Answers one person may start per minute.
    pub answers_per_minute_per_user: u32,
    /// The system message of an agent that has no enabled prompts (empty: none).
    pub default_system_prompt: String,
}

/// Values from the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
}

const DEFAULTS: &str = r#"
data_dir = "./data"
log = "info"

[server]
host = "127.0.0.1"
port = 8080
shutdown_grace_secs = 20
cors_origins = []
trusted_proxies = []

[server.rate_limit]
requests_per_minute = 600
requests_per_minute_per_key = 600
requests_per_minute_per_address = 300

[database]
pool_size = 16
warm_connections = 1
idle_timeout_secs = 120
wait_before_opening_ms = 30
connect_timeout_secs = 3
query_timeout_secs = 10
migrate = true

[llm]
max_retries = 2
retry_base_delay_ms = 500
retry_max_delay_ms = 8000
max_retry_after_secs = 20
stall_timeout_secs = 120
streams_per_connection = 100

[chat]
history_budget_chars = 32000
flush_interval_ms = 250
title_chars = 60
max_messages_per_conversation = 2000
max_live_answers_per_user = 4
answers_per_minute_per_user = 30
default_system_prompt = ""

[files]
max_upload_bytes = 536870912
provider_purpose = "user_data"
refused_extensions = ["exe", "dll", "msi", "scr", "com", "bat", "cmd", "ps1", "vbs", "jar", "apk", "dmg", "so", "dylib"]
pdf_text_seconds = 20
pdf_text_memory_mb = 512
index_retry_secs = 30

[auth]
token_ttl_hours = 168
bcrypt_cost = 12
login_attempts_per_minute = 10
allow_registration = true
registrations_per_hour_per_address = 10
"#;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layers in order; `confab.toml` in the working directory is read when present.
    pub fn load(overrides: &Overrides) -> Result<Settings, SettingsError> {
        Self::load_from(overrides, std::env::vars().collect())
    }

    /// Same as [`Settings::load`] with the environment given as a map, so tests need not touch
    /// the process environment.
    pub fn load_from(
        overrides: &Overrides,
        env: HashMap<String, String>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        builder = match &overrides.config_file {
            Some(path) if !path.exists() => return Err(SettingsError::MissingFile(path.clone())),
            Some(path) => builder.add_source(File::from(path.as_path()).required(true)),
            None => builder.add_source(File::from(Path::new("confab.toml")).required(false)),
        };
        let confab_vars: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("CONFAB_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("CONFAB")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                // Lists from the environment are comma-separated.
                .list_separator(",")
                .with_list_parse_key("server.cors_origins")
                .source(Some(confab_vars)),
        );
        for (name, key) in [
            ("DATABASE_URL", "database.url"),
            ("PORT", "server.port"),
            // Seeds call it SECRET_KEY; JWT_SECRET, later here, wins when both are set.
            ("SECRET_KEY", "auth.jwt_secret"),
            ("JWT_SECRET", "auth.jwt_secret"),
            ("OPENAI_API_KEY", "llm.openai_api_key"),
            ("OPENAI_BASE_URL", "llm.openai_base_url"),
            ("OPENROUTER_API_KEY", "llm.openrouter_api_key"),
            ("OPENROUTER_BASE_URL", "llm.openrouter_base_url"),
            ("GROQ_API_KEY", "llm.groq_api_key"),
            ("GROQ_BASE_URL", "llm.groq_base_url"),
            ("DEFAULT_SYSTEM_PROMPT", "chat.default_system_prompt"),
        ] {
            if let Some(value) = env.get(name).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        if let Some(host) = &overrides.host {
            builder = builder.set_override("server.host", host.as_str())?;
        }
        if let Some(port) = overrides.port {
            builder = builder.set_override("server.port", port)?;
        }
        if let Some(dir) = &overrides.data_dir {
            builder = builder.set_override("data_dir", dir.to_string_lossy().as_ref())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        // An empty value in the environment means "unset", not "the empty URL" (or path).
        unset_if_empty(&mut settings.database.url, |url| url.expose().is_empty());
        unset_if_empty(&mut settings.auth.jwt_secret, |secret| {
            secret.expose().is_empty()
        });
        unset_if_empty(&mut settings.llm.ca_file, |path| {
            path.as_os_str().is_empty()
        });
        settings.check_ranges()?;
        settings.check_origins()?;
        Ok(settings)
    }

    /// Each CORS origin is a scheme and a host (and port), as browsers send `Origin`: a path, a
    /// wildcard or `null` would match something other than what the operator meant.
    fn check_origins(&self) -> Result<(), SettingsError> {
        for origin in &self.server.cors_origins {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains(['/', '*', ' ', '?', '#', '@'])
                    && host.is_ascii()
            });
            if !valid {
                return Err(SettingsError::Invalid(format!(
                    "server.cors_origins: {origin:?} is not an origin such as https://app.example.com (scheme and host, no path, no wildcard)"
                )));
            }
        }
        Ok(())
    }

    /// Values that would make confab panic or misbehave later are refused at start, by name.
    fn check_ranges(&self) -> Result<(), SettingsError> {
        let limits = &self.server.rate_limit;
        let ranges: [(&str, u64, u64, u64); 20] = [
            (
                "server.rate_limit.requests_per_minute",
                limits.requests_per_minute.into(),
                1,
                1_000_000,
            ),
            (
                "server.rate_limit.requests_per_minute_per_key",
                limits.requests_per_minute_per_key.into(),
                1,
                1_000_000,
            ),
            (
                "server.rate_limit.requests_per_minute_per_address",
                limits.requests_per_minute_per_address.into(),
                1,
                1_000_000,
            ),
            (
                "server.rate_limit.burst",
                limits.burst.unwrap_or(1).into(),
                1,
                1_000_000,
            ),
            (
                "database.pool_size",
                self.database.pool_size.into(),
                1,
                1000,
            ),
            (
                "database.warm_connections",
                self.database.warm_connections.into(),
                0,
                self.database.pool_size.into(),
            ),
            (
                "database.idle_timeout_secs",
                self.database.idle_timeout_secs,
                1,
                86_400,
            ),
            (
                "database.wait_before_opening_ms",
                self.database.wait_before_opening_ms,
                0,
                1_000,
            ),
            (
                "database.connect_timeout_secs",
                self.database.connect_timeout_secs,
                1,
                3600,
            ),
            (
                "database.query_timeout_secs",
                self.database.query_timeout_secs,
                1,
                3600,
            ),
            (
                "llm.stall_timeout_secs",
                self.llm.stall_timeout_secs,
                1,
                86_400,
            ),
            (
                "llm.streams_per_connection",
                self.llm.streams_per_connection.into(),
                1,
                100_000,
            ),
            (
                "chat.flush_interval_ms",
                self.chat.flush_interval_ms,
                10,
                60_000,
            ),
            ("auth.bcrypt_cost", self.auth.bcrypt_cost.into(), 4, 31),
            (
                "chat.max_messages_per_conversation",
                self.chat.max_messages_per_conversation.into(),
                2,
                1_000_000,
            ),
            (
                "chat.max_live_answers_per_user",
                self.chat.max_live_answers_per_user.into(),
                1,
                100_000,
            ),
            (
                "chat.answers_per_minute_per_user",
                self.chat.answers_per_minute_per_user.into(),
                1,
                1_000_000,
            ),
            (
                "auth.registrations_per_hour_per_address",
                self.auth.registrations_per_hour_per_address.into(),
                1,
                1_000_000,
            ),
            (
                "auth.login_attempts_per_minute",
                self.auth.login_attempts_per_minute.into(),
                1,
                1_000_000,
            ),
            (
                "auth.token_ttl_hours",
                self.auth.token_ttl_hours.max(0) as u64,
                1,
                24 * 366,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(SettingsError::Invalid(format!(
                    "{key} must be between {min} and {max} (it is {value})"
                )));
            }
        }
        Ok(())
    }

    /// Cookies get `Secure` only when people reach confab over https.
    pub fn cookie_secure(&self) -> bool {
        self.server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

fn unset_if_empty<T>(value: &mut Option<T>, is_empty: impl FnOnce(&T) -> bool) {
    if value.as_ref().is_some_and(is_empty) {
        *value = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let s = Settings::load_from(&Overrides::default(), env_of(&[])).unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.server.host, "127.0.0.1");
        assert!(s.database.url.is_none());
        assert!(s.auth.jwt_secret.is_none());
    }

    #[test]
    fn well_known_names_and_flags_override() {
        let s = Settings::load_from(
            &Overrides {
                port: Some(9000),
                ..Default::default()
            },
            env_of(&[
                ("PORT", "7000"),
                ("DATABASE_URL", "postgres://x/y"),
                ("JWT_SECRET", "k"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9000, "the --port flag wins over PORT");
        assert_eq!(s.database.url.unwrap().expose(), "postgres://x/y");
        assert_eq!(s.auth.jwt_secret.unwrap().expose(), "k");
    }

    #[test]
    fn confab_env_vars_nest_with_double_underscore() {
        let s = Settings::load_from(
            &Overrides::default(),
            env_of(&[
                ("CONFAB_SERVER__PORT", "8181"),
                ("CONFAB_AUTH__BCRYPT_COST", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 8181);
        assert_eq!(s.auth.bcrypt_cost, 5);
    }

    #[test]
    fn values_that_cannot_work_are_refused_by_name() {
        for (name, value, key) in [
            (
                "CONFAB_LLM__STALL_TIMEOUT_SECS",
                "0",
                "llm.stall_timeout_secs",
            ),
            (
                "CONFAB_CHAT__FLUSH_INTERVAL_MS",
                "0",
                "chat.flush_interval_ms",
            ),
            (
                "CONFAB_LLM__STREAMS_PER_CONNECTION",
                "0",
                "llm.streams_per_connection",
            ),
            ("CONFAB_DATABASE__POOL_SIZE", "0", "database.pool_size"),
            (
                "CONFAB_DATABASE__WARM_CONNECTIONS",
                "17",
                "database.warm_connections",
            ),
            ("CONFAB_AUTH__BCRYPT_COST", "40", "auth.bcrypt_cost"),
        ] {
            let error = Settings::load_from(&Overrides::default(), env_of(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn provider_keys_come_from_the_usual_names_and_providers_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("confab.toml");
        std::fs::write(
            &file,
            "[llm]\nfallback = [\"groq\", \"openai\"]\n[[llm.providers]]\nname = \"groq\"\nbase_url = \"https://api.groq.com/openai/v1\"\napi_key = \"gsk\"\n[[llm.providers]]\nname = \"ollama\"\nbase_url = \"http://localhost:11434/v1\"\napi = \"responses\"\n",
        )
        .unwrap();
        let s = Settings::load_from(
            &Overrides {
                config_file: Some(file),
                ..Default::default()
            },
            env_of(&[
                ("OPENAI_API_KEY", "sk-test"),
                ("OPENROUTER_API_KEY", ""),
                ("CONFAB_LLM__CA_FILE", ""),
            ]),
        )
        .unwrap();
        assert_eq!(s.llm.openai_api_key.unwrap().expose(), "sk-test");
        assert!(
            s.llm.openrouter_api_key.is_none(),
            "an empty key means unset"
        );
        assert_eq!(s.llm.ca_file, None, "an empty path means unset");
        assert_eq!(s.llm.providers.len(), 2);
        assert_eq!(s.llm.providers[1].api, crate::llm::Api::Responses);
        assert_eq!(s.llm.fallback.unwrap(), ["groq", "openai"]);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("confab.toml");
        std::fs::write(
            &file,
            "[server]\ncors_origin = \"https://app.example.com\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let error = Settings::load_from(&overrides, env_of(&[])).unwrap_err();
        assert!(error.to_string().contains("cors_origin"), "{error}");
        // A typo in the environment too.
        let error = Settings::load_from(
            &Overrides::default(),
            env_of(&[("CONFAB_SERVER__PROT", "9")]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("prot"), "{error}");
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses_from_toml_or_the_environment() {
        let s = Settings::load_from(&Overrides::default(), env_of(&[])).unwrap();
        assert!(s.server.trusted_proxies.is_empty(), "none by default");
        assert_eq!(s.server.rate_limit.requests_per_minute, 600);
        let s = Settings::load_from(
            &Overrides::default(),
            env_of(&[(
                "CONFAB_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.1,2001:db8::/32",
            )]),
        )
        .unwrap();
        let nets: Vec<String> = s
            .server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("confab.toml");
        std::fs::write(
            &file,
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[server.rate_limit]\nrequests_per_minute = 60\nburst = 10\n",
        )
        .unwrap();
        let s = Settings::load_from(
            &Overrides {
                config_file: Some(file),
                ..Default::default()
            },
            env_of(&[(
                "CONFAB_SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE_PER_KEY",
                "30",
            )]),
        )
        .unwrap();
        assert_eq!(s.server.trusted_proxies[0].to_string(), "127.0.0.1/32");
        let limits = &s.server.rate_limit;
        assert_eq!(
            (
                limits.requests_per_minute,
                limits.requests_per_minute_per_key,
                limits.burst
            ),
            (60, 30, Some(10))
        );

        let error = Settings::load_from(
            &Overrides::default(),
            env_of(&[("CONFAB_SERVER__TRUSTED_PROXIES", "10.0.0.0/33")]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
        let error = Settings::load_from(
            &Overrides::default(),
            env_of(&[("CONFAB_SERVER__RATE_LIMIT__BURST", "0")]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("server.rate_limit.burst"),
            "{error}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::load_from(&Overrides::default(), env_of(&[("JWT_SECRET", "hunter2")]))
            .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
