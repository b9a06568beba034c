//! File rules: who may add, see and delete a project's files; names; one copy of the same bytes
//! per project; the bytes go when the last row naming them does.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use crate::db::{self, PgPool};
use crate::error::{AppError, AppResult};
use crate::files::model::{NewFile, NewPassage, Passage, StoredFile};
use crate::files::store::{Received, Store};
use crate::llm::files::Upload;
use crate::llm::{LlmError, ProviderConfig, Router};
use crate::session::CurrentUser;
use crate::settings::FilesSettings;

/// What an upload says about its file besides the bytes.
pub struct Incoming {
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

/// A name fit to show and to send back in `Content-Disposition`: the last path segment, without
/// control characters, at most 255 characters; "file" when nothing is left.
pub fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    // Control characters go, and the invisible ones that reorder text (a name that reads
    // "invoice.txt" but is "invoice\u{202e}txt.exe").
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    c,
                    '\u{200b}'..='\u{200f}'
                        | '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}'
                        | '\u{feff}'
                )
        })
        .take(255)
        .collect();
    // Trailing dots and spaces go too: Windows drops them when it saves a file, so "run.bat."
    // would be downloaded as "run.bat" after passing the refused-extensions check as ".bat.".
    let cleaned = cleaned
        .trim()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned.to_string()
    }
}

/// The content type as sent when it is a plausible one, else `application/octet-stream`.
fn clean_content_type(raw: Option<&str>) -> String {
    match raw.map(str::trim) {
        Some(t)
            if !t.is_empty()
                && t.len() <= 100
                && t.contains('/')
                && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            t.to_ascii_lowercase()
        }
        _ => "application/octet-stream".into(),
    }
}

/// A project whose owner was checked: the only way to [`upload`] into it.
#[derive(Clone, Copy, Debug)]
pub struct OwnedProject(Uuid);

impl OwnedProject {
    pub fn id(self) -> Uuid {
        self.0
    }
}

/// The project, if it is the user's ("not found" otherwise); check it before reading an upload.
pub async fn check_project(
    pool: &PgPool,
    user: &CurrentUser,
    project_id: Uuid,
) -> AppResult<OwnedProject> {
    let owner = user.id;
    let owned = db::run(pool, move |conn| {
        Ok(StoredFile::owns_project(conn, owner, project_id)?)
    })
    .await?;
    if owned {
        Ok(OwnedProject(project_id))
    } else {
        Err(AppError::NotFound)
    }
}

/// Where a new file goes on to while it comes in: a provider's Files API.
pub struct Forward {
    pub router: Arc<Router>,
    pub provider: ProviderConfig,
    pub purpose: String,
}

/// The provider a project's files go to: its default agent's, when that has a Files API.
async fn files_provider_of<'r>(
    pool: &PgPool,
    router: &'r Router,
    project_id: Uuid,
) -> AppResult<Option<&'r ProviderConfig>> {
    let name = db::run(pool, move |conn| {
        Ok(StoredFile::default_provider_of(conn, project_id)?)
    })
    .await?;
    Ok(name.as_deref().and_then(|name| router.files_api(name)))
}

/// Where the (checked) project's new files go on to: its default agent's provider, when that
/// has a Files API.
pub async fn forward_for(
    pool: &PgPool,
    router: Arc<Router>,
    project: OwnedProject,
    purpose: &str,
) -> AppResult<Option<Forward>> {
    let Some(provider) = files_provider_of(pool, &router, project.id())
        .await?
        .cloned()
    else {
        return Ok(None);
    };
    Ok(Some(Forward {
        router,
        provider,
        purpose: purpose.to_string(),
    }))
}

/// How many chunks may wait for the provider while the upload comes in: the provider's pace
/// slows the upload rather than filling memory.
const FORWARD_CHUNKS: usize = 8;

