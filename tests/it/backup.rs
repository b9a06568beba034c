//! `confab backup` and `confab restore`: a round trip through a file, from one embedded
//! PostgreSQL to a fresh one, with confab running while the backup is taken.

use serde_json::{Value, json};

use crate::support::app::{PASSWORD, embedded_settings, start};
use crate::support::remote::account_at;

#[tokio::test]
async fn a_backup_taken_while_running_restores_into_an_empty_data_dir() {
    let (first_dir, second_dir, backups) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = embedded_settings(first_dir.path());
    let client = reqwest::Client::new();

    let (base, stop, running) = start(first.clone()).await;
    let (token, _, _) = account_at(&client, &base, "kept@example.com").await;

    let file = backups.path().join("confab.backup");
    let (settings, path) = (first.clone(), file.clone());
    tokio::task::spawn_blocking(move || confab::backup::create(&settings, &path))
        .await
        .unwrap()
        .expect("backup while confab runs");
    stop.send(()).unwrap();
    running.await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "it holds the JWT secret and password hashes");

    let second = embedded_settings(second_dir.path());
    let (settings, path) = (second.clone(), file.clone());
    tokio::task::spawn_blocking(move || confab::backup::restore(&settings, &path))
        .await
        .unwrap()
        .expect("restore into an empty data dir");
    let (settings, path) = (second.clone(), file.clone());
    let again = tokio::task::spawn_blocking(move || confab::backup::restore(&settings, &path))
        .await
        .unwrap();
    assert!(
        again.is_err(),
        "a data dir with a database is not overwritten"
    );

    let (base, stop, running) = start(second).await;
    // The same secret and the same session: the token from before still works.
    let projects: Value = client
        .get(format!("{base}/api/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(projects[0]["name"], "Remote", "{projects}");
    let r = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "kept@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stop.send(()).unwrap();
    running.await;
}
