//! The real binary: SIGTERM lets a live answer use the grace period, then saves what it has,
//! and the process exits cleanly.

use std::process::{Command, Stdio};
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--port",
            &port.to_string(),
            "serve",
        ])
        .env("DATABASE_URL", &db.url)
        .env("OPENAI_API_KEY", "sk-process-test")
        .env("OPENAI_BASE_URL", fake.base_url())
        .env("CONFAB_AUTH__BCRYPT_COST", "4")
        .env("CONFAB_SERVER__SHUTDOWN_GRACE_SECS", "1")
        .env("CONFAB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The reader still gets the end of the answer: failed, because the grace period (1 s) is
    // shorter than the answer (10 s).
    let (_, done) = events.collect_json().await;
    assert_eq!(done["status"], "failed");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
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
