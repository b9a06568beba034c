//! Load generator: N concurrent streamed chats against confab with the fake OpenAI-compatible
//! upstream at a fixed token rate, and the same N streams against the fake alone.
//!
//!     cargo build --release --bin confab
//!     cargo bench --bench loadgen -- --streams 1000
//!
//! (`scripts/bench.sh 1000` does both.) Phase 1 sends N `POST /v1/responses` streams straight to
//! the fake; phase 2 starts `target/release/confab` on a fresh embedded database, signs up, makes
//! a project and sends N `POST /api/chat/agents/{id}` streams through it, the fake answering
//! behind. It prints time-to-first-token and inter-token gaps of both, their difference (what
//! confab adds), errors, confab's RSS (idle, peak, per live stream) and CPU, and the latency of
//! ordinary API calls made while the streams run. Exit status 1 when any stream failed, 2 when
//! the run could not be set up.
//!
//! The load generator, the fake and confab (with its PostgreSQL) share the machine's cores: at
//! 1,000 streams × 50 tokens/s the generator and the fake alone use about one core, mostly kernel
//! time for the loopback TCP writes and reads of every token. Compare runs made on an idle
//! machine, and read "confab CPU … per token" and "loadgen process CPU" before the latencies.
//!
//! `cargo test --all-targets` runs this target too, without `--bench`: then it only checks
//! quickly that the harness works against the fake.
//!
//! Everything is bounded: every wait has a deadline and the whole run stops by itself; Ctrl-C
//! or SIGTERM stops confab (and its PostgreSQL) before exiting.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::timeout_at;

use confab_fake_llm::{FakeLlm, Script};

/// The question every chat sends.
const MESSAGE: &str = "hello";
const PASSWORD: &str = "loadgen pass 1";

