//! A fake OpenAI-compatible upstream that speaks the wire formats of docs/llm-wire.md exactly
//! (Responses §2.6, Chat Completions §3.2–3.3), can be scripted per request to be slow, fail,
//! drop, or send in-band errors, and records what it was sent. It also keeps uploaded files and
//! vector stores (§4) and, for a `file_search` tool, streams the search and its citations (§2.4).
//!
//! Used by confab's integration tests, `examples/fake_llm.rs` and the load generator
//! (`benches/loadgen`); it knows nothing of confab itself.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream::{self, Stream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The message of the flat `error` event (the spec's shape).
pub const FLAT_ERROR_MESSAGE: &str = "Something went wrong";
/// The message of the nested `error` event (the shape seen in real traffic).
pub const NESTED_ERROR_MESSAGE: &str = "Too Many Requests";
/// The message inside `response.failed`.
pub const FAILED_MESSAGE: &str = "The model failed to generate a response.";
/// The message of every Chat Completions mid-stream error chunk.
pub const CHAT_ERROR_MESSAGE: &str = "Provider disconnected unexpectedly";
/// The `last_error.message` of a vector-store file whose indexing failed (`fail_indexing`).
pub const INDEXING_FAILED_MESSAGE: &str = "The file type is not supported for file search.";

/// What the fake does with one request to `/v1/responses` or `/v1/chat/completions`.
#[derive(Debug, Clone)]
pub struct Script {
    /// The answer, as the deltas it is streamed in.
    pub tokens: Vec<String>,
    /// Pause between two deltas.
    pub token_delay: Duration,
    /// Pause after the stream opened and before the first delta (the model "thinking").
    pub first_token_delay: Duration,
    /// Answer this error instead of a stream.
    pub fail: Option<Failure>,
    /// Break the stream after this many deltas.
    pub interrupt: Option<(usize, Interrupt)>,
    /// Interleave `keepalive` events (Responses) or `: OPENROUTER PROCESSING` comments (Chat
    /// Completions) between deltas and every 250 ms of the first-token delay.
    pub keepalives: bool,
    /// End with `response.incomplete` / a non-`stop` finish reason, e.g. `max_output_tokens`.
    pub incomplete: Option<String>,
    /// Reported usage; by default the words of the input and the number of deltas.
    pub usage: Option<(u32, u32)>,
    /// A request whose last user message starts with this marker is answered with the rest of
    /// that message instead of `tokens`, so whoever chats can choose the answer (e.g. Markdown).
    pub echo_marker: Option<String>,
}

/// An error answered before any stream: a status, headers, and an OpenAI-shaped body.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How a stream breaks after k deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Cut the TCP connection without ending the chunked body.
    Drop,
    /// End the body cleanly but without the terminal event (`response.completed` / `[DONE]`).
    NoTerminal,
    /// `response.failed` (Responses); an OpenAI error chunk on Chat Completions.
    Failed,
    /// An `error` event (Responses); an OpenAI error chunk on Chat Completions.
    ErrorEvent(ErrorShape),
    /// A Chat Completions error chunk; a flat `error` event on Responses.
    ChatError(ChatErrorShape),
    /// An event whose data is cut-off JSON, then the body ends.
    Malformed,
}

/// The two shapes of the Responses `error` event (docs/llm-wire.md §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"type":"error","code":…,"message":…}` as the spec writes it.
    Flat,
    /// `{"type":"error","error":{"type","code","message"}}` as the real API sends it.
    Nested,
}

/// The mid-stream error chunks of Chat Completions servers (docs/llm-wire.md §3.3, §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatErrorShape {
    /// `{"error":{"message","type":"server_error"}}` (OpenAI fixtures).
    OpenAi,
    /// OpenRouter: a chunk with `error.code` as a number and `finish_reason: "error"`.
    OpenRouter,
    /// vLLM: `{"object":"error","message",…}`.
    Vllm,
}

impl Default for Script {
    fn default() -> Self {
        Script::answer("Hello! I am the fake LLM.")
    }
}

impl Script {
    /// Stream `text`, split into word-sized deltas the way real models stream.
    pub fn answer(text: &str) -> Script {
        Script::tokens(split_into_tokens(text))
    }

    /// Stream exactly these deltas.
    pub fn tokens<T: Into<String>>(tokens: impl IntoIterator<Item = T>) -> Script {
        Script {
            tokens: tokens.into_iter().map(Into::into).collect(),
            token_delay: Duration::ZERO,
            first_token_delay: Duration::ZERO,
            fail: None,
            interrupt: None,
            keepalives: false,
            incomplete: None,
            usage: None,
            echo_marker: None,
        }
    }

    /// Answer `status` with this JSON body instead of a stream.
    pub fn fail(status: u16, body: Value) -> Script {
        Script {
            fail: Some(Failure {
                status,
                headers: Vec::new(),
                body: body.to_string(),
            }),
            ..Script::tokens(Vec::<String>::new())
        }
    }

    /// Answer `status` with an OpenAI-shaped error body fitting that status.
    pub fn status(status: u16) -> Script {
        let (kind, code, message) = match status {
            401 => (
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided: fake***key.",
            ),
            404 => (
                "invalid_request_error",
                "model_not_found",
                "The model does not exist or you do not have access to it.",
            ),
            429 => (
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for fake-model on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            ),
            500..=599 => (
                "server_error",
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            ),
            _ => (
                "invalid_request_error",
                "invalid_request",
                "The request was not valid.",
            ),
        };
        Script::fail(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        )
    }

