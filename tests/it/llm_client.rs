//! The provider clients and the router, over real HTTP against the fake upstream.

use std::future::Future;
use std::time::{Duration, Instant};

use confab::llm::{
    Api, ChatRequest, ClientOptions, Clients, EventStream, Finish, LlmError, ProviderConfig,
    RetryPolicy, Router, Started, StreamEvent, Turn, Usage,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::fake_llm::{
    CHAT_ERROR_MESSAGE, ChatErrorShape, ErrorShape, FAILED_MESSAGE, FLAT_ERROR_MESSAGE, FakeLlm,
    FakeVectorStore, FakeVectorStoreFile, INDEXING_FAILED_MESSAGE, Interrupt, NESTED_ERROR_MESSAGE,
    Script,
};
use crate::support::tls_upstream::TlsUpstream;

const BOTH_APIS: [Api; 2] = [Api::Responses, Api::ChatCompletions];

/// A hang is a failure too; nothing here should take more than a few seconds.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out")
}

fn provider(name: &str, fake: &FakeLlm, api: Api) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        base_url: fake.base_url(),
        api_key: Some("sk-test".into()),
        api,
        extra_headers: Vec::new(),
        fallback_model: None,
        files_api: false,
    }
}

/// Retries that take milliseconds, so only a server-requested delay costs real time.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
    }
}

fn single(fake: &FakeLlm, api: Api) -> Router {
    Router::new(
        vec![provider("openai", fake, api)],
        Vec::new(),
        fast_retries(),
    )
}

fn chat(message: &str) -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        instructions: Some("You are terse.".into()),
        history: vec![
            Turn::user("Hi"),
            Turn::assistant("Hello! How can I help?"),
            Turn::user(message),
        ],
        ..ChatRequest::default()
    }
}

/// How a stream ended.
#[derive(Debug)]
enum End {
    Done {
        usage: Option<Usage>,
        finish: Finish,
    },
    Failed(LlmError),
}

/// Read a stream to its end: the text, how it ended, and a check that nothing follows the end.
async fn collect(mut stream: EventStream) -> (String, End) {
    let mut text = String::new();
    let end = loop {
        match within(stream.next()).await {
            Some(Ok(StreamEvent::Delta(delta))) => text.push_str(&delta),
            Some(Ok(StreamEvent::Cited { .. })) => {}
            Some(Ok(StreamEvent::Done { usage, finish })) => break End::Done { usage, finish },
            Some(Err(error)) => break End::Failed(error),
            None => panic!("the stream ended without Done or an error"),
        }
    };
    assert!(
        within(stream.next()).await.is_none(),
        "nothing may follow the end"
    );
    (text, end)
}

async fn start(router: &Router, provider: &str) -> Result<Started, LlmError> {
    within(router.stream(provider, &chat("Say hello")))
        .await
        .map_err(|failure| failure.error)
}

fn stream_error(end: End) -> String {
    match end {
        End::Failed(error @ (LlmError::Stream(_) | LlmError::Dropped(_))) => error.to_string(),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_fake_echoes_a_marked_last_user_message_and_answers_others_as_scripted() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(Script::answer("Scripted.").echo_after("echo:"));
        let router = single(&fake, api);
        let echoed = within(router.stream("openai", &chat("echo: # Title\n\n`code` here")))
            .await
            .unwrap();
        assert_eq!(
            collect(echoed.stream).await.0,
            "# Title\n\n`code` here",
            "{api:?}"
        );
        let plain = start(&router, "openai").await.unwrap();
        assert_eq!(collect(plain.stream).await.0, "Scripted.", "{api:?}");
    }
}

#[tokio::test]
async fn streamed_deltas_assemble_to_the_answer_with_usage() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(Script::tokens(["Hello", " there", ",", " friend."]));
        let started = start(&single(&fake, api), "openai").await.unwrap();
        assert_eq!(
            (started.provider.as_str(), started.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        let (text, end) = collect(started.stream).await;
        assert_eq!(text, "Hello there, friend.", "{api:?}");
        match end {
            End::Done {
                usage: Some(usage),
                finish: Finish::Complete,
            } => {
                assert_eq!(usage.output_tokens, 4, "{api:?}");
                // Instructions and history: "You are terse. Hi Hello! How can I help? Say hello".
                assert_eq!(usage.input_tokens, 11, "{api:?}");
            }
            other => panic!("{api:?}: {other:?}"),
        }
        assert_eq!(fake.request_count(), 1);
    }
}

