//! A provider's Files API and vector stores (docs/llm-wire.md §4): a file confab keeps is
//! streamed from its store to `POST {base}/files` and deleted with `DELETE {base}/files/{id}`; a
//! project's files are put in a vector store for the `file_search` tool.

use std::path::Path;

use serde_json::{Value, json};

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

    /// Streams a kept file to the provider (never whole in memory); returns the provider's id.
    pub async fn upload_file(
        &self,
        provider: &ProviderConfig,
        upload: Upload<'_>,
    ) -> Result<String, LlmError> {
        let file = tokio::fs::File::open(upload.path)
            .await
            .map_err(|e| LlmError::Config(format!("the stored file cannot be read: {e}")))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, upload.bytes);
        self.send_file(
            provider,
            part,
            upload.filename,
            upload.content_type,
            upload.purpose,
        )
        .await
    }

    /// Streams bytes as they arrive (a file still being uploaded to confab) to the provider;
    /// returns the provider's id. An `Err` item aborts the request, so the provider keeps
    /// nothing of a file confab refused half-way.
    pub async fn upload_stream<S>(
        &self,
        provider: &ProviderConfig,
        bytes: S,
        filename: &str,
        content_type: &str,
        purpose: &str,
    ) -> Result<String, LlmError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(bytes));
        self.send_file(provider, part, filename, content_type, purpose)
            .await
    }

    async fn send_file(
        &self,
        provider: &ProviderConfig,
        part: reqwest::multipart::Part,
        filename: &str,
        content_type: &str,
        purpose: &str,
    ) -> Result<String, LlmError> {
        let part = part
            .file_name(filename.to_string())
            .mime_str(content_type)
            .map_err(|e| LlmError::Config(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_string())
            .part("file", part);
        let request =
            authorized(self.files_client().post(provider.url("files")), provider).multipart(form);
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
            self.files_client()
                .delete(provider.url(&format!("files/{}", urlencoding_path(id)))),
            provider,
        );
        match send_checked(request, provider).await {
            Ok(_) | Err(LlmError::Http { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// How a file stands in a vector store (docs/llm-wire.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indexing {
    InProgress,
    Completed,
    /// `failed` or `cancelled`, with the provider's reason.
    Failed(String),
}

impl Router {
    /// A vector-store call: JSON in and out, with the header OpenAI's SDK sends on them.
    async fn vector_call(
        &self,
        provider: &ProviderConfig,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, LlmError> {
        let mut request = authorized(
            self.files_client().request(method, provider.url(path)),
            provider,
        )
        .header("OpenAI-Beta", "assistants=v2");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = send_checked(request, provider).await?;
        response.json().await.map_err(|e| {
            LlmError::Stream(format!("the vector store API answered something else: {e}"))
        })
    }

    /// Makes a vector store; returns its id.
    pub async fn create_vector_store(
        &self,
        provider: &ProviderConfig,
        name: &str,
    ) -> Result<String, LlmError> {
        let store = self
            .vector_call(
                provider,
                reqwest::Method::POST,
                "vector_stores",
                Some(json!({"name": name})),
            )
            .await?;
        store["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LlmError::Stream("the vector store was made without an id".into()))
    }

    /// Deletes a vector store; one already gone counts as deleted.
    pub async fn delete_vector_store(
        &self,
        provider: &ProviderConfig,
        store: &str,
    ) -> Result<(), LlmError> {
        let path = format!("vector_stores/{}", urlencoding_path(store));
        match self
            .vector_call(provider, reqwest::Method::DELETE, &path, None)
            .await
        {
            Ok(_) | Err(LlmError::Http { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Puts a provider's file in a vector store; it is searchable once [`Self::indexing`] says
    /// `Completed`.
    pub async fn add_to_vector_store(
        &self,
        provider: &ProviderConfig,
        store: &str,
        file_id: &str,
    ) -> Result<Indexing, LlmError> {
        let path = format!("vector_stores/{}/files", urlencoding_path(store));
        let file = self
            .vector_call(
                provider,
                reqwest::Method::POST,
                &path,
                Some(json!({"file_id": file_id})),
            )
            .await?;
        Ok(indexing_of(&file))
    }

    /// How far the provider is with indexing the file.
    pub async fn indexing(
        &self,
        provider: &ProviderConfig,
        store: &str,
        file_id: &str,
    ) -> Result<Indexing, LlmError> {
        let path = format!(
            "vector_stores/{}/files/{}",
            urlencoding_path(store),
            urlencoding_path(file_id)
        );
        let file = self
            .vector_call(provider, reqwest::Method::GET, &path, None)
            .await?;
        Ok(indexing_of(&file))
    }

    /// Takes a file out of a vector store; one not in it counts as taken out.
    pub async fn remove_from_vector_store(
        &self,
        provider: &ProviderConfig,
        store: &str,
        file_id: &str,
    ) -> Result<(), LlmError> {
        let path = format!(
            "vector_stores/{}/files/{}",
            urlencoding_path(store),
            urlencoding_path(file_id)
        );
        match self
            .vector_call(provider, reqwest::Method::DELETE, &path, None)
            .await
        {
            Ok(_) | Err(LlmError::Http { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// A `vector_store.file` object's status.
fn indexing_of(file: &Value) -> Indexing {
    match file["status"].as_str() {
        Some("completed") => Indexing::Completed,
        Some("in_progress") | None => Indexing::InProgress,
        Some(other) => {
            let reason = file
                .pointer("/last_error/message")
                .or_else(|| file.pointer("/last_error/code"))
                .and_then(Value::as_str)
                .unwrap_or(other);
            Indexing::Failed(reason.to_string())
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