    /// 429 insufficient_quota, which a client must not retry.
    pub fn insufficient_quota() -> Script {
        Script::fail(
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                             "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        )
    }

    /// 429 "Request too large", which a client must not retry either.
    pub fn request_too_large() -> Script {
        Script::fail(
            429,
            json!({"error": {"message": "Request too large for fake-model in organization org-fake on tokens per min (TPM): Limit 30000, Requested 31756.",
                             "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}),
        )
    }

    /// Add a response header to a failure, e.g. `Retry-After` or `x-should-retry`.
    pub fn header(mut self, name: &str, value: &str) -> Script {
        if let Some(failure) = &mut self.fail {
            failure.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Add `Retry-After: value` to a failure.
    pub fn retry_after(self, value: &str) -> Script {
        self.header("Retry-After", value)
    }

    pub fn token_delay(mut self, delay: Duration) -> Script {
        self.token_delay = delay;
        self
    }

    pub fn first_token_delay(mut self, delay: Duration) -> Script {
        self.first_token_delay = delay;
        self
    }

    /// Cut the connection after `k` deltas.
    pub fn drop_after(self, k: usize) -> Script {
        self.interrupt_after(k, Interrupt::Drop)
    }

    /// Break the stream after `k` deltas in the given way.
    pub fn interrupt_after(mut self, k: usize, interrupt: Interrupt) -> Script {
        self.interrupt = Some((k, interrupt));
        self
    }

    pub fn with_keepalives(mut self) -> Script {
        self.keepalives = true;
        self
    }

    pub fn incomplete(mut self, reason: &str) -> Script {
        self.incomplete = Some(reason.to_owned());
        self
    }

    pub fn usage(mut self, input_tokens: u32, output_tokens: u32) -> Script {
        self.usage = Some((input_tokens, output_tokens));
        self
    }

    /// Answer a last user message that starts with `marker` with the rest of it.
    pub fn echo_after(mut self, marker: &str) -> Script {
        self.echo_marker = Some(marker.to_owned());
        self
    }
}

/// Split after each run of spaces so the deltas concatenate back to `text`.
pub fn split_into_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for character in text.chars() {
        if character != ' ' && current.ends_with(' ') {
            tokens.push(std::mem::take(&mut current));
        }
        current.push(character);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body, `Null` when there was none or it was not JSON.
    pub body: Value,
    /// When its body had been read: the benchmark's "how late was the provider asked".
    pub received_at: std::time::Instant,
}

impl RecordedRequest {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A file uploaded to the fake's Files API: what it was told and what it received (the bytes
/// themselves are hashed and counted as they arrive, never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    pub sha256: String,
    pub deleted: bool,
}

/// A vector store as the fake holds it (docs/llm-wire.md §4.4), for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVectorStore {
    pub id: String,
    /// `None` when it was created without one.
    pub name: Option<String>,
    pub deleted: bool,
    /// In attach order; a file detached, or deleted from the Files API, is no longer listed.
    pub files: Vec<FakeVectorStoreFile>,
}

/// A file attached to a vector store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVectorStoreFile {
    pub file_id: String,
    /// `in_progress`, `completed` or `failed`: what the next poll will answer.
    pub status: String,
}

/// A vector store with what the wire object needs beyond `FakeVectorStore`.
struct VectorStore {
    id: String,
    name: Option<String>,
    metadata: Value,
    created_at: u64,
    deleted: bool,
    files: Vec<StoreFile>,
}

/// A file in a vector store. Indexing is counted in polls, not time, so tests need no sleeps.
struct StoreFile {
    file_id: String,
    created_at: u64,
    bytes: u64,
    /// `GET`s of this file so far.
    polls: u32,
    /// `set_index_polls` when it was attached: it is `in_progress` for this many polls.
    polls_needed: u32,
    /// `fail_indexing` when it was attached: it then ends `failed`, not `completed`.
    fails: bool,
}

struct State {
    /// Lock order: `files` before `vector_stores` when a handler needs both.
    files: Mutex<Vec<FakeFile>>,
    /// `DELETE /v1/files/{id}` answers 500 while this is set.
    fail_file_deletes: AtomicBool,
    /// `POST /v1/files` answers this status while it is set.
    fail_file_uploads: Mutex<Option<u16>>,
    vector_stores: Mutex<Vec<VectorStore>>,
    /// How many polls a newly attached file stays `in_progress`.
    index_polls: AtomicU32,
    /// Newly attached files end `failed` while this is set.
    fail_indexing: AtomicBool,
    scripts: Mutex<VecDeque<Script>>,
    default_script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Counters behind `watch` so a test can await "n requests" or "a disconnect" without sleeping.
    request_count: watch::Sender<usize>,
    disconnects: watch::Sender<usize>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the records from the next assertion.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The TLS configuration of a test server with `chain` and `key` (aws-lc-rs, TLS 1.2 and 1.3;
/// the protocols it offers by ALPN are the caller's to set).
pub fn tls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<rustls::ServerConfig> {
    let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)
}

/// A running fake; stopped when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    /// `https` when started with [`FakeLlm::start_tls_at`].
    scheme: &'static str,
    state: Arc<State>,
    handle: ServerHandle,
}

impl FakeLlm {
    /// Start on 127.0.0.1 with a free port; for tests.
    pub async fn start() -> FakeLlm {
        FakeLlm::start_at("127.0.0.1:0").expect("the fake LLM binds a free port")
    }

    /// Start on a given address, e.g. `127.0.0.1:8090`. Must be called within a Tokio runtime.
    pub fn start_at(addr: &str) -> io::Result<FakeLlm> {
        Self::serve_at(addr, None)
    }

    /// The same over HTTPS, HTTP/2 or HTTP/1.1 as the client prefers (ALPN), with the
    /// certificate chain and key of two PEM files.
    pub fn start_tls_at(addr: &str, cert_pem: &Path, key_pem: &Path) -> io::Result<FakeLlm> {
        use rustls::pki_types::pem::PemObject;
        let invalid = |error: rustls::pki_types::pem::Error| io::Error::other(error.to_string());
        let chain = CertificateDer::pem_file_iter(cert_pem)
            .map_err(invalid)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let key = PrivateKeyDer::from_pem_file(key_pem).map_err(invalid)?;
        Self::serve_at(addr, Some(tls_server_config(chain, key)?))
    }

    fn serve_at(addr: &str, tls: Option<rustls::ServerConfig>) -> io::Result<FakeLlm> {
        let listener = TcpListener::bind(addr)?;
        // std listens with a backlog of 128: the load generator's servers open thousands of
        // connections to the fake at once. Listening again deepens the queue to SOMAXCONN.
        nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            files: Mutex::new(Vec::new()),
            fail_file_deletes: AtomicBool::new(false),
            fail_file_uploads: Mutex::new(None),
            vector_stores: Mutex::new(Vec::new()),
            index_polls: AtomicU32::new(2),
            fail_indexing: AtomicBool::new(false),
            scripts: Mutex::new(VecDeque::new()),
            default_script: Mutex::new(Script::default()),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
            disconnects: watch::Sender::new(0),
            next_id: AtomicU64::new(1),
        });
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/responses", web::post().to(create_response))
                .route(
                    "/v1/chat/completions",
                    web::post().to(create_chat_completion),
                )
                .route("/v1/models", web::get().to(list_models))
                .route("/v1/files", web::post().to(upload_file))
                .route("/v1/files/{id}", web::get().to(get_file))
                .route("/v1/files/{id}", web::delete().to(delete_file))
                .route("/v1/vector_stores", web::post().to(create_vector_store))
                .route("/v1/vector_stores/{id}", web::get().to(get_vector_store))
                .route(
                    "/v1/vector_stores/{id}",
                    web::delete().to(delete_vector_store),
                )
                .route(
                    "/v1/vector_stores/{id}/files",
                    web::post().to(attach_vector_store_file),
                )
                .route(
                    "/v1/vector_stores/{id}/files/{file_id}",
                    web::get().to(get_vector_store_file),
                )
                .route(
                    "/v1/vector_stores/{id}/files/{file_id}",
                    web::delete().to(detach_vector_store_file),
                )
                .default_service(web::to(unknown_path))
        })
        // Streams are timers and small writes: one worker serves hundreds of them.
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0);
        let (server, scheme) = match tls {
            None => (server.listen(listener)?, "http"),
            Some(config) => (server.listen_rustls_0_23(listener, config)?, "https"),
        };
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeLlm {
            addr,
            scheme,
            state,
            handle,
        })
    }

    /// The files uploaded so far (deleted ones marked).
    pub fn files(&self) -> Vec<FakeFile> {
        lock(&self.state.files).clone()
    }

    /// Makes `DELETE /v1/files/{id}` fail with 500 (or work again).
    pub fn fail_file_deletes(&self, fail: bool) {
        self.state.fail_file_deletes.store(fail, Ordering::Relaxed);
    }

    /// Makes `POST /v1/files` answer this status (e.g. 413) with an OpenAI error body, after
    /// reading the whole upload; `None` makes uploads work again.
    pub fn fail_file_uploads(&self, status: Option<u16>) {
        *lock(&self.state.fail_file_uploads) = status;
    }

    /// The vector stores created so far (deleted ones marked), each with its files' status.
    pub fn vector_stores(&self) -> Vec<FakeVectorStore> {
        lock(&self.state.vector_stores)
            .iter()
            .map(|store| FakeVectorStore {
                id: store.id.clone(),
                name: store.name.clone(),
                deleted: store.deleted,
                files: store
                    .files
                    .iter()
                    .map(|file| FakeVectorStoreFile {
                        file_id: file.file_id.clone(),
                        status: file.status().to_owned(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// How many `GET /v1/vector_stores/{id}/files/{file_id}` polls a file attached from now on
    /// answers `in_progress` before its final status (2 by default; 0 indexes it at once).
    pub fn set_index_polls(&self, polls: u32) {
        self.state.index_polls.store(polls, Ordering::Relaxed);
    }

    /// Makes files attached from now on end `failed` with `last_error.code` `unsupported_file`
    /// instead of `completed` (or, with `false`, succeed again).
    pub fn fail_indexing(&self, fail: bool) {
        self.state.fail_indexing.store(fail, Ordering::Relaxed);
    }

    /// The base URL a client is configured with, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v1", self.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a script for the next request that has none; queued scripts are used in order.
    pub fn push(&self, script: Script) {
        lock(&self.state.scripts).push_back(script);
    }

    /// The script used when the queue is empty.
    pub fn set_default(&self, script: Script) {
        *lock(&self.state.default_script) = script;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        *self.state.request_count.borrow()
    }

    /// Wait until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.state.request_count.subscribe();
        count
            .wait_for(|count| *count >= n)
            .await
            .expect("the fake owns the sender");
    }

    /// How many streams the client abandoned before they finished.
    pub fn disconnects(&self) -> usize {
        *self.state.disconnects.borrow()
    }

    /// Wait until a client has gone away in the middle of a stream.
    pub async fn wait_for_disconnect(&self) {
        self.wait_for_disconnects(1).await;
    }

    /// Waits until `n` clients in all have gone away mid-stream.
    pub async fn wait_for_disconnects(&self, n: usize) {
        let mut disconnects = self.state.disconnects.subscribe();
        disconnects
            .wait_for(|count| *count >= n)
            .await
            .expect("the fake owns the sender");
    }

    /// Stop accepting and close every connection.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; awaiting it only waits for completion.
        drop(self.handle.stop(false));
    }
}

/// Record the request and pick its script.
fn receive(state: &State, request: &HttpRequest, body: &Bytes) -> (Value, Script) {
    let json = record(state, request, body);
    let script = next_script(state, &json);
    (json, script)
}

/// The next queued script, or the default; with the echo marker applied to `json`.
fn next_script(state: &State, json: &Value) -> Script {
    let mut script = lock(&state.scripts)
        .pop_front()
        .unwrap_or_else(|| lock(&state.default_script).clone());
    let echoed = script.echo_marker.as_deref().and_then(|marker| {
        last_user_text(json)?
            .strip_prefix(marker)
            .map(|rest| split_into_tokens(rest.trim_start()))
    });
    if let Some(tokens) = echoed {
        script.tokens = tokens;
    }
    script
}

/// The text of the last user message: Chat Completions `messages`, or Responses `input` (a
/// string or a list of items).
fn last_user_text(request: &Value) -> Option<String> {
    let items = request.get("messages").or_else(|| request.get("input"))?;
    let content = match items {
        Value::String(text) => return Some(text.clone()),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))?
            .get("content")?,
        _ => return None,
    };
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Keep what the client sent, for the test's assertions; returns the JSON body.
fn record(state: &State, request: &HttpRequest, body: &Bytes) -> Value {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&state.requests).push(RecordedRequest {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        version: format!("{:?}", request.version()),
        headers,
        body: json.clone(),
        received_at: std::time::Instant::now(),
    });
    state.request_count.send_modify(|count| *count += 1);
    json
}

fn failure_response(failure: &Failure) -> HttpResponse {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    for (name, value) in &failure.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.body(failure.body.clone())
}

async fn create_response(
    state: web::Data<State>,
    request: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let json = record(&state, &request, &body);
    // OpenAI refuses an unknown vector store before it generates anything; such a refusal uses
    // no script, so a queued one still answers the next request.
    let search = match file_search(&state, &json) {
        Ok(search) => search,
        Err(refusal) => return HttpResponse::BadRequest().json(refusal),
    };
    let script = next_script(&state, &json);
    if let Some(failure) = &script.fail {
        return failure_response(failure);
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut answer = Answer::new(id, &json, &script, input_words_responses(&json));
    answer.search = search;
    if json.get("stream").and_then(Value::as_bool) == Some(true) {
        sse_response(responses_plan(&answer, &script), Arc::clone(&state))
    } else {
        HttpResponse::Ok().json(answer.response_object(
            if answer.incomplete.is_some() {
                "incomplete"
            } else {
                "completed"
            },
            true,
        ))
    }
}

async fn create_chat_completion(
    state: web::Data<State>,
    request: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let (json, script) = receive(&state, &request, &body);
    if let Some(failure) = &script.fail {
        return failure_response(failure);
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let answer = Answer::new(id, &json, &script, input_words_chat(&json));
    if json.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        sse_response(
            chat_plan(&answer, &script, include_usage),
            Arc::clone(&state),
        )
    } else {
        HttpResponse::Ok().json(json!({
            "id": answer.chat_id(), "object": "chat.completion", "created": answer.created, "model": answer.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text(), "refusal": null},
                         "logprobs": null, "finish_reason": answer.finish_reason()}],
            "usage": answer.chat_usage(),
        }))
    }
}

