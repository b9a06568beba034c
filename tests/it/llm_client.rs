//! The provider clients and the router, over real HTTP against the fake upstream.

use std::future::Future;
use std::time::{Duration, Instant};

use confab::llm::{
    Api, ChatRequest, EventStream, Finish, LlmError, ProviderConfig, RetryPolicy, Router, Started,
    StreamEvent, Turn, Usage,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::fake_llm::{
    CHAT_ERROR_MESSAGE, ChatErrorShape, ErrorShape, FAILED_MESSAGE, FLAT_ERROR_MESSAGE, FakeLlm,
    Interrupt, NESTED_ERROR_MESSAGE, Script,
};

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
