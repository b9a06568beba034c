//! Statistics of a phase's streams and the final report.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use confab_fake_llm::FakeLlm;

use serde_json::json;

use crate::cli::{Args, Start};
use crate::client::{PhaseResults, micros};
use crate::confab::ServerReport;
use crate::sampling::Footprint;

pub struct Stats {
    pub streams: usize,
    pub errors: usize,
    pub error_kinds: Vec<(String, usize)>,
    /// Sorted, µs.
    pub ttft: Vec<u32>,
    /// Request sent → response headers, sorted, µs.
    pub headers: Vec<u32>,
    /// confab's own ttft_ms (task start → first delta), sorted, µs.
    pub server_ttft: Vec<u32>,
    pub gaps: Vec<u32>,
    /// Where in its stream each stream's longest gap came (after which token), sorted.
    pub longest_gap_after: Vec<usize>,
    pub peak_live: usize,
    /// Burst start: release → request sent, sorted, µs.
    pub send_lag: Vec<u32>,
    /// Burst start: connections held open at once before the burst.
    pub preconnected: Option<usize>,
    pub wall: Duration,
    pub probes: Vec<(String, Vec<u32>)>,
    pub started: Instant,
    /// The release → the fake upstream had the stream's request, sorted, µs: how late the
    /// provider was asked (for confab: the request path before the answer's task, alone).
    pub asked: Vec<u32>,
}