async fn list_models(state: web::Data<State>, request: HttpRequest, body: Bytes) -> HttpResponse {
    record(&state, &request, &body);
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 1_700_000_000, "owned_by": "confab"}],
    }))
}

fn file_object(file: &FakeFile) -> Value {
    json!({"id": file.id, "object": "file", "bytes": file.bytes, "created_at": 1_700_000_000,
           "expires_at": null, "filename": file.filename, "purpose": file.purpose,
           "status": "processed"})
}

/// `POST /v1/files` (docs/llm-wire.md §4.1): multipart `file` and `purpose`, streamed and hashed.
async fn upload_file(
    state: web::Data<State>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    use futures_util::StreamExt;
    use sha2::Digest;
    // Files are recorded in `files()`, not among the chat requests tests count and index.
    let refusal = *lock(&state.fail_file_uploads);
    if let Some(status) = refusal {
        // Read the upload to its end first: answering while the client still sends can reach it
        // as a reset connection instead of the status the test asked for.
        while let Some(Ok(_)) = payload.next().await {}
        return upload_refusal(status);
    }
    let mut form = actix_multipart::Multipart::new(request.headers(), payload);
    let (mut purpose, mut received) = (None, None);
    while let Some(Ok(mut field)) = form.next().await {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .unwrap_or_default()
            .to_string();
        let mut hasher = sha2::Sha256::new();
        let mut bytes = 0u64;
        let mut text = Vec::new();
        while let Some(chunk) = field.next().await {
            let Ok(chunk) = chunk else {
                return HttpResponse::BadRequest().finish();
            };
            bytes += chunk.len() as u64;
            hasher.update(&chunk);
            if name == "purpose" && text.len() < 64 {
                text.extend_from_slice(&chunk);
            }
        }
        match name.as_str() {
            "purpose" => purpose = Some(String::from_utf8_lossy(&text).to_string()),
            "file" => received = Some((filename, bytes, hex::encode(hasher.finalize()))),
            _ => {}
        }
    }
    let (Some(purpose), Some((filename, bytes, sha256))) = (purpose, received) else {
        return HttpResponse::BadRequest().json(request_error(
            "Missing required parameter: 'purpose' or 'file'.",
            None,
        ));
    };
    let file = FakeFile {
        id: format!("file-{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
        filename,
        purpose,
        bytes,
        sha256,
        deleted: false,
    };
    let object = file_object(&file);
    lock(&state.files).push(file);
    HttpResponse::Ok().json(object)
}

/// The answer to an upload while `fail_file_uploads` is set: 413 as OpenAI words it, any other
/// status with the body `Script::status` gives it.
fn upload_refusal(status: u16) -> HttpResponse {
    let script = if status == 413 {
        Script::fail(
            413,
            request_error(
                "File too large. The maximum file size is 512 MB.",
                Some("file"),
            ),
        )
    } else {
        Script::status(status)
    };
    match &script.fail {
        Some(failure) => failure_response(failure),
        None => HttpResponse::InternalServerError().finish(),
    }
}

async fn get_file(
    state: web::Data<State>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    record(&state, &request, &Bytes::new());
    match lock(&state.files)
        .iter()
        .find(|f| f.id == *id && !f.deleted)
    {
        Some(file) => HttpResponse::Ok().json(file_object(file)),
        None => HttpResponse::NotFound().json(request_error(
            &format!("No such File object: {id}"),
            Some("id"),
        )),
    }
}

/// `DELETE /v1/files/{id}` (§4.2), or a 500 when told to fail.
async fn delete_file(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    if state.fail_file_deletes.load(Ordering::Relaxed) {
        return HttpResponse::InternalServerError().json(json!({"error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error", "param": null, "code": null}}));
    }
    let mut files = lock(&state.files);
    match files.iter_mut().find(|f| f.id == *id && !f.deleted) {
        Some(file) => {
            file.deleted = true;
            // OpenAI removes a deleted file from every vector store too (§4.2).
            for store in lock(&state.vector_stores).iter_mut() {
                store.files.retain(|attached| attached.file_id != file.id);
            }
            HttpResponse::Ok().json(json!({"id": file.id, "object": "file", "deleted": true}))
        }
        None => HttpResponse::NotFound().json(request_error(
            &format!("No such File object: {id}"),
            Some("id"),
        )),
    }
}