/// Opens N concurrent streams against the fake LLM alone and through confab; prints TTFT,
/// inter-token gaps, errors and confab's memory.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen")]
struct Args {
    /// Concurrent streams (conversations) per phase.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Tokens (deltas) in every answer.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Pause between two tokens, in ms (the upstream's token rate).
    #[arg(long, default_value_t = 20)]
    token_delay_ms: u64,
    /// Pause before the first token, in ms (the upstream "thinking").
    #[arg(long, default_value_t = 0)]
    first_token_delay_ms: u64,
    /// Stream starts are spread evenly over this window, in ms. Keep it shorter than one stream
    /// (first delay + (tokens-1) × token delay) so that all N are live at the same time.
    #[arg(long, default_value_t = 2000)]
    ramp_ms: u64,
    /// Which phases to run.
    #[arg(long, value_enum, default_value_t = Phase::Both)]
    phase: Phase,
    /// The confab binary to run (default: `confab` in the target directory this bench was built
    /// in, i.e. target/release/confab; build it first: `cargo build --release --bin confab`).
    #[arg(long)]
    confab_bin: Option<PathBuf>,
    /// Data directory for confab's embedded PostgreSQL (default: a fresh temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Accounts the streams are spread over (round robin), each with its own project.
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// Client worker threads (default: number of cores).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Upper bound for one phase's streams, in seconds (default: 3 × the scripted duration + 30).
    #[arg(long)]
    phase_timeout_secs: Option<u64>,
    /// Also print the summary as one JSON line (prefixed `loadgen-json: `).
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; without it only a quick check runs (see `main`).
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Both,
    Fake,
    Confab,
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets too, without
    // it (and possibly with test filters): then only check quickly that the harness works.
    let args = if std::env::args().any(|arg| arg == "--bench") {
        Args::parse()
    } else {
        println!(
            "loadgen: not run by `cargo bench` (no --bench): a quick check against the fake only"
        );
        Args::parse_from([
            "loadgen",
            "--phase",
            "fake",
            "--streams",
            "20",
            "--tokens",
            "10",
            "--token-delay-ms",
            "1",
            "--ramp-ms",
            "20",
        ])
    };
    if args.streams == 0 || args.tokens == 0 || args.users == 0 {
        eprintln!("--streams, --tokens and --users must be at least 1");
        return ExitCode::from(2);
    }
    let threads = args.client_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let outcome = runtime.block_on(async {
        // Ctrl-C or SIGTERM: drop the run, which stops confab (and its PostgreSQL) on the way.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            outcome = run(args) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = terminate.recv() => Err("terminated".into()),
        }
    });
    // Streams still open after a deadline must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::from(2)
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run(args: Args) -> Result<bool, Error> {
    check_fd_limit(args.streams)?;
    let tokens: Vec<String> = (0..args.tokens).map(|i| format!("t{i} ")).collect();
    let expected: String = tokens.concat();
    let fake = FakeLlm::start_at("127.0.0.1:0")?;
    fake.set_default(
        Script::tokens(tokens)
            .token_delay(Duration::from_millis(args.token_delay_ms))
            .first_token_delay(Duration::from_millis(args.first_token_delay_ms)),
    );
    let scripted = Duration::from_millis(
        args.first_token_delay_ms + args.token_delay_ms * (args.tokens as u64 - 1),
    );
    let phase_timeout = Duration::from_secs(
        args.phase_timeout_secs
            .unwrap_or(3 * (args.ramp_ms / 1000 + scripted.as_secs() + 1) + 30),
    );
    println!(
        "loadgen: {} streams × {} tokens, {} ms apart (first after {} ms): each stream ≈ {:.2} s; \
         starts spread over {} ms",
        args.streams,
        args.tokens,
        args.token_delay_ms,
        args.first_token_delay_ms,
        scripted.as_secs_f64(),
        args.ramp_ms
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "loadgen: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if load1 > 0.5 {
        println!(
            "loadgen: warning: the machine is busy (load {load1}); latencies will include that"
        );
    }
    if Duration::from_millis(args.ramp_ms) >= scripted {
        println!(
            "loadgen: warning: the ramp is not shorter than one stream, so fewer than N streams \
             are ever live at once (see \"peak live\")"
        );
    }

    let mut fake_stats = None;
    if args.phase != Phase::Confab {
        println!(
            "\n== phase 1: the fake upstream alone ({})",
            fake.base_url()
        );
        let target = Target::Fake {
            url: format!("{}/responses", fake.base_url()),
        };
        let cpu_before = CpuTimes::of_self();
        // A client per phase: dropping it closes its idle connections, so the two phases never
        // hold 2N sockets each at the same time.
        let client = http_client(args.streams)?;
        let results = run_streams(&client, &target, &args, &expected, phase_timeout, None).await;
        drop(client);
        let cpu = CpuTimes::of_self().since(&cpu_before);
        let stats = Stats::from_results(results);
        stats.print_short("fake");
        println!(
            "  loadgen process CPU (client + fake): {:.2} s over {:.2} s wall",
            cpu.total_secs(),
            stats.wall.as_secs_f64()
        );
        fake_stats = Some(stats);
    }

    let mut confab_report = None;
    if args.phase != Phase::Fake {
        println!(
            "\n== phase 2: through confab ({})",
            confab_bin(&args).display()
        );
        let client = http_client(args.streams)?;
        let report = confab_phase(&client, &fake, &args, &expected, phase_timeout).await?;
        confab_report = Some(report);
    }

    let ok = summary(&args, fake_stats.as_ref(), confab_report.as_ref());
    Ok(ok)
}

/// `--confab-bin`, else `confab` next to `deps/` where cargo put this bench (so a custom
/// CARGO_TARGET_DIR works), else target/release/confab of this checkout.
fn confab_bin(args: &Args) -> PathBuf {
    if let Some(path) = &args.confab_bin {
        return path.clone();
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let profile_dir = exe.parent()?.parent()?;
        Some(profile_dir.join("confab"))
    });
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/release/confab"
        )),
    }
}

/// One HTTP/1.1 client whose pool holds a connection per stream: streams never wait for one.
fn http_client(streams: usize) -> Result<reqwest::Client, Error> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(streams + 16)
        .pool_idle_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// N=1000 needs about 2N descriptors in this process (client sockets plus the fake's server
