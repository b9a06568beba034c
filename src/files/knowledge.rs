//! Project knowledge at a provider: when a project answers from its files and its default
//! agent's provider speaks the Responses API with a Files API, the files go in a vector store of
//! the project's there (docs/llm-wire.md §4.4), are polled until indexed, and the provider
//! searches them itself (`file_search`). Every other provider gets confab's own passages
//! (`chat::service`), so knowledge works with any provider and with none of this.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::db::{self, PgPool};
use crate::error::{AppError, AppResult};
use crate::files::model::{Indexing, StoredFile};
use crate::files::service::upload_to;
use crate::files::store::Store;
use crate::llm::files::Indexing as Progress;
use crate::llm::{Api, LlmError, ProviderConfig, Router};
use crate::state::{AppState, IndexingSignals};

/// How often files being indexed are asked about.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// At most this many files are asked about per round.
const POLL_BATCH: i64 = 100;

/// How many times a sync tries again when the provider does not answer, each time waiting four
/// times longer (from `files.index_retry_secs`: 30 s, 2 min, 8 min, 32 min by default). Files
/// still waiting after that are tried at the next start, upload, or turning knowledge on.
const SYNC_RETRIES: u32 = 4;

/// Brings the project's vector store up to date in the background (a request does not wait
/// for the provider): `retry` also tries the files whose indexing failed.
pub fn start_sync(state: &AppState, project_id: Uuid, retry: bool) {
    let pool = state.pool.clone();
    let store = crate::files::api::store(state);
    let router = state.generations.shared_router();
    let purpose = state.settings.files.provider_purpose.clone();
    let signals = Arc::clone(&state.indexing);
    let mut wait = Duration::from_secs(state.settings.files.index_retry_secs);
    state.generations.spawn(async move {
        let mut retry = retry;
        for attempt in 0..=SYNC_RETRIES {
            // One sync of a project at a time in this process, so two (an upload's and turning
            // knowledge on) do not both make a store; across processes the claim decides.
            let one_at_a_time = signals.one_sync_of(project_id).await;
            let synced = sync(&pool, &store, &router, &purpose, project_id, retry).await;
            drop(one_at_a_time);
            signals.round_done();
            signals.wake.notify_one();
            match synced {
                Ok(Synced::Done) => return,
                Ok(Synced::ProviderDown) if attempt < SYNC_RETRIES => {
                    tracing::info!(%project_id, seconds = wait.as_secs(), "a project's provider did not answer; its files are synced again later");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                    retry = false;
                }
                Ok(Synced::ProviderDown) => {
                    tracing::warn!(%project_id, "a project's provider did not answer again; its files wait for the next start, upload or turning knowledge on");
                }
                Err(error) => {
                    tracing::warn!(%error, %project_id, "could not bring a project's vector store up to date");
                    return;
                }
            }
        }
    });
}

/// After a start: syncs the projects whose files were waiting for their provider.
pub async fn resume(state: &AppState) {
    match db::run(&state.pool, |conn| Ok(StoredFile::projects_waiting(conn)?)).await {
        Ok(projects) => {
            for project_id in projects {
                start_sync(state, project_id, false);
            }
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the projects whose files wait to be indexed");
        }
    }
}

/// How a sync ended.
enum Synced {
    /// Every file it could add is in the store, indexed, being indexed, or failed for good.
    Done,
    /// The provider did not answer (down, overloaded, a network error): try again later.
    ProviderDown,
}

/// The provider that keeps the project's vector store: its default agent's, when it has a
/// Files API and speaks the Responses API (the only API with `file_search`).
fn searching_provider<'r>(router: &'r Router, default: Option<&str>) -> Option<&'r ProviderConfig> {
    default
        .and_then(|name| router.files_api(name))
        .filter(|provider| provider.api == Api::Responses)
}

