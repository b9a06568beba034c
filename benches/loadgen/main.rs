//! Load generator: N concurrent streamed chats, the same client code run in one sitting against
//! (1) the fake OpenAI-compatible upstream alone, (2) a bare relay in front of it and (3) confab
//! in front of it, with the numbers side by side.
//!
//!     cargo build --release --bin confab
//!     cargo bench --bench loadgen -- --streams 1000
//!
//! (`scripts/bench.sh` does both, for N = 200 and N = 1,000.) By default the fake answers as the
//! performance issue asks: 50 tokens, 20 ms apart, the first after 200 ms; and the N streams
//! start in the same instant (`--start burst`): N connections are opened first, then every
//! request is released together from a barrier. `--start ramp` spreads the starts over
//! `--ramp-ms` instead, connecting as they go (the earlier behaviour).
//!
//! - fake: N `POST /v1/responses` streams straight to the fake (in this process).
//! - relay: `relay.rs`, actix-web + one reqwest client re-emitting each delta, no auth, no
//!   database: the floor any relay has on this machine. It runs as a child process (this binary
//!   with `--serve-relay`), measured like confab.
//! - confab: `target/release/confab` on a fresh embedded database; signs up, makes a project and
//!   sends N `POST /api/chat/agents/{id}` streams through it.
//!
//! The summary prints, for the relay and confab, TTFT and inter-token gaps added to the fake's,
//! and **confab minus relay**: what confab costs beyond any relay, the number the aims are
//! about. Then errors, peak live streams, each server's RSS per live stream and CPU per stream,
//! and the latency of ordinary API calls made while confab's streams run. Exit status 1 when any
//! stream failed, 2 when the run could not be set up. `--phase fake,confab` etc. runs fewer.
//!
//! The load generator, the fake, the relay and confab (with its PostgreSQL) share the machine's
//! cores: at 1,000 streams × 50 tokens/s the generator and the fake alone use about one core,
//! mostly kernel time for the loopback TCP writes and reads of every token. Compare runs made on
//! an idle machine, and read "loadgen process CPU" and the servers' CPU before the latencies.
//!
//! `cargo test --all-targets` runs this target too, without `--bench`: then it only checks
//! quickly that the harness works against the fake and the relay (a burst of 20 short streams).
//!
//! Everything is bounded: every wait has a deadline and the whole run stops by itself; Ctrl-C
//! or SIGTERM stops confab (and its PostgreSQL) and the relay before exiting.

// Test and benchmark tooling: a failed unwrap is a failed run, with its line.
#![allow(clippy::unwrap_used)]

mod cli;
mod client;
mod confab;
mod history;
mod relay;
mod report;
mod sampling;

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confab_fake_llm::{FakeLlm, Script};

