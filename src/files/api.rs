//! JSON API for a project's files: upload (multipart, streamed to the store), list, read,
//! download, delete.

use actix_multipart::Multipart;
use actix_web::http::header::{self, ContentDisposition};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::files::service::{self, Incoming};
use crate::files::store::Store;
use crate::session::CurrentUser;
use crate::state::AppState;

fn store(state: &AppState) -> Store {
    Store::new(&state.settings.data_dir)
}

/// A new file, on to its project's provider's Files API when it has one.
pub async fn send_on(
    state: &AppState,
    file: crate::files::model::StoredFile,
) -> AppResult<crate::files::model::StoredFile> {
    service::send_to_provider(
        &state.pool,
        &store(state),
        state.generations.router(),
        &state.settings.files.provider_purpose,
        file,
    )
    .await
}

/// `POST /api/projects/{id}/files`: multipart with the bytes in the field `file` → 201 with the
/// file (200 with the existing one when the project already has these bytes).
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    // Someone else's project is a 404 whatever was sent, so look before reading the form.
    service::check_project(&state.pool, &user, *project_id).await?;
    let mut form = Multipart::new(req.headers(), body);
    while let Some(field) = form.next().await {
        let field =
            field.map_err(|e| AppError::BadRequest(format!("Not a multipart form: {e}")))?;
        if field.name() != Some("file") {
            continue;
        }
        let incoming = Incoming {
            filename: field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .map(str::to_string),
            content_type: field.content_type().map(ToString::to_string),
        };
        let (file, created) = service::upload(
            &state.pool,
            &store(&state),
            state.settings.files.max_upload_bytes,
            &user,
            *project_id,
            incoming,
            field,
        )
        .await?;
        let file = if created {
            send_on(&state, file).await?
        } else {
            file
        };
        let mut response = if created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        };
        return Ok(response.json(file));
    }
    Err(AppError::invalid(
        "file",
        "Send the file in a multipart field named \u{201c}file\u{201d}.",
    ))
}

/// The file with the provider's id under the name older clients know it by.
#[derive(serde::Serialize)]
struct WithFileId {
    #[serde(flatten)]
    file: crate::files::model::StoredFile,
    /// The provider's id (`provider_file_id`); null until the file is uploaded to a provider.
    file_id: Option<String>,
}

/// `POST /api/files/upload`: the same upload with the project in a multipart field
/// `project_id`, which must come before `file` (the project is checked before any file byte is
/// read); the answer adds `"file_id"`.
pub async fn upload_with_project_field(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    let mut form = Multipart::new(req.headers(), body);
    let mut project_id = None;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| AppError::BadRequest(format!("Not a multipart form: {e}")))?;
        match field.name() {
            Some("project_id") => {
                let mut raw = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| AppError::BadRequest(e.to_string()))?;
                    if raw.len() + chunk.len() > 64 {
                        return Err(AppError::invalid("project_id", "Not a project id."));
                    }
                    raw.extend_from_slice(&chunk);
                }
                let id = Uuid::parse_str(String::from_utf8_lossy(&raw).trim())
                    .map_err(|_| AppError::invalid("project_id", "Not a project id."))?;
                service::check_project(&state.pool, &user, id).await?;
                project_id = Some(id);
            }
            Some("file") => {
                let Some(project_id) = project_id else {
                    return Err(AppError::invalid(
                        "project_id",
                        "Send the field project_id before the file.",
                    ));
                };
                let incoming = Incoming {
                    filename: field
                        .content_disposition()
                        .and_then(|d| d.get_filename())
                        .map(str::to_string),
                    content_type: field.content_type().map(ToString::to_string),
                };
                let (file, created) = service::upload(
                    &state.pool,
                    &store(&state),
                    state.settings.files.max_upload_bytes,
                    &user,
                    project_id,
                    incoming,
                    field,
                )
                .await?;
                let file = if created {
                    send_on(&state, file).await?
                } else {
                    file
                };
                let mut response = if created {
                    HttpResponse::Created()
                } else {
                    HttpResponse::Ok()
                };
                let file_id = file.provider_file_id.clone();
                return Ok(response.json(WithFileId { file, file_id }));
            }
            _ => {}
        }
    }
    Err(AppError::invalid(
        "file",
        "Send the file in a multipart field named \u{201c}file\u{201d}.",
    ))
}

/// `GET /api/projects/{id}/files`: newest first.
pub async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    project_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user, *project_id).await?))
}

/// `GET /api/files/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state.pool, &user, *id).await?))
}

/// `GET /api/files/{id}/content` (and the page's download link): the bytes, streamed, always as
/// an attachment in a sandbox, so an uploaded HTML file is never a page of this site.
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