/// An OpenAI error body of type `invalid_request_error` (docs/llm-wire.md §1.3).
fn request_error(message: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}})
}

fn not_found(message: &str) -> HttpResponse {
    HttpResponse::NotFound().json(request_error(message, None))
}

fn no_vector_store(id: &str) -> HttpResponse {
    not_found(&format!("No vector store found with id '{id}'."))
}

/// A JSON object body; an empty body counts as `{}`. The error is the body of a 400.
fn json_object(body: &Bytes) -> Result<Value, Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.is_object() => Ok(value),
        _ => Err(request_error(
            "We could not parse the JSON body of your request.",
            None,
        )),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl State {
    /// A Files API file as it is attached to a store: the indexing switches are read now, so a
    /// test can attach one file that fails and one that does not.
    fn attach(&self, file: &FakeFile) -> StoreFile {
        StoreFile {
            file_id: file.id.clone(),
            created_at: now(),
            bytes: file.bytes,
            polls: 0,
            polls_needed: self.index_polls.load(Ordering::Relaxed),
            fails: self.fail_indexing.load(Ordering::Relaxed),
        }
    }
}

/// A store that exists and was not deleted.
fn live_store<'a>(stores: &'a mut [VectorStore], id: &str) -> Option<&'a mut VectorStore> {
    stores
        .iter_mut()
        .find(|store| store.id == id && !store.deleted)
}