#[tokio::test]
async fn responses_request_is_stateless_with_plain_assistant_history() {
    let fake = FakeLlm::start().await;
    let (_, end) = collect(
        start(&single(&fake, Api::Responses), "openai")
            .await
            .unwrap()
            .stream,
    )
    .await;
    assert!(matches!(end, End::Done { .. }));

    let request = &fake.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/responses")
    );
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    let body = &request.body;
    assert_eq!(body["model"], json!("gpt-4o-mini"));
    assert_eq!(body["instructions"], json!("You are terse."));
    assert_eq!(
        (body["stream"].clone(), body["store"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        body["input"],
        json!([
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Say hello"},
        ])
    );
    assert!(
        !body.to_string().contains("input_text"),
        "assistant turns must never be input_text"
    );
    assert!(
        body.get("temperature").is_none(),
        "unset temperature is not sent"
    );
    assert!(body.get("max_output_tokens").is_none());
}

#[tokio::test]
async fn chat_request_has_system_message_usage_option_settings_and_extra_headers() {
    let fake = FakeLlm::start().await;
    let mut openrouter = ProviderConfig::openrouter(
        "sk-or",
        Some(fake.base_url()),
        "https://confab.example",
        "confab",
    );
    openrouter.name = "openrouter".into();
    let router = Router::new(vec![openrouter], Vec::new(), fast_retries());
    let request = ChatRequest {
        temperature: Some(0.25),
        max_output_tokens: Some(200),
        ..chat("Say hello")
    };
    let started = within(router.stream("openrouter", &request)).await.unwrap();
    collect(started.stream).await;

    let recorded = &fake.requests()[0];
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.header("authorization"), Some("Bearer sk-or"));
    assert_eq!(
        recorded.header("http-referer"),
        Some("https://confab.example")
    );
    assert_eq!(recorded.header("x-openrouter-title"), Some("confab"));
    let body = &recorded.body;
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "assistant", "content": "Hello! How can I help?"})
    );
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["temperature"], json!(0.25));
    assert_eq!(body["max_completion_tokens"], json!(200));
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_requested_delay() {
    let fake = FakeLlm::start().await;
    fake.push(Script::status(429).retry_after("1"));
    let begun = Instant::now();
    let started = start(&single(&fake, Api::Responses), "openai")
        .await
        .unwrap();
    // Our own backoff is a few milliseconds, so only obeying Retry-After explains a whole second.
    assert!(
        begun.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        begun.elapsed()
    );
    let (text, _) = collect(started.stream).await;
    assert_eq!(text, "Hello! I am the fake LLM.");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn server_errors_exhaust_retries_then_the_fallback_answers() {
    let primary = FakeLlm::start().await;
    primary.set_default(Script::status(500));
    let backup = FakeLlm::start().await;
    let mut backup_config = provider("backup", &backup, Api::ChatCompletions);
    backup_config.fallback_model = Some("openai/gpt-4o-mini".into());
    let router = Router::new(
        vec![provider("primary", &primary, Api::Responses), backup_config],
        vec!["primary".into(), "backup".into()],
        fast_retries(),
    );
    let started = start(&router, "primary").await.unwrap();
    assert_eq!(
        (started.provider.as_str(), started.model.as_str()),
        ("backup", "openai/gpt-4o-mini")
    );
    let (text, _) = collect(started.stream).await;
    assert_eq!(text, "Hello! I am the fake LLM.");
    assert_eq!(primary.request_count(), 3, "one attempt and two retries");
    assert_eq!(
        backup.requests()[0].body["model"],
        json!("openai/gpt-4o-mini")
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_moves_to_the_fallback_at_once() {
    let primary = FakeLlm::start().await;
    primary.set_default(Script::status(429).retry_after("120"));
    let backup = FakeLlm::start().await;
    let router = Router::new(
        vec![
            provider("primary", &primary, Api::Responses),
            provider("backup", &backup, Api::Responses),
        ],
        vec!["backup".into()],
        fast_retries(),
    );
    let started = start(&router, "primary").await.unwrap();
    assert_eq!(started.provider, "backup");
    assert_eq!(primary.request_count(), 1);
}

#[tokio::test]
async fn unreachable_provider_is_retried_then_falls_back() {
    // A port that was just free: nothing listens there, so connecting is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let backup = FakeLlm::start().await;
    let mut dead = provider("dead", &backup, Api::Responses);
    dead.base_url = format!("http://{closed}/v1");
    let alone = Router::new(vec![dead.clone()], Vec::new(), fast_retries());
    assert!(matches!(
        start(&alone, "dead").await,
        Err(LlmError::Connect(_))
    ));

    let router = Router::new(
        vec![dead, provider("backup", &backup, Api::ChatCompletions)],
        vec!["backup".into()],
        fast_retries(),
    );
    assert_eq!(start(&router, "dead").await.unwrap().provider, "backup");
}

#[tokio::test]
async fn insufficient_quota_and_request_too_large_are_not_retried() {
    for (script, expected_code) in [
        (Script::insufficient_quota(), "insufficient_quota"),
        (Script::request_too_large(), "rate_limit_exceeded"),
    ] {
        let fake = FakeLlm::start().await;
        fake.set_default(script);
        let error = start(&single(&fake, Api::Responses), "openai")
            .await
            .unwrap_err();
        match &error {
            LlmError::Http {
                status: 429,
                code: Some(code),
                ..
            } => assert_eq!(code, expected_code),
            other => panic!("{other:?}"),
        }
        assert!(!error.is_retryable());
        assert_eq!(
            fake.request_count(),
            1,
            "{expected_code}: exactly one request"
        );
    }
}

#[tokio::test]
async fn refused_key_names_the_provider_and_is_not_retried() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::status(401));
    let error = start(&single(&fake, Api::ChatCompletions), "openai")
        .await
        .unwrap_err();
    assert!(matches!(&error, LlmError::Auth { provider } if provider == "openai"));
    assert_eq!(error.to_string(), "the API key for openai was refused");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn dropped_connection_after_the_first_token_fails_the_stream_and_keeps_the_partial_text() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(Script::tokens(["one", " two", " three"]).drop_after(2));
        let (text, end) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "one two", "{api:?}");
        let message = stream_error(end);
        // A cut connection, not a clean end: the chunked body never finished.
        assert!(
            message.starts_with("the connection was lost"),
            "{api:?}: {message}"
        );
        assert_eq!(
            fake.request_count(),
            1,
            "{api:?}: no retry after the first token"
        );
    }
}