/// sockets) and 2N in confab, which inherits our limit.
fn check_fd_limit(streams: usize) -> Result<(), Error> {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(soft) = soft {
        let need = 2 * streams + 256;
        if soft < need {
            return Err(format!(
                "the open-files limit is {soft}, {streams} streams need about {need}: \
                 raise it first (`ulimit -n {need}`)"
            )
            .into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Where the streams go and how their events read.
enum Target {
    /// `POST /v1/responses` on the fake: tokens are `response.output_text.delta` events, the end
    /// is `response.completed`.
    Fake { url: String },
    /// `POST /api/chat/agents/{id}` on confab: `data: {"text", …}` events, the end has `done`.
    Confab { users: Vec<Account>, base: String },
}

#[derive(Clone)]
struct Account {
    token: String,
    agent_id: String,
}

/// What one stream saw.
#[derive(Default)]
struct StreamResult {
    /// Request sent → first token.
    ttft: Option<Duration>,
    /// Request sent → response headers.
    headers: Option<Duration>,
    /// Gaps between consecutive tokens, in µs.
    gaps: Vec<u32>,
    /// confab's own `ttft_ms` from the done event: generation task start → first delta.
    server_ttft_ms: Option<u32>,
    error: Option<String>,
}

/// Counts live streams and remembers the most at once.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Live {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

struct PhaseResults {
    streams: Vec<StreamResult>,
    peak_live: usize,
    wall: Duration,
    /// Latency of ordinary requests made while the streams ran (µs), by name.
    probes: Vec<(String, Vec<u32>)>,
}

/// A sequential prober: one request at a time, every `every`, until told to stop.
struct Probe {
    name: String,
    url: String,
    token: String,
}

async fn run_streams(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
    probes: Option<Vec<Probe>>,
) -> PhaseResults {
    let live = Arc::new(Live::default());
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let deadline = start + Duration::from_millis(args.ramp_ms) + phase_timeout;
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

    let expected: Arc<str> = Arc::from(expected);
    let mut tasks = Vec::with_capacity(args.streams);
    for index in 0..args.streams {
        let at =
            start + Duration::from_micros(args.ramp_ms * 1000 * index as u64 / args.streams as u64);
        let request = match target {
            Target::Fake { url } => client
                .post(url)
                .header("authorization", "Bearer fake")
                .header("accept", "text/event-stream")
                .json(&json!({"model": "gpt-4o-mini", "input": MESSAGE, "stream": true})),
            Target::Confab { users, base } => {
                let user = &users[index % users.len()];
                client
                    .post(format!("{base}/api/chat/agents/{}", user.agent_id))
                    .bearer_auth(&user.token)
                    .header("accept", "text/event-stream")
                    .json(&json!({"message": MESSAGE}))
            }
        };
        let is_fake = matches!(target, Target::Fake { .. });
        let live = Arc::clone(&live);
        let expected = Arc::clone(&expected);
        let tokens = args.tokens;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            live.enter();
            let mut result = StreamResult::default();
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
    let mut streams = Vec::with_capacity(tasks.len());
    for task in tasks {
        streams.push(task.await.unwrap_or_else(|error| StreamResult {
            error: Some(format!("task failed: {error}")),
            ..StreamResult::default()
        }));
    }
    let wall = start.elapsed();
    stop_probes.store(true, Ordering::Relaxed);
    let mut probes = Vec::new();
    for task in probe_tasks {
        if let Ok(probe) = task.await {
            probes.push(probe);
        }
    }
    PhaseResults {
        streams,
        peak_live: live.peak.load(Ordering::Relaxed),
        wall,
        probes,
    }
}

/// One streamed request, read to its end; timings go into `result` as they come.
async fn one_stream(
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
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    let mut last_token: Option<Instant> = None;
    let mut token_count = 0usize;
    let mut text = String::new();
    let mut end: Option<Result<(), String>> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let now = Instant::now();
        for event in parser.push(&chunk) {
            if end.is_some() {
                return Err("event after the end of the stream".into());
            }
            let got_text = if is_fake {
                match event.kind.as_str() {
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
                        end = Some(Err(format!("upstream said {}", event.kind)));
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
    }
    end.unwrap_or_else(|| Err("stream ended without its final event".into()))
}

#[derive(Deserialize)]
struct ChatEvent {
    #[serde(default)]
    text: String,
    #[serde(default)]
    done: bool,
    status: Option<String>,
    error: Option<Value>,
    ttft_ms: Option<u32>,
}

/// One SSE event: its `event:` name and joined `data:` lines.
struct SseEvent {
    kind: String,
    data: String,
}

/// A small incremental SSE reader (comments and `id:`/`retry:` are skipped).
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    kind: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(newline) = self.buffer[consumed..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buffer[consumed..consumed + newline];
            consumed += newline + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if self.has_data || !self.kind.is_empty() {
                    events.push(SseEvent {
                        kind: std::mem::take(&mut self.kind),
                        data: std::mem::take(&mut self.data),
                    });
                }
                self.has_data = false;
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.kind = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        self.buffer.drain(..consumed);
        events
    }
}

fn micros(duration: Duration) -> u32 {
    duration.as_micros().min(u32::MAX as u128) as u32
}

// ---------------------------------------------------------------------------------------------
// Phase 2: confab as a child process

struct ConfabReport {
    stats: Stats,
    rss_idle_kb: u64,
    rss_peak_kb: u64,
    hwm_kb: u64,
    threads_peak: u64,
    cpu: CpuTimes,
    probes_idle: Vec<(String, Vec<u32>)>,
}

/// The child; stopped with SIGTERM (so it stops its PostgreSQL too), then SIGKILL, when dropped.
struct ConfabChild {
    child: Child,
    log: PathBuf,
}

impl ConfabChild {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    fn stop(&mut self, grace: Duration) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had already exited ({status})");
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("stopped ({status})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("killed after {} s", grace.as_secs())
    }
}

impl Drop for ConfabChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn confab_phase(
    client: &reqwest::Client,
    fake: &FakeLlm,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
) -> Result<ConfabReport, Error> {
    let confab_bin = confab_bin(args);
    if !confab_bin.is_file() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release --bin confab` (or pass --confab-bin)",
            confab_bin.display()
        )
        .into());
    }
    // Short path: the embedded PostgreSQL's socket lives in it.
    let temp = tempfile::Builder::new()
        .prefix("confab-loadgen")
        .tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("data"));
    let log = temp.path().join("confab.log");
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let child = Command::new(&confab_bin)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--port")
        .arg(port.to_string())
        .arg("serve")
        // No confab.toml of the repo's: the child runs in the temporary directory.
        .current_dir(temp.path())
        .env_remove("DATABASE_URL")
        .env_remove("CONFAB_DATABASE__URL")
        .env("OPENAI_API_KEY", "fake")
        .env("OPENAI_BASE_URL", fake.base_url())
        .env("NO_COLOR", "1")
        .env("CONFAB_AUTH__BCRYPT_COST", "4")
        .env("CONFAB_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "100000")
        .env(
            "CONFAB_LOG",
            std::env::var("LOADGEN_CONFAB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(&log)?)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", confab_bin.display()))?;
    let mut confab = ConfabChild { child, log };

    // Up and healthy.
    let health_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = confab.child.try_wait() {
            return Err(format!(
                "confab exited during start-up ({status}):\n{}",
                confab.log_tail()
            )
            .into());
        }
        let healthy = client
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            break;
        }
        if Instant::now() > health_deadline {
            return Err(format!("confab not healthy after 60 s:\n{}", confab.log_tail()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  confab pid {} healthy on {base} after {:.1} s",
        confab.pid(),
        started.elapsed().as_secs_f64()
    );

    let setup = async {
        let mut users = Vec::new();
        for index in 0..args.users {
            users.push(sign_up(client, &base, index).await?);
        }
        Ok::<_, Error>(users)
    };
    let users = timeout_at(tokio::time::Instant::now() + Duration::from_secs(60), setup)
        .await
        .map_err(|_| "signing up took more than 60 s")??;

    // A short warm-up stream, so lazily made things (the upstream client, the pool's
    // connections, allocator arenas) are not counted as per-stream cost.
    let warm = Target::Confab {
        users: users.clone(),
        base: base.clone(),
    };
    let warm_args = Args {
        streams: 2.min(args.streams),
        ramp_ms: 0,
        ..args.clone()
    };
    let warm_up = run_streams(client, &warm, &warm_args, expected, phase_timeout, None).await;
    if let Some(error) = warm_up.streams.iter().find_map(|s| s.error.clone()) {
        println!("  warm-up stream failed: {error}");
    }

    // Idle probes, for comparison with the same probes under load.
    let probes = |users: &[Account]| {
        vec![
            Probe {
                name: "GET /api/projects".into(),
                url: format!("{base}/api/projects"),
                token: users[0].token.clone(),
            },
            Probe {
                name: "GET /health".into(),
                url: format!("{base}/health"),
                token: users[0].token.clone(),
            },
        ]
    };
    let mut probes_idle = Vec::new();
    for probe in probes(&users) {
        let mut latencies = Vec::new();
        for _ in 0..20 {
            let sent = Instant::now();
            if let Ok(response) = client
                .get(&probe.url)
                .bearer_auth(&probe.token)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                && response.status().is_success()
                && response.bytes().await.is_ok()
            {
                latencies.push(micros(sent.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        latencies.sort_unstable();
        probes_idle.push((probe.name, latencies));
    }

    // Let the idle RSS settle, then sample through the run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sampler = RssSampler::start(confab.pid());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle_kb = sampler.latest().map_or(0, |s| s.rss_kb);
    let cpu_before = CpuTimes::of_pid(confab.pid());
    let busy_probes = probes(&users);
    let target = Target::Confab {
        users,
        base: base.clone(),
    };
    let results = run_streams(
        client,
        &target,
        args,
        expected,
        phase_timeout,
        Some(busy_probes),
    )
    .await;
    let cpu = CpuTimes::of_pid(confab.pid()).since(&cpu_before);
    let samples = sampler.stop();
    let rss_peak_kb = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let hwm_kb = samples.iter().map(|s| s.hwm_kb).max().unwrap_or(0);
    let threads_peak = samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let stats = Stats::from_results(results);
    stats.print_short("confab");
    let ended = tokio::task::spawn_blocking(move || {
        let ended = confab.stop(Duration::from_secs(20));
        let log = confab.log_tail();
        (ended, log)
    })
    .await?;
    println!("  confab {}", ended.0);
    if stats.errors > 0 && !ended.1.trim().is_empty() {
        println!("  confab log (last lines):\n{}", indent(&ended.1));
    }
    drop(temp);
    Ok(ConfabReport {
        stats,
        rss_idle_kb,
        rss_peak_kb,
        hwm_kb,
        threads_peak,
        cpu,
        probes_idle,
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Register, sign in, create a project and find its default agent.
async fn sign_up(client: &reqwest::Client, base: &str, index: usize) -> Result<Account, Error> {
    let email = format!("loadgen{index}@example.com");
    let response = client
        .post(format!("{base}/api/auth/register"))
        .json(
            &json!({"email": email, "password": PASSWORD, "display_name": format!("Load {index}")}),
        )
        .send()
        .await?;
    expect_status(response, 201, "register").await?;
    let response = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    let login = expect_status(response, 200, "login").await?;
    let token = login["access_token"]
        .as_str()
        .ok_or("login answered no access_token")?
        .to_owned();
    let response = client
        .post(format!("{base}/api/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": format!("Load test {index}")}))
        .send()
        .await?;
    let project = expect_status(response, 201, "create project").await?;
    let project_id = project["id"].as_str().ok_or("project without id")?;
    let response = client
        .get(format!("{base}/api/projects/{project_id}/agents"))
        .bearer_auth(&token)
        .send()
        .await?;
    let agents = expect_status(response, 200, "list agents").await?;
    let agents = agents.as_array().ok_or("agents is not a list")?;
    let agent = agents
        .iter()
        .find(|agent| agent["is_default"] == json!(true))
        .or(agents.first())
        .ok_or("the new project has no agent")?;
    Ok(Account {
        token,
        agent_id: agent["id"].as_str().ok_or("agent without id")?.to_owned(),
    })
}

async fn expect_status(
    response: reqwest::Response,
    status: u16,
    what: &str,
) -> Result<Value, Error> {
    let got = response.status().as_u16();
    let body = response.text().await?;
    if got != status {
        return Err(format!("{what}: HTTP {got}, expected {status}: {body}").into());
    }
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
}

fn read_status(pid: u32) -> Option<Sample> {
    let mut text = String::new();
    fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let mut sample = Sample::default();
    for line in text.lines() {
        let number = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            sample.rss_kb = number();
        } else if line.starts_with("VmHWM:") {
            sample.hwm_kb = number();
        } else if line.starts_with("Threads:") {
            sample.threads = number();
        }
    }
    Some(sample)
}

/// Reads `/proc/<pid>/status` every 50 ms on its own thread.
struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let samples = Arc::clone(&samples);
            std::thread::spawn(move || {
                // Bounded even if nobody stops it: at most an hour.
                let until = Instant::now() + Duration::from_secs(3600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    match read_status(pid) {
                        Some(sample) => samples.lock().unwrap().push(sample),
                        None => break,
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        RssSampler {
            stop,
            samples,
            thread,
        }
    }

    fn latest(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().copied()
    }

    fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// User + system CPU time of a process, in clock ticks.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    ticks: u64,
}

impl CpuTimes {
    fn of_self() -> CpuTimes {
        CpuTimes::read("/proc/self/stat")
    }

    fn of_pid(pid: u32) -> CpuTimes {
        CpuTimes::read(&format!("/proc/{pid}/stat"))
    }

    fn read(path: &str) -> CpuTimes {
        let text = fs::read_to_string(path).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        CpuTimes {
            ticks: field(11) + field(12),
        }
    }

    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            ticks: self.ticks.saturating_sub(before.ticks),
        }
    }

    fn total_secs(&self) -> f64 {
        // USER_HZ is 100 on every Linux this runs on.
        self.ticks as f64 / 100.0
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

struct Stats {
    streams: usize,
    errors: usize,
    error_kinds: Vec<(String, usize)>,
    /// Sorted, µs.
    ttft: Vec<u32>,
    /// Request sent → response headers, sorted, µs.
    headers: Vec<u32>,
    /// confab's own ttft_ms (task start → first delta), sorted, µs.
    server_ttft: Vec<u32>,
    gaps: Vec<u32>,
    peak_live: usize,
    wall: Duration,
    probes: Vec<(String, Vec<u32>)>,
}

impl Stats {
    fn from_results(results: PhaseResults) -> Stats {
        let mut ttft = Vec::new();
        let mut headers = Vec::new();
        let mut server_ttft = Vec::new();
        let mut gaps = Vec::new();
        let mut kinds: Vec<(String, usize)> = Vec::new();
        let mut errors = 0;
        for stream in &results.streams {
            if let Some(ttft_value) = stream.ttft {
                ttft.push(micros(ttft_value));
            }
            if let Some(value) = stream.headers {
                headers.push(micros(value));
            }
            gaps.extend_from_slice(&stream.gaps);
            if let Some(value) = stream.server_ttft_ms {
                server_ttft.push(value.saturating_mul(1000));
            }
            if let Some(error) = &stream.error {
                errors += 1;
                // Group identical messages (their first 120 characters).
                let kind: String = error.chars().take(120).collect();
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, count)) => *count += 1,
                    None => kinds.push((kind, 1)),
                }
            }
        }
        ttft.sort_unstable();
        headers.sort_unstable();
        server_ttft.sort_unstable();
        gaps.sort_unstable();
        kinds.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let mut probes = results.probes;
        for (_, latencies) in &mut probes {
            latencies.sort_unstable();
        }
        Stats {
            streams: results.streams.len(),
            errors,
            error_kinds: kinds,
            ttft,
            headers,
            server_ttft,
            gaps,
            peak_live: results.peak_live,
            wall: results.wall,
            probes,
        }
    }

    fn print_short(&self, name: &str) {
        println!(
            "  {name}: {} streams, {} errors, peak live {}, {:.2} s; TTFT p50 {} p99 {}; \
             inter-token p50 {} p99 {}",
            self.streams,
            self.errors,
            self.peak_live,
            self.wall.as_secs_f64(),
            ms(percentile(&self.ttft, 50.0)),
            ms(percentile(&self.ttft, 99.0)),
            ms(percentile(&self.gaps, 50.0)),
            ms(percentile(&self.gaps, 99.0)),
        );
        for (kind, count) in self.error_kinds.iter().take(8) {
            println!("    {count} × {kind}");
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(value: Option<u32>) -> String {
    match value {
        Some(us) => format!("{:.2} ms", us as f64 / 1000.0),
        None => "-".into(),
    }
}

fn signed_ms(value: Option<i64>) -> String {
    match value {
        Some(us) => format!("{:+.2} ms", us as f64 / 1000.0),
        None => "-".into(),
    }
}

fn added(confab: &[u32], fake: &[u32], p: f64) -> Option<i64> {
    Some(percentile(confab, p)? as i64 - percentile(fake, p)? as i64)
}

fn summary(args: &Args, fake: Option<&Stats>, confab: Option<&ConfabReport>) -> bool {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== summary: {} streams × {} tokens every {} ms (first after {} ms), ramp {} ms",
        args.streams, args.tokens, args.token_delay_ms, args.first_token_delay_ms, args.ramp_ms
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>14} {:>14}",
        "", "fake alone", "through confab", "added"
    );
    let fake_ttft = fake.map(|s| &s.ttft[..]).unwrap_or(&[]);
    let confab_ttft = confab.map(|c| &c.stats.ttft[..]).unwrap_or(&[]);
    let fake_gaps = fake.map(|s| &s.gaps[..]).unwrap_or(&[]);
    let confab_gaps = confab.map(|c| &c.stats.gaps[..]).unwrap_or(&[]);
    let mut row = |name: &str, f: &[u32], c: &[u32], p: f64| {
        let _ = writeln!(
            out,
            "{:<30} {:>14} {:>14} {:>14}",
            name,
            ms(percentile(f, p)),
            ms(percentile(c, p)),
            signed_ms(added(c, f, p))
        );
    };
    row("TTFT p50", fake_ttft, confab_ttft, 50.0);
    row("TTFT p90", fake_ttft, confab_ttft, 90.0);
    row("TTFT p99", fake_ttft, confab_ttft, 99.0);
    row("TTFT max", fake_ttft, confab_ttft, 100.0);
    let fake_headers = fake.map(|s| &s.headers[..]).unwrap_or(&[]);
    let confab_headers = confab.map(|c| &c.stats.headers[..]).unwrap_or(&[]);
    row("response headers p50", fake_headers, confab_headers, 50.0);
    row("response headers p99", fake_headers, confab_headers, 99.0);
    row("inter-token p50", fake_gaps, confab_gaps, 50.0);
    row("inter-token p99", fake_gaps, confab_gaps, 99.0);
    row("inter-token p99.9", fake_gaps, confab_gaps, 99.9);
    row("inter-token max", fake_gaps, confab_gaps, 100.0);
    let count =
        |s: Option<&Stats>, f: fn(&Stats) -> usize| s.map_or("-".into(), |s| f(s).to_string());
    let confab_stats = confab.map(|c| &c.stats);
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>14}",
        "errors",
        count(fake, |s| s.errors),
        count(confab_stats, |s| s.errors)
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>14}",
        "peak live streams",
        count(fake, |s| s.peak_live),
        count(confab_stats, |s| s.peak_live)
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>14}",
        "wall time",
        fake.map_or("-".into(), |s| format!("{:.2} s", s.wall.as_secs_f64())),
        confab_stats.map_or("-".into(), |s| format!("{:.2} s", s.wall.as_secs_f64()))
    );
    if let Some(report) = confab {
        let server = &report.stats.server_ttft;
        let _ = writeln!(
            out,
            "confab's own ttft_ms (generation task start → first delta, whole ms): p50 {} p99 {} max {}",
            ms(percentile(server, 50.0)),
            ms(percentile(server, 99.0)),
            ms(percentile(server, 100.0)),
        );
        let per_stream = (report.rss_peak_kb.saturating_sub(report.rss_idle_kb)) as f64
            / report.stats.peak_live.max(1) as f64;
        let _ = writeln!(
            out,
            "confab RSS: idle {:.1} MB, peak {:.1} MB (VmHWM {:.1} MB) → {:.1} KB per live stream \
             ({} live at peak); threads at peak {}",
            report.rss_idle_kb as f64 / 1024.0,
            report.rss_peak_kb as f64 / 1024.0,
            report.hwm_kb as f64 / 1024.0,
            per_stream,
            report.stats.peak_live,
            report.threads_peak
        );
        let wall = report.stats.wall.as_secs_f64();
        let _ = writeln!(
            out,
            "confab CPU: {:.2} s over {:.2} s ({:.0}% of one core); {:.1} µs per token delivered",
            report.cpu.total_secs(),
            wall,
            100.0 * report.cpu.total_secs() / wall.max(1e-9),
            1e6 * report.cpu.total_secs()
                / (report.stats.gaps.len() + report.stats.ttft.len()).max(1) as f64
        );
        for ((name, idle), (_, busy)) in report.probes_idle.iter().zip(&report.stats.probes) {
            let _ = writeln!(
                out,
                "{name}: idle p50 {} p99 {}; under load p50 {} p99 {} max {} ({} calls)",
                ms(percentile(idle, 50.0)),
                ms(percentile(idle, 99.0)),
                ms(percentile(busy, 50.0)),
                ms(percentile(busy, 99.0)),
                ms(percentile(busy, 100.0)),
                busy.len()
            );
        }
    }
    // The aims of the issue, checked only when both phases ran.
    if let (Some(fake), Some(report)) = (fake, confab) {
        let per_stream_kb = (report.rss_peak_kb.saturating_sub(report.rss_idle_kb)) as f64
            / report.stats.peak_live.max(1) as f64;
        let checks = [
            (
                "added TTFT p50 ≤ 1 ms",
                added(&report.stats.ttft, &fake.ttft, 50.0).is_some_and(|v| v <= 1000),
            ),
            (
                "added TTFT p99 ≤ 10 ms",
                added(&report.stats.ttft, &fake.ttft, 99.0).is_some_and(|v| v <= 10_000),
            ),
            ("≤ 40 KB RSS per live stream", per_stream_kb <= 40.0),
            ("zero errors", fake.errors == 0 && report.stats.errors == 0),
        ];
        let _ = writeln!(out, "aims:");
        for (name, met) in checks {
            let _ = writeln!(out, "  [{}] {name}", if met { "met" } else { "MISSED" });
        }
    }
    print!("{out}");
    if args.json {
        let dist = |values: &[u32]| {
            json!({
                "p50_us": percentile(values, 50.0), "p90_us": percentile(values, 90.0),
                "p99_us": percentile(values, 99.0), "max_us": percentile(values, 100.0),
                "count": values.len(),
            })
        };
        let phase = |stats: &Stats| {
            json!({"streams": stats.streams, "errors": stats.errors, "peak_live": stats.peak_live,
                   "wall_s": stats.wall.as_secs_f64(), "ttft": dist(&stats.ttft),
                   "inter_token": dist(&stats.gaps)})
        };
        let summary = json!({
            "streams": args.streams, "tokens": args.tokens, "token_delay_ms": args.token_delay_ms,
            "first_token_delay_ms": args.first_token_delay_ms, "ramp_ms": args.ramp_ms,
            "fake": fake.map(phase),
            "confab": confab.map(|report| json!({
                "phase": phase(&report.stats),
                "rss_idle_kb": report.rss_idle_kb, "rss_peak_kb": report.rss_peak_kb,
                "vm_hwm_kb": report.hwm_kb, "cpu_s": report.cpu.total_secs(),
                "probes": report.stats.probes.iter().map(|(name, values)| json!({"name": name, "latency": dist(values)})).collect::<Vec<_>>(),
            })),
            "added_ttft_p50_us": added(confab_ttft, fake_ttft, 50.0),
            "added_ttft_p99_us": added(confab_ttft, fake_ttft, 99.0),
        });
        println!("loadgen-json: {summary}");
    }
    fake.is_none_or(|s| s.errors == 0) && confab.is_none_or(|c| c.stats.errors == 0)
}
