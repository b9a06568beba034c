//! Chat over HTTP against real PostgreSQL and the fake upstream.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::{TestApp, test_settings};
use crate::support::fake_llm::{ErrorShape, FakeLlm, Interrupt, Script};
use crate::support::sse::{Events, joined};
use crate::support::tls_upstream::{LoopbackCertificate, TlsUpstream};

const ANSWER: &str = "Streams are **great**, and this one arrives token by token.";

async fn send(app: &TestApp, token: &str, agent: &str, body: Value) -> reqwest::Response {
    let response = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "chat request");
    response
}

async fn conversation(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = app
        .get_json(token, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(status, 200);
    body
}

/// Sends `message` to the agent in a new conversation and follows the answer to its end: the
/// final event (status, error, usage…).
async fn answer_to(app: &TestApp, token: &str, agent: &str, message: &str) -> Value {
    Events::of(send(app, token, agent, json!({ "message": message })).await)
        .collect_json()
        .await
        .1
}

/// Waits for an answer to end by following its stream (no sleeping).
async fn wait_done(app: &TestApp, token: &str, message_id: &str) -> Value {
    let response = app
        .api
        .get(app.url(&format!("/api/messages/{message_id}/stream")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Events::of(response).collect_json().await.1
}

/// The id of the answer whose stream a sent turn's HTML opens.
fn streamed_answer_id(html: &str) -> String {
    html.split("sse-connect=\"/messages/")
        .nth(1)
        .expect("the answer opens its stream")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// The final bubble a page's stream of an answer ends with, past what comes before it.
async fn final_bubble(events: &mut Events) -> String {
    loop {
        let event = events.next().await.expect("done event");
        if event.event == "done" {
            return event.data;
        }
    }
}

/// An answer's stream as a page reads it (with the session cookie, no Last-Event-ID).
async fn page_stream(app: &TestApp, token: &str, message_id: &str) -> Events {
    let response = app
        .api
        .get(app.url(&format!("/messages/{message_id}/stream")))
        .header("cookie", format!("confab_session={token}"))
        .send()
        .await
        .unwrap();
    Events::of(response)
}

/// What a page shows of a streaming answer, built from its events as htmx swaps them.
#[derive(Default)]
struct Rendered {
    settled: String,
    tail: String,
    tails: usize,
}

impl Rendered {
    fn apply(&mut self, event: &eventsource_stream::Event) {
        match event.event.as_str() {
            "snapshot" => self.settled.clone_from(&event.data),
            "settled" => self.settled.push_str(&event.data),
            "tail" => {
                self.tail.clone_from(&event.data);
                self.tails += 1;
            }
            other => panic!("unexpected event {other}: {}", event.data),
        }
    }

    fn html(&self) -> String {
        format!("{}{}", self.settled, self.tail)
    }
}

#[tokio::test]
async fn streamed_text_assembles_to_the_answer_and_is_stored() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(ANSWER).usage(11, 13));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("stream@example.com").await;

    let mut events = Events::of(
        send(
            &app,
            &token,
            &agent,
            json!({"message": "Tell me about streams, please"}),
        )
        .await,
    );
    let (chunks, done) = events.collect_json().await;
    assert!(chunks.len() > 3, "several chunks, not one blob");
    assert_eq!(joined(&chunks), ANSWER);
    // Ids are byte offsets: the last one is the answer's length.
    assert_eq!(chunks.last().unwrap().0, ANSWER.len().to_string());
    assert_eq!(done["status"], "complete");
    assert_eq!(done["usage"]["output_tokens"], 13);
    assert_eq!(done["provider"], "openai");

    let conversation_id = done["conversation_id"].as_str().unwrap();
    let stored = conversation(&app, &token, conversation_id).await;
    assert_eq!(
        stored["title"], "Tell me about streams, please",
        "the first message titles the conversation"
    );
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (
            messages[0]["role"].as_str(),
            messages[0]["content"].as_str()
        ),
        (Some("user"), Some("Tell me about streams, please"))
    );
    let answer = &messages[1];
    assert_eq!(answer["content"], ANSWER);
    assert_eq!(answer["status"], "complete");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(answer["input_tokens"], 11);
    assert!(answer["ttft_ms"].as_i64().is_some() && answer["duration_ms"].as_i64().is_some());

    // The conversation list for the agent has it, newest first.
    let (_, list) = app
        .get_json(&token, &format!("/api/agents/{agent}/conversations"))
        .await;
    assert_eq!(list[0]["id"], conversation_id);
}

#[tokio::test]
async fn the_user_message_is_saved_before_any_llm_call() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::status(500));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.max_retries = 0).await;
    let (token, _, agent) = app.chat_setup("saved@example.com").await;
    let done = answer_to(&app, &token, &agent, "keep me").await;
    assert_eq!(done["status"], "failed");
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][0]["content"], "keep me");
    assert_eq!(stored["messages"][1]["status"], "failed");

    // Empty messages are refused with a field error, and nothing is stored.
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&json!({"message": "   "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["fields"]["message"].is_string());
}