/// Keeps the body and sends it on to the provider in the same pass (never whole in memory,
/// never read twice). A refusal half-way (too big, a program, cut off) aborts the provider's
/// request, so it keeps nothing either. The provider's failure only loses its copy.
async fn receive_and_forward<S, E>(
    store: &Store,
    limit: u64,
    body: S,
    forward: &Forward,
    (filename, content_type): (&str, &str),
) -> AppResult<(Received, Result<String, LlmError>)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // `Some(chunk)`, then `None` once the whole file is in. A channel closed without that end
    // (a refusal, a reset connection, a dropped handler) fails the provider's request, so it
    // never keeps a truncated file.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Option<Bytes>>(FORWARD_CHUNKS);
    let outgoing = futures_util::stream::unfold(Some(receiver), |state| async move {
        let mut receiver = state?;
        match receiver.recv().await {
            Some(Some(chunk)) => Some((Ok(chunk), Some(receiver))),
            Some(None) => None,
            None => Some((
                Err(std::io::Error::other("the upload to confab did not finish")),
                None,
            )),
        }
    });
    let sending = tokio::spawn({
        let router = Arc::clone(&forward.router);
        let provider = forward.provider.clone();
        let (filename, content_type) = (filename.to_string(), content_type.to_string());
        let purpose = forward.purpose.clone();
        async move {
            router
                .upload_stream(&provider, outgoing, &filename, &content_type, &purpose)
                .await
        }
    });
    let teed = body.then({
        let sender = sender.clone();
        move |chunk| {
            let sender = sender.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    // A provider that gave up has dropped its end: confab keeps the file anyway.
                    let _ = sender.send(Some(bytes.clone())).await;
                }
                chunk
            }
        }
    });
    let received = store.receive(Box::pin(teed), limit).await;
    if received.is_ok() {
        let _ = sender.send(None).await;
    }
    drop(sender);
    let remote = sending
        .await
        .unwrap_or_else(|error| Err(LlmError::Config(error.to_string())));
    Ok((received?, remote))
}

/// Keeps the body and records the file in the (checked) project; with `forward`, the provider
/// gets the bytes in the same pass. `Ok((file, true))` for a new file, `(file, false)` when the
/// project already had these bytes (under the name it had then).
pub async fn upload<S, E>(
    pool: &PgPool,
    store: &Store,
    settings: &FilesSettings,
    project: OwnedProject,
    incoming: Incoming,
    body: S,
    forward: Option<Forward>,
) -> AppResult<(StoredFile, bool)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let project_id = project.id();
    let filename = clean_filename(incoming.filename.as_deref().unwrap_or_default());
    let content_type = clean_content_type(incoming.content_type.as_deref());
    // Refused by its name before a byte is read (and by its first bytes in `receive`).
    if let Some((_, extension)) = filename.rsplit_once('.')
        && settings
            .refused_extensions
            .iter()
            .any(|refused| refused.eq_ignore_ascii_case(extension))
    {
        return Err(AppError::invalid(
            "file",
            format!("Files ending in .{extension} cannot be uploaded here."),
        ));
    }
    let limit = settings.max_upload_bytes;
    let (received, forwarded) = match &forward {
        None => (store.receive(body, limit).await?, None),
        Some(forward) => {
            let (received, remote) =
                receive_and_forward(store, limit, body, forward, (&filename, &content_type))
                    .await?;
            (received, Some((forward, remote)))
        }
    };
    // Where the provider keeps it, recorded with the row itself.
    let (provider, remote_id, status) = match &forwarded {
        None => (None, None, "stored"),
        Some((forward, Ok(id))) => (
            Some(forward.provider.name.clone()),
            Some(id.clone()),
            "uploaded",
        ),
        Some((forward, Err(error))) => {
            tracing::warn!(%error, provider = %forward.provider.name, "could not upload a file to the provider");
            (Some(forward.provider.name.clone()), None, "upload_failed")
        }
    };
    let sha256 = received.sha256.clone();
    let received_sha = sha256.clone();
    let bytes = i64::try_from(received.bytes).unwrap_or(i64::MAX);
    let recorded = db::transaction(pool, move |conn| {
        // Placed and recorded together, so a delete of the same bytes cannot remove them in
        // between (see `forget_bytes`).
        StoredFile::lock_bytes(conn, &sha256)?;
        received
            .place()
            .map_err(|error| AppError::Internal(Box::new(error)))?;
        let new = NewFile {
            id: Uuid::now_v7(),
            project_id,
            filename: &filename,
            content_type: &content_type,
            bytes,
            sha256: &sha256,
            provider: provider.as_deref(),
            provider_file_id: remote_id.as_deref(),
            status,
        };
        Ok(match StoredFile::insert(conn, &new) {
            Ok(Some(file)) => (file, true),
            Ok(None) => (StoredFile::find_by_sha(conn, project_id, &sha256)?, false),
            // The project was deleted while its file came in.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            )) => return Err(AppError::NotFound),
            Err(error) => return Err(error.into()),
        })
    })
    .await;
    // The provider's copy nobody names: the project had these bytes (known only at their end:
    // one copy there is enough), or nothing was recorded.
    if let Some((forward, Ok(id))) = &forwarded
        && !matches!(recorded, Ok((_, true)))
    {
        forget_remote(forward, id).await;
    }
    let (mut file, created) = match recorded {
        Ok(recorded) => recorded,
        Err(error) => {
            forget_bytes(pool, store, received_sha).await;
            return Err(error);
        }
    };
    if created {
        // The file is kept either way; without passages it is only not found as knowledge.
        match index(pool, store, &file).await {
            Ok(passages) => file.passages = passages,
            Err(error) => {
                tracing::warn!(%error, file_id = %file.id, "could not index a file's text");
            }
        }
    }
    Ok((file, created))
}

