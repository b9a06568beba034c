//! The client side: opening the N streams (and the probes beside them) and reading each to its
//! end, timing every token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Barrier, watch};
use tokio::time::timeout_at;

use crate::Error;
use crate::cli::{Args, Start};
use crate::sampling::{CpuTimes, ServerProcesses};

/// The question every chat sends.
pub const MESSAGE: &str = "hello";

/// The message every stream sends: [`MESSAGE`], padded with words to `bytes` when that is longer,
/// so that what a live answer holds of its request can be seen (`--message-bytes`).
pub fn message(bytes: usize) -> String {
    const WORD: &str = " lorem";
    let mut message = String::from(MESSAGE);
    while message.len() + WORD.len() <= bytes {
        message.push_str(WORD);
    }
    message
}

/// One HTTP/1.1 client whose pool holds a connection per stream: streams never wait for one.
pub fn http_client(streams: usize) -> Result<reqwest::Client, Error> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(streams + 16)
        .pool_idle_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// Where the streams go and how their events read.
pub enum Target {
    /// `POST /v1/responses` on the fake: tokens are `response.output_text.delta` events, the end
    /// is `response.completed`.
    Fake { url: String },
    /// `POST /api/chat/agents/{id}` on confab: `data: {"text", …}` events, the end has `done`.
    Confab { users: Vec<Account>, base: String },
    /// `POST /relay` on the bare relay: events shaped like confab's.
    Relay { base: String },
}

impl Target {
    /// A cheap GET on the same server, used to open connections before a burst: it touches no
    /// database (confab's `/health` would) and streams nothing.
    fn preconnect_url(&self) -> String {
        match self {
            Target::Fake { url } => url.replace("/responses", "/models"),
            Target::Confab { base, .. } => format!("{base}/static/favicon.svg"),
            Target::Relay { base } => format!("{base}/health"),
        }
    }
}

#[derive(Clone)]
pub struct Account {
    pub token: String,
    pub agent_id: String,
}

/// What one stream saw.
#[derive(Default)]
pub struct StreamResult {
    /// Request sent → first token.
    pub ttft: Option<Duration>,
    /// Request sent → response headers.
    pub headers: Option<Duration>,
    /// Gaps between consecutive tokens, in µs.
    pub gaps: Vec<u32>,
    /// confab's own `ttft_ms` from the done event: generation task start → first delta.
    pub server_ttft_ms: Option<u32>,
    /// Burst start: the release → this stream's request being sent (how simultaneous the burst
    /// really was on the client's threads).
    pub send_lag: Option<Duration>,
    pub error: Option<String>,
}

/// Counts live streams and remembers the most at once.
#[derive(Default)]
pub struct Live {
    pub now: AtomicUsize,
    pub peak: AtomicUsize,
}