impl StoreFile {
    fn status(&self) -> &'static str {
        if self.polls < self.polls_needed {
            "in_progress"
        } else if self.fails {
            "failed"
        } else {
            "completed"
        }
    }

    /// The `vector_store.file` object (docs/llm-wire.md §4.4).
    fn object(&self, store_id: &str) -> Value {
        let status = self.status();
        let last_error = if status == "failed" {
            json!({"code": "unsupported_file", "message": INDEXING_FAILED_MESSAGE})
        } else {
            Value::Null
        };
        let usage_bytes = if status == "completed" { self.bytes } else { 0 };
        json!({"id": self.file_id, "object": "vector_store.file", "created_at": self.created_at,
               "usage_bytes": usage_bytes, "vector_store_id": store_id, "status": status,
               "last_error": last_error})
    }
}

impl VectorStore {
    /// The `vector_store` object (docs/llm-wire.md §4.4), counted from its files' status now.
    fn object(&self) -> Value {
        let count = |status: &str| {
            self.files
                .iter()
                .filter(|file| file.status() == status)
                .count()
        };
        let in_progress = count("in_progress");
        let usage_bytes: u64 = self
            .files
            .iter()
            .filter(|file| file.status() == "completed")
            .map(|file| file.bytes)
            .sum();
        json!({"id": self.id, "object": "vector_store", "created_at": self.created_at,
               "name": self.name, "usage_bytes": usage_bytes,
               "status": if in_progress > 0 { "in_progress" } else { "completed" },
               "last_active_at": self.created_at, "metadata": self.metadata,
               "file_counts": {"in_progress": in_progress, "completed": count("completed"),
                               "failed": count("failed"), "cancelled": 0,
                               "total": self.files.len()}})
    }
}

// The vector-store routes are observable through `vector_stores()` and, like uploads, are kept
// out of `requests()`, which tests count and index as chat requests.

/// `POST /v1/vector_stores` (§4.4): `name`, `metadata`, and `file_ids` attached at once.
async fn create_vector_store(state: web::Data<State>, body: Bytes) -> HttpResponse {
    let request = match json_object(&body) {
        Ok(request) => request,
        Err(refusal) => return HttpResponse::BadRequest().json(refusal),
    };
    let file_ids = request
        .get("file_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let files = lock(&state.files);
    let mut store = VectorStore {
        id: format!("vs_{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
        name: request
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        metadata: request
            .get("metadata")
            .filter(|metadata| metadata.is_object())
            .cloned()
            .unwrap_or_else(|| json!({})),
        created_at: now(),
        deleted: false,
        files: Vec::new(),
    };
    for file_id in file_ids {
        let Some(file) = files
            .iter()
            .find(|file| file.id == file_id && !file.deleted)
        else {
            return not_found(&format!("No file found with id '{file_id}'."));
        };
        if !store
            .files
            .iter()
            .any(|attached| attached.file_id == file_id)
        {
            store.files.push(state.attach(file));
        }
    }
    let object = store.object();
    lock(&state.vector_stores).push(store);
    HttpResponse::Ok().json(object)
}

async fn get_vector_store(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    match live_store(&mut lock(&state.vector_stores), &id) {
        Some(store) => HttpResponse::Ok().json(store.object()),
        None => no_vector_store(&id),
    }
}

async fn delete_vector_store(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    match live_store(&mut lock(&state.vector_stores), &id) {
        Some(store) => {
            store.deleted = true;
            HttpResponse::Ok()
                .json(json!({"id": store.id, "object": "vector_store.deleted", "deleted": true}))
        }
        None => no_vector_store(&id),
    }
}

/// `POST /v1/vector_stores/{id}/files` (§4.4): attach a Files API file; attaching it again
/// answers the entry it already has.
async fn attach_vector_store_file(
    state: web::Data<State>,
    id: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    let request = match json_object(&body) {
        Ok(request) => request,
        Err(refusal) => return HttpResponse::BadRequest().json(refusal),
    };
    let Some(file_id) = request.get("file_id").and_then(Value::as_str) else {
        return HttpResponse::BadRequest().json(request_error(
            "Missing required parameter: 'file_id'.",
            Some("file_id"),
        ));
    };
    let files = lock(&state.files);
    let mut stores = lock(&state.vector_stores);
    let Some(store) = live_store(&mut stores, &id) else {
        return no_vector_store(&id);
    };
    if let Some(attached) = store.files.iter().find(|file| file.file_id == file_id) {
        return HttpResponse::Ok().json(attached.object(&store.id));
    }
    let Some(file) = files
        .iter()
        .find(|file| file.id == file_id && !file.deleted)
    else {
        return not_found(&format!("No file found with id '{file_id}'."));
    };
    let attached = state.attach(file);
    let object = attached.object(&store.id);
    store.files.push(attached);
    HttpResponse::Ok().json(object)
}

/// `GET /v1/vector_stores/{id}/files/{file_id}`: one poll of the file's indexing.
async fn get_vector_store_file(
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, file_id) = path.into_inner();
    let mut stores = lock(&state.vector_stores);
    let Some(store) = live_store(&mut stores, &id) else {
        return no_vector_store(&id);
    };
    let Some(file) = store.files.iter_mut().find(|file| file.file_id == file_id) else {
        return not_found(&format!(
            "No file found with id '{file_id}' in vector store '{id}'."
        ));
    };
    let object = file.object(&id);
    file.polls = file.polls.saturating_add(1);
    HttpResponse::Ok().json(object)
}

/// `DELETE /v1/vector_stores/{id}/files/{file_id}`: detaches the file; the Files API keeps it.
async fn detach_vector_store_file(
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, file_id) = path.into_inner();
    let mut stores = lock(&state.vector_stores);
    let Some(store) = live_store(&mut stores, &id) else {
        return no_vector_store(&id);
    };
    let attached = store.files.len();
    store.files.retain(|file| file.file_id != file_id);
    if store.files.len() == attached {
        return not_found(&format!(
            "No file found with id '{file_id}' in vector store '{id}'."
        ));
    }
    HttpResponse::Ok()
        .json(json!({"id": file_id, "object": "vector_store.file.deleted", "deleted": true}))
}

