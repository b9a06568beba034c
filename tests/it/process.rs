//! The real binary: SIGTERM lets a live answer use the grace period, then saves what it has,
//! and the process exits cleanly.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::support::app::TestDb;
use crate::support::fake_llm::{FakeLlm, Script};
use crate::support::remote::account_at;
use crate::support::sse::Events;

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    content: String,
}

#[tokio::test]
async fn sigterm_saves_the_unfinished_answer_and_exits() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"slowly ".repeat(400)).token_delay(Duration::from_millis(25)));
    let db = tokio::task::spawn_blocking(TestDb::create).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (child, base) = start_confab(
        &db,
        data_dir.path(),
        &[
            ("OPENAI_API_KEY", "sk-process-test"),
            ("OPENAI_BASE_URL", &fake.base_url()),
        ],
        None,
    )
    .await;
    let client = reqwest::Client::new();
    let (token, _, agent) = account_at(&client, &base, "p@example.com").await;
    let response = client
        .post(format!("{base}/api/chat/agents/{agent}"))
        .bearer_auth(&token)
        .json(&json!({"message": "take your time"}))
        .send()
        .await
        .unwrap();
    let mut events = Events::of(response);
    let first: Value = serde_json::from_str(&events.next().await.unwrap().data).unwrap();
    let message_id = first["message_id"].as_str().unwrap().to_string();

    terminate(&child);
    // The reader still gets the end of the answer: failed, because the grace period (1 s) is
    // shorter than the answer (10 s).
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "failed");
    let status = exited(child).await;
    assert!(
        status.success(),
        "confab exits cleanly after SIGTERM: {status:?}"
    );

    let url = db.url.clone();
    let row = tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        diesel::sql_query(format!(
            "SELECT status, error, content FROM messages WHERE id = '{message_id}'"
        ))
        .get_result::<Row>(&mut conn)
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.error.unwrap().contains("shut down"));
    assert!(
        row.content.starts_with("slowly slowly"),
        "the partial text was saved: {:?}",
        &row.content[..row.content.len().min(40)]
    );
    assert!(row.content.len() < "slowly ".repeat(400).len());
}

