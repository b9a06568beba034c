//! JSON API for a project's files: upload (multipart, streamed to the store), list, read,
//! download, delete.

use actix_multipart::{Field, Multipart};
use actix_web::http::header::{self, ContentDisposition};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::files::model::StoredFile;
use crate::files::service::{self, Incoming, OwnedProject};
use crate::files::store::Store;
use crate::files::text::TextReader;
use crate::session::CurrentUser;
use crate::state::AppState;

/// confab's file store, under the data directory.
pub fn store(state: &AppState) -> Store {
    Store::new(
        &state.settings.data_dir,
        TextReader::new(&state.settings.files),
    )
}

/// The next part of a multipart form.
pub(crate) async fn next_field(form: &mut Multipart) -> AppResult<Option<Field>> {
    form.next()
        .await
        .transpose()
        .map_err(|e| AppError::BadRequest(format!("Not a multipart form: {e}")))
}

/// A short text field (a token, an id), refused with `too_long` past `max` bytes.
pub(crate) async fn short_field(
    field: &mut Field,
    max: usize,
    too_long: impl Fn() -> AppError,
) -> AppResult<String> {
    let mut raw = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(e.to_string()))?;
        if raw.len() + chunk.len() > max {
            return Err(too_long());
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&raw).trim().to_string())
}

/// Keeps a `file` field in the (checked) project, and sends it on to the project's provider in
/// the same pass. `(file, true)` for a new file, `(file, false)` for bytes the project had.
pub(crate) async fn keep(
    state: &AppState,
    project: OwnedProject,
    field: Field,
    purpose: Option<&str>,
) -> AppResult<(StoredFile, bool)> {
    let incoming = Incoming {
        filename: field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_string),
        content_type: field.content_type().map(ToString::to_string),
    };
    let store = store(state);
    // The provider gets the bytes as they come in, in the same pass as confab's store.
    let forward = service::forward_for(
        &state.pool,
        state.generations.shared_router(),
        project,
        purpose.unwrap_or(&state.settings.files.provider_purpose),
    )
    .await?;
    let (file, created) = service::upload(
        &state.pool,
        &store,
        &state.settings.files,
        project,
        incoming,
        field,
        forward,
    )
    .await?;
    if created {
        // Into the project's vector store, when its agents search their files at the provider.
        crate::files::knowledge::start_sync(state, project.id(), false);
    }
    Ok((file, created))
}

/// The purposes a file may be sent to a provider's Files API with (docs/llm-wire.md §4.1):
/// `user_data` for `input_file`, `assistants` as older clients ask.
const PURPOSES: &[&str] = &["user_data", "assistants"];

/// A `purpose` field, which must come before the file.
async fn purpose_field(field: &mut Field) -> AppResult<String> {
    let refused = || {
        AppError::invalid(
            "purpose",
            "The purpose is user_data or assistants (sent before the file).",
        )
    };
    let purpose = short_field(field, 32, refused).await?;
    if PURPOSES.contains(&purpose.as_str()) {
        Ok(purpose)
    } else {
        Err(refused())
    }
}

fn no_file_field() -> AppError {
    AppError::invalid(
        "file",
        "Send the file in a multipart field named \u{201c}file\u{201d}.",
    )
}

/// 201 for a new file, 200 for the one the project already had.
fn kept(created: bool) -> actix_web::HttpResponseBuilder {
    if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
}

/// `POST /api/projects/{id}/files`: multipart with the bytes in the field `file` → 201 with the
/// file (200 with the existing one when the project already has these bytes).
#[utoipa::path(post, path = "/api/projects/{id}/files", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "The new file", body = StoredFile),
        (status = 200, description = "The project already had these bytes: that file", body = StoredFile),
        (status = 413, description = "Over `files.max_upload_bytes`; nothing is kept", body = crate::error::Envelope)))]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    // Someone else's project is a 404 whatever was sent, so look before reading the form.
    let project = service::check_project(&state.pool, &user, *project_id).await?;
    let mut form = Multipart::new(req.headers(), body);
    let mut purpose = None;
    while let Some(mut field) = next_field(&mut form).await? {
        match field.name() {
            Some("purpose") => purpose = Some(purpose_field(&mut field).await?),
            Some("file") => {
                let (file, created) = keep(&state, project, field, purpose.as_deref()).await?;
                return Ok(kept(created).json(file));
            }
            _ => {}
        }
    }
    Err(no_file_field())
}

