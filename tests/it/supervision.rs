//! The embedded PostgreSQL dies under confab (a crash, an OOM kill): confab starts it again by
//! itself, and an answer under way is stored whole and reported as it was stored.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::app::{embedded_settings, start};
use crate::support::fake_llm::{FakeLlm, Script};
use crate::support::remote::{account_at, crash};
use crate::support::sse::{Events, joined};

#[tokio::test]
async fn a_killed_embedded_database_comes_back_and_the_answer_under_way_is_kept() {
    let fake = FakeLlm::start().await;
    let answer: String = (0..120).map(|i| format!("w{i} ")).collect();
    fake.set_default(Script::answer(&answer).token_delay(Duration::from_millis(25)));
    let dir = tempfile::tempdir().unwrap();
    let mut settings = embedded_settings(dir.path());
    settings.llm.openai_api_key = Some(confab::settings::Secret::new("sk-test"));
    settings.llm.openai_base_url = Some(fake.base_url());
    settings.chat.flush_interval_ms = 50;
    let (base, stop, running) = start(settings).await;
    let client = reqwest::Client::new();
    let (token, _, agent) = account_at(&client, &base, "crash@example.com").await;
    let response = client
        .post(format!("{base}/api/chat/agents/{agent}"))
        .bearer_auth(&token)
        .json(&json!({"message": "go"}))
        .send()
        .await
        .unwrap();
    let mut events = Events::of(response);
    let first = events.next().await.unwrap();
    let mut received = serde_json::from_str::<Value>(&first.data).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();

    // kill -9 of the postmaster, mid-answer.
    crash(&dir.path().join("pg"));

    let (chunks, done) = events.collect_json().await;
    received.push_str(&joined(&chunks));
    assert_eq!(received, answer, "the reader got the whole answer");
    assert_eq!(done["status"], "complete", "{done}");

    // Without anyone restarting it, the database is back (the wait is bounded, not a sleep to
    // let something happen: it polls what an operator's monitor would).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        if health.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the embedded database did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What was reported complete is what is stored.
    let conversation: Value = client
        .get(format!(
            "{base}/api/conversations/{}",
            done["conversation_id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conversation["messages"][1]["status"], "complete");
    assert_eq!(conversation["messages"][1]["content"], answer.as_str());
    stop.send(()).unwrap();
    running.await;
}