impl Live {
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct PhaseResults {
    pub streams: Vec<StreamResult>,
    pub peak_live: usize,
    /// Burst start: connections the pre-opening held at once (N when it worked).
    pub preconnected: Option<usize>,
    /// CPU time of the server process `server_pid` from the release (ramp: the first start) to
    /// the end of the last stream: the pre-opening's requests are not counted.
    pub server_cpu: Option<CpuTimes>,
    /// The same for the server's PostgreSQL (confab only): its postmaster and every process of it.
    pub database_cpu: Option<CpuTimes>,
    pub wall: Duration,
    /// Latency of ordinary requests made while the streams ran (µs), by name.
    pub probes: Vec<(String, Vec<u32>)>,
    /// The release (ramp: the first start), to place the fake's requests against.
    pub started: Instant,
}

/// A sequential prober: one request at a time, every `every`, until told to stop.
pub struct Probe {
    pub name: String,
    pub url: String,
    pub token: String,
}

/// Runs `args.streams` streams against `target`, all sent at the same instant (`--start burst`)
/// or spread over `--ramp-ms`, with `probes` polling beside them; reads every stream to its end.
/// With `server`, counts its CPU time over the streams, and its PostgreSQL's.
pub async fn run_streams(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
    probes: Option<Vec<Probe>>,
    server: Option<ServerProcesses>,
) -> PhaseResults {
    let streams = args.streams;
    let burst = args.start == Start::Burst;
    let live = Arc::new(Live::default());
    // Pre-opening the connections and lining the tasks up get a bound of their own.
    let setup_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // A burst measures N requests arriving at once on open connections, not N TCP handshakes
    // queueing in the accept backlog (which costs every server the same and, past the backlog,
    // a 1 s SYN retransmit).
    let preconnected = if burst {
        Some(preconnect(client, &target.preconnect_url(), streams, setup_deadline).await)
    } else {
        None
    };
    // Every stream task waits here with the coordinator; the last to arrive releases them all.
    // With a ramp only the coordinator waits, so it passes at once.
    let release = Arc::new(Barrier::new(if burst { streams + 1 } else { 1 }));
    // The instant the first waiter left the barrier: the release, for the send lag.
    let released_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let ramp = if burst {
        Duration::ZERO
    } else {
        Duration::from_millis(args.ramp_ms)
    };
    let ramp_start = tokio::time::Instant::now() + Duration::from_millis(50);

    let expected: Arc<str> = Arc::from(expected);
    let message = message(args.message_bytes);
    let message = message.as_str();
    let mut tasks = Vec::with_capacity(streams);
    for index in 0..streams {
        let at = ramp_start + ramp.mul_f64(index as f64 / streams as f64);
        let request = match target {
            Target::Fake { url } => client
                .post(url)
                .header("authorization", "Bearer fake")
                .header("accept", "text/event-stream")
                .json(&json!({"model": "gpt-4o-mini", "input": message, "stream": true})),
            Target::Confab { users, base } => {
                let user = &users[index % users.len()];
                client
                    .post(format!("{base}/api/chat/agents/{}", user.agent_id))
                    .bearer_auth(&user.token)
                    .header("accept", "text/event-stream")
                    .json(&json!({"message": message}))
            }
            Target::Relay { base } => client
                .post(format!("{base}/relay"))
                .header("accept", "text/event-stream")
                .json(&json!({"message": message})),
        };
        let is_fake = matches!(target, Target::Fake { .. });
        let live = Arc::clone(&live);
        let expected = Arc::clone(&expected);
        let release = Arc::clone(&release);
        let released_at = Arc::clone(&released_at);
        let tokens = args.tokens;
        tasks.push(tokio::spawn(async move {
            let mut result = StreamResult::default();
            let deadline = if burst {
                // Bounded: if the coordinator gave up lining the tasks up, so does this one.
                if timeout_at(setup_deadline, release.wait()).await.is_err() {
                    result.error = Some("the burst was never released".into());
                    return result;
                }
                let released = *released_at.get_or_init(Instant::now);
                result.send_lag = Some(released.elapsed());
                tokio::time::Instant::from_std(released) + phase_timeout
            } else {
                tokio::time::sleep_until(at).await;
                ramp_start + ramp + phase_timeout
            };
            live.enter();
            let outcome = timeout_at(
                deadline,
                one_stream(request, is_fake, tokens, &expected, &mut result),
            )
            .await;
            live.leave();
            result.error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some("timed out".into()),
            };
            result
        }));
    }
    // All N tasks are spawned; once each waits at the barrier, this releases them together.
    let _ = timeout_at(setup_deadline, release.wait()).await;
    let cpu_before = server.map(|server| {
        (
            CpuTimes::of_pid(server.pid),
            server.postmaster.map(CpuTimes::of_database),
        )
    });
    let start = if burst {
        tokio::time::Instant::from_std(*released_at.get_or_init(Instant::now))
    } else {
        ramp_start
    };
    let deadline = start + ramp + phase_timeout;

    let stop_probes = Arc::new(AtomicBool::new(false));
    let mut probe_tasks = Vec::new();
    for probe in probes.unwrap_or_default() {
        let client = client.clone();
        let stop = Arc::clone(&stop_probes);
        probe_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            tokio::time::sleep_until(start).await;
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let sent = Instant::now();
                let answer = timeout_at(
                    deadline,
                    client.get(&probe.url).bearer_auth(&probe.token).send(),
                )
                .await;
                if let Ok(Ok(response)) = answer {
                    let ok = response.status().is_success();
                    if timeout_at(deadline, response.bytes()).await.is_ok() && ok {
                        latencies.push(micros(sent.elapsed()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (probe.name, latencies)
        }));
    }

    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_else(|error| StreamResult {
            error: Some(format!("task failed: {error}")),
            ..StreamResult::default()
        }));
    }
    let wall = start.elapsed();
    let (server_cpu, database_cpu) = match server.zip(cpu_before) {
        Some((server, (before, database_before))) => (
            Some(CpuTimes::of_pid(server.pid).since(&before)),
            server
                .postmaster
                .zip(database_before)
                .map(|(postmaster, before)| CpuTimes::of_database(postmaster).since(&before)),
        ),
        None => (None, None),
    };
    stop_probes.store(true, Ordering::Relaxed);
    let mut probes = Vec::new();
    for task in probe_tasks {
        if let Ok(probe) = task.await {
            probes.push(probe);
        }
    }
    PhaseResults {
        streams: results,
        peak_live: live.peak.load(Ordering::Relaxed),
        preconnected,
        server_cpu,
        database_cpu,
        wall,
        probes,
        started: start.into_std(),
    }
}