#[tokio::test]
async fn error_events_flat_and_nested_fail_the_stream_with_their_message() {
    for (shape, expected) in [
        (ErrorShape::Flat, FLAT_ERROR_MESSAGE),
        (ErrorShape::Nested, NESTED_ERROR_MESSAGE),
    ] {
        let fake = FakeLlm::start().await;
        fake.set_default(
            Script::tokens(["Par", "tial", " rest"])
                .interrupt_after(2, Interrupt::ErrorEvent(shape)),
        );
        let (text, end) = collect(
            start(&single(&fake, Api::Responses), "openai")
                .await
                .unwrap()
                .stream,
        )
        .await;
        assert_eq!(text, "Partial");
        let message = stream_error(end);
        assert!(message.contains(expected), "{shape:?}: {message}");
    }
}

#[tokio::test]
async fn response_failed_fails_the_stream_with_its_message() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::tokens(["Par", "tial"]).interrupt_after(1, Interrupt::Failed));
    let (text, end) = collect(
        start(&single(&fake, Api::Responses), "openai")
            .await
            .unwrap()
            .stream,
    )
    .await;
    assert_eq!(text, "Par");
    assert!(stream_error(end).contains(FAILED_MESSAGE));
}

#[tokio::test]
async fn a_malformed_event_fails_the_stream_and_keeps_the_text_before_it() {
    for api in [Api::Responses, Api::ChatCompletions] {
        let fake = FakeLlm::start().await;
        fake.set_default(
            Script::tokens(["Par", "tial", " rest"]).interrupt_after(2, Interrupt::Malformed),
        );
        let (text, end) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "Partial", "{api:?}");
        assert!(matches!(end, End::Failed(LlmError::Stream(_))), "{api:?}");
    }
}