/// What the `file_search` tools of a Responses request (§2.4) make of the answer.
struct FileSearch {
    /// The query the fake "searched": the last user message.
    query: Option<String>,
    /// `(file_id, filename)` of each cited file.
    citations: Vec<(String, String)>,
}

/// `None` without a `file_search` tool. An error (the body of OpenAI's 400) when a named vector
/// store is unknown or deleted. Otherwise one citation for each `completed` file of the named
/// stores, once each, in the order the stores are named and the files were attached.
fn file_search(state: &State, request: &Value) -> Result<Option<FileSearch>, Value> {
    let tools: Vec<&Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|tool| tool.get("type").and_then(Value::as_str) == Some("file_search"))
        .collect();
    if tools.is_empty() {
        return Ok(None);
    }
    let files = lock(&state.files);
    let mut stores = lock(&state.vector_stores);
    let mut citations: Vec<(String, String)> = Vec::new();
    let store_ids = tools
        .iter()
        .filter_map(|tool| tool.get("vector_store_ids").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str);
    for store_id in store_ids {
        let Some(store) = live_store(&mut stores, store_id) else {
            return Err(request_error(
                &format!("Vector store with id '{store_id}' not found."),
                Some("tools"),
            ));
        };
        for attached in &store.files {
            if attached.status() != "completed"
                || citations.iter().any(|(id, _)| *id == attached.file_id)
            {
                continue;
            }
            if let Some(file) = files.iter().find(|file| file.id == attached.file_id) {
                citations.push((file.id.clone(), file.filename.clone()));
            }
        }
    }
    Ok(Some(FileSearch {
        query: last_user_text(request),
        citations,
    }))
}

async fn unknown_path(state: web::Data<State>, request: HttpRequest, body: Bytes) -> HttpResponse {
    record(&state, &request, &body);
    not_found(&format!(
        "Invalid URL ({} {})",
        request.method(),
        request.path()
    ))
}

/// What one answer is made of, shared by both formats.
struct Answer {
    id: u64,
    created: u64,
    model: String,
    instructions: Value,
    temperature: Value,
    tokens: Vec<String>,
    incomplete: Option<String>,
    usage: (u32, u32),
    /// Set when the request had a `file_search` tool: a `file_search_call` item then comes
    /// before the message, and the answer cites the files found.
    search: Option<FileSearch>,
}

impl Answer {
    fn new(id: u64, request: &Value, script: &Script, input_words: usize) -> Answer {
        let output_tokens = script
            .interrupt
            .map_or(script.tokens.len(), |(k, _)| k.min(script.tokens.len()));
        Answer {
            id,
            created: now(),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("fake-model")
                .to_owned(),
            instructions: request.get("instructions").cloned().unwrap_or(Value::Null),
            temperature: request.get("temperature").cloned().unwrap_or(json!(1.0)),
            tokens: script.tokens.clone(),
            incomplete: script.incomplete.clone(),
            usage: script
                .usage
                .unwrap_or((input_words.max(1) as u32, output_tokens as u32)),
            search: None,
        }
    }

    fn text(&self) -> String {
        self.tokens.concat()
    }

    fn response_id(&self) -> String {
        format!("resp_fake{:08}", self.id)
    }

    fn message_id(&self) -> String {
        format!("msg_fake{:08}", self.id)
    }

    fn search_id(&self) -> String {
        format!("fs_fake{:08}", self.id)
    }

    /// The message's `output_index`: 1 after a `file_search_call` item, else 0.
    fn message_index(&self) -> usize {
        usize::from(self.search.is_some())
    }

    /// The `file_citation` annotations of the answer, each placed at the end of the text.
    fn annotations(&self) -> Vec<Value> {
        let index = self.text().chars().count();
        self.search
            .iter()
            .flat_map(|search| &search.citations)
            .map(|(file_id, filename)| {
                json!({"type": "file_citation", "index": index, "file_id": file_id, "filename": filename})
            })
            .collect()
    }

    /// The `file_search_call` item (§2.4); its queries are filled once it completed.
    fn search_item(&self, status: &str) -> Value {
        let queries: Vec<&str> = match &self.search {
            Some(FileSearch {
                query: Some(query), ..
            }) if status == "completed" => vec![query],
            _ => Vec::new(),
        };
        json!({"id": self.search_id(), "type": "file_search_call", "status": status,
               "queries": queries, "results": null})
    }

    fn chat_id(&self) -> String {
        format!("chatcmpl-fake{:08}", self.id)
    }

    fn finish_reason(&self) -> &str {
        match self.incomplete.as_deref() {
            None => "stop",
            Some("max_output_tokens") => "length",
            Some(other) => other,
        }
    }

