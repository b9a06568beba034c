//! The OpenAI-compatible API (`/v1`): each agent is a model for OpenAI's clients, every call is
//! a conversation of the agent, errors have OpenAI's shape. The official `openai` Python SDK
//! runs against it too (`the_official_openai_python_sdk_works_against_confab`).

use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::fake_llm::{FakeLlm, Interrupt, Script};

const ANSWER: &str = "Compatible answers stream token by token.";

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.api
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an OpenAI stream, and the event names (Responses names them).
async fn stream_of(response: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 200);
    let mut events = crate::support::sse::Events::of(response);
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        all.push((event.event, event.data));
    }
    all
}

async fn setup(fake: &FakeLlm) -> (TestApp, String, String) {
    fake.set_default(Script::answer(ANSWER).usage(7, 5));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("compat@example.com").await;
    (app, token, agent)
}

fn conversation_header(response: &reqwest::Response) -> String {
    response.headers()["x-confab-conversation-id"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn models_are_the_callers_agents_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let (token, _, agent) = app.chat_setup("models@example.com").await;
    let (status, list) = app.get_json(&token, "/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    assert_eq!(
        list["data"],
        json!([{"id": "chat/assistant", "object": "model", "created": list["data"][0]["created"], "owned_by": "confab"}])
    );
    assert!(list["data"][0]["created"].as_i64().unwrap() > 1_700_000_000);
    for id in ["chat/assistant", agent.as_str()] {
        let (status, model) = app.get_json(&token, &format!("/v1/models/{id}")).await;
        assert_eq!(
            (status, model["id"].as_str()),
            (200, Some("chat/assistant"))
        );
    }

    // A newer agent whose readable id is taken is known by its UUID: the id a client already
    // uses keeps naming the same agent.
    let newer = app.project(&token, "Chat!").await;
    let (_, newer_agents) = app
        .get_json(&token, &format!("/api/projects/{newer}/agents"))
        .await;
    let newer_agent = newer_agents[0]["id"].as_str().unwrap();
    let (_, list) = app.get_json(&token, "/v1/models").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat/assistant", newer_agent]);
    let (status, model) = app.get_json(&token, "/v1/models/chat/assistant").await;
    assert_eq!(
        (status, model["id"].as_str()),
        (200, Some("chat/assistant"))
    );

    let stranger = app.user_token("stranger@example.com").await;
    let (_, list) = app.get_json(&stranger, "/v1/models").await;
    assert_eq!(list["data"], json!([]));
    let (status, body) = app
        .get_json(&stranger, &format!("/v1/models/{agent}"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"message": format!("The model `{agent}` does not exist or you do not have access to it."),
                         "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
    );
}

#[tokio::test]
async fn a_chat_completion_answers_with_the_agents_system_message_and_is_recorded() {
    let fake = FakeLlm::start().await;
    let (app, token, agent) = setup(&fake).await;
    let (status, _) = app
        .post_json(
            &token,
            &format!("/api/agents/{agent}/prompts"),
            json!({"title": "Voice", "content": "You are the agent."}),
        )
        .await;
    assert_eq!(status, 201);

    let response = post(
        &app,
        &token,
        "/v1/chat/completions",
        json!({"model": "chat/assistant", "messages": [
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
        ], "temperature": 0.5, "max_tokens": 99, "user": "u-1", "seed": 3}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let conversation = conversation_header(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "chat/assistant");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (
            &body["usage"]["prompt_tokens"],
            &body["usage"]["completion_tokens"],
            &body["usage"]["total_tokens"]
        ),
        (&json!(7), &json!(5), &json!(12))
    );

    // Upstream: the agent's system message first, the client's after it, its settings over
    // the agent's.
    let upstream = &fake.requests()[0].body;
    assert_eq!(
        upstream["instructions"],
        "You are the agent.\n\nAnswer in English."
    );
    assert_eq!(upstream["temperature"], 0.5);
    assert_eq!(upstream["max_output_tokens"], 99);
    // Recorded as a conversation of the agent.
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["agent_id"], agent.as_str());
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Hello\nthere");
    assert_eq!(messages[1]["content"], ANSWER);
}

#[tokio::test]
async fn a_streamed_chat_completion_is_openais_chunks_then_done() {
    let fake = FakeLlm::start().await;
    let (app, token, agent) = setup(&fake).await;
    let response = post(
        &app,
        &token,
        "/v1/chat/completions",
        json!({"model": agent, "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Stream please"}]}),
    )
    .await;
    assert!(response.headers().contains_key("x-confab-conversation-id"));
    let events = stream_of(response).await;
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(last.1, "[DONE]");
    assert!(
        events.iter().all(|(name, _)| name == "message"),
        "no event names"
    );
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"
        && c["id"] == chunks[0]["id"]
        && c["model"] == agent.as_str()));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, ANSWER);
    assert!(chunks.len() > 4, "token by token: {}", chunks.len());
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 12);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["usage"], Value::Null);

    // Without include_usage: no usage chunk and no `usage` key.
    let events = stream_of(
        post(
            &app,
            &token,
            "/v1/chat/completions",
            json!({"model": agent, "stream": true, "messages": [{"role": "user", "content": "Again"}]}),
        )
        .await,
    )
    .await;
    let finish: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish.get("usage").is_none());
}