#[tokio::test]
async fn chat_error_chunks_fail_the_stream_with_their_message() {
    for shape in [
        ChatErrorShape::OpenAi,
        ChatErrorShape::OpenRouter,
        ChatErrorShape::Vllm,
    ] {
        let fake = FakeLlm::start().await;
        fake.set_default(
            Script::tokens(["Par", "tial", " rest"])
                .interrupt_after(2, Interrupt::ChatError(shape)),
        );
        let (text, end) = collect(
            start(&single(&fake, Api::ChatCompletions), "openai")
                .await
                .unwrap()
                .stream,
        )
        .await;
        assert_eq!(text, "Partial", "{shape:?}");
        let message = stream_error(end);
        assert!(message.contains(CHAT_ERROR_MESSAGE), "{shape:?}: {message}");
    }
}

#[tokio::test]
async fn stream_without_its_terminal_event_ended_early() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(
            Script::tokens(["All", " there"]).interrupt_after(2, Interrupt::NoTerminal),
        );
        let (text, end) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "All there");
        assert_eq!(
            stream_error(end),
            "the connection was lost: the stream ended early",
            "{api:?}"
        );
    }
}

#[tokio::test]
async fn failure_before_the_first_token_is_retried() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.push(Script::tokens(["never"]).interrupt_after(0, Interrupt::Failed));
        fake.push(Script::tokens(["never"]).drop_after(0));
        let (text, _) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "Hello! I am the fake LLM.", "{api:?}");
        assert_eq!(fake.request_count(), 3, "{api:?}");
    }
}

#[tokio::test]
async fn keepalives_and_comment_lines_are_ignored() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(Script::answer("Still here, after all.").with_keepalives());
        let (text, end) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "Still here, after all.", "{api:?}");
        assert!(
            matches!(
                end,
                End::Done {
                    finish: Finish::Complete,
                    ..
                }
            ),
            "{api:?}: {end:?}"
        );
    }
}