#[tokio::test]
async fn stop_drops_the_upstream_request_and_keeps_the_partial_text() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(200)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("stop@example.com").await;

    let mut events =
        Events::of(send(&app, &token, &agent, json!({"message": "go on forever"})).await);
    let first = events.next().await.unwrap();
    let message_id = serde_json::from_str::<Value>(&first.data).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .api
        .post(app.url(&format!("/api/messages/{message_id}/stop")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    fake.wait_for_disconnect().await;

    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "stopped");
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    let partial = stored["messages"][1]["content"].as_str().unwrap();
    assert!(
        !partial.is_empty() && partial.len() < 1000,
        "partial text kept: {} bytes",
        partial.len()
    );
    assert!("word ".repeat(200).starts_with(partial));
    assert_eq!(stored["messages"][1]["status"], "stopped");

    // Stopping an answer that has ended is a conflict, not an error page.
    let r = app
        .api
        .post(app.url(&format!("/api/messages/{message_id}/stop")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn an_answer_finishes_and_is_saved_after_the_reader_goes_away() {
    let fake = FakeLlm::start().await;
    let long = "one two three four five six seven eight nine ten ".repeat(5);
    fake.set_default(Script::answer(&long).token_delay(Duration::from_millis(5)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("gone@example.com").await;

    let mut events = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await);
    let first: Value = serde_json::from_str(&events.next().await.unwrap().data).unwrap();
    drop(events); // the browser tab closes
    let message_id = first["message_id"].as_str().unwrap();
    let done = wait_done(&app, &token, message_id).await;
    assert_eq!(done["status"], "complete");
    assert_eq!(
        fake.disconnects(),
        0,
        "the upstream request was not dropped with the reader"
    );
    let stored = conversation(&app, &token, first["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][1]["content"], long.as_str());
}

#[tokio::test]
async fn a_reader_that_reconnects_gets_exactly_the_missing_text() {
    let fake = FakeLlm::start().await;
    let long: String = (0..80).map(|i| format!("t{i} ")).collect();
    fake.set_default(Script::answer(&long).token_delay(Duration::from_millis(10)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("resume@example.com").await;

    let mut events = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await);
    let mut received = String::new();
    let mut last_id = String::new();
    let mut message_id = String::new();
    for _ in 0..5 {
        let event = events.next().await.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        received.push_str(data["text"].as_str().unwrap());
        message_id = data["message_id"].as_str().unwrap().to_string();
        last_id = event.id;
    }
    drop(events);

    let response = app
        .api
        .get(app.url(&format!("/api/messages/{message_id}/stream")))
        .bearer_auth(&token)
        .header("Last-Event-ID", &last_id)
        .send()
        .await
        .unwrap();
    let (chunks, done) = Events::of(response).collect_json().await;
    received.push_str(&joined(&chunks));
    assert_eq!(done["status"], "complete");
    assert_eq!(received, long, "no duplicated or missing text");

    // After the end, a reader with an offset gets the rest from the stored row.
    let response = app
        .api
        .get(app.url(&format!("/api/messages/{message_id}/stream")))
        .bearer_auth(&token)
        .header("Last-Event-ID", "10")
        .send()
        .await
        .unwrap();
    let (chunks, _) = Events::of(response).collect_json().await;
    assert_eq!(joined(&chunks), &long[10..]);

    // An offset this text cannot have (the reader saw text a crash lost, or a made-up one)
    // gets the whole text as a snapshot to replace its own, never a continuation.
    // An id that is not an offset at all says the reader has something too.
    let past_the_end = (long.len() + 6).to_string();
    for offset in [
        past_the_end.as_str(),
        "99999999",
        "abc",
        "-5",
        "1.5",
        "99999999999999999999",
    ] {
        let response = app
            .api
            .get(app.url(&format!("/api/messages/{message_id}/stream")))
            .bearer_auth(&token)
            .header("Last-Event-ID", offset)
            .send()
            .await
            .unwrap();
        let mut events = Events::of(response);
        let first = events.next().await.unwrap();
        assert_eq!(first.event, "snapshot", "offset {offset}");
        let data: Value = serde_json::from_str(&first.data).unwrap();
        assert_eq!(data["snapshot"], true);
        assert_eq!(data["text"], long.as_str());
        let (chunks, done) = events.collect_json().await;
        assert!(chunks.is_empty() && done["done"] == true);
    }
}

#[tokio::test]
async fn resuming_inside_a_character_gets_a_snapshot_not_a_garbled_continuation() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("héllo wörld"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("utf8@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    let message_id = done["message_id"].as_str().unwrap();
    // Byte 2 is inside "é".
    let response = app
        .api
        .get(app.url(&format!("/api/messages/{message_id}/stream")))
        .bearer_auth(&token)
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let first = Events::of(response).next().await.unwrap();
    assert_eq!(first.event, "snapshot");
    let data: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data["text"], "héllo wörld");
}

#[tokio::test]
async fn two_tabs_on_one_conversation_both_see_the_whole_answer() {
    let fake = FakeLlm::start().await;
    let long: String = (0..60).map(|i| format!("w{i} ")).collect();
    fake.set_default(Script::answer(&long).token_delay(Duration::from_millis(10)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("tabs@example.com").await;
    let mut first_tab = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await);
    let first = first_tab.next().await.unwrap();
    let data: Value = serde_json::from_str(&first.data).unwrap();
    let message_id = data["message_id"].as_str().unwrap().to_string();

    // The second tab is a page: it gets what is rendered so far (`snapshot` and `tail`), then
    // rendered updates, then the bubble.
    let mut second_tab = page_stream(&app, &token, &message_id).await;
    let first_event = second_tab.next().await.unwrap();
    assert_eq!(first_event.event, "snapshot");
    let mut page = Rendered::default();
    page.apply(&first_event);
    let final_html = loop {
        let event = second_tab.next().await.expect("done event");
        if event.event == "done" {
            break event.data;
        }
        page.apply(&event);
    };
    // One paragraph: the tail shows it as it grows, up to the words before the last.
    assert!(page.settled.is_empty(), "{}", page.settled);
    assert!(page.tail.starts_with("<p>w0 w1 w2"), "{}", page.tail);
    assert!(
        final_html.contains(&format!("id=\"msg-{message_id}\""))
            && final_html.contains("w59")
            && !final_html.contains("sse-connect")
    );

    let mut first_text = data["text"].as_str().unwrap().to_string();
    let (chunks, done) = first_tab.collect_json().await;
    first_text.push_str(&joined(&chunks));
    assert_eq!(first_text, long);
    assert_eq!(done["status"], "complete");
}

#[tokio::test]
async fn rate_limits_are_retried_after_their_delay_then_answered() {
    let fake = FakeLlm::start().await;
    fake.push(Script::status(429).retry_after("1"));
    fake.set_default(Script::answer(ANSWER));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("retry@example.com").await;
    let started = std::time::Instant::now();
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(done["status"], "complete");
    assert_eq!(joined(&chunks), ANSWER);
    assert_eq!(fake.request_count(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn a_failing_primary_falls_back_and_the_message_says_who_answered() {
    let primary = FakeLlm::start().await;
    primary.set_default(Script::status(500));
    let backup = FakeLlm::start().await;
    backup.set_default(Script::answer("From the backup."));
    let backup_url = backup.base_url();
    let app = TestApp::with_llm(&primary.base_url(), move |s| {
        s.llm
            .providers
            .push(crate::support::app::compatible_provider(
                "backup",
                &backup_url,
            ));
    })
    .await;
    let (token, _, agent) = app.chat_setup("fallback@example.com").await;
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "From the backup.");
    assert_eq!(done["provider"], "backup");
    assert_eq!(
        primary.request_count(),
        3,
        "the primary was tried and retried first"
    );
    assert_eq!(backup.requests()[0].path, "/v1/chat/completions");
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][1]["provider"], "backup");
}

#[tokio::test]
async fn a_drop_mid_stream_fails_the_answer_and_keeps_its_text() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::tokens(["Half ", "an ", "answer ", "and ", "then"]).drop_after(3));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("drop@example.com").await;
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "Half an answer ");
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["error"],
        "The connection to the model provider was lost after 3 words."
    );
    assert!(
        done["error_detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("the connection was lost")),
        "{done}"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "after the first token there is no retry"
    );
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][1]["content"], "Half an answer ");
}

#[tokio::test]
async fn in_band_errors_fail_the_answer_with_a_readable_message() {
    let fake = FakeLlm::start().await;
    fake.set_default(
        Script::answer(ANSWER).interrupt_after(2, Interrupt::ErrorEvent(ErrorShape::Nested)),
    );
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("inband@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .starts_with("The model provider stopped with an error after"),
        "{done}"
    );
    assert!(
        done["error_detail"]
            .as_str()
            .unwrap()
            .contains("Too Many Requests"),
        "the provider's words are kept: {done}"
    );
}

#[tokio::test]
async fn an_overloaded_provider_is_explained_with_the_number_of_tries() {
    let fake = FakeLlm::start().await;
    for _ in 0..3 {
        fake.push(Script::status(503));
    }
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.max_retries = 2).await;
    let (token, _, agent) = app.chat_setup("overloaded@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["error"],
        "The model provider is overloaded; we tried 3 times. Try again in a moment."
    );
    assert!(
        done["error_detail"].as_str().unwrap().contains("503"),
        "{done}"
    );
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert!(
        stored["messages"][1]["error_detail"].is_string(),
        "{stored}"
    );
}

#[tokio::test]
async fn insufficient_quota_is_not_retried_and_a_refused_key_names_the_provider() {
    let fake = FakeLlm::start().await;
    fake.push(Script::insufficient_quota());
    fake.push(Script::status(401));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("quota@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["error"],
        "The model provider's account has run out of credit; the administrator needs to top it up."
    );
    assert!(
        done["error_detail"].as_str().unwrap().contains("quota"),
        "{done}"
    );
    assert_eq!(fake.request_count(), 1);

    let done = answer_to(&app, &token, &agent, "again").await;
    assert_eq!(
        done["error"],
        "The provider \u{201c}openai\u{201d} refused confab's API key; the administrator needs to check it."
    );
    assert_eq!(done["error_detail"], "the API key for openai was refused");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn history_and_system_message_go_upstream_as_specified() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("First answer."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, agent) = app.chat_setup("context@example.com").await;
    app.post_json(
        &token,
        &format!("/api/projects/{project}/prompts"),
        json!({"title": "Tone", "content": "Be brief."}),
    )
    .await;
    app.post_json(
        &token,
        &format!("/api/agents/{agent}/prompts"),
        json!({"title": "Role", "content": "You are a librarian."}),
    )
    .await;

    let (_, done) =
        Events::of(send(&app, &token, &agent, json!({"message": "Question one"})).await)
            .collect_json()
            .await;
    let conversation_id = done["conversation_id"].as_str().unwrap().to_string();
    let first = fake.requests()[0].body.clone();
    assert_eq!(first["instructions"], "Be brief.\n\nYou are a librarian.");
    let stored = conversation(&app, &token, &conversation_id).await;
    let used = stored["messages"][1]["prompt_versions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        used.len(),
        2,
        "the answer records the prompt versions it was made with"
    );
    assert!(
        used.iter()
            .all(|v| v["version"] == 1 && v["prompt_id"].is_string())
    );
    assert!(
        first.get("temperature").is_none(),
        "temperature is sent only when the agent sets it"
    );
    assert!(first.get("max_output_tokens").is_none());
    assert_eq!(first["stream"], true);

    app.send_json(
        &token,
        reqwest::Method::PATCH,
        &format!("/api/agents/{agent}"),
        json!({"temperature": 0.5, "max_output_tokens": 300}),
    )
    .await;
    fake.set_default(Script::answer("Second answer."));
    Events::of(
        send(
            &app,
            &token,
            &agent,
            json!({"message": "Question two", "conversation_id": conversation_id}),
        )
        .await,
    )
    .collect_json()
    .await;
    let second = fake.requests()[1].body.clone();
    assert_eq!(second["temperature"], 0.5);
    assert_eq!(second["max_output_tokens"], 300);
    let input = second["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{second}");
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[1]["role"], "assistant");
    assert_eq!(
        input[1]["content"], "First answer.",
        "assistant turns go back as plain strings"
    );
    assert!(!second.to_string().contains("\"input_text\"") || input[1]["content"].is_string());
    assert_eq!(input[2]["role"], "user");
    let body = second.to_string();
    assert!(body.contains("Question one") && body.contains("Question two"));

    // A conversation that belongs to another agent cannot be continued through this one.
    let (_, other) = app
        .post_json(
            &token,
            &format!("/api/projects/{project}/agents"),
            json!({"name": "Other"}),
        )
        .await;
    let r = app
        .api
        .post(app.url(&format!(
            "/api/chat/agents/{}",
            other["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .json(&json!({"message": "x", "conversation_id": conversation_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn history_is_trimmed_oldest_first_to_the_budget() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.chat.history_budget_chars = 30).await;
    let (token, _, agent) = app.chat_setup("budget@example.com").await;
    let (_, done) = Events::of(
        send(
            &app,
            &token,
            &agent,
            json!({"message": "an old question that is long"}),
        )
        .await,
    )
    .collect_json()
    .await;
    let conversation_id = done["conversation_id"].as_str().unwrap();
    Events::of(
        send(
            &app,
            &token,
            &agent,
            json!({"message": "newest", "conversation_id": conversation_id}),
        )
        .await,
    )
    .collect_json()
    .await;
    let input = fake.requests()[1].body["input"].as_array().unwrap().clone();
    assert_eq!(input.len(), 1, "only the newest turn fits: {input:?}");
    assert_eq!(input[0]["content"], "newest");
}

#[tokio::test]
async fn project_chat_answers_whole_with_the_default_agent() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(ANSWER));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, _) = app.chat_setup("whole@example.com").await;
    let (status, body) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"project_id": project, "message": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"], ANSWER);
    let conversation_id = body["conversation_id"].as_str().unwrap();
    let (status, body) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"project_id": project, "message": "more", "conversation_id": conversation_id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation_id"], conversation_id);

    fake.push(Script::status(400));
    let (status, body) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"project_id": project, "message": "fail"}),
        )
        .await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn conversations_can_be_renamed_and_deleted() {
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("manage@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    let id = done["conversation_id"].as_str().unwrap();
    let (status, renamed) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}"),
            json!({"title": "Greetings"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(renamed["title"], "Greetings");
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}"),
            json!({"title": " "}),
        )
        .await;
    assert_eq!(status, 422);
    let r = app
        .api
        .delete(app.url(&format!("/api/conversations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get_json(&token, &format!("/api/conversations/{id}"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn answers_render_as_sanitized_markdown_in_the_page() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("**Bold** <script>alert(1)</script> [x](javascript:alert(2)) [ok](https://example.com) <img src=x onerror=alert(3)>"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("render@example.com").await;
    let (_, agent_id) = browser.project_with_agent("R").await;
    let r = browser
        .post_form(
            &format!("/agents/{agent_id}/chat"),
            &[("message", "render this")],
        )
        .await;
    assert_eq!(
        r.status(),
        303,
        "without JavaScript the form redirects to the conversation"
    );
    let conversation_url = r.headers()["location"].to_str().unwrap().to_string();
    // Follow the answer to its end through the page's own stream.
    let (_, page) = browser.get(&conversation_url).await;
    browser.finish_answer(&page).await;
    let (_, page) = browser.get(&conversation_url).await;
    assert!(page.contains("<strong>Bold</strong>"), "markdown rendered");
    assert!(page.contains("rel=\"noopener noreferrer\""));
    assert!(!page.contains("<script>alert(1)"), "script stripped");
    assert!(
        !page.contains("javascript:alert"),
        "javascript: link stripped"
    );
    assert!(!page.contains("onerror"), "handlers stripped");
    assert!(page.contains("render this"));
}

#[tokio::test]
async fn htmx_send_returns_the_turn_and_retry_replaces_a_failed_answer() {
    let fake = FakeLlm::start().await;
    fake.push(Script::status(400));
    fake.set_default(Script::answer("Second time lucky."));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.max_retries = 0).await;
    let browser = app.browser("htmx-chat@example.com").await;
    let (_, agent_id) = browser.project_with_agent("H").await;

    let r = browser
        .htmx_post(&format!("/agents/{agent_id}/chat"), &[("message", "hello")])
        .await;
    assert_eq!(r.status(), 200);
    let pushed = r.headers()["hx-push-url"].to_str().unwrap().to_string();
    assert!(pushed.starts_with("/conversations/"));
    let html = r.text().await.unwrap();
    assert!(html.contains("class=\"msg user\"") && html.contains("hello"));
    assert!(
        html.contains("sse-connect=\"/messages/"),
        "the answer bubble opens its stream"
    );
    assert!(
        html.contains("id=\"composer\"") && html.contains("hx-swap-oob=\"true\""),
        "the composer now posts to the conversation"
    );
    assert!(html.contains(&format!("hx-post=\"{pushed}/messages\"")));
    let message_id = streamed_answer_id(&html);

    let response = browser
        .client
        .get(app.url(&format!("/messages/{message_id}/stream")))
        .send()
        .await
        .unwrap();
    let mut events = Events::of(response);
    let done = final_bubble(&mut events).await;
    assert!(
        done.contains("Retry"),
        "a failed answer offers Retry: {done}"
    );

    let r = browser
        .htmx_post(&format!("/messages/{message_id}/retry"), &[])
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let new_id = streamed_answer_id(&html);
    assert_ne!(new_id, message_id);
    let (_, page) = browser.get(&pushed).await;
    assert!(
        !page.contains(&format!("msg-{message_id}")),
        "the failed answer was replaced"
    );
    let token = app
        .login("htmx-chat@example.com", crate::support::app::PASSWORD)
        .await;
    let done = wait_done(&app, &token, &new_id).await;
    assert_eq!(done["status"], "complete");
}

#[tokio::test]
async fn a_stopped_answer_offers_retry_and_retry_asks_again() {
    let fake = FakeLlm::start().await;
    fake.push(Script::answer(&"word ".repeat(200)).token_delay(Duration::from_millis(20)));
    fake.set_default(Script::answer("A whole answer."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("stopped-retry@example.com").await;
    let (_, agent_id) = browser.project_with_agent("S").await;
    let html = browser
        .htmx_post(&format!("/agents/{agent_id}/chat"), &[("message", "go on")])
        .await
        .text()
        .await
        .unwrap();
    let message_id = streamed_answer_id(&html);
    let response = browser
        .client
        .get(app.url(&format!("/messages/{message_id}/stream")))
        .send()
        .await
        .unwrap();
    let mut events = Events::of(response);
    events.next().await.unwrap();
    let r = browser
        .htmx_post(&format!("/messages/{message_id}/stop"), &[])
        .await;
    assert_eq!(r.status(), 204);
    let done = final_bubble(&mut events).await;
    assert!(done.contains("Stopped."), "{done}");
    assert!(
        done.contains("Retry"),
        "a stopped answer offers Retry: {done}"
    );

    let r = browser
        .htmx_post(&format!("/messages/{message_id}/retry"), &[])
        .await;
    assert_eq!(r.status(), 200);
    let new_id = streamed_answer_id(&r.text().await.unwrap());
    assert_ne!(new_id, message_id);
    let token = app
        .login("stopped-retry@example.com", crate::support::app::PASSWORD)
        .await;
    let done = wait_done(&app, &token, &new_id).await;
    assert_eq!(done["status"], "complete");
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "the stopped answer was replaced: {messages:?}"
    );
    assert_eq!(messages[1]["content"], "A whole answer.");
}

#[tokio::test]
async fn without_a_provider_the_page_says_so_and_sending_fails_fast() {
    let app = TestApp::spawn().await;
    let (token, project, agent) = app.chat_setup("noprovider@example.com").await;
    let browser = app.browser("noprovider-web@example.com").await;
    let (_, web_agent) = browser.project_with_agent("N").await;
    let (status, page) = browser.get(&format!("/agents/{web_agent}/chat")).await;
    assert_eq!(status, 200);
    assert!(page.contains("No LLM provider is configured"));
    assert!(page.contains("OPENAI_API_KEY"));

    let done = answer_to(&app, &token, &agent, "anyone?").await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("No LLM provider is configured")
    );

    // The whole-reply API says "not available", not "bad gateway": nothing upstream was asked.
    let (status, body) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"project_id": project, "message": "anyone?"}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OPENAI_API_KEY")
    );
}

#[tokio::test]
async fn an_agents_page_says_where_answers_go_when_its_provider_is_not_configured() {
    let fake = FakeLlm::start().await;
    for (fallback, expected) in [
        (None, "answers go to openai, the next in the fallback order"),
        (
            Some(Vec::new()),
            "answers fail until the administrator configures it",
        ),
    ] {
        let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.fallback = fallback).await;
        let browser = app.browser("unconfigured@example.com").await;
        let (project_url, agent_id) = browser.project_with_agent("P").await;
        let (_, page) = browser.get(&format!("/agents/{agent_id}")).await;
        assert!(
            !page.contains("confab has no provider named"),
            "openai is configured: nothing to say"
        );
        let r = browser
            .post_form(
                &format!("{project_url}/agents"),
                &[
                    ("name", "Elsewhere"),
                    ("provider", "groq"),
                    ("model", "llama"),
                ],
            )
            .await;
        let agent_url = r.headers()["location"].to_str().unwrap().to_string();
        let (_, page) = browser.get(&agent_url).await;
        assert!(
            page.contains("confab has no provider named “groq”") && page.contains(expected),
            "{page}"
        );
    }
}

