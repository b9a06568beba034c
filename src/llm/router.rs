//! Picks the provider for a chat: retries and falls back, but only before the first token, since
//! after it the person has already seen part of an answer that a retry would not reproduce.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use futures_util::{StreamExt, future, stream};

use super::clients::{ClientOptions, Clients};
use super::provider::{Api, ChatRequest, EventStream, LlmError, ProviderConfig};
use super::{chat_completions, responses};

/// How hard to try one provider before moving to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, per provider.
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles per retry.
    pub base_delay: Duration,
    /// Cap of the computed backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` we wait for; a provider asking for more is skipped at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// openai-python's numbers, except a shorter `Retry-After` cap: someone is watching the page.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retries_done + 1`, or None to give up on this provider.
    pub fn delay(&self, error: &LlmError, retries_done: u32) -> Option<Duration> {
        if retries_done >= self.max_retries || !error.is_retryable() {
            return None;
        }
        match error.retry_after() {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) if !asked.is_zero() => Some(asked),
            _ => Some(self.backoff(retries_done)),
        }
    }

    /// `min(base * 2^n, cap) * (1 - 0.25 * rand)`: the jitter keeps many chats that failed
    /// together from retrying together.
    pub fn backoff(&self, retries_done: u32) -> Duration {
        let factor = 2u32.saturating_pow(retries_done);
        let delay = self.base_delay.saturating_mul(factor).min(self.max_delay);
        delay.mul_f64(1.0 - 0.25 * rand::random::<f64>())
    }
}

/// The configured providers and how to fail over between them.
pub struct Router {
    pub providers: Vec<ProviderConfig>,
    /// Names tried, in this order, after the requested provider has failed.
    pub fallback_order: Vec<String>,
    pub retry: RetryPolicy,
    clients: Clients,
}

impl Router {
    /// The HTTP client of the Files API and vector stores.
    pub(crate) fn files_client(&self) -> &reqwest::Client {
        self.clients.files()
    }
}

/// Why no provider started an answer, and how many attempts were made in all (retries and
/// fallbacks), so the person can be told "we tried 3 times".
#[derive(Debug)]
pub struct Failure {
    pub error: LlmError,
    /// The provider that `error` came from (none when no configured provider was tried).
    pub provider: Option<String>,
    pub attempts: u32,
}

/// An answer that has started: its first event has arrived.
pub struct Started {
    /// The provider that answered (a fallback, if the requested one failed).
    pub provider: String,
    /// The model asked of that provider.
    pub model: String,
    /// The whole answer, first event included. Dropping it closes the upstream connection.
    pub stream: EventStream,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish()
    }
}

impl Router {
    /// A router with clients of its own, on the system's certificate authorities; build one per
    /// process and share it.
    pub fn new(
        providers: Vec<ProviderConfig>,
        fallback_order: Vec<String>,
        retry: RetryPolicy,
    ) -> Self {
        let clients = Clients::new(&ClientOptions::default())
            .expect("the system's certificate authorities, to reach providers over HTTPS");
        Router::with_clients(clients, providers, fallback_order, retry)
    }

    /// A router on clients made from the settings.
    pub fn with_clients(
        clients: Clients,
        providers: Vec<ProviderConfig>,
        fallback_order: Vec<String>,
        retry: RetryPolicy,
    ) -> Self {
        Router {
            providers,
            fallback_order,
            retry,
            clients,
        }
    }