#[tokio::test]
async fn incomplete_answer_reports_its_reason() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        fake.set_default(Script::answer("Cut short").incomplete("max_output_tokens"));
        let (text, end) = collect(start(&single(&fake, api), "openai").await.unwrap().stream).await;
        assert_eq!(text, "Cut short");
        match end {
            End::Done {
                finish: Finish::Incomplete(reason),
                usage: Some(_),
            } => {
                assert_eq!(reason, "max_output_tokens", "{api:?}");
            }
            other => panic!("{api:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropping_the_stream_drops_the_upstream_request() {
    for api in BOTH_APIS {
        let fake = FakeLlm::start().await;
        let endless: Vec<String> = (0..10_000).map(|n| format!("{n} ")).collect();
        fake.set_default(Script::tokens(endless).token_delay(Duration::from_millis(10)));
        let mut started = start(&single(&fake, api), "openai").await.unwrap();
        assert!(matches!(
            within(started.stream.next()).await,
            Some(Ok(StreamEvent::Delta(_)))
        ));
        assert_eq!(fake.disconnects(), 0);
        drop(started);
        within(fake.wait_for_disconnect()).await;
    }
}

/// The fake itself: the exact Responses event order and numbering of docs/llm-wire.md §2.6, the chat
/// chunk order of §3.2, the non-streamed shapes, and the models list.
#[tokio::test]
async fn fake_speaks_the_documented_wire_formats() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::tokens(["A", "B"]));
    let http = reqwest::Client::new();
    let body = json!({"model": "m", "input": "hi", "stream": true});
    let sse = http
        .post(format!("{}/responses", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let sse = sse.text().await.unwrap();
    let mut names = Vec::new();
    for (sequence, block) in sse
        .split("\n\n")
        .filter(|block| !block.is_empty())
        .enumerate()
    {
        let (event, data) = block.split_once('\n').unwrap();
        let name = event.strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], json!(name));
        assert_eq!(data["sequence_number"], json!(sequence));
        names.push(name.to_owned());
    }
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );

    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                      "stream_options": {"include_usage": true}});
    let sse = http
        .post(format!("{}/chat/completions", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let sse = sse.text().await.unwrap();
    let chunks: Vec<&str> = sse
        .split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| block.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(chunks.len(), 6, "role, A, B, finish, usage, [DONE]: {sse}");
    let parsed: Vec<Value> = chunks[..5]
        .iter()
        .map(|chunk| serde_json::from_str(chunk).unwrap())
        .collect();
    assert_eq!(parsed[0]["choices"][0]["delta"]["role"], json!("assistant"));
    assert_eq!(parsed[3]["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(parsed[4]["choices"], json!([]));
    assert_eq!(parsed[4]["usage"]["completion_tokens"], json!(2));
    assert_eq!(chunks[5], "[DONE]");

    let plain: Value = http
        .post(format!("{}/responses", fake.base_url()))
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["output"][0]["content"][0]["text"], json!("AB"));
    assert_eq!(plain["usage"]["output_tokens"], json!(2));
    let plain: Value = http
        .post(format!("{}/chat/completions", fake.base_url()))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["choices"][0]["message"]["content"], json!("AB"));
    let models: Value = http
        .get(format!("{}/models", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], json!("fake-model"));
    assert_eq!(fake.request_count(), 5);
}

/// Uploads `bytes` as `filename` to the fake's `POST /v1/files`.
async fn upload(
    http: &reqwest::Client,
    fake: &FakeLlm,
    filename: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("purpose", "user_data")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(filename.to_owned()),
        );
    http.post(format!("{}/files", fake.base_url()))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Sends a JSON request to the fake and returns the status and the JSON body.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls a vector-store file until it leaves `in_progress`: every status seen, and the last object.
async fn poll_indexing(
    http: &reqwest::Client,
    fake: &FakeLlm,
    store: &str,
    file: &str,
) -> (Vec<String>, Value) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, object) = send(http.get(format!(
            "{}/vector_stores/{store}/files/{file}",
            fake.base_url()
        )))
        .await;
        assert_eq!(status, 200, "{object}");
        seen.push(object["status"].as_str().unwrap().to_owned());
        if object["status"] != "in_progress" {
            return (seen, object);
        }
    }
    panic!("still indexing after 10 polls: {seen:?}");
}