#[tokio::test]
async fn an_agent_naming_an_unconfigured_provider_is_told_which_ones_exist() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("unused"));
    // OpenAI is configured; no fallback, so the agent's own provider is all that is tried.
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.fallback = Some(Vec::new())).await;
    let (token, _, agent) = app.chat_setup("elsewhere@example.com").await;
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/agents/{agent}"),
            json!({"provider": "groq"}),
        )
        .await;
    assert_eq!(status, 200);

    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("groq") && error.contains("openai"),
        "{error}"
    );
    assert!(
        !error.contains("OPENAI_API_KEY") && !error.contains("No LLM provider is configured"),
        "OpenAI is configured; the message must not say otherwise: {error}"
    );
    assert_eq!(fake.requests().len(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn shutdown_lets_answers_finish_then_saves_the_rest() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"slow ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("shutdown@example.com").await;
    let mut events = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await);
    let first: Value = serde_json::from_str(&events.next().await.unwrap().data).unwrap();

    app.state
        .generations
        .shutdown(Duration::from_millis(200))
        .await;
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "failed");
    assert!(done["error"].as_str().unwrap().contains("shut down"));
    let stored = conversation(&app, &token, first["conversation_id"].as_str().unwrap()).await;
    let partial = stored["messages"][1]["content"].as_str().unwrap();
    assert!(
        !partial.is_empty() && partial.len() < 2500,
        "partial text saved"
    );

    // While shutting down, new messages are refused with a clear 503.
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&json!({"message": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

/// A live answer keeps what its readers need (its text) and lets go of what it asked once the
/// provider streams: the request, with up to `chat.history_budget_chars` of history and the
/// instructions, is not held by every live answer until it ends.
#[tokio::test]
async fn a_live_answer_lets_go_of_its_request_once_the_provider_streams() {
    use confab::generation::registry::Piece;
    use confab::generation::{Job, Origin};
    use confab::llm::{ChatRequest, Turn};
    use std::sync::Arc;

    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"slow ".repeat(500)).token_delay(Duration::from_millis(20)));
    // This answer has no row: no flush may stop it (as deleted) while the test looks.
    let app = TestApp::with_llm(&fake.base_url(), |s| s.chat.flush_interval_ms = 600_000).await;
    let generations = &app.state.generations;
    let request = Arc::new(ChatRequest {
        model: "gpt-4o-mini".into(),
        instructions: Some("You are terse.".repeat(100)),
        history: vec![
            Turn::user("an earlier question ".repeat(1000)),
            Turn::user("hi"),
        ],
        temperature: None,
        max_output_tokens: None,
        attachments: None,
        input_files: Vec::new(),
        file_search: None,
        vector_store_ids: Vec::new(),
    });
    let asked = Arc::downgrade(&request);
    let id = uuid::Uuid::now_v7();
    let slot = generations.allowance().take(uuid::Uuid::now_v7()).unwrap();
    let job = Job {
        message_id: id,
        origin: Origin {
            conversation_id: uuid::Uuid::now_v7(),
            agent_id: uuid::Uuid::now_v7(),
            project_id: uuid::Uuid::now_v7(),
        },
        provider: "openai".into(),
        request,
    };
    let mut reader = generations.start(job, slot);

    let first = tokio::time::timeout(Duration::from_secs(30), reader.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Piece::Text { .. })), "{first:?}");
    assert!(
        generations.registry.get(id).is_some(),
        "the answer is still live"
    );
    assert!(
        asked.upgrade().is_none(),
        "a live answer still holds the request it sent"
    );
    assert_eq!(fake.requests().len(), 1);
    generations.stop(id);
}

