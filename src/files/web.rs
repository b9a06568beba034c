//! The files section of a project's page: upload (plain multipart form; app.js uploads each file
//! through the API with its own progress bar), download, delete with confirmation.

pub use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::files::api::{keep, next_field, short_field, store};
use crate::files::model::StoredFile;
use crate::files::service::{self, OwnedProject};
use crate::session::CurrentUser;
use crate::session::csrf::{self, CsrfToken, TokenInBody};
use crate::site::{Chrome, ConfirmDeletePage, html, is_htmx, see_other};
use crate::state::AppState;
use crate::urls;

/// A file as the list shows it.
pub struct FileRow {
    pub id: Uuid,
    pub filename: String,
    pub size: String,
    pub content_type: String,
    pub uploaded: String,
    pub uploaded_iso: String,
    pub status: String,
    /// How project knowledge finds it: by confab's passages, or in the provider's index.
    pub knowledge: String,
    pub indexing: bool,
}

/// "512 B", "3.4 KB", "12.0 MB".
pub fn human_size(bytes: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64;
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", value / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MB", value / (1024.0 * 1024.0)),
        _ => format!("{:.1} GB", value / (1024.0 * 1024.0 * 1024.0)),
    }
}

impl FileRow {
    fn of(file: StoredFile) -> FileRow {
        FileRow {
            id: file.id,
            size: human_size(file.bytes),
            uploaded: file.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            uploaded_iso: file.created_at.to_rfc3339(),
            status: match (file.status.as_str(), file.provider.as_deref()) {
                ("uploaded", Some(provider)) => format!("kept; also at {provider}"),
                ("upload_failed", Some(provider)) => {
                    format!("kept; sending it to {provider} failed")
                }
                ("delete_failed", Some(provider)) => {
                    format!("{provider} did not delete its copy: delete again")
                }
                _ => "kept".into(),
            },
            knowledge: knowledge_of(&file),
            indexing: file.index_status.as_deref() == Some("indexing"),
            filename: file.filename,
            content_type: file.content_type,
        }
    }
}

/// "confab's search: 12 passages", "Indexed at openai; confab's search: 3 passages", "Indexing
/// at openai failed (…); …".
fn knowledge_of(file: &StoredFile) -> String {
    let here = match file.passages {
        0 if file.bytes > service::MAX_INDEXED_BYTES => "confab's search: too big".to_string(),
        0 => "confab's search: no text".to_string(),
        1 => "confab's search: 1 passage".to_string(),
        n => format!("confab's search: {n} passages"),
    };
    let provider = file.provider.as_deref().unwrap_or("the provider");
    match file.index_status.as_deref() {
        Some("indexing") => format!("Indexing at {provider}…; {here}"),
        Some("indexed") => format!("Indexed at {provider}; {here}"),
        Some("index_waiting") => format!(
            "Waiting for {provider} to answer ({}), confab tries again; {here}",
            file.index_error.as_deref().unwrap_or("no reason given")
        ),
        Some(_) => format!(
            "Indexing at {provider} failed ({}); {here}",
            file.index_error.as_deref().unwrap_or("no reason given")
        ),
        None => here,
    }
}

#[derive(Template)]
#[template(path = "partials/files/section.html")]
pub struct FilesSection {
    csrf: String,
    project_id: Uuid,
    files: Vec<FileRow>,
    error: Option<String>,
    max_mb: u64,
    /// The project's agents answer from these files.
    knowledge: bool,
    /// Some file is being indexed at the provider: the list refreshes itself.
    indexing: bool,
}

impl FilesSection {
    pub async fn load(
        state: &AppState,
        user: &CurrentUser,
        csrf: &CsrfToken,
        project_id: Uuid,
        error: Option<String>,
    ) -> AppResult<FilesSection> {
        let (files, knowledge) =
            service::list_with_knowledge(&state.pool, user, project_id).await?;
        let files: Vec<FileRow> = files.into_iter().map(FileRow::of).collect();
        Ok(FilesSection {
            csrf: csrf.0.clone(),
            project_id,
            knowledge,
            indexing: files.iter().any(|f| f.indexing),
            files,
            error,
            max_mb: state.settings.files.max_upload_bytes >> 20,
        })
    }
}

/// Stores every `file` field of the form, in order. A plain form's CSRF token is its first field.
pub async fn receive_all(
    req: &HttpRequest,
    state: &AppState,
    project: OwnedProject,
    mut form: Multipart,
) -> AppResult<usize> {
    let mut token_checked = req.extensions().get::<TokenInBody>().is_none();
    let mut stored = 0;
    while let Some(mut field) = next_field(&mut form).await? {
        if !token_checked {
            if field.name() != Some(csrf::CSRF_FIELD) {
                return Err(csrf::refused());
            }
            let sent = short_field(&mut field, 128, csrf::refused).await?;
            csrf::check_field(req, &sent)?;
            token_checked = true;
        } else if field.name() == Some("file") {
            keep(state, project, field, None).await?;
            stored += 1;
        }
    }
    if stored == 0 {
        return Err(AppError::invalid("file", "Choose a file to upload."));
    }
    Ok(stored)
}

pub async fn confirm_delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let file = service::get(&state.pool, &user, *id).await?;
    html(
        StatusCode::OK,
        &ConfirmDeletePage {
            chrome: Chrome::new(Some(&user), &csrf),
            name: file.filename,
            warning: "This deletes the file from confab. It cannot be undone.",
            action: urls::file_delete(file.id),
            back: format!("{}#files-heading", urls::project(file.project_id)),
        },
    )
}

/// `POST /files/{id}/delete`: htmx gets the section again, a plain form the project's page.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let file = service::delete(
        &state.pool,
        &store(&state),
        state.generations.router(),
        &user,
        *id,
    )
    .await?;
    if is_htmx(&req) {
        let section = FilesSection::load(&state, &user, &csrf, file.project_id, None).await?;
        return html(StatusCode::OK, &section);
    }
    Ok(see_other(
        &req,
        &format!("{}#files-heading", urls::project(file.project_id)),
    ))
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_a_person_would_say_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 + 400), "3.4 KB");
        assert_eq!(human_size(12 * 1024 * 1024), "12.0 MB");
    }
}
