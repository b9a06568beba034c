//! What /proc tells about a process: RSS and threads (sampled on a thread of its own) and CPU time.

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

/// Reads `/proc/<pid>/status` every 50 ms on its own thread.
pub struct RssSampler {
    pub stop: Arc<AtomicBool>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
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

    pub fn read(path: &str) -> CpuTimes {
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
