//! A fake OpenAI-compatible upstream that speaks the wire formats of docs/llm-wire.md exactly
//! (Responses §2.6, Chat Completions §3.2–3.3), can be scripted per request to be slow, fail,
//! drop, or send in-band errors, and records what it was sent.
//!
//! Used by confab's integration tests, `examples/fake_llm.rs` and the load generator
//! (`benches/loadgen`); it knows nothing of confab itself.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream::{self, Stream};
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
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body, `Null` when there was none or it was not JSON.
    pub body: Value,
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

struct State {
    files: Mutex<Vec<FakeFile>>,
    /// `DELETE /v1/files/{id}` answers 500 while this is set.
    fail_file_deletes: std::sync::atomic::AtomicBool,
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

/// A running fake; stopped when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
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
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            files: Mutex::new(Vec::new()),
            fail_file_deletes: std::sync::atomic::AtomicBool::new(false),
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
                .default_service(web::to(unknown_path))
        })
        // Streams are timers and small writes: one worker serves hundreds of them.
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeLlm {
            addr,
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

    /// The base URL a client is configured with, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
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
    let mut script = lock(&state.scripts)
        .pop_front()
        .unwrap_or_else(|| lock(&state.default_script).clone());
    let echoed = script.echo_marker.as_deref().and_then(|marker| {
        last_user_text(&json)?
            .strip_prefix(marker)
            .map(|rest| split_into_tokens(rest.trim_start()))
    });
    if let Some(tokens) = echoed {
        script.tokens = tokens;
    }
    (json, script)
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
        headers,
        body: json.clone(),
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
    let (json, script) = receive(&state, &request, &body);
    if let Some(failure) = &script.fail {
        return failure_response(failure);
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let answer = Answer::new(id, &json, &script, input_words_responses(&json));
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
    payload: web::Payload,
) -> HttpResponse {
    use futures_util::StreamExt;
    use sha2::Digest;
    // Files are recorded in `files()`, not among the chat requests tests count and index.
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
        return HttpResponse::BadRequest().json(json!({"error": {
            "message": "Missing required parameter: 'purpose' or 'file'.",
            "type": "invalid_request_error", "param": null, "code": null}}));
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
        None => HttpResponse::NotFound().json(json!({"error": {
            "message": format!("No such File object: {id}"), "type": "invalid_request_error",
            "param": "id", "code": null}})),
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
            HttpResponse::Ok().json(json!({"id": file.id, "object": "file", "deleted": true}))
        }
        None => HttpResponse::NotFound().json(json!({"error": {
            "message": format!("No such File object: {id}"), "type": "invalid_request_error",
            "param": "id", "code": null}})),
    }
}

async fn unknown_path(state: web::Data<State>, request: HttpRequest, body: Bytes) -> HttpResponse {
    record(&state, &request, &body);
    HttpResponse::NotFound().json(json!({"error": {
        "message": format!("Invalid URL ({} {})", request.method(), request.path()),
        "type": "invalid_request_error", "param": null, "code": null}}))
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
}

impl Answer {
    fn new(id: u64, request: &Value, script: &Script, input_words: usize) -> Answer {
        let output_tokens = script
            .interrupt
            .map_or(script.tokens.len(), |(k, _)| k.min(script.tokens.len()));
        Answer {
            id,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
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
        json!({"type": "output_text", "annotations": [], "logprobs": [], "text": self.text()})
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
        json!({
            "id": self.response_id(), "object": "response", "created_at": self.created, "status": status,
            "error": null, "incomplete_details": incomplete_details, "instructions": self.instructions,
            "model": self.model,
            "output": if finished { json!([self.message_item("completed", true)]) } else { json!([]) },
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
    out.event(
        "response.created",
        json!({"response": answer.response_object("in_progress", false)}),
    );
    out.event(
        "response.in_progress",
        json!({"response": answer.response_object("in_progress", false)}),
    );
    out.event(
        "response.output_item.added",
        json!({"output_index": 0, "item": answer.message_item("in_progress", false)}),
    );
    out.event(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
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
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": token, "logprobs": []}),
        );
    }
    if let Some((_, interrupt)) = script.interrupt {
        responses_interrupt(&mut out, answer, interrupt);
        return out.steps;
    }
    out.event(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": answer.text(), "logprobs": []}),
    );
    out.event(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": answer.output_text_part()}),
    );
    out.event(
        "response.output_item.done",
        json!({"output_index": 0, "item": answer.message_item("completed", true)}),
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