    fn chat_usage(&self) -> Value {
        let (input, output) = self.usage;
        json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
               "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
    }

    fn output_text_part(&self) -> Value {
        json!({"type": "output_text", "annotations": self.annotations(), "logprobs": [], "text": self.text()})
    }

    fn message_item(&self, status: &str, with_content: bool) -> Value {
        let content = if with_content {
            json!([self.output_text_part()])
        } else {
            json!([])
        };
        json!({"id": self.message_id(), "type": "message", "status": status, "content": content, "role": "assistant"})
    }

    /// The Response object as docs/llm-wire.md §2.5 shows it; `finished` fills output and usage.
    fn response_object(&self, status: &str, finished: bool) -> Value {
        let (input, output) = self.usage;
        let incomplete_details = match (&self.incomplete, finished) {
            (Some(reason), true) => json!({"reason": reason}),
            _ => Value::Null,
        };
        let mut items = Vec::new();
        if finished {
            if self.search.is_some() {
                items.push(self.search_item("completed"));
            }
            items.push(self.message_item("completed", true));
        }
        json!({
            "id": self.response_id(), "object": "response", "created_at": self.created, "status": status,
            "error": null, "incomplete_details": incomplete_details, "instructions": self.instructions,
            "model": self.model,
            "output": items,
            "store": false, "temperature": self.temperature, "metadata": {},
            "usage": if finished {
                json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": input + output})
            } else { Value::Null },
        })
    }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Words of a message's content, whether a string or a list of parts with `text`.
fn content_words(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(text)) => words(text),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(words)
            .sum(),
        _ => 0,
    }
}

fn input_words_responses(request: &Value) -> usize {
    let instructions = request
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, words);
    let input = match request.get("input") {
        Some(Value::String(text)) => words(text),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| content_words(item.get("content")))
            .sum(),
        _ => 0,
    };
    instructions + input
}

fn input_words_chat(request: &Value) -> usize {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .map(|message| content_words(message.get("content")))
                .sum()
        })
}

/// One step of a streamed body.
enum Step {
    Send(String),
    Wait(Duration),
    /// Fail the body so actix cuts the connection mid-chunked-body.
    Drop,
}

/// A Responses stream: `event:` equal to `type`, `sequence_number` from 0 up by 1
/// (docs/llm-wire.md §2.6).
struct ResponsesWriter {
    steps: Vec<Step>,
    sequence: u64,
}

impl ResponsesWriter {
    fn event(&mut self, kind: &str, mut data: Value) {
        let object = data.as_object_mut().expect("events are JSON objects");
        object.insert("type".into(), json!(kind));
        object.insert("sequence_number".into(), json!(self.sequence));
        self.sequence += 1;
        self.steps
            .push(Step::Send(format!("event: {kind}\ndata: {data}\n\n")));
    }
}

/// The wait before the first delta. With keepalives on, the provider keeps talking while it
/// "thinks", as reasoning models behind OpenAI and OpenRouter do: one keepalive per 250 ms.
fn thinking_pauses(script: &Script) -> Vec<Duration> {
    let step = Duration::from_millis(250);
    let mut left = script.first_token_delay;
    let mut pauses = Vec::new();
    while script.keepalives && left > step {
        pauses.push(step);
        left -= step;
    }
    pauses.push(left);
    pauses
}

fn responses_plan(answer: &Answer, script: &Script) -> Vec<Step> {
    let mut out = ResponsesWriter {
        steps: Vec::new(),
        sequence: 0,
    };
    let item_id = answer.message_id();
    let output_index = answer.message_index();
    out.event(
        "response.created",
        json!({"response": answer.response_object("in_progress", false)}),
    );
    out.event(
        "response.in_progress",
        json!({"response": answer.response_object("in_progress", false)}),
    );
    if answer.search.is_some() {
        search_events(&mut out, answer);
    }
    out.event(
        "response.output_item.added",
        json!({"output_index": output_index, "item": answer.message_item("in_progress", false)}),
    );
    out.event(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
    );
    for (index, pause) in thinking_pauses(script).into_iter().enumerate() {
        if index > 0 {
            out.event("keepalive", json!({}));
        }
        out.steps.push(Step::Wait(pause));
    }
    for (index, token) in script.tokens.iter().enumerate() {
        if let Some((_, interrupt)) = script.interrupt.filter(|(k, _)| *k == index) {
            responses_interrupt(&mut out, answer, interrupt);
            return out.steps;
        }
        if index > 0 {
            out.steps.push(Step::Wait(script.token_delay));
        }
        if script.keepalives {
            out.event("keepalive", json!({}));
            out.steps
                .push(Step::Send(": OPENROUTER PROCESSING\n\n".into()));
        }
        out.event(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "delta": token, "logprobs": []}),
        );
    }
    if let Some((_, interrupt)) = script.interrupt {
        responses_interrupt(&mut out, answer, interrupt);
        return out.steps;
    }
    for (annotation_index, annotation) in answer.annotations().into_iter().enumerate() {
        out.event(
            "response.output_text.annotation.added",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                   "annotation_index": annotation_index, "annotation": annotation}),
        );
    }
    out.event(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "text": answer.text(), "logprobs": []}),
    );
    out.event(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": answer.output_text_part()}),
    );
    out.event(
        "response.output_item.done",
        json!({"output_index": output_index, "item": answer.message_item("completed", true)}),
    );
    match &answer.incomplete {
        None => out.event(
            "response.completed",
            json!({"response": answer.response_object("completed", true)}),
        ),
        Some(_) => out.event(
            "response.incomplete",
            json!({"response": answer.response_object("incomplete", true)}),
        ),
    }
    out.steps
}

/// The `file_search_call` item at `output_index` 0, searched and done before the message starts
/// (docs/llm-wire.md §2.4).
fn search_events(out: &mut ResponsesWriter, answer: &Answer) {
    let item_id = answer.search_id();
    out.event(
        "response.output_item.added",
        json!({"output_index": 0, "item": answer.search_item("in_progress")}),
    );
    for stage in ["in_progress", "searching", "completed"] {
        out.event(
            &format!("response.file_search_call.{stage}"),
            json!({"output_index": 0, "item_id": item_id}),
        );
    }
    out.event(
        "response.output_item.done",
        json!({"output_index": 0, "item": answer.search_item("completed")}),
    );
}