#[tokio::test]
async fn a_conversation_is_continued_by_its_header_without_repeating_messages() {
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    // A client that keeps its own history starts with it: it is stored as it came.
    let first = post(
        &app,
        &token,
        "/v1/chat/completions",
        json!({"model": "chat/assistant", "messages": [
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Uno"},
            {"role": "user", "content": "Two"},
        ]}),
    )
    .await;
    let conversation = conversation_header(&first);
    let answer = first.json::<Value>().await.unwrap()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // An SDK chat loop sends the whole history again, with the header: only the new message
    // is stored, and confab's stored history goes upstream.
    let second = app
        .api
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("X-Confab-Conversation-Id", &conversation)
        .json(&json!({"model": "chat/assistant", "messages": [
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Uno"},
            {"role": "user", "content": "Two"},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Three"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(conversation_header(&second), conversation);
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    let contents: Vec<&str> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["One", "Uno", "Two", ANSWER, "Three", ANSWER]);
    assert_eq!(stored["title"], "One");
    let upstream = &fake.requests()[1].body["input"];
    assert_eq!(upstream.as_array().unwrap().len(), 5, "{upstream}");

    // A conversation that is not the caller's (or not this model's) is refused.
    let other = app.user_token("other@example.com").await;
    app.project(&other, "Chat").await;
    let refused = app
        .api
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&other)
        .header("X-Confab-Conversation-Id", &conversation)
        .json(&json!({"model": "chat/assistant", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conversation_not_found");
}

#[tokio::test]
async fn responses_answer_whole_and_streamed_and_continue_by_previous_response_id() {
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    let response = post(
        &app,
        &token,
        "/v1/responses",
        json!({"model": "chat/assistant", "input": "Hello", "instructions": "Be brief.", "store": false}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let conversation = conversation_header(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (&body["object"], &body["status"]),
        (&json!("response"), &json!("completed"))
    );
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"));
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(body["output"][0]["content"][0]["text"], ANSWER);
    assert_eq!(body["usage"]["total_tokens"], 12);
    assert_eq!(fake.requests()[0].body["instructions"], "Be brief.");

    // Streamed, continuing the first by its id.
    let events = stream_of(
        post(
            &app,
            &token,
            "/v1/responses",
            json!({"model": "chat/assistant", "stream": true, "previous_response_id": id,
                   "input": [{"role": "user", "content": [{"type": "input_text", "text": "More"}]}]}),
        )
        .await,
    )
    .await;
    let parsed: Vec<Value> = events
        .iter()
        .map(|(name, data)| {
            let value: Value = serde_json::from_str(data).unwrap();
            assert_eq!(value["type"], name.as_str(), "the event name is the type");
            value
        })
        .collect();
    for (n, event) in parsed.iter().enumerate() {
        assert_eq!(event["sequence_number"], n, "numbered from 0");
    }
    let types: Vec<&str> = parsed.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        types[types.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let text: String = parsed
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, ANSWER);
    let completed = &parsed[parsed.len() - 1]["response"];
    assert_eq!(completed["usage"]["output_tokens"], 5);
    assert_eq!(completed["previous_response_id"], id.as_str());
    assert_eq!(
        completed["metadata"]["confab_conversation_id"],
        conversation.as_str()
    );
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 4);

    let (status, body) = app
        .post_json(
            &token,
            "/v1/responses",
            json!({"model": "chat/assistant", "input": "x", "previous_response_id": "resp_0000"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("previous_response_not_found"))
    );
    // A response of another agent cannot be continued by this one.
    app.project(&token, "Other").await;
    let (status, body) = app
        .post_json(
            &token,
            "/v1/responses",
            json!({"model": "other/assistant", "input": "x", "previous_response_id": id}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn errors_have_openais_shape_and_status() {
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    let unauthenticated = app.api.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let body: Value = unauthenticated.json().await.unwrap();
    assert_eq!(
        (&body["error"]["type"], &body["error"]["code"]),
        (&json!("invalid_request_error"), &json!("invalid_api_key"))
    );
    let (status, body) = app.get_json("not-a-token", "/v1/models").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_api_key"))
    );

    let cases = [
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}),
            404,
            Value::Null,
            "model_not_found",
        ),
        (json!({"model": "chat/assistant"}), 400, Value::Null, ""),
        (
            json!({"model": "chat/assistant", "messages": "Hi"}),
            400,
            Value::Null,
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "user", "content": "Hi"}], "temperature": 3}),
            400,
            json!("temperature"),
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "assistant", "content": "Hi"}]}),
            400,
            json!("messages"),
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "user", "content": "   "}]}),
            400,
            json!("messages"),
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "tool", "content": "x"}]}),
            400,
            json!("messages[0].role"),
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            json!("messages[0].content[0]"),
            "",
        ),
        (
            json!({"model": "chat/assistant", "messages": [{"role": "user", "content": "Hi"}], "n": 2}),
            400,
            json!("n"),
            "",
        ),
    ];
    for (body, status, param, code) in cases {
        let (got, answer) = app
            .post_json(&token, "/v1/chat/completions", body.clone())
            .await;
        assert_eq!(got, status, "{body} → {answer}");
        let error = &answer["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        assert_eq!(error["param"], param, "{body} → {answer}");
        if !code.is_empty() {
            assert_eq!(error["code"], code);
        }
        assert_eq!(error["type"], "invalid_request_error");
    }
    let (status, body) = app
        .post_json(
            &token,
            "/v1/embeddings",
            json!({"model": "x", "input": "y"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (404, &json!("Invalid URL (POST /v1/embeddings)"))
    );
    let not_json = app
        .api
        .post(app.url("/v1/responses"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    // The provider refusing (after confab's retries and fallback): 502 api_error, before any
    // stream began; the message was still saved.
    fake.push(Script::status(400));
    let response = post(
        &app,
        &token,
        "/v1/chat/completions",
        json!({"model": "chat/assistant", "stream": true, "messages": [{"role": "user", "content": "Fail"}]}),
    )
    .await;
    assert_eq!(response.status(), 502);
    let conversation = conversation_header_of_error(&app, &token).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["messages"][0]["content"], "Fail");
    assert_eq!(stored["messages"][1]["status"], "failed");
}

/// The newest conversation of the caller (an error answer carries no header).
async fn conversation_header_of_error(app: &TestApp, token: &str) -> String {
    let (_, list) = app.get_json(token, "/api/conversations").await;
    list[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn without_a_provider_an_answer_is_503() {
    let app = TestApp::spawn().await;
    let (token, _, _) = app.chat_setup("noprovider@example.com").await;
    let (status, body) = app
        .post_json(
            &token,
            "/v1/responses",
            json!({"model": "chat/assistant", "input": "Hi"}),
        )
        .await;
    assert_eq!((status, &body["error"]["type"]), (503, &json!("api_error")));
}

/// `tests/sdk/test_openai_sdk.py` with the official `openai` package from `.venv/` (`make
/// venv`), against confab and the fake upstream.
#[tokio::test]
async fn the_official_openai_python_sdk_works_against_confab() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPED: no .venv (run `make venv` to install the openai SDK from tests/requirements.txt)"
        );
        return;
    }
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    let output = tokio::process::Command::new(python)
        .arg(root.join("tests/sdk/test_openai_sdk.py"))
        .env("CONFAB_URL", &app.address)
        .env("CONFAB_TOKEN", &token)
        .env("CONFAB_MODEL", "chat/assistant")
        .env("EXPECTED_ANSWER", ANSWER)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the SDK script failed:\n{report}");
    assert!(report.contains("all passed"), "{report}");
}

#[tokio::test]
async fn a_failure_mid_stream_ends_the_stream_with_openais_error() {
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    fake.push(Script::answer(ANSWER).interrupt_after(2, Interrupt::Failed));
    let events = stream_of(
        post(
            &app,
            &token,
            "/v1/chat/completions",
            json!({"model": "chat/assistant", "stream": true, "messages": [{"role": "user", "content": "Break"}]}),
        )
        .await,
    )
    .await;
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["type"], "api_error", "{last}");
    assert!(
        events.iter().all(|(_, data)| data != "[DONE]"),
        "no [DONE] after a failure"
    );

    fake.push(Script::answer(ANSWER).interrupt_after(2, Interrupt::Failed));
    let events = stream_of(
        post(
            &app,
            &token,
            "/v1/responses",
            json!({"model": "chat/assistant", "stream": true, "input": "Break"}),
        )
        .await,
    )
    .await;
    let (name, data) = events.last().unwrap();
    let failed: Value = serde_json::from_str(data).unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert!(failed["response"]["error"]["message"].as_str().is_some());
}

#[tokio::test]
async fn an_answer_whose_client_went_away_is_still_generated_and_stored() {
    let fake = FakeLlm::start().await;
    let (app, token, _) = setup(&fake).await;
    fake.push(Script::answer(ANSWER).token_delay(std::time::Duration::from_millis(30)));
    let response = post(
        &app,
        &token,
        "/v1/chat/completions",
        json!({"model": "chat/assistant", "stream": true, "messages": [{"role": "user", "content": "Leave"}]}),
    )
    .await;
    let conversation = conversation_header(&response);
    let mut events = crate::support::sse::Events::of(response);
    events.next().await.unwrap();
    drop(events);
    // Follow the stored answer through confab's own API until it ends.
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    let answer = stored["messages"][1]["id"].as_str().unwrap();
    let response = app
        .api
        .get(app.url(&format!("/api/messages/{answer}/stream")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, done) = crate::support::sse::Events::of(response)
        .collect_json()
        .await;
    assert_eq!(done["status"], "complete");
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["messages"][1]["content"], ANSWER);
}

#[tokio::test]
async fn over_the_allowance_is_429_with_retry_after() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(ANSWER));
    let app = TestApp::with_llm(&fake.base_url(), |s| s.chat.answers_per_minute_per_user = 1).await;
    let (token, _, _) = app.chat_setup("allowance@example.com").await;
    let body = json!({"model": "chat/assistant", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _) = app
        .post_json(&token, "/v1/chat/completions", body.clone())
        .await;
    assert_eq!(status, 200);
    let response = post(&app, &token, "/v1/chat/completions", body).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
}