/// The fake's vector stores and `file_search` (docs/llm-wire.md §2.4, §4.4): indexing counted in
/// polls, a failed indexing, the search item before the message, citations before
/// `output_text.done`, unknown stores refused, and uploads refused on demand.
#[tokio::test]
async fn fake_indexes_files_and_answers_file_search_with_citations() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::tokens(["A", "B"]));
    let http = reqwest::Client::new();
    let base = fake.base_url();

    let notes: Value = upload(&http, &fake, "notes.md", b"# Notes")
        .await
        .json()
        .await
        .unwrap();
    let notes = notes["id"].as_str().unwrap().to_owned();
    let (status, store) = send(
        http.post(format!("{base}/vector_stores"))
            .json(&json!({"name": "Project files", "metadata": {"project": "p1"}})),
    )
    .await;
    assert_eq!(status, 200, "{store}");
    assert_eq!(store["object"], "vector_store");
    assert_eq!(store["metadata"], json!({"project": "p1"}));
    assert_eq!(store["file_counts"]["total"], 0);
    let store = store["id"].as_str().unwrap().to_owned();
    assert!(store.starts_with("vs_"), "{store}");

    let attach = |file: &str| {
        http.post(format!("{base}/vector_stores/{store}/files"))
            .json(&json!({"file_id": file}))
    };
    let (status, attached) = send(attach(&notes)).await;
    assert_eq!(status, 200, "{attached}");
    assert_eq!(
        attached,
        json!({"id": notes, "object": "vector_store.file", "created_at": attached["created_at"],
               "usage_bytes": 0, "vector_store_id": store, "status": "in_progress", "last_error": null})
    );
    let (_, again) = send(attach(&notes)).await;
    assert_eq!(
        again["id"],
        json!(notes),
        "attaching twice answers the same entry"
    );
    let (status, missing) = send(attach("file-nope")).await;
    assert_eq!(status, 404, "{missing}");
    let (seen, indexed) = poll_indexing(&http, &fake, &store, &notes).await;
    assert_eq!(seen, ["in_progress", "in_progress", "completed"]);
    assert_eq!(indexed["usage_bytes"], 7);
    let (_, counted) = send(http.get(format!("{base}/vector_stores/{store}"))).await;
    assert_eq!(counted["file_counts"]["completed"], 1);
    assert_eq!(counted["file_counts"]["total"], 1);

    // A file attached while indexing fails ends `failed`; it is never cited.
    fake.fail_indexing(true);
    let scan: Value = upload(&http, &fake, "scan.bin", b"\x00\x01")
        .await
        .json()
        .await
        .unwrap();
    let scan = scan["id"].as_str().unwrap().to_owned();
    send(attach(&scan)).await;
    fake.fail_indexing(false);
    let (seen, failed) = poll_indexing(&http, &fake, &store, &scan).await;
    assert_eq!(seen, ["in_progress", "in_progress", "failed"]);
    assert_eq!(
        failed["last_error"],
        json!({"code": "unsupported_file", "message": INDEXING_FAILED_MESSAGE})
    );
    assert_eq!(
        fake.vector_stores(),
        [FakeVectorStore {
            id: store.clone(),
            name: Some("Project files".into()),
            deleted: false,
            files: vec![
                FakeVectorStoreFile {
                    file_id: notes.clone(),
                    status: "completed".into()
                },
                FakeVectorStoreFile {
                    file_id: scan.clone(),
                    status: "failed".into()
                },
            ],
        }]
    );

    let tools = json!([{"type": "file_search", "vector_store_ids": [store]}]);
    let body = json!({"model": "m", "input": [{"role": "user", "content": "What do the notes say?"}],
                      "tools": tools, "stream": true});
    let sse = http
        .post(format!("{base}/responses"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse
        .split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let (_, data) = block.split_once("\ndata: ").unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.file_search_call.in_progress",
            "response.file_search_call.searching",
            "response.file_search_call.completed",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.annotation.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (sequence, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], json!(sequence));
    }
    let search_id = &events[2]["item"]["id"];
    assert_eq!(events[2]["item"]["type"], "file_search_call");
    assert_eq!(events[2]["item"]["status"], "in_progress");
    for event in &events[2..7] {
        assert_eq!(event["output_index"], 0, "{event}");
    }
    for event in &events[3..6] {
        assert_eq!(&event["item_id"], search_id, "{event}");
    }
    assert_eq!(events[6]["item"]["status"], "completed");
    assert_eq!(
        events[6]["item"]["queries"],
        json!(["What do the notes say?"])
    );
    for event in &events[7..15] {
        assert_eq!(event["output_index"], 1, "{event}");
    }
    let citation =
        json!({"type": "file_citation", "index": 2, "file_id": notes, "filename": "notes.md"});
    assert_eq!(events[11]["annotation_index"], 0);
    assert_eq!(events[11]["annotation"], citation);
    assert_eq!(events[13]["part"]["annotations"], json!([citation]));
    let output = &events[15]["response"]["output"];
    assert_eq!(output[0]["type"], "file_search_call");
    assert_eq!(output[1]["content"][0]["annotations"], json!([citation]));

    let (status, plain) = send(
        http.post(format!("{base}/responses"))
            .json(&json!({"model": "m", "input": "What do the notes say?", "tools": tools})),
    )
    .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(
        plain["output"][0]["queries"],
        json!(["What do the notes say?"])
    );
    assert_eq!(
        plain["output"][1]["content"][0]["annotations"],
        json!([citation])
    );

    let unknown = json!({"model": "m", "input": "hi", "stream": true,
                         "tools": [{"type": "file_search", "vector_store_ids": ["vs_nope"]}]});
    let (status, refusal) = send(http.post(format!("{base}/responses")).json(&unknown)).await;
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(
        refusal["error"],
        json!({"message": "Vector store with id 'vs_nope' not found.", "type": "invalid_request_error",
               "param": "tools", "code": null})
    );

    let (status, detached) =
        send(http.delete(format!("{base}/vector_stores/{store}/files/{scan}"))).await;
    assert_eq!(
        (status, &detached["object"]),
        (200, &json!("vector_store.file.deleted"))
    );
    let (status, _) = send(http.delete(format!("{base}/vector_stores/{store}/files/{scan}"))).await;
    assert_eq!(status, 404, "detached already");
    let (status, deleted) = send(http.delete(format!("{base}/vector_stores/{store}"))).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted,
        json!({"id": store, "object": "vector_store.deleted", "deleted": true})
    );
    let (status, _) = send(http.get(format!("{base}/vector_stores/{store}"))).await;
    assert_eq!(status, 404);
    assert!(fake.vector_stores()[0].deleted);

    fake.fail_file_uploads(Some(413));
    let refused = upload(&http, &fake, "big.pdf", &[0; 4096]).await;
    assert_eq!(refused.status(), 413);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["type"], "invalid_request_error");
    fake.fail_file_uploads(None);
    assert_eq!(fake.files().len(), 2, "a refused upload is not kept");

    // Files and vector stores stay out of the chat requests tests count.
    assert_eq!(fake.request_count(), 3);
}

