//! A provider's Files API (docs/llm-wire.md §4.1–4.2): a file confab keeps is streamed from its
//! store to `POST {base}/files` and deleted with `DELETE {base}/files/{id}`.

use std::path::Path;

use serde_json::Value;

use crate::llm::http::{authorized, send_checked};
use crate::llm::{LlmError, ProviderConfig, Router};

/// What is uploaded, and as what.
pub struct Upload<'a> {
    pub path: &'a Path,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub bytes: u64,
    /// `user_data` for `input_file`; `assistants` where a client asks for it.
    pub purpose: &'a str,
}

impl Router {
    /// The configured provider of that name, when it has a Files API.
    pub fn files_api(&self, name: &str) -> Option<&ProviderConfig> {
        self.provider(name).filter(|p| p.files_api)
    }

    /// Streams the file to the provider (never whole in memory); returns the provider's id.
    pub async fn upload_file(
        &self,
        provider: &ProviderConfig,
        upload: Upload<'_>,
    ) -> Result<String, LlmError> {
        let file = tokio::fs::File::open(upload.path)
            .await
            .map_err(|e| LlmError::Config(format!("the stored file cannot be read: {e}")))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, upload.bytes)
            .file_name(upload.filename.to_string())
            .mime_str(upload.content_type)
            .map_err(|e| LlmError::Config(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", upload.purpose.to_string())
            .part("file", part);
        let request =
            authorized(self.client().post(provider.url("files")), provider).multipart(form);
        let response = send_checked(request, provider).await?;
        let object: Value = response
            .json()
            .await
            .map_err(|e| LlmError::Stream(format!("the Files API answered something else: {e}")))?;
        object["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LlmError::Stream("the Files API answered without an id".into()))
    }

    /// Deletes the provider's copy; one that is already gone counts as deleted.
    pub async fn delete_file(&self, provider: &ProviderConfig, id: &str) -> Result<(), LlmError> {
        let request = authorized(
            self.client()
                .delete(provider.url(&format!("files/{}", urlencoding_path(id)))),
            provider,
        );
        match send_checked(request, provider).await {
            Ok(_) | Err(LlmError::Http { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// A provider's file id as one path segment (ids are `file-…`; anything else is escaped).
fn urlencoding_path(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