/// Deletes a provider's copy nobody will name (a failure is logged with its id).
async fn forget_remote(forward: &Forward, id: &str) {
    if let Err(error) = forward.router.delete_file(&forward.provider, id).await {
        tracing::warn!(%error, provider = %forward.provider.name, provider_file_id = %id, "could not delete a provider's unneeded copy of a file");
    }
}

/// A kept file after [`upload_to`]: with the provider's id, or the reason it has none.
pub struct Uploaded {
    pub file: StoredFile,
    pub error: Option<LlmError>,
}

/// Streams a kept file to `provider`'s Files API and records its id there (or the failure).
/// A file deleted meanwhile is not found, and the provider's copy of it is deleted again.
pub async fn upload_to(
    pool: &PgPool,
    store: &Store,
    router: &Router,
    purpose: &str,
    provider: &ProviderConfig,
    file: StoredFile,
) -> AppResult<Uploaded> {
    let Some(path) = store.path_of(&file.sha256) else {
        return Ok(Uploaded { file, error: None });
    };
    let upload = Upload {
        path: &path,
        filename: &file.filename,
        content_type: &file.content_type,
        bytes: u64::try_from(file.bytes).unwrap_or_default(),
        purpose,
    };
    // A failure is recorded and logged; the file stays kept by confab and usable.
    let (remote_id, status, error) = match router.upload_file(provider, upload).await {
        Ok(id) => (Some(id), "uploaded", None),
        Err(error) => {
            tracing::warn!(%error, file_id = %file.id, provider = %provider.name, "could not upload a file to the provider");
            (None, "upload_failed", Some(error))
        }
    };
    let (id, name, remote) = (file.id, provider.name.clone(), remote_id.clone());
    let recorded = db::run(pool, move |conn| {
        Ok(StoredFile::set_remote(
            conn,
            id,
            Some(&name),
            remote.as_deref(),
            status,
        )?)
    })
    .await?;
    match (recorded, remote_id) {
        (Some(file), _) => Ok(Uploaded { file, error }),
        // Deleted while it was being sent: nobody would ever delete this copy otherwise.
        (None, Some(remote)) => {
            if let Err(error) = router.delete_file(provider, &remote).await {
                tracing::warn!(%error, provider = %provider.name, provider_file_id = %remote, "could not delete the provider's copy of a file deleted while it was sent");
            }
            Err(AppError::NotFound)
        }
        (None, None) => Err(AppError::NotFound),
    }
}

/// Files larger than this are kept and attachable as files, but not searched as knowledge.
pub const MAX_INDEXED_BYTES: i64 = 10 << 20;

/// Cuts a new file's text into passages for project knowledge; a file without text has none.
/// Returns how many it has.
async fn index(pool: &PgPool, store: &Store, file: &StoredFile) -> AppResult<i32> {
    if file.bytes > MAX_INDEXED_BYTES {
        return Ok(0);
    }
    let Some(text) = store.text_of(&file.sha256).await else {
        return Ok(0);
    };
    let (file_id, project_id) = (file.id, file.project_id);
    // All of a file's passages or none.
    db::transaction(pool, move |conn| {
        let pieces = crate::files::text::passages(&text);
        let rows: Vec<NewPassage> = pieces
            .iter()
            .enumerate()
            .map(|(position, text)| NewPassage {
                file_id,
                project_id,
                position: i32::try_from(position).unwrap_or(i32::MAX),
                text,
            })
            .collect();
        Passage::insert_all(conn, &rows)?;
        let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        StoredFile::set_passages(conn, file_id, count)?;
        Ok(count)
    })
    .await
}