#[tokio::test]
async fn start_up_marks_answers_left_streaming_as_interrupted() {
    use diesel::RunQueryDsl;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("x"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("crash@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    // What a crash mid-answer leaves behind: a row still `streaming` that no task will finish.
    // (A new row, not the finished answer's: that one's last flush may still be on its way.)
    let pool = app.pool.clone();
    let answered = done["message_id"].as_str().unwrap().to_string();
    let message_id = tokio::task::spawn_blocking(move || {
        #[derive(diesel::QueryableByName)]
        struct Inserted {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let mut pooled = pool.get().unwrap();
        let conn = &mut pooled.conn;
        diesel::sql_query(format!(
            "INSERT INTO messages (id, conversation_id, role, content, status, prompt_versions) \
             SELECT gen_random_uuid(), conversation_id, 'assistant', 'half', 'streaming', '[]' \
             FROM messages WHERE id = '{answered}' RETURNING id"
        ))
        .get_result::<Inserted>(conn)
        .unwrap()
        .id
        .to_string()
    })
    .await
    .unwrap();
    // Until the next start-up, readers are told it failed rather than left waiting.
    let r = app
        .api
        .get(app.url(&format!("/api/messages/{message_id}/stream")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (chunks, orphan) = Events::of(r).collect_json().await;
    assert_eq!(joined(&chunks), "half");
    assert_eq!(orphan["status"], "failed");
    // The page's stream, with the same session as a cookie.
    let page_events = app
        .api
        .get(app.url(&format!("/messages/{message_id}/stream")))
        .header("Cookie", format!("confab_session={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let final_bubble = page_events
        .split("event: done")
        .nth(1)
        .expect("a done event");
    assert!(
        !final_bubble.contains("sse-connect"),
        "the final bubble must not reconnect: {final_bubble}"
    );
    assert!(
        final_bubble.contains("no longer being generated"),
        "{final_bubble}"
    );

    let marked = confab::generation::mark_interrupted(&app.pool)
        .await
        .unwrap();
    assert_eq!(marked, 1);
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    let interrupted = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message_id.as_str())
        .unwrap();
    assert_eq!(interrupted["status"], "failed");
    assert_eq!(
        interrupted["error"],
        "confab restarted while this answer was being written; the text so far is kept.",
        "said in a sentence, as every other failure is"
    );
    assert_eq!(interrupted["content"], "half");
}

#[tokio::test]
async fn metrics_are_exported_for_prometheus() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(ANSWER));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("metrics@example.com").await;
    Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    let body = app
        .api
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "confab_time_to_first_token_seconds_bucket",
        "confab_answer_duration_seconds_bucket",
        "confab_output_tokens_total",
        "confab_live_streams",
        "confab_http_requests_total{method=\"POST\",route=\"/api/chat/agents/{id}\",status=\"200\"}",
    ] {
        assert!(body.contains(needle), "{needle} missing from /metrics");
    }
}

#[tokio::test]
async fn a_provider_that_goes_silent_fails_the_answer_instead_of_spinning_forever() {
    let fake = FakeLlm::start().await;
    fake.push(Script::answer("late").first_token_delay(Duration::from_secs(5)));
    fake.push(Script::tokens(["one ", "two ", "three"]).token_delay(Duration::from_secs(5)));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.stall_timeout_secs = 1).await;
    let (token, _, agent) = app.chat_setup("silent@example.com").await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 1 s"),
        "{done}"
    );

    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "again"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "one ", "the text before the stall is kept");
    assert_eq!(done["status"], "failed");
}