async fn sync(
    pool: &PgPool,
    store: &Store,
    router: &Router,
    purpose: &str,
    project_id: Uuid,
    retry: bool,
) -> AppResult<Synced> {
    let setup = db::run(pool, move |conn| {
        Ok(StoredFile::knowledge_setup(conn, project_id)?)
    })
    .await?;
    if !setup.knowledge {
        return Ok(Synced::Done);
    }
    let Some(provider) = searching_provider(router, setup.default_provider.as_deref()) else {
        return Ok(Synced::Done);
    };
    let vector_store = match setup.vector_store {
        Some((name, id)) if name == provider.name => id,
        // Made when the project used another provider: that one keeps searching it, and
        // agents on this provider get confab's passages.
        Some(_) => return Ok(Synced::Done),
        None => match vector_store_for(pool, router, provider, project_id).await? {
            Some(id) => id,
            None => return Ok(Synced::ProviderDown),
        },
    };
    let files = db::run(pool, move |conn| {
        Ok(StoredFile::not_indexed(conn, project_id, retry)?)
    })
    .await?;
    for file in files {
        if file.status == "delete_failed" {
            continue;
        }
        // A file the provider does not hold yet is uploaded to it now.
        let held = file.provider.as_deref() == Some(provider.name.as_str())
            && file.status == "uploaded"
            && file.provider_file_id.is_some();
        let (file, upload_error) = if held {
            (file, None)
        } else {
            match upload_to(pool, store, router, purpose, provider, file).await {
                Ok(uploaded) => (uploaded.file, uploaded.error),
                // Deleted meanwhile.
                Err(AppError::NotFound) => continue,
                Err(error) => return Err(error),
            }
        };
        let added = match (file.provider_file_id.as_deref(), upload_error) {
            (Some(remote), _) => router
                .add_to_vector_store(provider, &vector_store, remote)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, file_id = %file.id, "could not add a file to its project's vector store");
                    error
                }),
            (None, Some(error)) => Err(error),
            (None, None) => Err(LlmError::Config("its bytes are missing".into())),
        };
        let (status, error) = match added {
            Ok(Progress::Completed) => ("indexed", None),
            Ok(Progress::InProgress) => ("indexing", None),
            Ok(Progress::Failed(reason)) => ("index_failed", Some(reason)),
            // The provider is down or busy: this file and the rest wait for the next try.
            Err(error) if error.is_retryable() => {
                record_index(pool, file.id, "index_waiting", Some(error.to_string())).await?;
                return Ok(Synced::ProviderDown);
            }
            Err(error) => ("index_failed", Some(error.to_string())),
        };
        record_index(pool, file.id, status, error).await?;
    }
    Ok(Synced::Done)
}

/// Records how a file stands in its project's vector store.
async fn record_index(
    pool: &PgPool,
    file_id: Uuid,
    status: &'static str,
    error: Option<String>,
) -> AppResult<()> {
    db::run(pool, move |conn| {
        Ok(StoredFile::set_index(
            conn,
            file_id,
            status,
            error.as_deref(),
        )?)
    })
    .await
}

/// Makes the project's vector store; when another sync made one meanwhile, that one is kept
/// and ours deleted. `None` when the provider did not answer (try again later).
async fn vector_store_for(
    pool: &PgPool,
    router: &Router,
    provider: &ProviderConfig,
    project_id: Uuid,
) -> AppResult<Option<String>> {
    let made = match router
        .create_vector_store(provider, &format!("confab project {project_id}"))
        .await
    {
        Ok(made) => made,
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, %project_id, "could not make a project's vector store");
            return Ok(None);
        }
        Err(error) => return Err(AppError::Upstream(error.to_string())),
    };
    let (name, id) = (provider.name.clone(), made.clone());
    let claimed = db::run(pool, move |conn| {
        Ok(StoredFile::claim_vector_store(
            conn, project_id, &name, &id,
        )?)
    })
    .await?;
    if claimed {
        return Ok(Some(made));
    }
    // Another sync made one first, or the project was deleted meanwhile: ours is nobody's.
    if let Err(error) = router.delete_vector_store(provider, &made).await {
        tracing::warn!(%error, vector_store_id = %made, "could not delete a vector store made twice");
    }
    let kept = db::run(pool, move |conn| {
        Ok(StoredFile::vector_store_of(conn, project_id)?)
    })
    .await?;
    kept.map(|(_, id)| Some(id)).ok_or(AppError::NotFound)
}

