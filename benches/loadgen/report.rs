//! Statistics of a phase's streams and the final report.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::cli::Args;
use crate::client::{PhaseResults, micros};
use crate::confab::ConfabReport;

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
    pub peak_live: usize,
    pub wall: Duration,
    pub probes: Vec<(String, Vec<u32>)>,
}

impl Stats {
    pub fn from_results(results: PhaseResults) -> Stats {
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

pub fn added(confab: &[u32], fake: &[u32], p: f64) -> Option<i64> {
    Some(i64::from(percentile(confab, p)?) - i64::from(percentile(fake, p)?))
}

pub fn summary(args: &Args, fake: Option<&Stats>, confab: Option<&ConfabReport>) -> bool {
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
    let fake_ttft = fake.map_or(&[][..], |s| &s.ttft[..]);
    let confab_ttft = confab.map_or(&[][..], |c| &c.stats.ttft[..]);
    let fake_gaps = fake.map_or(&[][..], |s| &s.gaps[..]);
    let confab_gaps = confab.map_or(&[][..], |c| &c.stats.gaps[..]);
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
    let fake_headers = fake.map_or(&[][..], |s| &s.headers[..]);
    let confab_headers = confab.map_or(&[][..], |c| &c.stats.headers[..]);
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