#[tokio::test]
async fn a_quiet_provider_that_keeps_the_connection_alive_is_waited_for() {
    // The primary goes silent before its first token; the backup "thinks" for longer than the
    // stall timeout but says so with SSE comments, as OpenRouter does for reasoning models.
    let primary = FakeLlm::start().await;
    primary.set_default(Script::answer("never").first_token_delay(Duration::from_secs(30)));
    let backup = FakeLlm::start().await;
    backup.set_default(
        Script::answer("Thought it through.")
            .first_token_delay(Duration::from_millis(2500))
            .with_keepalives(),
    );
    let backup_url = backup.base_url();
    let app = TestApp::with_llm(&primary.base_url(), move |s| {
        s.llm.stall_timeout_secs = 1;
        s.llm
            .providers
            .push(crate::support::app::compatible_provider(
                "backup",
                &backup_url,
            ));
    })
    .await;
    let (token, _, agent) = app.chat_setup("thinking@example.com").await;
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "Thought it through.");
    assert_eq!(done["status"], "complete");
    assert_eq!(done["provider"], "backup");
    assert_eq!(
        primary.request_count(),
        1,
        "a silent provider is not asked again: that would cost another full timeout"
    );

    // The Responses API's own `keepalive` events count as signs of life too.
    primary.push(
        Script::answer("Also fine.")
            .first_token_delay(Duration::from_millis(2500))
            .with_keepalives(),
    );
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "again"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "Also fine.");
    assert_eq!(done["provider"], "openai");
}

#[tokio::test]
async fn a_nul_character_is_refused_from_people_and_dropped_from_models() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::tokens(["a\u{0}b", "\u{0}", "c"]));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("nul@example.com").await;
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&json!({"message": "a \u{0} byte"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("NUL"),
        "{body}"
    );
    assert_eq!(fake.request_count(), 0, "nothing was sent upstream");

    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(joined(&chunks), "abc");
    assert_eq!(done["status"], "complete");
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["messages"][1]["content"], "abc");
}

/// Starts a long answer and returns its events once the first text has arrived.
async fn long_answer_under_way(app: &TestApp, token: &str, agent: &str) -> Events {
    let mut events = Events::of(send(app, token, agent, json!({"message": "go on"})).await);
    events.next().await.expect("the first text");
    events
}

#[tokio::test]
async fn deleting_an_agent_or_project_stops_its_live_answers() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, _) = app.chat_setup("cascade@example.com").await;
    let (status, agent) = app
        .post_json(
            &token,
            &format!("/api/projects/{project}/agents"),
            json!({"name": "Second"}),
        )
        .await;
    assert_eq!(status, 201);
    let agent = agent["id"].as_str().unwrap().to_string();

    let mut events = long_answer_under_way(&app, &token, &agent).await;
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::DELETE,
            &format!("/api/agents/{agent}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "stopped");
    fake.wait_for_disconnect().await;
    assert_eq!(app.state.generations.registry.all().len(), 0);

    let (_, agents) = app
        .get_json(&token, &format!("/api/projects/{project}/agents"))
        .await;
    let default_agent = agents[0]["id"].as_str().unwrap().to_string();
    let mut events = long_answer_under_way(&app, &token, &default_agent).await;
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::DELETE,
            &format!("/api/projects/{project}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "stopped");
    // Both upstream requests were dropped (this waits for the second).
    fake.wait_for_disconnects(2).await;
}

#[tokio::test]
async fn racing_retries_make_one_new_answer() {
    let fake = FakeLlm::start().await;
    fake.push(Script::status(400));
    fake.set_default(Script::answer("Once."));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.max_retries = 0).await;
    let browser = app.browser("race@example.com").await;
    let (_, agent) = browser.project_with_agent("Race").await;
    let token = app
        .login("race@example.com", crate::support::app::PASSWORD)
        .await;
    let done = answer_to(&app, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    let failed = done["message_id"].as_str().unwrap().to_string();
    let conversation_id = done["conversation_id"].as_str().unwrap().to_string();

    let path = format!("/messages/{failed}/retry");
    let results =
        futures_util::future::join_all((0..4).map(|_| browser.htmx_post(&path, &[]))).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 404, 409].contains(s)),
        "{statuses:?}"
    );
    let stored = conversation(&app, &token, &conversation_id).await;
    assert_eq!(
        stored["messages"].as_array().unwrap().len(),
        2,
        "one question, one answer"
    );
}