/// Removes bytes no row names any more, under their lock (a failure is logged: the bytes are
/// only wasted space).
async fn forget_bytes(pool: &PgPool, store: &Store, sha256: String) {
    let store = store.clone();
    let sha = sha256.clone();
    let forgotten = db::transaction(pool, move |conn| {
        StoredFile::lock_bytes(conn, &sha)?;
        if !StoredFile::sha_in_use(conn, &sha)? {
            store
                .remove(&sha)
                .map_err(|error| AppError::Internal(Box::new(error)))?;
        }
        Ok(())
    })
    .await;
    if let Err(error) = forgotten {
        tracing::warn!(%error, sha256, "could not remove a file's bytes");
    }
}

/// After a project was deleted: each of its files' provider copies is deleted (a failure is
/// logged with the provider's id, to delete by hand; the project is gone either way) and the
/// bytes no other row names are removed.
pub async fn forget_all(
    pool: &PgPool,
    store: &Store,
    router: &Router,
    removed: Vec<(String, Option<String>, Option<String>)>,
) {
    for (sha256, provider, remote) in removed {
        if let (Some(name), Some(remote)) = (provider, remote)
            && let Some(config) = router.provider(&name)
            && let Err(error) = router.delete_file(config, &remote).await
        {
            tracing::error!(%error, provider = %name, provider_file_id = %remote, "could not delete a deleted project's file at its provider");
        }
        forget_bytes(pool, store, sha256).await;
    }
}

/// A file attached to a message, with its text as it goes upstream.
pub struct Attached {
    pub file_id: Uuid,
    pub project_id: Uuid,
    pub filename: String,
    pub text: String,
    /// Where a provider keeps it: (provider name, the provider's file id).
    pub remote: Option<(String, String)>,
}

/// The most files one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// The user's files `ids` with their text, together at most `budget_chars` characters; a clear
/// refusal for a file that is someone else's (404), has no text confab can read, or does not fit.
pub async fn attachable(
    pool: &PgPool,
    store: &Store,
    (router, purpose): (&Router, &str),
    user: &CurrentUser,
    ids: &[Uuid],
    budget_chars: usize,
) -> AppResult<Vec<Attached>> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(AppError::invalid(
            "file_ids",
            format!("A message can carry up to {MAX_ATTACHMENTS} files."),
        ));
    }
    let owner = user.id;
    let wanted = ids.to_vec();
    let mut found = db::run(pool, move |conn| {
        Ok(StoredFile::find_many_owned(conn, owner, &wanted)?)
    })
    .await?;
    let mut attached = Vec::with_capacity(ids.len());
    let mut providers: Vec<(Uuid, Option<&ProviderConfig>)> = Vec::new();
    let mut room = budget_chars;
    for id in ids {
        if attached.iter().any(|a: &Attached| a.file_id == *id) {
            continue;
        }
        // Someone else's file, or none at all, is "not found".
        let at = found
            .iter()
            .position(|f| f.id == *id)
            .ok_or(AppError::NotFound)?;
        let file = found.swap_remove(at);
        let too_long = || {
            AppError::invalid(
                "file_ids",
                format!(
                    "\u{201c}{}\u{201d} is too long to send with a message (room for {room} more characters).",
                    file.filename
                ),
            )
        };
        // A character is at most 4 bytes: a text file over that cannot fit, whatever it holds.
        // A PDF's text is far smaller than the file; it is only bounded, as for searching.
        let bytes = usize::try_from(file.bytes).unwrap_or(usize::MAX);
        let pdf = file.content_type == "application/pdf"
            || file.filename.to_ascii_lowercase().ends_with(".pdf");
        if (!pdf && bytes > room.saturating_mul(4)) || file.bytes > MAX_INDEXED_BYTES {
            return Err(too_long());
        }
        let Some(text) = store.text_of(&file.sha256).await else {
            return Err(AppError::invalid(
                "file_ids",
                format!(
                    "\u{201c}{}\u{201d} has no text confab can read (plain text, Markdown, CSV, JSON, code and PDFs with a text layer can be attached).",
                    file.filename
                ),
            ));
        };
        let chars = text.chars().count();
        if chars > room {
            return Err(too_long());
        }
        room -= chars;
        // A file its project's provider does not hold yet is uploaded to it now (on demand);
        // the provider is looked up once per project.
        let file = if file.provider_file_id.is_none() && file.status != "delete_failed" {
            let provider = match providers
                .iter()
                .find(|(project, _)| *project == file.project_id)
            {
                Some((_, provider)) => *provider,
                None => {
                    let provider = files_provider_of(pool, router, file.project_id).await?;
                    providers.push((file.project_id, provider));
                    provider
                }
            };
            match provider {
                Some(provider) => {
                    upload_to(pool, store, router, purpose, provider, file)
                        .await?
                        .file
                }
                None => file,
            }
        } else {
            file
        };
        let remote = match (file.provider, file.provider_file_id) {
            (Some(provider), Some(id)) if file.status == "uploaded" => Some((provider, id)),
            _ => None,
        };
        attached.push(Attached {
            file_id: file.id,
            project_id: file.project_id,
            filename: file.filename,
            text,
            remote,
        });
    }
    Ok(attached)
}

