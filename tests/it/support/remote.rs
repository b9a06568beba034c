//! Driving a confab that runs on its own (a process, or `Application` on its embedded
//! PostgreSQL) through its API alone, and reaching into its PostgreSQL processes.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::app::PASSWORD;

/// An account with a project at `base`: (token, project id, default agent id).
pub async fn account_at(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> (String, String, String) {
    let r = client
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "register {email}");
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let project: Value = client
        .post(format!("{base}/api/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "Remote"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = project["id"].as_str().unwrap().to_string();
    let agents: Value = client
        .get(format!("{base}/api/projects/{project}/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = agents[0]["id"].as_str().unwrap().to_string();
    (token, project, agent)
}

/// A PostgreSQL cluster of its own under `dir`, started (or started again) off the async
/// workers, so a test can stop, crash or freeze it without disturbing other tests.
pub async fn own_cluster(dir: &Path) -> confab::db::embedded::PgServer {
    use confab::db::embedded::{PgOptions, PgServer};
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        PgServer::start(
            &dir,
            &PgOptions {
                fast_unsafe: true,
                ..PgOptions::default()
            },
        )
        .expect("a cluster of its own")
    })
    .await
    .unwrap()
}

/// A client whose requests come from 127.0.0.`last`, another address on this machine.
pub fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            127, 0, 0, last,
        )))
        .build()
        .unwrap()
}

/// The postmaster of the cluster in `pgdata`, from its lock file.
pub fn postmaster(pgdata: &Path) -> Option<nix::unistd::Pid> {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .map(nix::unistd::Pid::from_raw)
}

/// Every process of the cluster in `pgdata`: the postmaster and its children.
pub fn cluster(pgdata: &Path) -> Vec<nix::unistd::Pid> {
    let Some(postmaster) = postmaster(pgdata) else {
        return Vec::new();
    };
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster.as_raw()) {
            pids.extend(
                entry
                    .file_name()
                    .to_str()
                    .and_then(|p| p.parse::<i32>().ok())
                    .map(nix::unistd::Pid::from_raw),
            );
        }
    }
    pids
}

/// Freezes a cluster the way SIGSTOP does, and thaws it when dropped (even if a test fails).
pub struct Frozen(Vec<nix::unistd::Pid>);

impl Frozen {
    pub fn freeze(pgdata: &Path) -> Frozen {
        let pids = cluster(pgdata);
        for pid in &pids {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGSTOP);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// `kill -9` of the cluster's postmaster, as a crash or the OOM killer does.
pub fn crash(pgdata: &Path) {
    if let Some(pid) = postmaster(pgdata) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}