use crate::cli::{Args, Phase, Start};
use crate::client::{Target, http_client, run_streams};
use crate::confab::{confab_bin, confab_phase};
use crate::relay::relay_phase;
use crate::report::{Stats, summary};
use crate::sampling::{CpuTimes, listen_overflows};

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets too, without
    // it (and possibly with test filters): then only check quickly that the harness works. The
    // relay phase starts this binary with `--serve-relay`.
    let args = if std::env::args().any(|arg| arg == "--bench" || arg == "--serve-relay") {
        Args::parse()
    } else {
        println!(
            "loadgen: not run by `cargo bench` (no --bench): a quick check against the fake and \
             the relay"
        );
        Args::parse_from([
            "loadgen",
            "--phase",
            "fake,relay",
            "--streams",
            "20",
            "--tokens",
            "10",
            "--token-delay-ms",
            "1",
            "--first-token-delay-ms",
            "0",
        ])
    };
    if let Some(addr) = &args.serve_relay {
        let upstream = args
            .upstream
            .as_deref()
            .unwrap_or("http://127.0.0.1:8090/v1");
        return match relay::serve(addr, upstream, args.exit_on_stdin_eof) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("relay: {error}");
                ExitCode::from(2)
            }
        };
    }
    if args.streams == 0 || args.tokens == 0 || args.users == 0 {
        eprintln!("--streams, --tokens and --users must be at least 1");
        return ExitCode::from(2);
    }
    let threads = args
        .client_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
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
    raise_fd_limit(args.streams)?;
    let tokens: Vec<String> = (0..args.tokens).map(|i| format!("t{i} ")).collect();
    let expected: String = tokens.concat();
    if args.front.is_some() && args.fake_port == 0 {
        return Err("--front needs --fake-port: the front must know where the fake listens".into());
    }
    let fake = FakeLlm::start_at(&format!("127.0.0.1:{}", args.fake_port))?;
    fake.set_default(
        Script::tokens(tokens)
            .token_delay(Duration::from_millis(args.token_delay_ms))
            .first_token_delay(Duration::from_millis(args.first_token_delay_ms)),
    );
    let scripted = Duration::from_millis(
        args.first_token_delay_ms + args.token_delay_ms * (args.tokens as u64 - 1),
    );
    let ramp_ms = match args.start {
        Start::Burst => 0,
        Start::Ramp => args.ramp_ms,
    };
    let phase_timeout = Duration::from_secs(
        args.phase_timeout_secs
            .unwrap_or(3 * (ramp_ms / 1000 + scripted.as_secs() + 1) + 30),
    );
    println!(
        "loadgen: {} streams × {} tokens, {} ms apart (first after {} ms): each stream ≈ {:.2} s; \
         {}",
        args.streams,
        args.tokens,
        args.token_delay_ms,
        args.first_token_delay_ms,
        scripted.as_secs_f64(),
        match args.start {
            Start::Burst => "all started in the same instant (burst)".to_owned(),
            Start::Ramp => format!("starts spread over {ramp_ms} ms (ramp)"),
        }
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "loadgen: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
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
    if Duration::from_millis(ramp_ms) >= scripted {
        println!(
            "loadgen: warning: the ramp is not shorter than one stream, so fewer than N streams \
             are ever live at once (see \"peak live\")"
        );
    }

    // A client per phase: dropping it closes its idle connections, so two phases never hold
    // N sockets each at the same time.
    let mut fake_stats = None;
    if args.runs(Phase::Fake) {
        println!("\n== the fake upstream alone ({})", fake.base_url());
        let target = Target::Fake {
            url: format!("{}/responses", fake.base_url()),
        };
        let cpu_before = CpuTimes::of_self();
        let overflows_before = listen_overflows();
        let client = http_client(args.streams)?;
        let results = run_streams(
            &client,
            &target,
            &args,
            &expected,
            phase_timeout,
            None,
            None,
        )
        .await;
        drop(client);
        let mut stats = Stats::from_results(results);
        stats.note_asked(&fake);
        stats.print_short("fake");
        print_own_cpu(&cpu_before, &stats);
        print_listen_overflows(overflows_before);
        fake_stats = Some(stats);
    }

    let mut relay_report = None;
    if args.runs(Phase::Relay) {
        println!("\n== through the bare relay (actix-web + reqwest, no auth, no database)");
        let cpu_before = CpuTimes::of_self();
        let overflows_before = listen_overflows();
        let client = http_client(args.streams)?;
        let report = relay_phase(&client, &fake, &args, &expected, phase_timeout).await?;
        drop(client);
        print_own_cpu(&cpu_before, &report.stats);
        print_listen_overflows(overflows_before);
        relay_report = Some(report);
    }

    let mut confab_report = None;
    if args.runs(Phase::Confab) {
        println!("\n== through confab ({})", confab_bin(&args).display());
        let cpu_before = CpuTimes::of_self();
        let overflows_before = listen_overflows();
        let client = http_client(args.streams)?;
        let report = confab_phase(&client, &fake, &args, &expected, phase_timeout).await?;
        drop(client);
        print_own_cpu(&cpu_before, &report.stats);
        print_listen_overflows(overflows_before);
        confab_report = Some(report);
    }

    let streamed = [Phase::Fake, Phase::Relay, Phase::Confab]
        .into_iter()
        .any(|phase| args.runs(phase));
    let mut ok = !streamed
        || summary(
            &args,
            fake_stats.as_ref(),
            relay_report.as_ref(),
            confab_report.as_ref(),
        );

    if args.runs(Phase::History) {
        println!(
            "\n== a {}-message conversation through confab ({})",
            history::MESSAGES,
            confab_bin(&args).display()
        );
        let report = history::history_phase(&fake, &args).await?;
        // The aim is reported, not enforced: only errors fail the run.
        history::summary(&report, args.json);
        ok &= report.readings.iter().all(|r| r.errors == 0);
    }
    Ok(ok)
}

/// This process's CPU over a phase: the client and the fake, the same work in every phase, so
/// a phase where it is much higher had a busier machine.
fn print_own_cpu(before: &CpuTimes, stats: &Stats) {
    let cpu = CpuTimes::of_self().since(before);
    println!(
        "  loadgen process CPU (client + fake), set-up included: {:.2} s; the streams took \
         {:.2} s wall",
        cpu.total_secs(),
        stats.wall.as_secs_f64()
    );
}

/// Connections dropped for a full accept queue during a phase (by any listener on the machine:
/// the fake's, the relay's, confab's, or another program's).
fn print_listen_overflows(before: Option<u64>) {
    if let (Some(before), Some(after)) = (before, listen_overflows()) {
        println!(
            "  accept queue overflows (TcpExtListenOverflows) during the phase: {}",
            after.saturating_sub(before)
        );
    }
}

/// N streams need about 2N descriptors in this process (the client's sockets and the fake's
/// server sockets) and 2N in the relay and confab, which start with this process's limit
/// (confab raises its own as well). Raise the soft limit to the hard one, then check.
fn raise_fd_limit(streams: usize) -> Result<(), Error> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let need = 2 * streams as u64 + 256;
    if soft < need {
        return Err(format!(
            "the open-files limit is {soft} (hard {hard}), {streams} streams need about {need}: \
             raise the hard limit first (`ulimit -Hn {need}` as root, or fewer streams)"
        )
        .into());
    }
    Ok(())
}
