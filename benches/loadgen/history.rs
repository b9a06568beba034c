//! The history phase: one conversation of 1,000 messages, then its page and its API read at a
//! fixed rate, open loop (each request is sent on schedule, whether or not earlier ones have
//! answered), so a slow answer shows up as latency instead of as a lower rate.
//!
//! The conversation is stored in one request: the OpenAI-compatible API keeps the turns a client
//! sends with its first message (998 here), then the message and its answer. Answers are
//! Markdown with a list and a code block, so rendering them costs what a real answer's does.

use std::time::{Duration, Instant};

use confab_fake_llm::FakeLlm;
use serde_json::json;

use crate::Error;
use crate::cli::Args;
use crate::client::micros;
use crate::confab::{Confab, sign_up, start_confab};
use crate::report::{ms, percentile};

/// Messages in the conversation: the earlier turns, the last message and its answer.
pub const MESSAGES: usize = 1_000;

/// One measured target: latencies of the requests that succeeded, and how many did not.
pub struct Reading {
    pub name: &'static str,
    pub sent: usize,
    pub errors: usize,
    /// Sorted, µs, from each request's scheduled send to its whole body read.
    pub latencies: Vec<u32>,
    pub first_error: Option<String>,
}

pub struct HistoryReport {
    pub rate: u32,
    pub secs: u64,
    pub readings: Vec<Reading>,
}

/// An answer as an assistant writes one: a paragraph, a list and a short code block.
fn answer(n: usize) -> String {
    format!(
        "Here is answer **{n}**. It explains the idea in a few sentences, with `inline code` and \
         a [link](https://example.com/docs/{n}).\n\n- first point about {n}\n- second point, \
         a little longer than the first one\n- third\n\n```rust\nfn answer_{n}() -> u32 {{\n    \
         let x = {n};\n    x * 2 // doubled\n}}\n```\n\nThat is all for now."
    )
}

pub async fn history_phase(fake: &FakeLlm, args: &Args) -> Result<HistoryReport, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let Confab {
        server: mut confab,
        base,
        dir,
        ..
    } = start_confab(&client, fake, args).await?;
    let account = sign_up(&client, &base, 0).await?;

    let earlier: Vec<_> = (0..MESSAGES - 2)
        .map(|i| match i % 2 {
            0 => json!({"role": "user", "content": format!("Question {i}: how does this work?")}),
            _ => json!({"role": "assistant", "content": answer(i)}),
        })
        .collect();
    let mut messages = earlier;
    messages.push(json!({"role": "user", "content": "And the last question?"}));
    let stored = Instant::now();
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&account.token)
        .timeout(Duration::from_secs(120))
        .json(&json!({"model": account.agent_id, "messages": messages}))
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(format!(
            "storing the conversation: HTTP {status}: {}",
            response.text().await?
        )
        .into());
    }
    let conversation = response
        .headers()
        .get("x-confab-conversation-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Confab-Conversation-Id")?
        .to_owned();
    response.bytes().await?;
    println!(
        "  a conversation of {MESSAGES} messages stored in {:.1} s (answered by the fake)",
        stored.elapsed().as_secs_f64()
    );

    let page = Target {
        name: "page GET /conversations/{id}",
        url: format!("{base}/conversations/{conversation}"),
        cookie: Some(format!("confab_session={}", account.token)),
        token: None,
    };
    let api = Target {
        name: "API GET /api/conversations/{id}",
        url: format!("{base}/api/conversations/{conversation}"),
        cookie: None,
        token: Some(account.token.clone()),
    };
    let secs = args.history_secs;
    let rate = args.history_rate;
    let mut readings = Vec::new();
    for target in [page, api] {
        // Warm: the first views fill whatever is filled lazily, and the pools' connections.
        for _ in 0..20 {
            let _ = target.get(&client).await;
        }
        let reading = open_loop(&client, &target, rate, Duration::from_secs(secs)).await;
        print_reading(&reading);
        readings.push(reading);
    }
    let ended = tokio::task::spawn_blocking(move || confab.stop(Duration::from_secs(20))).await?;
    println!("  confab {ended}");
    drop(dir);
    Ok(HistoryReport {
        rate,
        secs,
        readings,
    })
}

struct Target {
    name: &'static str,
    url: String,
    cookie: Option<String>,
    token: Option<String>,
}

impl Target {
    /// One GET, its body read whole; an error unless 200.
    async fn get(&self, client: &reqwest::Client) -> Result<usize, String> {
        let mut request = client.get(&self.url);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        Ok(body.len())
    }
}

/// `rate` requests a second for `length`, each sent at its time by a task of its own.
async fn open_loop(
    client: &reqwest::Client,
    target: &Target,
    rate: u32,
    length: Duration,
) -> Reading {
    let count = (f64::from(rate) * length.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let target = Target {
            name: target.name,
            url: target.url.clone(),
            cookie: target.cookie.clone(),
            token: target.token.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let result = target.get(&client).await;
            // From when it was due: a request the client sent late counts its lateness too.
            (result, micros(due.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok((Ok(_), latency)) => latencies.push(latency),
            Ok((Err(error), _)) => {
                errors += 1;
                first_error.get_or_insert(error);
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(error.to_string());
            }
        }
    }
    latencies.sort_unstable();
    Reading {
        name: target.name,
        sent: count,
        errors,
        latencies,
        first_error,
    }
}

fn print_reading(reading: &Reading) {
    println!(
        "  {}: {} sent, {} errors; p50 {}, p99 {}, max {}{}",
        reading.name,
        reading.sent,
        reading.errors,
        ms(percentile(&reading.latencies, 50.0)),
        ms(percentile(&reading.latencies, 99.0)),
        ms(reading.latencies.last().copied()),
        reading
            .first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
}

/// The summary: each target against the aim (p99 ≤ 15 ms, no errors).
pub fn summary(report: &HistoryReport, json: bool) {
    println!(
        "\n== history: a {MESSAGES}-message conversation, {} requests/s for {} s each, open loop",
        report.rate, report.secs
    );
    let mut lines = Vec::new();
    for reading in &report.readings {
        let p99 = percentile(&reading.latencies, 99.0);
        let ok = reading.errors == 0 && p99.is_some_and(|p| p <= 15_000);
        println!(
            "{:<34} p50 {:>10}  p99 {:>10}  max {:>10}  errors {:>4}  aim p99 ≤ 15 ms: {}",
            reading.name,
            ms(percentile(&reading.latencies, 50.0)),
            ms(p99),
            ms(reading.latencies.last().copied()),
            reading.errors,
            if ok { "met" } else { "NOT met" }
        );
        lines.push(json!({
            "name": reading.name,
            "sent": reading.sent,
            "errors": reading.errors,
            "p50_us": percentile(&reading.latencies, 50.0),
            "p99_us": p99,
            "max_us": reading.latencies.last(),
        }));
    }
    if json {
        println!(
            "loadgen-history-json: {}",
            json!({"messages": MESSAGES, "rate": report.rate, "secs": report.secs, "targets": lines})
        );
    }
}
