//! API keys: made with a session, used as a bearer token, refused once revoked or expired,
//! read-only when asked, and never shown again after they are made.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{PASSWORD, TestApp, csrf_of};

/// A key made through the API with the session `token`: (key, its id).
async fn new_key(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, created) = app.post_json(token, "/api/keys", body).await;
    assert_eq!(status, 201, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_key_signs_requests_until_it_is_revoked() {
    let app = TestApp::spawn().await;
    let session = app.user_token("keys@example.com").await;
    let (status, created) = app
        .post_json(
            &session,
            "/api/keys",
            json!({"name": "backup script", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("cfk_") && key.len() >= 4 + 64, "{key}");
    assert_eq!(created["scope"], "full");
    assert_eq!(created["name"], "backup script");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["expires_at"].is_string());
    assert!(created["last_used_at"].is_null());

    let (status, me) = app.get_json(&key, "/api/users/me").await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("keys@example.com"))
    );
    // A full key changes things too.
    let (status, _) = app
        .post_json(&key, "/api/projects", json!({"name": "By key"}))
        .await;
    assert_eq!(status, 201);

    let response = app
        .api
        .get(app.url("/api/keys"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&key), "the list never shows the key");
    assert!(!text.contains(&key[4..]), "nor any of its secret part");
    let list: Value = serde_json::from_str(&text).unwrap();
    let listed = &list.as_array().unwrap()[0];
    assert_eq!(listed["id"].as_str(), Some(id.as_str()));
    assert!(listed.get("key").is_none() && listed.get("key_hash").is_none());
    assert!(
        listed["last_used_at"].is_string(),
        "use is recorded: {listed}"
    );

    assert_eq!(
        app.delete(&session, &format!("/api/keys/{id}")).await.0,
        204
    );
    let (status, body) = app.get_json(&key, "/api/users/me").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(app.get_json(&session, "/api/keys").await.1, json!([]));
    // Half a key is no key (refused before any lookup).
    assert_eq!(app.get_json(&key[..40], "/api/users/me").await.0, 401);
    // Revoked is gone: a second revoke finds nothing.
    assert_eq!(
        app.delete(&session, &format!("/api/keys/{id}")).await.0,
        404
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let session = app.user_token("expiry@example.com").await;
    let (key, id) = new_key(
        &app,
        &session,
        json!({"name": "short", "expires_in_days": 1}),
    )
    .await;
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 200);
    // A day later (the clock cannot be moved, the row can).
    let aged = app
        .execute_sql(&format!(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(aged, 1);
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 401);
    // Still listed, so its owner sees why it stopped working.
    let (_, list) = app.get_json(&session, "/api/keys").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Expiries that mean nothing are refused by field.
    for days in [json!(0), json!(-3), json!(1.5), json!(100_000)] {
        let (status, body) = app
            .post_json(
                &session,
                "/api/keys",
                json!({"name": "x", "expires_in_days": days}),
            )
            .await;
        assert_eq!(status, 422, "{days}: {body}");
        assert!(
            body["error"]["fields"]["expires_in_days"].is_string(),
            "{body}"
        );
    }
    let (status, body) = app
        .post_json(
            &session,
            "/api/keys",
            json!({"name": " ", "scope": "admin"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"]["name"].is_string(), "{body}");
    assert!(body["error"]["fields"]["scope"].is_string(), "{body}");
}

#[tokio::test]
async fn a_read_only_key_reads_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (session, project, agent) = app.chat_setup("reader@example.com").await;
    let (key, _) = new_key(
        &app,
        &session,
        json!({"name": "dashboard", "scope": "read_only"}),
    )
    .await;

    assert_eq!(app.get_json(&key, "/api/projects").await.0, 200);
    assert_eq!(
        app.get_json(&key, &format!("/api/projects/{project}"))
            .await
            .0,
        200
    );
    let attempts = [
        (
            Method::POST,
            "/api/projects".to_string(),
            json!({"name": "x"}),
        ),
        (
            Method::PATCH,
            format!("/api/projects/{project}"),
            json!({"name": "renamed"}),
        ),
        (
            Method::DELETE,
            format!("/api/projects/{project}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/chat/agents/{agent}"),
            json!({"message": "hi"}),
        ),
        (
            Method::POST,
            "/api/chat".to_string(),
            json!({"message": "hi"}),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = app.send_json(&key, method.clone(), &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    }
    // Nothing changed, nothing was sent.
    let (_, got) = app
        .get_json(&session, &format!("/api/projects/{project}"))
        .await;
    assert_eq!(got["name"], "Chat");
    let (_, conversations) = app.get_json(&session, "/api/conversations").await;
    assert_eq!(
        conversations.as_array().map(Vec::len),
        Some(0),
        "{conversations}"
    );
}

#[tokio::test]
async fn no_key_manages_keys_sessions_or_the_password() {
    let app = TestApp::spawn().await;
    let session = app.user_token("careful@example.com").await;
    let (key, id) = new_key(&app, &session, json!({"name": "full"})).await;

    for (method, path, body) in [
        (Method::POST, "/api/keys", json!({"name": "another"})),
        (Method::GET, "/api/keys", Value::Null),
        (
            Method::DELETE,
            &format!("/api/keys/{id}") as &str,
            Value::Null,
        ),
        (Method::POST, "/api/auth/logout-everywhere", Value::Null),
        (
            Method::POST,
            "/api/auth/password",
            json!({"current_password": PASSWORD, "new_password": "another pass 2"}),
        ),
    ] {
        let (status, answer) = app.send_json(&key, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("sign in"),
            "{answer}"
        );
    }
    // Sign out of what? The key has no session: a clear 400, not a 500.
    let (status, answer) = app.post_json(&key, "/api/auth/logout", Value::Null).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key")
    );
    // Sessions can be read with a key; none of them is the key's.
    let (status, sessions) = app.get_json(&key, "/api/auth/sessions").await;
    assert_eq!(status, 200);
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["current"] == false)
    );
    // The key, the session and the password all still work.
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 200);
    assert_eq!(app.get_json(&session, "/api/users/me").await.0, 200);
    app.login("careful@example.com", PASSWORD).await;
}

#[tokio::test]
async fn a_disabled_or_deleted_users_keys_stop_working() {
    let app = TestApp::spawn().await;
    let session = app.user_token("leaving@example.com").await;
    let (key, _) = new_key(&app, &session, json!({"name": "k"})).await;
    app.execute_sql("UPDATE users SET disabled_at = now() WHERE email = 'leaving@example.com'")
        .await;
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 401);
    app.execute_sql("DELETE FROM users WHERE email = 'leaving@example.com'")
        .await;
    assert_eq!(
        app.execute_sql("DELETE FROM api_keys").await,
        0,
        "the user's keys went with them"
    );
}