fn responses_interrupt(out: &mut ResponsesWriter, answer: &Answer, interrupt: Interrupt) {
    match interrupt {
        Interrupt::Drop => out.steps.push(Step::Drop),
        Interrupt::Malformed => out.steps.push(Step::Send(
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n"
                .into(),
        )),
        Interrupt::NoTerminal => {}
        Interrupt::Failed => {
            let mut response = answer.response_object("failed", false);
            response["error"] = json!({"code": "server_error", "message": FAILED_MESSAGE});
            out.event("response.failed", json!({"response": response}));
        }
        Interrupt::ErrorEvent(ErrorShape::Nested) => out.event(
            "error",
            json!({"error": {"type": "too_many_requests", "code": "too_many_requests",
                             "message": NESTED_ERROR_MESSAGE, "param": null}}),
        ),
        Interrupt::ErrorEvent(ErrorShape::Flat) | Interrupt::ChatError(_) => out.event(
            "error",
            json!({"code": "ERR_SOMETHING", "message": FLAT_ERROR_MESSAGE, "param": null}),
        ),
    }
}

/// A Chat Completions stream: `data:` lines only, role chunk, content, finish, usage, `[DONE]`.
fn chat_plan(answer: &Answer, script: &Script, include_usage: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let chunk = |delta: Value, finish_reason: Value| {
        let mut chunk = json!({
            "id": answer.chat_id(), "object": "chat.completion.chunk", "created": answer.created,
            "model": answer.model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        Step::Send(format!("data: {chunk}\n\n"))
    };
    steps.push(chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    for (index, pause) in thinking_pauses(script).into_iter().enumerate() {
        if index > 0 {
            steps.push(Step::Send(": OPENROUTER PROCESSING\n\n".into()));
        }
        steps.push(Step::Wait(pause));
    }
    for (index, token) in script.tokens.iter().enumerate() {
        if let Some((_, interrupt)) = script.interrupt.filter(|(k, _)| *k == index) {
            chat_interrupt(&mut steps, answer, interrupt);
            return steps;
        }
        if index > 0 {
            steps.push(Step::Wait(script.token_delay));
        }
        if script.keepalives {
            steps.push(Step::Send(": OPENROUTER PROCESSING\n\n".into()));
        }
        steps.push(chunk(json!({"content": token}), Value::Null));
    }
    if let Some((_, interrupt)) = script.interrupt {
        chat_interrupt(&mut steps, answer, interrupt);
        return steps;
    }
    steps.push(chunk(json!({}), json!(answer.finish_reason())));
    if include_usage {
        let usage = json!({"id": answer.chat_id(), "object": "chat.completion.chunk", "created": answer.created,
                           "model": answer.model, "system_fingerprint": null, "choices": [],
                           "usage": answer.chat_usage()});
        steps.push(Step::Send(format!("data: {usage}\n\n")));
    }
    steps.push(Step::Send("data: [DONE]\n\n".into()));
    steps
}

fn chat_interrupt(steps: &mut Vec<Step>, answer: &Answer, interrupt: Interrupt) {
    let shape = match interrupt {
        Interrupt::Drop => {
            steps.push(Step::Drop);
            return;
        }
        Interrupt::NoTerminal => return,
        Interrupt::Malformed => {
            steps.push(Step::Send("data: {\"choices\":[{\"delta\":\n\n".into()));
            return;
        }
        Interrupt::Failed
        | Interrupt::ErrorEvent(_)
        | Interrupt::ChatError(ChatErrorShape::OpenAi) => ChatErrorShape::OpenAi,
        Interrupt::ChatError(shape) => shape,
    };
    let chunk = match shape {
        ChatErrorShape::OpenAi => {
            json!({"error": {"message": CHAT_ERROR_MESSAGE, "type": "server_error"}})
        }
        ChatErrorShape::OpenRouter => json!({
            "id": answer.chat_id(), "object": "chat.completion.chunk", "created": answer.created,
            "model": answer.model, "provider": "fake",
            "error": {"code": 502, "message": CHAT_ERROR_MESSAGE, "metadata": {"error_type": "provider_unavailable"}},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }),
        ChatErrorShape::Vllm => json!({"object": "error", "message": CHAT_ERROR_MESSAGE,
                                       "type": "InternalServerError", "param": null, "code": 500}),
    };
    steps.push(Step::Send(format!("data: {chunk}\n\n")));
}

/// Marks the stream as abandoned by the client if it is dropped before it finished: actix drops
/// a response body when its connection goes away, which is the only signal we get.
struct DisconnectGuard {
    state: Arc<State>,
    finished: bool,
}

impl DisconnectGuard {
    /// The stream ended the way the script wanted; dropping it now is no disconnect.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.disconnects.send_modify(|count| *count += 1);
        }
    }
}

fn sse_response(steps: Vec<Step>, state: Arc<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("x-request-id", "req_fake"))
        .streaming(body_stream(
            steps,
            DisconnectGuard {
                state,
                finished: false,
            },
        ))
}

fn body_stream(
    steps: Vec<Step>,
    guard: DisconnectGuard,
) -> impl Stream<Item = Result<Bytes, io::Error>> {
    stream::unfold(
        (steps.into_iter(), guard),
        |(mut steps, mut guard)| async move {
            loop {
                match steps.next() {
                    Some(Step::Wait(delay)) => {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                    Some(Step::Send(text)) => return Some((Ok(Bytes::from(text)), (steps, guard))),
                    Some(Step::Drop) => {
                        // actix discards its unflushed write buffer when a body fails, so the
                        // deltas already sent would vanish with it. Returning Pending once makes
                        // it flush them first: then the client sees the partial answer and a cut.
                        tokio::task::yield_now().await;
                        // Our own doing, not the client's.
                        guard.finish();
                        return Some((
                            Err(io::Error::other("the fake LLM drops the connection")),
                            (steps, guard),
                        ));
                    }
                    None => {
                        guard.finish();
                        return None;
                    }
                }
            }
        },
    )
}
