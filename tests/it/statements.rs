//! What requests cost the database, counted in statements (the pool counts every one it sends):
//! the round trips that sit between a person and their first token.

use serde_json::json;

use crate::support::app::{PASSWORD, TestApp};

/// The statements the pool sent while `work` ran.
async fn statements_of<T>(app: &TestApp, work: impl Future<Output = T>) -> (u64, T) {
    let before = app.pool.statements();
    let out = work.await;
    (app.pool.statements() - before, out)
}

#[tokio::test]
async fn a_session_is_looked_up_once_not_on_every_request() {
    let app = TestApp::spawn().await;
    let token = app.user_token("cached@example.com").await;
    let (first, (status, _)) = statements_of(&app, app.get_json(&token, "/api/users/me")).await;
    assert_eq!(status, 200);
    let (second, (status, _)) = statements_of(&app, app.get_json(&token, "/api/users/me")).await;
    assert_eq!(status, 200);
    assert!(
        second < first,
        "the second request asked who is signed in again: {first} then {second} statements"
    );
}

#[tokio::test]
async fn a_remembered_session_ends_at_once_however_it_is_ended() {
    let app = TestApp::spawn().await;
    let password = PASSWORD;
    app.user_token("ends@example.com").await;
    let signed_out = |token: String| {
        let app = &app;
        async move { app.get_json(&token, "/api/users/me").await.0 }
    };

    // Signing out: the remembered session is refused on the next request.
    let token = app.login("ends@example.com", password).await;
    assert_eq!(signed_out(token.clone()).await, 200);
    let (status, _) = app.post_json(&token, "/api/auth/logout", json!({})).await;
    assert!(status < 300, "logout: {status}");
    assert_eq!(signed_out(token).await, 401);

    // Ended from another session.
    let (token, other) = (
        app.login("ends@example.com", password).await,
        app.login("ends@example.com", password).await,
    );
    assert_eq!(signed_out(token.clone()).await, 200);
    let (_, sessions) = app.get_json(&token, "/api/auth/sessions").await;
    let mine = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = app
        .delete(&other, &format!("/api/auth/sessions/{mine}"))
        .await;
    assert!(status < 300, "end session: {status}");
    assert_eq!(signed_out(token).await, 401);

    // Signing out everywhere, and changing the password, end every remembered session.
    let (token, other) = (
        app.login("ends@example.com", password).await,
        app.login("ends@example.com", password).await,
    );
    assert_eq!(signed_out(token.clone()).await, 200);
    let (status, _) = app
        .post_json(&other, "/api/auth/logout-everywhere", json!({}))
        .await;
    assert!(status < 300, "logout everywhere: {status}");
    assert_eq!(signed_out(token).await, 401);

    let (token, other) = (
        app.login("ends@example.com", password).await,
        app.login("ends@example.com", password).await,
    );
    assert_eq!(signed_out(token.clone()).await, 200);
    let (status, _) = app
        .post_json(
            &other,
            "/api/auth/password",
            json!({"current_password": password, "new_password": "another long password 2"}),
        )
        .await;
    assert!(status < 300, "password change: {status}");
    assert_eq!(signed_out(token).await, 401);
}