#[tokio::test]
async fn message_states_are_typed_and_an_unknown_one_is_an_error_not_a_guess() {
    use confab::conversations::model::{Role, Status};
    use diesel::RunQueryDsl;
    use diesel::dsl::sql;
    use diesel::sql_types::Text;
    let app = TestApp::spawn().await;
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut pooled = pool.get().unwrap();
        let conn = &mut pooled.conn;
        let read = |conn: &mut diesel::PgConnection, text: &str| {
            diesel::select(sql::<Text>(&format!("'{text}'"))).get_result::<Status>(conn)
        };
        assert_eq!(read(conn, "stopped").unwrap(), Status::Stopped);
        // Before, an unknown value quietly read as `complete`.
        assert!(read(conn, "exploded").is_err());
        let role: Role = diesel::select(sql::<Text>("'assistant'"))
            .get_result(conn)
            .unwrap();
        assert_eq!(role, Role::Assistant);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_answer_whose_row_vanished_stops_instead_of_generating_for_nobody() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("vanished@example.com").await;
    let mut events = long_answer_under_way(&app, &token, &agent).await;
    let first = events.next().await.unwrap();
    let data: Value = serde_json::from_str(&first.data).unwrap();
    let conversation = data["conversation_id"].as_str().unwrap().to_string();
    // What a delete racing the start of an answer leaves: a live task with no row.
    app.execute_sql(format!(
        "DELETE FROM conversations WHERE id = '{conversation}'"
    ))
    .await;
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "stopped");
    fake.wait_for_disconnect().await;
    assert_eq!(app.state.generations.registry.all().len(), 0);
}

#[tokio::test]
async fn a_refused_rename_without_javascript_says_why_and_keeps_what_was_typed() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("rename@example.com").await;
    let (_, agent) = browser.project_with_agent("Names").await;
    let r = browser
        .post_form(&format!("/agents/{agent}/chat"), &[("message", "hello")])
        .await;
    assert_eq!(r.status(), 303);
    let conversation = r.headers()["location"].to_str().unwrap().to_string();
    let typed = format!("{}-typed", "x".repeat(200));
    let r = browser.post_form(&conversation, &[("title", &typed)]).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("at most 200 characters"), "{page}");
    assert!(page.contains(&typed), "the typed title is kept");
}

#[tokio::test]
async fn long_messages_within_the_limit_are_sent_and_longer_ones_kept_with_a_reason() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("read it"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("cjk@example.com").await;
    let (_, agent) = browser.project_with_agent("Long").await;
    // 30,000 CJK characters: 270 KB as a form, over the old 256 KB form limit.
    let cjk = "漢".repeat(30_000);
    let r = browser
        .post_form(&format!("/agents/{agent}/chat"), &[("message", &cjk)])
        .await;
    assert_eq!(r.status(), 303, "sent, not 'the form expired'");

    // Over 100,000 characters: refused next to the box, the draft kept.
    let long = format!("{}END", "字".repeat(100_000));
    let r = browser
        .post_form(&format!("/agents/{agent}/chat"), &[("message", &long)])
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("at most 100000 characters"));
    assert!(page.contains("字字字END"), "the draft is kept");
}

