//! What request handlers share, built once at start-up. A leaf: it knows the parts it holds
//! (pool, settings, token keys, limits, the answer generator), never the routes or handlers.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use uuid::Uuid;

use crate::auth::password::make_dummy_hash;
use crate::auth::rate_limit::{LoginLimiter, RegistrationLimiter, RequestLimiter};
use crate::auth::token::TokenKeys;
use crate::db::PgPool;
use crate::generation::allowance::Allowance;
use crate::generation::{Generations, router_from_settings};
use crate::llm::Clients;
use crate::settings::{Secret, Settings};

pub struct AppState {
    pub pool: PgPool,
    pub settings: Settings,
    pub tokens: TokenKeys,
    pub login_limiter: LoginLimiter,
    pub registration_limiter: RegistrationLimiter,
    /// The whole API's rate limits (`session::limit`).
    pub request_limiter: RequestLimiter,
    /// Checked against when an email is unknown, so sign-in takes equally long either way.
    pub dummy_password_hash: String,
    /// Answers being generated, and the provider router they use.
    pub generations: Generations,
    /// The background indexing of files at a provider.
    pub indexing: Arc<IndexingSignals>,
}

/// What the background indexing of files listens and answers to.
pub struct IndexingSignals {
    /// Woken when files start being indexed, so their progress is polled.
    pub wake: tokio::sync::Notify,
    /// Counts the rounds that may have changed files' indexing (a sync, a round of polls), so
    /// whoever waits for a file's state (a test) waits for the next round instead of sleeping.
    pub rounds: tokio::sync::watch::Sender<u64>,
    /// A lock per project being synced (see [`IndexingSignals::one_sync_of`]).
    syncing: std::sync::Mutex<HashMap<Uuid, Weak<tokio::sync::Mutex<()>>>>,
}

impl Default for IndexingSignals {
    fn default() -> Self {
        IndexingSignals {
            wake: tokio::sync::Notify::new(),
            rounds: tokio::sync::watch::Sender::new(0),
            syncing: Default::default(),
        }
    }
}

impl IndexingSignals {
    /// A round ended.
    pub fn round_done(&self) {
        self.rounds.send_modify(|rounds| *rounds += 1);
    }

    /// Waits until no other sync of the project runs in this process, and holds that until the
    /// guard is dropped. Syncs of different projects do not wait for each other (a slow
    /// provider of one project holds up nobody else's).
    pub async fn one_sync_of(&self, project_id: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut syncing = self
                .syncing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Locks nobody holds or waits for go, so the map stays as small as the syncs.
            syncing.retain(|_, lock| lock.strong_count() > 0);
            match syncing.get(&project_id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    syncing.insert(project_id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

impl AppState {
    pub fn new(
        settings: Settings,
        pool: PgPool,
        jwt_secret: &Secret,
        clients: Clients,
    ) -> AppState {
        // Metrics recorded before the recorder exists are lost, so install it first.
        crate::metrics::handle();
        AppState {
            tokens: TokenKeys::new(jwt_secret, settings.auth.token_ttl_hours),
            login_limiter: LoginLimiter::per_minute(settings.auth.login_attempts_per_minute),
            registration_limiter: RegistrationLimiter::per_hour(
                settings.auth.registrations_per_hour_per_address,
            ),
            request_limiter: RequestLimiter::new(
                settings.server.rate_limit.requests_per_minute,
                settings.server.rate_limit.requests_per_minute_per_key,
                settings.server.rate_limit.requests_per_minute_per_address,
                settings.server.rate_limit.burst,
            ),
            dummy_password_hash: make_dummy_hash(settings.auth.bcrypt_cost),
            generations: Generations::new(
                router_from_settings(&settings, clients),
                pool.clone(),
                Duration::from_millis(settings.chat.flush_interval_ms),
                Duration::from_secs(settings.llm.stall_timeout_secs),
                Allowance::new(
                    settings.chat.max_live_answers_per_user as usize,
                    settings.chat.answers_per_minute_per_user,
                ),
            ),
            indexing: Default::default(),
            pool,
            settings,
        }
    }
}
