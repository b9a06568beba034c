//! The fault-injection soak: many answers under injected upstream faults (rate limits, server
//! errors, drops mid-stream, `response.failed`, malformed events, stalls, slow streams) while the embedded
//! PostgreSQL is killed twice and frozen once. Afterwards nothing is lost or misreported: every
//! message that was accepted is stored, no answer is left `streaming`, and every answer's stored
//! text and status are what its reader was told.
//!
//! `make test` runs a short one (`SOAK_ANSWERS`, 40 by default); `make soak` runs 1,000.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::app::{embedded_settings, start};
use crate::support::fake_llm::{FakeLlm, Interrupt, Script};
use crate::support::remote::{Frozen, account_at, crash};
use crate::support::sse::{Events, joined};

/// What a reader was told about one answer.
struct Told {
    question: String,
    conversation_id: String,
    message_id: String,
    text: String,
    status: String,
}

/// A fault (or none) for the i-th upstream request.
fn script(i: usize, answer: &str) -> Script {
    let normal = Script::answer(answer).token_delay(Duration::from_millis(3));
    match i % 10 {
        0 => Script::status(429).retry_after("0"),
        1 => Script::status(500),
        2 => normal.drop_after(4),
        3 => normal.interrupt_after(3, Interrupt::Failed),
        // Longer than the stall timeout: the answer fails (or falls back) instead of hanging.
        4 => normal.first_token_delay(Duration::from_millis(2500)),
        5 => Script::answer(answer).token_delay(Duration::from_millis(40)),
        6 => normal.interrupt_after(3, Interrupt::Malformed),
        _ => normal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_under_faults_and_database_crashes_lose_nothing_and_misreport_nothing() {
    let total: usize = std::env::var("SOAK_ANSWERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let began = Instant::now();
    let fake = FakeLlm::start().await;
    let answer: String = (0..30).map(|i| format!("t{i} ")).collect();
    // More scripted requests than answers: retries use some.
    for i in 0..total * 2 {
        fake.push(script(i, &answer));
    }
    fake.set_default(Script::answer(&answer).token_delay(Duration::from_millis(3)));

    let dir = tempfile::tempdir().unwrap();
    let mut settings = embedded_settings(dir.path());
    settings.llm.openai_api_key = Some(confab::settings::Secret::new("sk-soak"));
    settings.llm.openai_base_url = Some(fake.base_url());
    settings.llm.retry_base_delay_ms = 10;
    settings.llm.retry_max_delay_ms = 50;
    settings.llm.stall_timeout_secs = 1;
    settings.chat.flush_interval_ms = 50;
    settings.chat.max_live_answers_per_user = 1_000;
    settings.chat.answers_per_minute_per_user = 1_000_000;
    settings.database.query_timeout_secs = 2;
    settings.database.pool_size = 8;
    let (base, stop, running) = start(settings).await;
    let client = reqwest::Client::new();
    let (token, _, agent) = account_at(&client, &base, "soak@example.com").await;

    // The database's bad day, paced by how many answers have ended.
    let ended = Arc::new(AtomicUsize::new(0));
    let chaos = {
        let (ended, data_dir) = (ended.clone(), dir.path().to_path_buf());
        tokio::spawn(async move {
            let pgdata = data_dir.join("pg");
            let mut log = Vec::new();
            for (at, what) in [
                (total / 4, "kill"),
                (total / 2, "freeze"),
                (3 * total / 4, "kill"),
            ] {
                while ended.load(Ordering::Relaxed) < at {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if what == "kill" {
                    crash(&pgdata);
                } else {
                    let frozen = Frozen::freeze(&pgdata);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    drop(frozen);
                }
                log.push(what);
            }
            log
        })
    };

    let mut refused = HashMap::<u16, usize>::new();
    let results: Vec<Result<Told, u16>> = futures_util::stream::iter(0..total)
        .map(|i| {
            let (client, base, token, agent, ended) = (
                client.clone(),
                base.clone(),
                token.clone(),
                agent.clone(),
                ended.clone(),
            );
            async move {
                let question = format!("question {i}");
                let response = client
                    .post(format!("{base}/api/chat/agents/{agent}"))
                    .bearer_auth(&token)
                    .json(&json!({"message": question}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if status != 200 {
                    ended.fetch_add(1, Ordering::Relaxed);
                    return Err(status);
                }
                let (chunks, done) = Events::of(response).collect_json().await;
                ended.fetch_add(1, Ordering::Relaxed);
                Ok(Told {
                    question,
                    conversation_id: done["conversation_id"].as_str().unwrap().to_string(),
                    message_id: done["message_id"].as_str().unwrap().to_string(),
                    text: joined(&chunks),
                    status: done["status"].as_str().unwrap().to_string(),
                })
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let chaos = chaos.await.unwrap();
    assert_eq!(
        chaos,
        ["kill", "freeze", "kill"],
        "the database's bad day happened"
    );

    // Back to health by itself, then check every answer against what its reader was told.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "the database did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut told_statuses = HashMap::<String, usize>::new();
    for result in results {
        let told = match result {
            Ok(told) => told,
            Err(status) => {
                // Refused before anything was stored: the database was away.
                assert!([503, 502].contains(&status), "a send answered {status}");
                *refused.entry(status).or_default() += 1;
                continue;
            }
        };
        *told_statuses.entry(told.status.clone()).or_default() += 1;
        let stored: Value = client
            .get(format!("{base}/api/conversations/{}", told.conversation_id))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = stored["messages"].as_array().unwrap();
        assert_eq!(
            messages[0]["content"],
            told.question.as_str(),
            "the question is stored"
        );
        let answer = messages
            .iter()
            .find(|m| m["id"] == told.message_id.as_str())
            .expect("the answer is stored");
        assert_ne!(answer["status"], "streaming", "no answer is left streaming");
        assert_eq!(
            answer["status"],
            told.status.as_str(),
            "the status the reader was told is the stored one"
        );
        assert_eq!(
            answer["content"],
            told.text.as_str(),
            "the text the reader got is the stored text"
        );
    }
    println!(
        "soak: {total} answers in {:.1} s; told {told_statuses:?}; refused {refused:?}; database {chaos:?}",
        began.elapsed().as_secs_f64()
    );
    stop.send(()).unwrap();
    running.await;
}