/// Asks the providers how far indexing is, once a second while any file is being indexed, and
/// sleeps until woken otherwise. Files left `indexing` by an earlier run are picked up at start.
pub async fn poll_forever(pool: PgPool, router: Arc<Router>, signals: Arc<IndexingSignals>) {
    loop {
        let pending = db::run(&pool, |conn| {
            Ok(StoredFile::being_indexed(conn, POLL_BATCH)?)
        })
        .await;
        match pending {
            Ok(pending) if pending.is_empty() => signals.wake.notified().await,
            Ok(pending) => {
                for file in pending {
                    poll(&pool, &router, file).await;
                }
                signals.round_done();
                tokio::time::sleep(POLL_EVERY).await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the files being indexed");
                tokio::time::sleep(POLL_EVERY * 5).await;
            }
        }
    }
}

async fn poll(pool: &PgPool, router: &Router, file: Indexing) {
    let outcome = match router.provider(&file.provider) {
        None => Some((
            "index_failed",
            Some(format!("the provider {} is not configured", file.provider)),
        )),
        Some(provider) => match router
            .indexing(provider, &file.vector_store_id, &file.provider_file_id)
            .await
        {
            Ok(Progress::InProgress) => None,
            Ok(Progress::Completed) => Some(("indexed", None)),
            Ok(Progress::Failed(reason)) => Some(("index_failed", Some(reason))),
            // The store or the file is gone there, or the key is refused: asking again will
            // not change it. Turning knowledge on again retries.
            Err(LlmError::Http {
                status, message, ..
            }) if (400..500).contains(&status) && status != 429 => {
                Some(("index_failed", Some(message)))
            }
            Err(error @ LlmError::Auth { .. }) => Some(("index_failed", Some(error.to_string()))),
            // Asked again next round.
            Err(error) => {
                tracing::warn!(%error, file_id = %file.file_id, "could not ask how far indexing is");
                None
            }
        },
    };
    let Some((status, error)) = outcome else {
        return;
    };
    if let Err(error) = record_index(pool, file.file_id, status, error).await {
        tracing::warn!(%error, file_id = %file.file_id, "could not record a file's indexing");
    }
}

/// Before a file is deleted: takes it out of its project's vector store (a failure is logged;
/// deleting the provider's copy of the file, next, ends its use there anyway).
pub async fn leave_vector_store(pool: &PgPool, router: &Router, file: &StoredFile) {
    let (Some(_), Some(remote)) = (&file.index_status, &file.provider_file_id) else {
        return;
    };
    let project_id = file.project_id;
    let Ok(vector_store) = db::run(pool, move |conn| {
        Ok(StoredFile::vector_store_of(conn, project_id)?)
    })
    .await
    else {
        return;
    };
    if let Some((name, store)) = vector_store
        && let Some(provider) = router.provider(&name)
        && let Err(error) = router
            .remove_from_vector_store(provider, &store, remote)
            .await
    {
        tracing::warn!(%error, file_id = %file.id, vector_store_id = %store, "could not take a file out of its vector store");
    }
}

/// After a project was deleted: its vector store goes too (a failure is logged with its id, to
/// delete by hand).
pub async fn forget_vector_store(router: &Router, vector_store: Option<(String, String)>) {
    if let Some((name, id)) = vector_store
        && let Some(provider) = router.provider(&name)
        && let Err(error) = router.delete_vector_store(provider, &id).await
    {
        tracing::error!(%error, provider = %name, vector_store_id = %id, "could not delete a deleted project's vector store");
    }
}