/// Opens `n` connections to `url`'s server at once and leaves them idle in the client's pool:
/// `n` GETs, each holding its response (and so its connection, which goes back to the pool only
/// once the body is read) until all `n` have answered. Returns how many were held at once.
async fn preconnect(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    deadline: tokio::time::Instant,
) -> usize {
    // How many GETs have answered (or failed: a failure must not keep the others waiting).
    let answered = Arc::new(watch::Sender::new(0usize));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let request = client.get(url);
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            let response = timeout_at(deadline, request.send()).await;
            let mut all = answered.subscribe();
            answered.send_modify(|count| *count += 1);
            // `matches!` drops the borrow of the channel's value at once: holding it would block
            // the others' `send_modify`.
            let all_answered = matches!(
                timeout_at(deadline, all.wait_for(|count| *count >= n)).await,
                Ok(Ok(_))
            );
            let Ok(Ok(response)) = response else {
                return false;
            };
            let read = timeout_at(deadline, response.bytes()).await;
            all_answered && read.is_ok_and(|body| body.is_ok())
        }));
    }
    let mut held = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            held += 1;
        }
    }
    held
}

/// One streamed request, read to its end; timings go into `result` as they come.
pub async fn one_stream(
    request: reqwest::RequestBuilder,
    is_fake: bool,
    tokens: usize,
    expected: &str,
    result: &mut StreamResult,
) -> Result<(), String> {
    let sent = Instant::now();
    let response = request.send().await.map_err(|e| format!("send: {e}"))?;
    result.headers = Some(sent.elapsed());
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        ));
    }
    // eventsource-stream (as confab itself reads its providers) parses the SSE framing: events
    // come out one by one as soon as their closing blank line has arrived.
    let mut events = response.bytes_stream().eventsource();
    let mut last_token: Option<Instant> = None;
    let mut token_count = 0usize;
    let mut text = String::new();
    let mut end: Option<Result<(), String>> = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            EventStreamError::Transport(e) => format!("body: {e}"),
            // Not UTF-8, or a line the parser cannot take.
            e => format!("bad event stream: {e}"),
        })?;
        let now = Instant::now();
        if end.is_some() {
            return Err("event after the end of the stream".into());
        }
        let got_text = if is_fake {
            match event.event.as_str() {
                "response.output_text.delta" => true,
                "response.completed" => {
                    end = Some(if token_count == tokens {
                        Ok(())
                    } else {
                        Err(format!("{token_count} deltas, expected {tokens}"))
                    });
                    false
                }
                "response.failed" | "response.incomplete" | "error" => {
                    end = Some(Err(format!("upstream said {}", event.event)));
                    false
                }
                _ => false,
            }
        } else {
            let data: ChatEvent = serde_json::from_str(&event.data)
                .map_err(|e| format!("bad event data {:?}: {e}", event.data))?;
            if data.done {
                result.server_ttft_ms = data.ttft_ms;
                let status = data.status.as_deref().unwrap_or("-");
                end = Some(if status != "complete" {
                    Err(format!("done with status {status}: {:?}", data.error))
                } else if !data.text.is_empty() {
                    Err("text in the done event".into())
                } else if text != expected {
                    Err(format!(
                        "text differs: {} bytes, expected {}",
                        text.len(),
                        expected.len()
                    ))
                } else {
                    Ok(())
                });
                false
            } else if data.text.is_empty() {
                false
            } else {
                text.push_str(&data.text);
                true
            }
        };
        if got_text {
            token_count += 1;
            match last_token {
                None => result.ttft = Some(now - sent),
                Some(last) => result.gaps.push(micros(now - last)),
            }
            last_token = Some(now);
        }
    }
    end.unwrap_or_else(|| Err("stream ended without its final event".into()))
}

#[derive(Deserialize)]
pub struct ChatEvent {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub done: bool,
    pub status: Option<String>,
    pub error: Option<Value>,
    pub ttft_ms: Option<u32>,
}

pub fn micros(duration: Duration) -> u32 {
    duration.as_micros().min(u128::from(u32::MAX)) as u32
}
