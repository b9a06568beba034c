//! What /proc tells about a process: RSS and threads (sampled on a thread of its own), CPU time,
//! and the PSS of a server together with its PostgreSQL's processes.

use std::fs;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Default)]
pub struct Sample {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
    /// Read every fifth sample (it walks every mapping of every process in the group).
    pub footprint: Option<Footprint>,
}

/// A server process and, when it runs one, its PostgreSQL's postmaster (the embedded
/// PostgreSQL is not confab's child: pg_ctl detaches it).
#[derive(Clone, Copy)]
pub struct ServerProcesses {
    pub pid: u32,
    pub postmaster: Option<u32>,
}

/// What a server and the database processes it brings cost the machine, as PSS (proportional
/// set size, `/proc/<pid>/smaps_rollup`): each process's own pages plus its share of the pages it
/// shares with others (PostgreSQL's shared buffers, libraries), so the PSS of a group adds up to
/// the group's memory. RSS would count the shared buffers once per PostgreSQL process.
#[derive(Clone, Copy, Default)]
pub struct Footprint {
    pub server_kb: u64,
    pub database_kb: u64,
    /// The postmaster and its children (background processes and one backend per connection).
    pub database_processes: u64,
}

impl Footprint {
    /// The server and, when it has one, its PostgreSQL: the postmaster and its children.
    pub fn of(server: ServerProcesses) -> Footprint {
        let mut footprint = Footprint {
            server_kb: pss_kb(server.pid).unwrap_or(0),
            ..Footprint::default()
        };
        if let Some(postmaster) = server.postmaster {
            for pid in std::iter::once(postmaster).chain(children_of(postmaster)) {
                if let Some(kb) = pss_kb(pid) {
                    footprint.database_kb += kb;
                    footprint.database_processes += 1;
                }
            }
        }
        footprint
    }

    pub fn total_kb(&self) -> u64 {
        self.server_kb + self.database_kb
    }

    /// "41.2 MiB (confab 30.1 + PostgreSQL 11.1 in 7 processes)".
    pub fn describe(&self, server: &str) -> String {
        let mb = |kb: u64| kb as f64 / 1024.0;
        if self.database_processes == 0 {
            return format!("{:.1} MiB", mb(self.server_kb));
        }
        format!(
            "{:.1} MiB ({server} {:.1} + PostgreSQL {:.1} in {} processes)",
            mb(self.total_kb()),
            mb(self.server_kb),
            mb(self.database_kb),
            self.database_processes
        )
    }
}

/// The `Pss:` line of `/proc/<pid>/smaps_rollup`, in kB.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // The fields after the parenthesised command name: state, then the parent's pid.
            let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            rest.split_whitespace().nth(1) == Some(&*pid.to_string())
        })
        .collect()
}

/// The embedded PostgreSQL's postmaster for `data_dir` (the first line of `postmaster.pid`).
pub fn postmaster_of(data_dir: &std::path::Path) -> Option<u32> {
    fs::read_to_string(data_dir.join("pg").join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

pub fn read_status(pid: u32) -> Option<Sample> {
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

/// Reads `/proc/<pid>/status` every 50 ms on its own thread, and the footprint of the server
/// with its PostgreSQL every 250 ms.
pub struct RssSampler {
    pub stop: Arc<AtomicBool>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(server: ServerProcesses) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let samples = Arc::clone(&samples);
            std::thread::spawn(move || {
                // Bounded even if nobody stops it: at most an hour.
                let until = Instant::now() + Duration::from_secs(3600);
                let mut tick = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    match read_status(server.pid) {
                        Some(mut sample) => {
                            if tick.is_multiple_of(5) {
                                sample.footprint = Some(Footprint::of(server));
                            }
                            samples.lock().unwrap().push(sample);
                        }
                        None => break,
                    }
                    tick += 1;
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

    pub fn latest(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().copied()
    }

    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// User + system CPU time of a process, in clock ticks.
#[derive(Clone, Copy, Default)]
pub struct CpuTimes {
    pub ticks: u64,
}

impl CpuTimes {
    pub fn of_self() -> CpuTimes {
        CpuTimes::read("/proc/self/stat")
    }

    pub fn of_pid(pid: u32) -> CpuTimes {
        CpuTimes::read(&format!("/proc/{pid}/stat"))
    }

    /// A PostgreSQL's CPU time: its postmaster's own and every live child's, and that of the
    /// children that ended (the postmaster waited for them, so their time is in its own
    /// `cutime`/`cstime`). A child reaped while its siblings are read would be counted in neither
    /// (autovacuum workers come and go), so they are read again when the postmaster reaped one
    /// meanwhile. Grandchildren are not counted: this PostgreSQL runs no archiver or parallel
    /// workers that would have them.
    pub fn of_database(postmaster: u32) -> CpuTimes {
        let stat = format!("/proc/{postmaster}/stat");
        let reaped = || CpuTimes::read_fields(&stat, &[13, 14]).ticks;
        let mut before = reaped();
        let mut ticks = 0;
        for _ in 0..5 {
            let live = std::iter::once(postmaster)
                .chain(children_of(postmaster))
                .map(|pid| CpuTimes::of_pid(pid).ticks)
                .sum::<u64>();
            let after = reaped();
            ticks = after + live;
            if after == before {
                break;
            }
            before = after;
        }
        CpuTimes { ticks }
    }

    pub fn read(path: &str) -> CpuTimes {
        CpuTimes::read_fields(path, &[11, 12])
    }

    /// The sum of some of the fields after the command name (utime and stime are the 14th and
    /// 15th of `stat`, 11 and 12 here; the waited-for children's follow them).
    fn read_fields(path: &str, which: &[usize]) -> CpuTimes {
        let text = fs::read_to_string(path).unwrap_or_default();
        let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        CpuTimes {
            ticks: which.iter().map(|&i| field(i)).sum(),
        }
    }

    pub fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            ticks: self.ticks.saturating_sub(before.ticks),
        }
    }

    pub fn total_secs(&self) -> f64 {
        // USER_HZ is 100 on every Linux this runs on.
        self.ticks as f64 / 100.0
    }
}

/// Connections the kernel dropped because a listener's accept queue was full (`nstat`'s
/// `TcpExtListenOverflows`), counted for the whole network namespace since boot. A dropped
/// connection costs its client a SYN sent again a second later.
pub fn listen_overflows() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    // Pairs of lines: "TcpExt: Name1 Name2 …" then "TcpExt: value1 value2 …".
    let mut lines = text.lines().filter(|line| line.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
}