/// `POST /api/projects/{id}/files` as a multipart form (documentation: the handler reads the
/// fields one by one, as they stream in).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// `user_data` (the default) or `assistants`: how the file is sent to the provider's Files
    /// API. Must come before `file`.
    purpose: Option<String>,
    /// The bytes, with their file name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// `POST /api/files/upload` as a multipart form (documentation, as [`UploadForm`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadWithProjectForm {
    /// The project, before `file`.
    project_id: Uuid,
    /// As in [`UploadForm`].
    purpose: Option<String>,
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The file with the provider's id under the name older clients know it by.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct WithFileId {
    #[serde(flatten)]
    file: StoredFile,
    /// The provider's id (`provider_file_id`); null until the file is uploaded to a provider.
    file_id: Option<String>,
}

/// `POST /api/files/upload`: the same upload with the project in a multipart field
/// `project_id`, which must come before `file` (the project is checked before any file byte is
/// read); the answer adds `"file_id"`.
#[utoipa::path(post, path = "/api/files/upload", tag = "files",
    request_body(content = UploadWithProjectForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "The new file, with the provider's id as `file_id` too", body = WithFileId),
        (status = 200, description = "The project already had these bytes: that file", body = WithFileId),
        (status = 413, description = "Over `files.max_upload_bytes`; nothing is kept", body = crate::error::Envelope)))]
pub async fn upload_with_project_field(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    let mut form = Multipart::new(req.headers(), body);
    let (mut project, mut purpose) = (None, None);
    while let Some(mut field) = next_field(&mut form).await? {
        match field.name() {
            Some("purpose") => purpose = Some(purpose_field(&mut field).await?),
            Some("project_id") => {
                let not_an_id = || AppError::invalid("project_id", "Not a project id.");
                let raw = short_field(&mut field, 64, not_an_id).await?;
                let id = Uuid::parse_str(&raw).map_err(|_| not_an_id())?;
                project = Some(service::check_project(&state.pool, &user, id).await?);
            }
            Some("file") => {
                let Some(project) = project else {
                    return Err(AppError::invalid(
                        "project_id",
                        "Send the field project_id before the file.",
                    ));
                };
                let (file, created) = keep(&state, project, field, purpose.as_deref()).await?;
                let file_id = file.provider_file_id.clone();
                return Ok(kept(created).json(WithFileId { file, file_id }));
            }
            _ => {}
        }
    }
    Err(no_file_field())
}

/// `GET /api/projects/{id}/files`: newest first.
#[utoipa::path(get, path = "/api/projects/{id}/files", tag = "files",
    responses((status = 200, description = "The project's files, newest first", body = [StoredFile])))]
pub async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *project_id).await?))
}

/// `GET /api/files/{id}`.
#[utoipa::path(get, path = "/api/files/{id}", tag = "files",
    responses((status = 200, description = "The file", body = StoredFile)))]
pub async fn get(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state.pool, &user, *id).await?))
}

/// `GET /api/files/{id}/content` (and the page's download link): the bytes, streamed, always as
/// an attachment in a sandbox, so an uploaded HTML file is never a page of this site.
#[utoipa::path(get, path = "/api/files/{id}/content", tag = "files",
    responses((status = 200, description = "The bytes as uploaded, as an attachment", content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn download(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let file = service::get(&state.pool, &user, *id).await?;
    let path = store(&state)
        .path_of(&file.sha256)
        .ok_or(AppError::NotFound)?;
    let opened = tokio::fs::File::open(path).await.map_err(|error| {
        tracing::error!(%error, file_id = %file.id, "a file's bytes are missing");
        AppError::NotFound
    })?;
    Ok(HttpResponse::Ok()
        .content_type(file.content_type.as_str())
        .insert_header(ContentDisposition::attachment(file.filename.clone()))
        .insert_header((header::CONTENT_LENGTH, file.bytes.to_string()))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .streaming(tokio_util::io::ReaderStream::new(opened)))
}

/// `DELETE /api/files/{id}` → 204.
#[utoipa::path(delete, path = "/api/files/{id}", tag = "files",
    responses((status = 204, description = "Deleted here and at the provider"),
        (status = 502, description = "The provider did not delete its copy: the file stays, marked, to delete again", body = crate::error::Envelope)))]
pub async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::delete(
        &state.pool,
        &store(&state),
        state.generations.router(),
        &user,
        *id,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
