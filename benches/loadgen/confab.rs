//! The confab phase: confab as a child process on a fresh embedded database, and its accounts;
//! and what the relay and confab phases share: a server child process and the measurements taken
//! of it while the streams run.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use confab_fake_llm::FakeLlm;
use serde_json::{Value, json};
use tokio::time::timeout_at;

use crate::Error;
use crate::cli::Args;
use crate::client::{Account, Probe, Target, micros, run_streams};
use crate::report::Stats;
use crate::sampling::{CpuTimes, Footprint, RssSampler, ServerProcesses, postmaster_of};

pub const PASSWORD: &str = "loadgen pass 1";

/// `--confab-bin`, else `confab` next to `deps/` where cargo put this bench (so a custom
/// CARGO_TARGET_DIR works), else target/release/confab of this checkout.
pub fn confab_bin(args: &Args) -> PathBuf {
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

/// A server phase (relay or confab): the streams' statistics and the server process's cost.
pub struct ServerReport {
    pub stats: Stats,
    pub rss_idle_kb: u64,
    pub rss_peak_kb: u64,
    pub hwm_kb: u64,
    pub threads_peak: u64,
    pub cpu: CpuTimes,
    /// Its PostgreSQL's CPU time over the same streams (confab only).
    pub database_cpu: Option<CpuTimes>,
    /// Probe latencies before the streams (confab only), to compare with those under load.
    pub probes_idle: Vec<(String, Vec<u32>)>,
    /// The server with its PostgreSQL right after start, before any request (confab only).
    pub footprint_start: Option<Footprint>,
    /// The server with its PostgreSQL after the warm-up, before the streams.
    pub footprint_idle: Footprint,
    /// The most the two took together while the streams ran, kB of PSS.
    pub footprint_peak_kb: u64,
}

impl ServerReport {
    /// RSS growth from idle to peak, per stream live at the peak.
    pub fn kb_per_live_stream(&self) -> f64 {
        self.rss_peak_kb.saturating_sub(self.rss_idle_kb) as f64
            / self.stats.peak_live.max(1) as f64
    }

    /// PSS growth of the server and its PostgreSQL together from idle to peak, per stream live
    /// at the peak: what a live stream costs the machine.
    pub fn footprint_kb_per_live_stream(&self) -> f64 {
        self.footprint_peak_kb
            .saturating_sub(self.footprint_idle.total_kb()) as f64
            / self.stats.peak_live.max(1) as f64
    }

    /// CPU milliseconds per stream that ended without error.
    pub fn cpu_ms_per_stream(&self) -> f64 {
        self.per_stream_ms(&self.cpu)
    }

    /// The same for its PostgreSQL.
    pub fn database_cpu_ms_per_stream(&self) -> Option<f64> {
        self.database_cpu.map(|cpu| self.per_stream_ms(&cpu))
    }

    fn per_stream_ms(&self, cpu: &CpuTimes) -> f64 {
        1000.0 * cpu.total_secs() / (self.stats.streams - self.stats.errors).max(1) as f64
    }
}

/// A server child (confab or the relay); stopped with SIGTERM (so confab stops its PostgreSQL
/// too), then SIGKILL, when dropped.
pub struct ServerChild {
    pub child: Child,
    pub log: PathBuf,
}

impl ServerChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> String {
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

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A confab child on a fresh embedded database (in `dir`, removed when dropped), healthy.
pub struct Confab {
    pub server: ServerChild,
    pub base: String,
    pub dir: tempfile::TempDir,
    /// confab and its PostgreSQL, and their footprint just after start.
    pub processes: ServerProcesses,
    pub footprint_start: Footprint,
}

/// Starts confab (`--confab-bin`) on a fresh embedded database with its `openai` provider
/// pointed at the fake and the limits a load test would hit raised; returns once it is healthy.
pub async fn start_confab(
    client: &reqwest::Client,
    fake: &FakeLlm,
    args: &Args,
) -> Result<Confab, Error> {
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
    evict_from_page_cache(&confab_bin);
    let started = Instant::now();
    let child = args
        .server_command(&confab_bin)
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
        .env("OPENAI_BASE_URL", args.upstream_of(fake))
        .env("NO_COLOR", "1")
        .env("CONFAB_AUTH__BCRYPT_COST", "4")
        .env("CONFAB_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "100000")
        // The load is many streams from one machine: the per-person allowances would refuse it.
        .env("CONFAB_AUTH__REGISTRATIONS_PER_HOUR_PER_ADDRESS", "100000")
        // Every account signs up from this one address, and each streams as fast as it can.
        .env(
            "CONFAB_SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE_PER_ADDRESS",
            "1000000",
        )
        .env("CONFAB_SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000")
        .env("CONFAB_CHAT__MAX_LIVE_ANSWERS_PER_USER", "100000")
        .env("CONFAB_CHAT__ANSWERS_PER_MINUTE_PER_USER", "1000000")
        .env(
            "CONFAB_LOG",
            std::env::var("LOADGEN_CONFAB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(&log)?)
        .spawn()
        .map_err(|e| format!("{}: {e}", args.starting(&confab_bin.display().to_string())))?;
    let mut confab = ServerChild { child, log };

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
    // The child resolves a relative data dir against its own working directory, the temp dir.
    let processes = ServerProcesses {
        pid: confab.pid(),
        postmaster: postmaster_of(&temp.path().join(&data_dir)),
    };
    // The pool opens its connections just after start; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let footprint_start = Footprint::of(processes);
    println!(
        "  footprint at start (empty database, no request yet, PSS): {}",
        footprint_start.describe("confab")
    );

    Ok(Confab {
        server: confab,
        base,
        dir: temp,
        processes,
        footprint_start,
    })
}

pub async fn confab_phase(
    client: &reqwest::Client,
    fake: &FakeLlm,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
) -> Result<ServerReport, Error> {
    let Confab {
        server: mut confab,
        base,
        dir: temp,
        processes,
        footprint_start,
    } = start_confab(client, fake, args).await?;
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

    let warm = Target::Confab {
        users: users.clone(),
        base: base.clone(),
    };
    warm_up(client, &warm, args, expected, phase_timeout).await;

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

    let busy_probes = probes(&users);
    let target = Target::Confab {
        users,
        base: base.clone(),
    };
    let mut report = measured_run(
        client,
        processes,
        &target,
        args,
        expected,
        phase_timeout,
        Some(busy_probes),
    )
    .await;
    report.probes_idle = probes_idle;
    report.footprint_start = Some(footprint_start);
    println!(
        "  footprint after sign-up and {} warm-up streams (PSS): {}",
        2.min(args.streams),
        report.footprint_idle.describe("confab")
    );
    report.stats.note_asked(fake);
    report.stats.print_short("confab");
    let stats = &report.stats;
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
    Ok(report)
}

/// Two streams before the measured ones, so lazily made things (the upstream client, its pool's
/// connections, the database pool's, allocator arenas) are not counted as per-stream cost.
pub async fn warm_up(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
) {
    let warm_args = Args {
        streams: 2.min(args.streams),
        ramp_ms: 0,
        ..args.clone()
    };
    let warm_up = run_streams(
        client,
        target,
        &warm_args,
        expected,
        phase_timeout,
        None,
        None,
    )
    .await;
    if let Some(error) = warm_up.streams.iter().find_map(|s| s.error.clone()) {
        println!("  warm-up stream failed: {error}");
    }
}

/// The measured streams against the `server` (and its PostgreSQL): its idle RSS and footprint
/// first, then its RSS, threads and footprint sampled while the streams run, and its CPU time
/// over them.
pub async fn measured_run(
    client: &reqwest::Client,
    server: ServerProcesses,
    target: &Target,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
    probes: Option<Vec<Probe>>,
) -> ServerReport {
    // Let the idle RSS settle, then sample through the run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sampler = RssSampler::start(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle_kb = sampler.latest().map_or(0, |s| s.rss_kb);
    let footprint_idle = Footprint::of(server);
    let results = run_streams(
        client,
        target,
        args,
        expected,
        phase_timeout,
        probes,
        Some(server),
    )
    .await;
    let cpu = results.server_cpu.unwrap_or_default();
    let database_cpu = results.database_cpu;
    let samples = sampler.stop();
    ServerReport {
        stats: Stats::from_results(results),
        rss_idle_kb,
        rss_peak_kb: samples.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        hwm_kb: samples.iter().map(|s| s.hwm_kb).max().unwrap_or(0),
        threads_peak: samples.iter().map(|s| s.threads).max().unwrap_or(0),
        cpu,
        database_cpu,
        probes_idle: Vec::new(),
        footprint_start: None,
        footprint_idle,
        footprint_peak_kb: samples
            .iter()
            .filter_map(|s| s.footprint.map(|f| f.total_kb()))
            .max()
            .unwrap_or(0),
    }
}

pub fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Register, sign in, create a project and find its default agent.
pub async fn sign_up(client: &reqwest::Client, base: &str, index: usize) -> Result<Account, Error> {
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

pub async fn expect_status(
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

/// Drops the binary's pages from the page cache before it starts, so that its footprint reads the
/// same for every build. The kernel maps up to 64 KB around each page a process touches, but only
/// pages already cached: a binary just built or copied (every page cached) read 1–2 MB more than
/// one that was not, with the same code running (docs/measurements.md).
fn evict_from_page_cache(binary: &std::path::Path) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    if let Ok(file) = fs::File::open(binary) {
        // Only a reading's comparability is at stake: a failure leaves the cache as it is. Pages
        // not yet written back (a binary just built) are not dropped, hence the sync first.
        let _ = file.sync_data();
        let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    }
}