    /// The configured provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|provider| provider.name == name)
    }

    /// The provider that answers for an agent naming `name`: `name` when it is configured, else
    /// the first configured one in the fallback order, or none when no provider would.
    pub fn answering_for<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.chain(name)
            .into_iter()
            .find(|candidate| self.provider(candidate).is_some())
    }

    /// The names tried for a chat on `first`: it, then the fallback order without repeats.
    pub fn chain<'a>(&'a self, first: &'a str) -> Vec<&'a str> {
        let mut chain = vec![first];
        for name in &self.fallback_order {
            if !chain.contains(&name.as_str()) {
                chain.push(name);
            }
        }
        chain
    }

    /// Start an answer on `provider`, retrying and falling back until one provider has produced
    /// its first event. On total failure the error is the requested provider's (the one the
    /// agent's owner can fix); the fallbacks' errors are logged.
    pub async fn stream(&self, provider: &str, request: &ChatRequest) -> Result<Started, Failure> {
        if self.providers.is_empty() {
            return Err(Failure {
                error: LlmError::NoProviders,
                provider: None,
                attempts: 0,
            });
        }
        let mut first_error = None;
        let mut attempts = 0;
        for (position, name) in self.chain(provider).into_iter().enumerate() {
            let Some(config) = self.provider(name) else {
                let error = LlmError::UnknownProvider {
                    name: name.to_string(),
                    configured: self.providers.iter().map(|p| p.name.clone()).collect(),
                };
                tracing::warn!(provider = name, %error, "skipping provider");
                first_error.get_or_insert((error, None));
                continue;
            };
            let request = match (&config.fallback_model, position) {
                (Some(model), 1..) => Cow::Owned(ChatRequest {
                    model: model.clone(),
                    ..request.clone()
                }),
                _ => Cow::Borrowed(request),
            };
            // Attached files this provider holds go as files, not as their text.
            let request = match request.for_provider(config) {
                Some(with_files) => Cow::Owned(with_files),
                None => request,
            };
            let mut retries_done = 0;
            loop {
                attempts += 1;
                let error = match first_event(&self.clients, config, &request).await {
                    Ok(stream) => {
                        return Ok(Started {
                            provider: config.name.clone(),
                            model: request.model.clone(),
                            stream,
                        });
                    }
                    Err(error) => error,
                };
                let delay = self.retry.delay(&error, retries_done);
                tracing::warn!(provider = name, attempt = retries_done + 1, %error, retry_in = ?delay, "attempt failed");
                crate::metrics::upstream_error(name, error.metric_label());
                match delay {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        retries_done += 1;
                    }
                    None => {
                        first_error.get_or_insert((error, Some(config.name.clone())));
                        break;
                    }
                }
            }
        }
        let (error, provider) = first_error.unwrap_or((LlmError::NoProviders, None));
        Err(Failure {
            error,
            provider,
            attempts,
        })
    }
}

/// Open a stream on one provider, without retries.
pub async fn open(
    clients: &Clients,
    provider: &ProviderConfig,
    request: &ChatRequest,
) -> Result<EventStream, LlmError> {
    match provider.api {
        Api::Responses => responses::stream(clients, provider, request).await,
        Api::ChatCompletions => chat_completions::stream(clients, provider, request).await,
    }
}

/// Open a stream and wait for its first event, so that a failure before any token (including an
/// in-band one, such as `response.failed` right away) counts as a failed attempt.
async fn first_event(
    clients: &Clients,
    provider: &ProviderConfig,
    request: &ChatRequest,
) -> Result<EventStream, LlmError> {
    let mut stream = open(clients, provider, request).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok(stream::once(future::ready(Ok(first))).chain(stream).boxed()),
        Some(Err(error)) => Err(error),
        None => Err(LlmError::Dropped("the stream ended early".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(2),
        }
    }

    fn throttled(retry_after: Option<Duration>) -> LlmError {
        LlmError::Http {
            status: 429,
            code: None,
            message: "slow down".into(),
            retry_after,
            should_retry: None,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let policy = policy();
        for (retry, full) in [(0, 100), (1, 200), (2, 300), (9, 300), (40, 300)] {
            let delay = policy.backoff(retry);
            let full = Duration::from_millis(full);
            assert!(
                delay <= full && delay >= full.mul_f64(0.75),
                "retry {retry}: {delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_obeyed_up_to_the_cap_then_the_provider_is_left() {
        let policy = policy();
        assert_eq!(
            policy.delay(&throttled(Some(Duration::from_secs(1))), 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy.delay(&throttled(Some(Duration::from_secs(3))), 0),
            None
        );
        assert!(policy.delay(&throttled(None), 0).is_some());
        assert_eq!(
            policy.delay(&throttled(None), 3),
            None,
            "retries are counted"
        );
        let quota = LlmError::Http {
            status: 429,
            code: Some("insufficient_quota".into()),
            message: "quota".into(),
            retry_after: Some(Duration::from_secs(1)),
            should_retry: None,
        };
        assert_eq!(policy.delay(&quota, 0), None);
    }

    #[test]
    fn chain_starts_with_the_requested_provider_and_never_repeats() {
        let router = Router::new(
            Vec::new(),
            vec!["openai".into(), "openrouter".into()],
            policy(),
        );
        assert_eq!(router.chain("openrouter"), ["openrouter", "openai"]);
        assert_eq!(router.chain("ollama"), ["ollama", "openai", "openrouter"]);
    }
}