impl Stats {
    pub fn from_results(results: PhaseResults) -> Stats {
        let mut ttft = Vec::new();
        let mut headers = Vec::new();
        let mut server_ttft = Vec::new();
        let mut gaps = Vec::new();
        let mut longest_gap_after = Vec::new();
        let mut send_lag = Vec::new();
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
            if let Some((at, _)) = stream.gaps.iter().enumerate().max_by_key(|(_, gap)| **gap) {
                longest_gap_after.push(at + 1);
            }
            if let Some(lag) = stream.send_lag {
                send_lag.push(micros(lag));
            }
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
        longest_gap_after.sort_unstable();
        send_lag.sort_unstable();
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
            longest_gap_after,
            peak_live: results.peak_live,
            send_lag,
            preconnected: results.preconnected,
            wall: results.wall,
            probes,
            started: results.started,
            asked: Vec::new(),
        }
    }

    /// Reads from the fake when it received each of this phase's provider requests.
    pub fn note_asked(&mut self, fake: &FakeLlm) {
        self.asked = fake
            .requests()
            .iter()
            .filter(|request| request.path.ends_with("/responses"))
            .filter_map(|request| request.received_at.checked_duration_since(self.started))
            .map(micros)
            .collect();
        self.asked.sort_unstable();
    }

    pub fn print_short(&self, name: &str) {
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
        if let Some(held) = self.preconnected {
            println!(
                "    burst: {held} of {} connections open before it; requests sent within {} \
                 (p50 {}) of the release",
                self.streams,
                ms(percentile(&self.send_lag, 100.0)),
                ms(percentile(&self.send_lag, 50.0)),
            );
        }
        if !self.longest_gap_after.is_empty() {
            let at = |p: f64| {
                let n = self.longest_gap_after.len();
                self.longest_gap_after[((p / 100.0 * n as f64) as usize).min(n - 1)]
            };
            println!(
                "    each stream's longest gap came after token p10 #{} p50 #{} p90 #{}",
                at(10.0),
                at(50.0),
                at(90.0),
            );
        }
        if !self.asked.is_empty() {
            println!(
                "    the upstream had {} requests by p1 {} p10 {} p50 {} p99 {} after the release",
                self.asked.len(),
                ms(percentile(&self.asked, 1.0)),
                ms(percentile(&self.asked, 10.0)),
                ms(percentile(&self.asked, 50.0)),
                ms(percentile(&self.asked, 99.0)),
            );
        }
        for (kind, count) in self.error_kinds.iter().take(8) {
            println!("    {count} × {kind}");
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn ms(value: Option<u32>) -> String {
    match value {
        Some(us) => format!("{:.2} ms", f64::from(us) / 1000.0),
        None => "-".into(),
    }
}

pub fn signed_ms(value: Option<i64>) -> String {
    match value {
        Some(us) => format!("{:+.2} ms", us as f64 / 1000.0),
        None => "-".into(),
    }
}

/// A field of a phase's statistics, empty when the phase did not run.
fn of(stats: Option<&Stats>, field: fn(&Stats) -> &[u32]) -> &[u32] {
    stats.map_or(&[][..], field)
}

/// One value of `x` minus the same of `base`, when both exist.
fn minus(x: Option<u32>, base: Option<u32>) -> Option<i64> {
    Some(i64::from(x?) - i64::from(base?))
}

/// The side-by-side table, the servers' costs and the aims; true when no stream failed.
pub fn summary(
    args: &Args,
    fake: Option<&Stats>,
    relay: Option<&ServerReport>,
    confab: Option<&ServerReport>,
) -> bool {
    let mut out = String::new();
    let start = match args.start {
        Start::Burst => "all started in the same instant".to_owned(),
        Start::Ramp => format!("starts spread over {} ms", args.ramp_ms),
    };
    let _ = writeln!(
        out,
        "\n== summary: {} streams × {} tokens every {} ms (first after {} ms), {start}",
        args.streams, args.tokens, args.token_delay_ms, args.first_token_delay_ms
    );
    let _ = writeln!(
        out,
        "{:<22}{:>12}{:>12}{:>12}{:>14}{:>14}{:>16}",
        "", "fake alone", "bare relay", "confab", "relay added", "confab added", "confab − relay"
    );
    let relay_stats = relay.map(|r| &r.stats);
    let confab_stats = confab.map(|c| &c.stats);
    let mut row = |name: &str, field: fn(&Stats) -> &[u32], p: f64| {
        let f = percentile(of(fake, field), p);
        let r = percentile(of(relay_stats, field), p);
        let c = percentile(of(confab_stats, field), p);
        let _ = writeln!(
            out,
            "{name:<22}{:>12}{:>12}{:>12}{:>14}{:>14}{:>16}",
            ms(f),
            ms(r),
            ms(c),
            signed_ms(minus(r, f)),
            signed_ms(minus(c, f)),
            signed_ms(minus(c, r)),
        );
    };
    row("TTFT p50", |s| &s.ttft, 50.0);
    row("TTFT p90", |s| &s.ttft, 90.0);
    row("TTFT p99", |s| &s.ttft, 99.0);
    row("TTFT max", |s| &s.ttft, 100.0);
    row("response headers p50", |s| &s.headers, 50.0);
    row("response headers p99", |s| &s.headers, 99.0);
    row("inter-token p50", |s| &s.gaps, 50.0);
    row("inter-token p99", |s| &s.gaps, 99.0);
    row("inter-token p99.9", |s| &s.gaps, 99.9);
    row("inter-token max", |s| &s.gaps, 100.0);
    let mut line = |name: &str, value: &dyn Fn(&Stats) -> String| {
        let cell = |stats: Option<&Stats>| stats.map_or_else(|| "-".into(), value);
        let _ = writeln!(
            out,
            "{name:<22}{:>12}{:>12}{:>12}",
            cell(fake),
            cell(relay_stats),
            cell(confab_stats)
        );
    };
    if args.start == Start::Burst {
        // How simultaneous the burst was on the client's threads (release → request sent).
        line("burst send lag max", &|s| {
            ms(percentile(&s.send_lag, 100.0))
        });
    }
    line("errors", &|s| s.errors.to_string());
    line("peak live streams", &|s| s.peak_live.to_string());
    line("wall time", &|s| format!("{:.2} s", s.wall.as_secs_f64()));
    for (name, report) in [("bare relay", relay), ("confab", confab)] {
        let Some(report) = report else { continue };
        let wall = report.stats.wall.as_secs_f64();
        let _ = writeln!(
            out,
            "{name}: RSS idle {:.1} MiB, peak {:.1} MiB (VmHWM {:.1} MiB) → {:.1} KiB per live stream \
             ({} live at peak), threads at peak {}; CPU {:.2} s over {:.2} s ({:.0}% of a core) \
             → {:.2} ms per {}-token stream",
            report.rss_idle_kb as f64 / 1024.0,
            report.rss_peak_kb as f64 / 1024.0,
            report.hwm_kb as f64 / 1024.0,
            report.kb_per_live_stream(),
            report.stats.peak_live,
            report.threads_peak,
            report.cpu.total_secs(),
            wall,
            100.0 * report.cpu.total_secs() / wall.max(1e-9),
            report.cpu_ms_per_stream(),
            args.tokens,
        );
        if let (Some(cpu), Some(per_stream)) =
            (report.database_cpu, report.database_cpu_ms_per_stream())
        {
            let _ = writeln!(
                out,
                "{name}'s PostgreSQL: CPU {:.2} s ({:.0}% of a core) → {per_stream:.2} ms per stream",
                cpu.total_secs(),
                100.0 * cpu.total_secs() / wall.max(1e-9),
            );
        }
        let with_database = if name == "confab" {
            "confab + PostgreSQL"
        } else {
            name
        };
        let short = if name == "confab" { "confab" } else { "relay" };
        if let Some(start) = report.footprint_start {
            let _ = writeln!(
                out,
                "{with_database} PSS at start: {}",
                start.describe(short)
            );
        }
        let _ = writeln!(
            out,
            "{with_database} PSS idle (after warm-up) {}, peak {:.1} MiB → {:.1} KiB per live stream",
            report.footprint_idle.describe(short),
            report.footprint_peak_kb as f64 / 1024.0,
            report.footprint_kb_per_live_stream(),
        );
    }
    if let Some(report) = confab {
        let server = &report.stats.server_ttft;
        let _ = writeln!(
            out,
            "confab's own ttft_ms (generation task start → first delta, whole ms): p50 {} p99 {} \
             max {}",
            ms(percentile(server, 50.0)),
            ms(percentile(server, 99.0)),
            ms(percentile(server, 100.0)),
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
    // The aims of the performance issue. What confab adds is measured against the bare relay,
    // the floor any relay has on this machine, so they are checked only when both ran.
    if let (Some(relay), Some(confab)) = (relay, confab) {
        let beyond_relay = |p| {
            minus(
                percentile(&confab.stats.ttft, p),
                percentile(&relay.stats.ttft, p),
            )
        };
        let worst_floor_gap =
            percentile(&relay.stats.gaps, 100.0).max(fake.and_then(|f| percentile(&f.gaps, 100.0)));
        let confab_gap = percentile(&confab.stats.gaps, 100.0);
        let no_errors = fake.is_none_or(|f| f.errors == 0)
            && relay.stats.errors == 0
            && confab.stats.errors == 0;
        let checks = [
            (
                format!(
                    "confab − relay TTFT p50 ≤ 2 ms ({})",
                    signed_ms(beyond_relay(50.0))
                ),
                beyond_relay(50.0).is_some_and(|v| v <= 2_000),
            ),
            (
                format!(
                    "confab − relay TTFT p99 ≤ 15 ms ({})",
                    signed_ms(beyond_relay(99.0))
                ),
                beyond_relay(99.0).is_some_and(|v| v <= 15_000),
            ),
            (
                format!(
                    "confab inter-token max ≤ 1.2 × the worse of {} ({} vs {})",
                    if fake.is_some() {
                        "fake and relay"
                    } else {
                        "relay"
                    },
                    ms(confab_gap),
                    ms(worst_floor_gap)
                ),
                // 1.2 × as 6/5, in whole units.
                match (confab_gap, worst_floor_gap) {
                    (Some(gap), Some(floor)) => u64::from(gap) * 5 <= u64::from(floor) * 6,
                    _ => false,
                },
            ),
            (
                format!(
                    "confab + PostgreSQL ≤ 40 KiB PSS per live stream ({:.1} KiB)",
                    confab.footprint_kb_per_live_stream()
                ),
                confab.footprint_kb_per_live_stream() <= 40.0,
            ),
            (
                format!(
                    "confab + PostgreSQL idle ≤ 50 MiB PSS ({:.1} MiB after warm-up)",
                    confab.footprint_idle.total_kb() as f64 / 1024.0
                ),
                confab.footprint_idle.total_kb() <= 50 * 1024,
            ),
            (
                format!(
                    "confab CPU ≤ 0.5 ms per 50-token stream ({:.2} ms)",
                    confab.cpu_ms_per_stream()
                ),
                confab.cpu_ms_per_stream() <= 0.5,
            ),
            (
                format!(
                    "zero errors with {} streams live at once (the target: 5,000)",
                    confab.stats.peak_live
                ),
                no_errors,
            ),
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
                   "headers": dist(&stats.headers), "inter_token": dist(&stats.gaps),
                   "send_lag": dist(&stats.send_lag), "preconnected": stats.preconnected})
        };
        let footprint = |f: &Footprint| {
            json!({"server": f.server_kb, "postgresql": f.database_kb,
                   "postgresql_processes": f.database_processes, "total": f.total_kb()})
        };
        let server = |report: &ServerReport| {
            json!({
                "phase": phase(&report.stats),
                "rss_idle_kb": report.rss_idle_kb, "rss_peak_kb": report.rss_peak_kb,
                "vm_hwm_kb": report.hwm_kb, "kb_per_live_stream": report.kb_per_live_stream(),
                "threads_peak": report.threads_peak, "cpu_s": report.cpu.total_secs(),
                "cpu_ms_per_stream": report.cpu_ms_per_stream(),
                "database_cpu_ms_per_stream": report.database_cpu_ms_per_stream(),
                "pss_start_kb": report.footprint_start.map(|f| footprint(&f)),
                "pss_idle_kb": footprint(&report.footprint_idle),
                "pss_peak_kb": report.footprint_peak_kb,
                "pss_kb_per_live_stream": report.footprint_kb_per_live_stream(),
                "probes": report.stats.probes.iter().map(|(name, values)| json!({"name": name, "latency": dist(values)})).collect::<Vec<_>>(),
            })
        };
        let ttft = |stats: Option<&Stats>, p| percentile(of(stats, |s| &s.ttft), p);
        let summary = json!({
            "streams": args.streams, "tokens": args.tokens, "token_delay_ms": args.token_delay_ms,
            "message_bytes": args.message_bytes,
            "first_token_delay_ms": args.first_token_delay_ms,
            "start": format!("{:?}", args.start).to_lowercase(), "ramp_ms": args.ramp_ms,
            "fake": fake.map(phase),
            "relay": relay.map(server),
            "confab": confab.map(server),
            "relay_added_ttft_p50_us": minus(ttft(relay_stats, 50.0), ttft(fake, 50.0)),
            "relay_added_ttft_p99_us": minus(ttft(relay_stats, 99.0), ttft(fake, 99.0)),
            "added_ttft_p50_us": minus(ttft(confab_stats, 50.0), ttft(fake, 50.0)),
            "added_ttft_p99_us": minus(ttft(confab_stats, 99.0), ttft(fake, 99.0)),
            "confab_minus_relay_ttft_p50_us": minus(ttft(confab_stats, 50.0), ttft(relay_stats, 50.0)),
            "confab_minus_relay_ttft_p99_us": minus(ttft(confab_stats, 99.0), ttft(relay_stats, 99.0)),
        });
        println!("loadgen-json: {summary}");
    }
    fake.is_none_or(|s| s.errors == 0)
        && relay.is_none_or(|r| r.stats.errors == 0)
        && confab.is_none_or(|c| c.stats.errors == 0)
}