#[tokio::test]
async fn one_person_cannot_run_up_the_bill_with_answers_at_once_or_in_a_minute() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |s| {
        s.chat.max_live_answers_per_user = 2;
        s.chat.answers_per_minute_per_user = 3;
    })
    .await;
    let (token, _, agent) = app.chat_setup("bill@example.com").await;
    let mut first = long_answer_under_way(&app, &token, &agent).await;
    let _second = long_answer_under_way(&app, &token, &agent).await;
    let refused = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&json!({"message": "a third at once"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let (other, _, other_agent) = app.chat_setup("neighbour@example.com").await;
    let _theirs = long_answer_under_way(&app, &other, &other_agent).await;

    // Stopping one frees its place; the per-minute quota (3) is the next limit.
    let data: Value = serde_json::from_str(&first.next().await.unwrap().data).unwrap();
    let message = data["message_id"].as_str().unwrap();
    let r = app
        .api
        .post(app.url(&format!("/api/messages/{message}/stop")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    first.collect_json().await;
    let _third = long_answer_under_way(&app, &token, &agent).await;
    let (status, body) = app
        .post_json(
            &token,
            &format!("/api/chat/agents/{agent}"),
            json!({"message": "a fourth in the minute"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
}

/// Adds `count` finished messages (alternating user and assistant) to a conversation, as if it
/// had gone on that long.
async fn grow_conversation(app: &TestApp, conversation: &str, count: usize) {
    let values: Vec<String> = (0..count)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            format!(
                "('{}', '{conversation}', '{role}', 'message {i}', 'complete', '[]')",
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO messages (id, conversation_id, role, content, status, prompt_versions) VALUES {}",
        values.join(", ")
    );
    app.execute_sql(sql).await;
}

#[tokio::test]
async fn long_conversations_come_a_page_at_a_time() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("pages@example.com").await;
    let done = answer_to(&app, &token, &agent, "first").await;
    let id = done["conversation_id"].as_str().unwrap().to_string();
    grow_conversation(&app, &id, 248).await;

    // The API: the newest 100 (of 250), then the ones before, never all at once.
    let (status, newest) = app
        .get_json(&token, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(status, 200);
    let messages = newest["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 100);
    assert_eq!(messages[99]["content"], "message 247");
    assert_eq!(newest["has_earlier"], true);
    let first = messages[0]["id"].as_str().unwrap();
    let (_, older) = app
        .get_json(
            &token,
            &format!("/api/conversations/{id}?before={first}&limit=500"),
        )
        .await;
    let older_messages = older["messages"].as_array().unwrap();
    assert_eq!(older_messages.len(), 150);
    assert_eq!(older_messages[0]["content"], "first");
    assert_eq!(older["has_earlier"], false);
    let (status, _) = app
        .get_json(&token, &format!("/api/conversations/{id}?limit=501"))
        .await;
    assert_eq!(status, 422);

    // The page: the newest 50, and a link to earlier ones that htmx swaps for them.
    let stranger = app.browser("pages-web@example.com").await;
    let (status, _) = stranger.get(&format!("/conversations/{id}")).await;
    assert_eq!(status, 404, "another person's conversation");
    let cookie = format!("confab_session={token}");
    let page = app
        .api
        .get(app.url(&format!("/conversations/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("class=\"msg ").count(), 50);
    assert!(page.contains("message 247") && !page.contains("message 197<"));
    let link = page
        .split("class=\"earlier\" href=\"")
        .nth(1)
        .expect("a link to earlier messages")
        .split('"')
        .next()
        .unwrap()
        .replace("&#x3d;", "=")
        .replace("&#x3f;", "?");
    let fragment = app
        .api
        .get(app.url(&link))
        .header("cookie", &cookie)
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(fragment.matches("class=\"msg ").count(), 50);
    assert!(fragment.contains("message 197") && !fragment.contains("<html"));
}

#[tokio::test]
async fn a_conversation_has_a_size_limit_with_a_clear_message() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |s| {
        s.chat.max_messages_per_conversation = 4;
    })
    .await;
    let (token, _, agent) = app.chat_setup("full@example.com").await;
    let done = answer_to(&app, &token, &agent, "one").await;
    let id = done["conversation_id"].as_str().unwrap().to_string();
    Events::of(
        send(
            &app,
            &token,
            &agent,
            json!({"message": "two", "conversation_id": id}),
        )
        .await,
    )
    .collect_json()
    .await;
    let (status, body) = app
        .post_json(
            &token,
            &format!("/api/chat/agents/{agent}"),
            json!({"message": "three", "conversation_id": id}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("start a new one")
    );
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_answer_size_limit() {
    let fake = FakeLlm::start().await;
    let chunk = "x".repeat(64 * 1024);
    fake.set_default(Script::tokens(std::iter::repeat_n(chunk, 64)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("endless@example.com").await;
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "go on"})).await)
        .collect_json()
        .await;
    let limit = confab::generation::MAX_ANSWER_BYTES;
    assert!(joined(&chunks).len() <= limit + 64 * 1024);
    assert_eq!(done["status"], "complete");
    assert!(
        done["error"].as_str().unwrap().contains("cut at 2 MB"),
        "{done}"
    );
    fake.wait_for_disconnect().await;
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    let content = stored["messages"][1]["content"].as_str().unwrap();
    assert!(content.len() > limit && content.len() <= limit + 64 * 1024);
}

#[tokio::test]
async fn a_first_message_in_markdown_titles_the_conversation_in_plain_text() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("title@example.com").await;
    let message = "Here is **code**:\n```js\nconst x = 1;\n```";
    let (_, done) = Events::of(send(&app, &token, &agent, json!({"message": message})).await)
        .collect_json()
        .await;
    let stored = conversation(&app, &token, done["conversation_id"].as_str().unwrap()).await;
    assert_eq!(stored["title"], "Here is code: const x = 1;");
}

#[tokio::test]
async fn a_conversation_answers_one_message_at_a_time() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, agent) = app.chat_setup("one-at-a-time@example.com").await;
    let mut first = Events::of(send(&app, &token, &agent, json!({"message": "go on"})).await);
    let data: Value = serde_json::from_str(&first.next().await.unwrap().data).unwrap();
    let (conversation_id, message_id) = (
        data["conversation_id"].as_str().unwrap().to_string(),
        data["message_id"].as_str().unwrap().to_string(),
    );

    // A second message while the first answer is written is refused, and nothing is stored.
    let second = json!({"message": "and another thing", "conversation_id": conversation_id});
    let (status, body) = app
        .post_json(&token, &format!("/api/chat/agents/{agent}"), second.clone())
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still being written"),
        "{body}"
    );
    let (status, _) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"project_id": project, "message": "by the project's address", "conversation_id": conversation_id}),
        )
        .await;
    assert_eq!(status, 409);
    // A burst of them is refused the same way, and holds no place a real send needs.
    let path = format!("/api/chat/agents/{agent}");
    let burst = (0..12).map(|_| app.post_json(&token, &path, second.clone()));
    for (status, body) in futures_util::future::join_all(burst).await {
        assert_eq!(status, 409, "{body}");
    }
    let stored = conversation(&app, &token, &conversation_id).await;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 2);

    // Another conversation of the same agent is not held up.
    let _other = long_answer_under_way(&app, &token, &agent).await;

    // Once the first answer has ended, the conversation takes the next message.
    let r = app
        .api
        .post(app.url(&format!("/api/messages/{message_id}/stop")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    first.collect_json().await;
    let mut next = Events::of(send(&app, &token, &agent, second).await);
    next.next().await.expect("the next answer starts");
}

#[tokio::test]
async fn a_page_sees_the_answer_formatted_while_it_streams() {
    let fake = FakeLlm::start().await;
    let markdown = "Some code:\n\n```rust\nfn main() { println!(\"<script>\"); }\n```\n\n\
                    | a | b |\n|:-:|--:|\n| 1 | 2 |\n\n";
    // Long enough after the Markdown that the answer is still generating when it has been read.
    let answer = format!("{markdown}{}", "word ".repeat(500));
    fake.set_default(Script::answer(&answer).token_delay(Duration::from_millis(10)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("formatted@example.com").await;
    let mut api = Events::of(send(&app, &token, &agent, json!({"message": "show me"})).await);
    let first = api.next().await.unwrap();
    let message_id = serde_json::from_str::<Value>(&first.data).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut events = page_stream(&app, &token, &message_id).await;
    let mut page = Rendered::default();
    let mut settled_code = false;
    while !(page.html().contains("<table>") && page.html().contains("word word")) {
        let event = events.next().await.expect("more events");
        assert_ne!(
            event.event,
            "done",
            "formatted before the end: {}",
            page.html()
        );
        page.apply(&event);
        settled_code |= event.event == "settled" && event.data.contains("<pre>");
    }
    let html = page.html();
    assert!(
        settled_code,
        "the finished code block was sent once, as settled: {html}"
    );
    assert!(
        html.contains("<span class=\"hl-source hl-rust\">"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script"),
        "{html}"
    );
    assert!(html.contains("<th class=\"align-center\">a</th>"), "{html}");
    assert_eq!(
        html.matches("<pre>").count(),
        1,
        "each block shown once: {html}"
    );

    // Still generating: the JSON API's stream is as it always was, raw text deltas.
    let r = app
        .api
        .post(app.url(&format!("/api/messages/{message_id}/stop")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the answer was still generating");
    let final_html = loop {
        let event = events.next().await.expect("done event");
        if event.event == "done" {
            break event.data;
        }
        page.apply(&event);
    };
    assert!(final_html.contains("<table>") && final_html.contains("hl-rust"));
    let (chunks, done) = api.collect_json().await;
    let api_text = serde_json::from_str::<Value>(&first.data).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string()
        + &joined(&chunks);
    assert!(answer.starts_with(&api_text) && api_text.contains("```rust"));
    assert_eq!(done["status"], "stopped");
}

#[tokio::test]
async fn a_fast_stream_is_not_rendered_once_per_token() {
    let fake = FakeLlm::start().await;
    let answer: String = (0..400).map(|i| format!("w{i} ")).collect();
    // A token every millisecond, after a pause in which the page opens its stream.
    fake.set_default(
        Script::answer(&answer)
            .first_token_delay(Duration::from_millis(300))
            .token_delay(Duration::from_millis(1)),
    );
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("fast@example.com").await;
    let (_, agent_id) = browser.project_with_agent("F").await;
    let html = browser
        .htmx_post(&format!("/agents/{agent_id}/chat"), &[("message", "quick")])
        .await
        .text()
        .await
        .unwrap();
    let stream_url = html
        .split("sse-connect=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut events = Events::of(
        browser
            .client
            .get(app.url(stream_url))
            .send()
            .await
            .unwrap(),
    );
    let mut page = Rendered::default();
    let final_html = loop {
        let event = events.next().await.expect("done event");
        if event.event == "done" {
            break event.data;
        }
        page.apply(&event);
    };
    assert!(
        (1..100).contains(&page.tails),
        "{} tail renders for 400 tokens",
        page.tails
    );
    assert!(
        final_html.contains("w399"),
        "the final render has all of it"
    );
}

/// An answer's stored HTML and the renderer that made it.
async fn stored_html(app: &TestApp, message_id: &str) -> (Option<String>, Option<String>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        html: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        html_renderer: Option<String>,
    }
    let pool = app.pool.clone();
    let id = message_id.to_string();
    tokio::task::spawn_blocking(move || {
        use diesel::RunQueryDsl;
        let row: Row = diesel::sql_query(format!(
            "SELECT html, html_renderer FROM messages WHERE id = '{id}'"
        ))
        .get_result(&mut pool.get().unwrap().conn)
        .unwrap();
        (row.html, row.html_renderer)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_finished_answer_is_rendered_once_sanitized_and_the_page_shows_what_was_stored() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(
        "**Bold** <script>alert(1)</script> [x](javascript:alert(2)) [ok](https://example.com)",
    ));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("stored-html@example.com").await;
    let done = answer_to(&app, &token, &agent, "render this once").await;
    let message_id = done["message_id"].as_str().unwrap().to_string();
    let conversation_id = done["conversation_id"].as_str().unwrap().to_string();

    // Stored when it ended, as the sanitizer left it.
    let (html, renderer) = stored_html(&app, &message_id).await;
    let html = html.expect("the finished answer's HTML is stored");
    assert!(html.contains("<strong>Bold</strong>"), "rendered: {html}");
    assert!(
        !html.contains("<script") && !html.contains("alert(1)"),
        "script removed: {html}"
    );
    assert!(
        !html.contains("javascript:"),
        "javascript: link removed: {html}"
    );
    assert!(
        html.contains("https://example.com"),
        "a safe link is kept: {html}"
    );
    assert!(renderer.as_deref().is_some_and(|r| !r.is_empty()));

    // The page shows the stored HTML, not a new rendering of the text.
    let page_of = async || {
        app.api
            .get(app.url(&format!("/conversations/{conversation_id}")))
            .header("cookie", format!("confab_session={token}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let page = page_of().await;
    assert!(page.contains(&html), "the page shows the stored HTML");
    assert!(!page.contains("javascript:alert") && !page.contains("<script>alert"));
    app.execute_sql(format!(
        "UPDATE messages SET html = '<p>as stored</p>' WHERE id = '{message_id}'"
    ))
    .await;
    let page = page_of().await;
    assert!(page.contains("<p>as stored</p>") && !page.contains("<strong>Bold</strong>"));

    // HTML of another renderer (an older confab's) is rendered again, and the new one kept.
    app.execute_sql(format!(
        "UPDATE messages SET html_renderer = 'older' WHERE id = '{message_id}'"
    ))
    .await;
    let page = page_of().await;
    assert!(page.contains("<strong>Bold</strong>") && !page.contains("<p>as stored</p>"));
    assert_eq!(stored_html(&app, &message_id).await, (Some(html), renderer));
}

/// Resolves once `request` has ended or `waiting` statements of the app wait on a lock,
/// whichever comes first; the request, if it has not ended, is handed back.
async fn until_ended_or_waiting(
    app: &TestApp,
    mut request: tokio::task::JoinHandle<u16>,
    waiting: i64,
) -> Result<u16, tokio::task::JoinHandle<u16>> {
    loop {
        tokio::select! {
            status = &mut request => return Ok(status.unwrap()),
            now = app.waiting_on_locks() => if now >= waiting {
                return Err(request);
            },
        }
    }
}

/// The one-answer-per-conversation claim is taken only for the conversation's owner: another
/// person who sends to its id (with an agent of their own) must not make the owner's message a
/// 409 while theirs is being checked. (Found by trying it: with the claim taken before the
/// statement that checks ownership, a stranger's sends made most of the owner's fail.)
#[tokio::test]
async fn another_persons_send_to_a_conversation_id_does_not_make_its_owner_busy() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Short answer."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (alice, _, alice_agent) = app.chat_setup("claim-owner@example.com").await;
    let (bob, _, bob_agent) = app.chat_setup("claim-stranger@example.com").await;
    let first = answer_to(&app, &alice, &alice_agent, "mine").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_string();
    // Both agents are remembered, as after any earlier turn.
    answer_to(&app, &bob, &bob_agent, "warm up").await;

    // Something holds the messages table (a slow statement, a vacuum…).
    let held = app.hold_table("messages").await;
    let send = |token: &str, agent: &str, message: &str| {
        let request = app
            .api
            .post(app.url(&format!("/api/chat/agents/{agent}")))
            .bearer_auth(token)
            .json(&json!({"message": message, "conversation_id": conversation}));
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    // Bob's send is refused, or held up in the database (where it must not hold the claim).
    let stranger = until_ended_or_waiting(&app, send(&bob, &bob_agent, "let me in"), 1).await;
    let held_up = if stranger.is_err() { 2 } else { 1 };
    let owner = send(&alice, &alice_agent, "my next message");
    let owner = until_ended_or_waiting(&app, owner, held_up).await;
    held.release().await;
    let stranger = match stranger {
        Ok(status) => status,
        Err(request) => request.await.unwrap(),
    };
    let owner = match owner {
        Ok(status) => status,
        Err(request) => request.await.unwrap(),
    };
    assert_eq!(stranger, 404);
    assert_eq!(owner, 200, "the owner's message was refused");
}

/// A whole answer from a provider over HTTPS and HTTP/2, as hosted providers serve them (the fake
/// with a certificate of a private authority, trusted through `llm.ca_file`).
#[tokio::test]
async fn a_whole_answer_streams_from_a_provider_over_https_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let files = LoopbackCertificate::new().write_to(dir.path());
    let fake = FakeLlm::start_tls_at("127.0.0.1:0", &files.certificate, &files.key).unwrap();
    fake.set_default(Script::answer(ANSWER).token_delay(Duration::from_millis(2)));
    assert!(fake.base_url().starts_with("https://"));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.llm.ca_file = Some(files.ca)).await;
    let (token, _, agent) = app.chat_setup("https@example.com").await;
    let (chunks, done) = Events::of(send(&app, &token, &agent, json!({"message": "hi"})).await)
        .collect_json()
        .await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(joined(&chunks), ANSWER);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].version, "HTTP/2.0",
        "hosted providers speak HTTP/2"
    );
}

/// A provider over HTTPS behind a private certificate authority: its certificate is refused,
/// with the reason in the answer's detail, until `llm.ca_file` names the authority; then the
/// answer streams (over HTTP/2, which is all this provider speaks).
#[tokio::test]
async fn a_provider_behind_a_private_authority_is_reached_once_llm_ca_file_names_it() {
    let upstream = TlsUpstream::start(100).await;
    let untrusted = TestApp::with_llm(&upstream.base_url(), |_| {}).await;
    let (token, _, agent) = untrusted.chat_setup("untrusted@example.com").await;
    let done = answer_to(&untrusted, &token, &agent, "hi").await;
    assert_eq!(done["status"], "failed");
    let detail = done["error_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("certificate"), "{done}");
    // Said in plain words, and not retried: a refused certificate stays refused.
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate") && error.contains("llm.ca_file"),
        "{done}"
    );
    assert!(!error.contains("tried"), "{done}");
    // The provider that refused is named, for whoever reads the failed answer.
    assert_eq!(done["provider"], "openai", "{done}");

    let dir = tempfile::tempdir().unwrap();
    let ca_file = upstream.certificate.write_to(dir.path()).ca;
    let trusted = TestApp::with_llm(&upstream.base_url(), |s| s.llm.ca_file = Some(ca_file)).await;
    let (token, _, agent) = trusted.chat_setup("trusted@example.com").await;
    let mut events = Events::of(send(&trusted, &token, &agent, json!({"message": "hi"})).await);
    let first = events.next().await.expect("the answer's first event");
    let data: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data["text"], "Hi");

    // A file that is not there stops the start by the setting's name, before the database is
    // even opened (this URL would fail otherwise: nothing listens on port 1).
    let mut settings = test_settings(dir.path());
    settings.database.url = Some(confab::settings::Secret::new(
        "postgres://nobody@127.0.0.1:1/none",
    ));
    settings.llm.ca_file = Some(dir.path().join("missing.pem"));
    let refused = confab::startup::Application::build(settings).await;
    let error = refused.err().expect("confab refuses to start");
    assert!(error.starts_with("llm.ca_file: "), "{error}");
    assert!(
        error.contains("missing.pem") && error.contains("cannot read"),
        "{error}"
    );
}