#[tokio::test]
async fn the_account_page_makes_shows_once_and_revokes_keys_without_javascript() {
    let app = TestApp::spawn().await;
    let browser = app.browser("page-keys@example.com").await;
    let (_, page) = browser.get("/account").await;
    assert!(page.contains("API keys") && page.contains("action=\"/account/keys#api-keys\""));

    // A refused form keeps what was typed and says why, next to the field.
    let response = browser
        .post_form(
            "/account/keys",
            &[
                ("name", "laptop"),
                ("expires_in_days", "0"),
                ("scope", "read_only"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("id=\"key-expires_in_days-error\""), "{page}");
    assert!(page.contains("value=\"laptop\""));
    assert!(!page.contains("new-api-key"));

    let response = browser
        .post_form(
            "/account/keys",
            &[
                ("name", "laptop"),
                ("expires_in_days", ""),
                ("scope", "read_only"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let page = response.text().await.unwrap();
    let marker = "<code id=\"new-api-key\">";
    let start = page.find(marker).expect("the new key is shown") + marker.len();
    let key = page[start..start + page[start..].find('<').unwrap()].to_string();
    assert!(key.starts_with("cfk_"), "{key}");
    assert!(page.contains("Read-only"));
    // Shown once in the page, and nowhere a browser keeps (the title goes to its history).
    assert_eq!(page.matches(key.as_str()).count(), 1, "{page}");
    let title = &page[page.find("<title>").unwrap()..page.find("</title>").unwrap()];
    assert_eq!(title, "<title>Account · confab", "{title}");

    // It works, read-only, and the page never shows it again.
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 200);
    let (_, page) = browser.get("/account").await;
    assert!(!page.contains(&key) && !page.contains("new-api-key"));
    assert!(page.contains(&key[..12]), "listed by its prefix");

    let action_start = page.find("action=\"/account/keys/").unwrap() + "action=\"".len();
    let revoke = &page[action_start..action_start + page[action_start..].find('"').unwrap()];
    // Without the CSRF token, nothing happens.
    let forged = browser
        .client
        .post(format!("{}{revoke}", app.address))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 200);
    let csrf = csrf_of(&page);
    let response = browser
        .client
        .post(format!("{}{revoke}", app.address))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(app.get_json(&key, "/api/users/me").await.0, 401);
    let (_, page) = browser.get("/account").await;
    assert!(!page.contains(&key[..12]));
}