/// A router on `upstream` allowing 2 answers per connection: `openai` speaks Responses (which it
/// streams), `refused` Chat Completions (which it answers with a 404).
fn limited_router(upstream: &TlsUpstream) -> Router {
    let clients = Clients::new(&ClientOptions {
        extra_roots: vec![upstream.certificate.ca_der()],
        streams_per_connection: 2,
        ..ClientOptions::default()
    })
    .unwrap();
    let on_upstream = |name: &str, api| ProviderConfig {
        name: name.into(),
        base_url: upstream.base_url(),
        api_key: Some("sk-test".into()),
        api,
        extra_headers: Vec::new(),
        fallback_model: None,
        files_api: false,
    };
    let providers = vec![
        on_upstream("openai", Api::Responses),
        on_upstream("refused", Api::ChatCompletions),
    ];
    Router::with_clients(clients, providers, Vec::new(), fast_retries())
}

/// An answer started on `openai` whose first delta has arrived.
async fn first_delta(router: &Router, answer: usize) -> Started {
    let mut started = start(router, "openai")
        .await
        .unwrap_or_else(|error| panic!("answer {answer}: {error}"));
    match within(started.stream.next()).await {
        Some(Ok(StreamEvent::Delta(text))) => assert_eq!(&*text, "Hi", "answer {answer}"),
        other => panic!("answer {answer}: {other:?}"),
    }
    started
}

/// A hosted provider's edge allows a limited number of streams on one HTTP/2 connection (here
/// 2), and every answer here stays open as a long one does: the answers past the limit must not
/// wait on that connection for an earlier answer to end.
#[tokio::test]
async fn answers_past_a_providers_stream_limit_start_on_another_connection() {
    let upstream = TlsUpstream::start(2).await;
    let router = limited_router(&upstream);
    let mut open = Vec::new();
    for answer in 1..=5 {
        open.push(first_delta(&router, answer).await);
    }
    assert_eq!(upstream.connections(), 3, "two answers per connection");
}

/// An answer stopped mid-way, and a request the provider refused, give their place on the
/// connection back: the next answer goes over the first connection, not a new one.
#[tokio::test]
async fn a_stopped_or_refused_answer_gives_its_place_on_the_connection_back() {
    let upstream = TlsUpstream::start(2).await;
    let router = limited_router(&upstream);
    let _kept = first_delta(&router, 1).await;
    drop(first_delta(&router, 2).await);
    // Had answer 2 kept its place, the first connection would be full for this request.
    let refused = start(&router, "refused").await.unwrap_err();
    assert!(
        matches!(refused, LlmError::Http { status: 404, .. }),
        "{refused:?}"
    );
    // Had the refused request kept its place, the first connection would be full for this one.
    let _third = first_delta(&router, 3).await;
    assert_eq!(
        upstream.connections(),
        1,
        "everything so far on one connection"
    );
    let _fourth = first_delta(&router, 4).await;
    assert_eq!(
        upstream.connections(),
        2,
        "the first connection carries two answers"
    );
}