/// Asks confab to stop, as a service manager does.
fn terminate(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Once confab has exited: how.
async fn exited(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
}

/// The confab binary serving on a free port with `db`, the test's settings and `env`, once it
/// answers `/health`; (the process, its base URL). Its output goes to `log`, or nowhere.
async fn start_confab(
    db: &TestDb,
    data_dir: &Path,
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> (Child, String) {
    start_confab_with(
        Command::new(env!("CARGO_BIN_EXE_confab")),
        db,
        data_dir,
        env,
        log,
    )
    .await
}

/// [`start_confab`], started by `command` (confab itself, or a shell that execs it).
async fn start_confab_with(
    mut command: Command,
    db: &TestDb,
    data_dir: &Path,
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> (Child, String) {
    let output = || match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = command
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "serve",
        ])
        .env("DATABASE_URL", &db.url)
        .env("CONFAB_AUTH__BCRYPT_COST", "4")
        .env("CONFAB_SERVER__SHUTDOWN_GRACE_SECS", "1")
        .env("CONFAB_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Readiness: poll /health until the server is up (start-up, not synchronization of the test).
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/health"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "confab did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

#[tokio::test]
async fn api_keys_never_reach_the_log_and_it_names_the_real_client() {
    let db = tokio::task::spawn_blocking(TestDb::create).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("confab.log");
    let (child, base) = start_confab(
        &db,
        data_dir.path(),
        &[("CONFAB_LOG", "debug"), ("NO_COLOR", "1")],
        Some(&log),
    )
    .await;
    let client = reqwest::Client::new();
    let (token, _, _) = account_at(&client, &base, "logs@example.com").await;
    let created: Value = client
        .post(format!("{base}/api/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "logged?", "scope": "read_only"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap();
    // Used, refused (read-only), revoked, refused again: every path a key takes.
    let me = |key: String| {
        client
            .get(format!("{base}/api/users/me"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(me(key.clone()).await.unwrap().status(), 200);
    let refused = client
        .post(format!("{base}/api/projects"))
        .bearer_auth(&key)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let revoked = client
        .delete(format!("{base}/api/keys/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(me(key.clone()).await.unwrap().status(), 401);
    // A client naming another address (no proxy is trusted) is logged as what it is.
    let spoofed = client
        .get(format!("{base}/api/users/me"))
        .header("X-Forwarded-For", "198.51.100.77")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 401);

    terminate(&child);
    exited(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("/api/keys") && text.contains("/api/users/me"),
        "the requests were logged: {} lines",
        text.lines().count()
    );
    assert!(
        text.contains("http.client_ip=127.0.0.1") && !text.contains("198.51.100.77"),
        "the log names the real client, not the one it claimed to be: {}",
        text.lines()
            .filter(|l| l.contains("client_ip") || l.contains("198.51"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let secret = &key["cfk_".len()..];
    assert!(
        !text.contains(&secret[..16]),
        "the log holds the key: {}",
        text.lines()
            .find(|line| line.contains(&secret[..16]))
            .unwrap_or_default()
    );
}

/// Started with the usual soft limit of open files (here 256), confab raises it to the hard
/// limit and says so; more idle connections than the old limit had room for do not lock
/// `/health` out. Its listener's accept queue is as deep as the system allows, not std's 128.
#[tokio::test]
async fn a_low_open_files_limit_is_raised_and_the_accept_queue_is_deep() {
    const SOFT_LIMIT: usize = 256;
    let db = tokio::task::spawn_blocking(TestDb::create).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("confab.log");
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        &format!("ulimit -Sn {SOFT_LIMIT} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_confab"),
    ]);
    let (child, base) = start_confab_with(
        shell,
        &db,
        data_dir.path(),
        &[("CONFAB_LOG", "info"), ("NO_COLOR", "1")],
        Some(&log),
    )
    .await;
    let address = base.trim_start_matches("http://").to_string();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();

    let mut idle = Vec::new();
    for _ in 0..SOFT_LIMIT + 100 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // Accepted after the idle ones: answered only if confab could accept them all.
    let health = reqwest::Client::new()
        .get(format!("{base}/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(
        matches!(health, Ok(200)),
        "/health behind {} idle connections: {health:?}",
        idle.len()
    );
    drop(idle);

    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        accept_queue_size(port),
        somaxconn.min(4096),
        "the listener's accept queue"
    );

    terminate(&child);
    exited(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains("open files limit"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("before={SOFT_LIMIT}")) && line.contains("after="),
        "the log says what the limit was and is: {line:?}"
    );
}

/// The accept queue's size of the TCP listener on `port` (`ss` shows it as Send-Q).
fn accept_queue_size(port: u16) -> u32 {
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    // State Recv-Q Send-Q Local Peer
    text.split_whitespace()
        .nth(2)
        .and_then(|size| size.parse().ok())
        .unwrap_or_else(|| panic!("no listener on {port}: {text:?}"))
}

/// The most memory the process has held (VmHWM), in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_pdf_bomb_costs_a_child_process_not_the_server() {
    let db = tokio::task::spawn_blocking(TestDb::create).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_confab(
        &db,
        data_dir.path(),
        &[("CONFAB_FILES__PDF_TEXT_MEMORY_MB", "64")],
        None,
    )
    .await;
    let client = reqwest::Client::new();
    let (token, project, _) = account_at(&client, &base, "bomb@example.com").await;
    let upload = |name: &'static str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str("application/pdf")
                .unwrap(),
        );
        client
            .post(format!("{base}/api/projects/{project}/files"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
    };
    // A real PDF first, so the server has done everything a PDF costs it but the bomb's part.
    let fine = upload(
        "fine.pdf",
        crate::support::pdf::with_text(&["Quarterly numbers"]),
    )
    .await
    .unwrap();
    assert_eq!(fine.status(), 201);
    let before = peak_rss_kb(child.id());

    // ~100 KB that a parser in the server would turn into 300+ MB and seconds of work.
    let bomb = crate::support::pdf::bomb(&["Quarterly numbers"], 5_000);
    assert!(bomb.len() < 200_000);
    let response = upload("bomb.pdf", bomb).await.unwrap();
    assert_eq!(response.status(), 201, "the file is kept");
    let grown_mb = (peak_rss_kb(child.id()) - before) / 1024;
    assert!(
        grown_mb < 64,
        "the server's own memory grew by {grown_mb} MB reading a PDF bomb"
    );

    // The server goes on; the bomb has no passages, the real PDF has its text.
    let url = db.url.clone();
    let passages = tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        diesel::sql_query("SELECT filename, passages FROM files ORDER BY filename")
            .load::<Passages>(&mut conn)
            .unwrap()
    })
    .await
    .unwrap();
    let found: Vec<(&str, i32)> = passages
        .iter()
        .map(|row| (row.filename.as_str(), row.passages))
        .collect();
    assert_eq!(found, [("bomb.pdf", 0), ("fine.pdf", 1)]);
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[derive(diesel::QueryableByName)]
struct Passages {
    #[diesel(sql_type = diesel::sql_types::Text)]
    filename: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    passages: i32,
}