/// The project's files and whether its agents answer from them.
pub async fn list_with_knowledge(
    pool: &PgPool,
    user: &CurrentUser,
    project_id: Uuid,
) -> AppResult<(Vec<StoredFile>, bool)> {
    let owner = user.id;
    db::run(pool, move |conn| {
        if !StoredFile::owns_project(conn, owner, project_id)? {
            return Err(AppError::NotFound);
        }
        Ok((
            StoredFile::list_for_project(conn, project_id)?,
            StoredFile::knowledge_of(conn, project_id)?,
        ))
    })
    .await
}

pub async fn list(
    pool: &PgPool,
    user: &CurrentUser,
    project_id: Uuid,
) -> AppResult<Vec<StoredFile>> {
    let owner = user.id;
    db::run(pool, move |conn| {
        if !StoredFile::owns_project(conn, owner, project_id)? {
            return Err(AppError::NotFound);
        }
        Ok(StoredFile::list_for_project(conn, project_id)?)
    })
    .await
}

pub async fn get(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<StoredFile> {
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(StoredFile::find_owned(conn, owner, id)?)
    })
    .await
}

/// Deletes the provider's copy (if there is one), then the file's row, then its bytes when no
/// other row names them. When the provider's copy cannot be deleted, the row stays, marked
/// `delete_failed`, and the person is told to try again — never a silently orphaned copy.
pub async fn delete(
    pool: &PgPool,
    store: &Store,
    router: &Router,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<StoredFile> {
    let file = get(pool, user, id).await?;
    crate::files::knowledge::leave_vector_store(pool, router, &file).await;
    if let (Some(name), Some(remote)) = (&file.provider, &file.provider_file_id)
        && let Some(provider) = router.provider(name)
        && let Err(error) = router.delete_file(provider, remote).await
    {
        tracing::warn!(%error, file_id = %file.id, provider = %name, "could not delete a provider's copy of a file");
        let file_id = file.id;
        db::run(pool, move |conn| {
            Ok(StoredFile::set_status(conn, file_id, "delete_failed")?)
        })
        .await?;
        return Err(AppError::Upstream(format!(
            "The provider \u{201c}{name}\u{201d} did not delete its copy of \u{201c}{}\u{201d}, so the file is kept; try deleting it again.",
            file.filename
        )));
    }
    let file_id = file.id;
    db::run(pool, move |conn| {
        StoredFile::delete(conn, file_id)?;
        Ok(())
    })
    .await?;
    forget_bytes(pool, store, file.sha256.clone()).await;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_their_last_segment_without_control_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\notes.txt"), "notes.txt");
        assert_eq!(clean_filename("a\u{0}b\r\nc.md"), "abc.md");
        assert_eq!(clean_filename("invoice\u{202e}txt.exe"), "invoicetxt.exe");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename("...."), "file");
        assert_eq!(clean_filename("run.bat. . "), "run.bat");
        assert_eq!(clean_filename(".profile"), ".profile");
        assert_eq!(clean_filename(""), "file");
        assert_eq!(clean_filename(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn content_types_are_kept_only_when_plausible() {
        assert_eq!(clean_content_type(Some("Text/Plain")), "text/plain");
        assert_eq!(
            clean_content_type(Some("nonsense")),
            "application/octet-stream"
        );
        assert_eq!(
            clean_content_type(Some("a/b\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(clean_content_type(None), "application/octet-stream");
    }
}
