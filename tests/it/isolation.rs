//! Another user's project, agent or prompt is "not found" on every route that takes an id. The
//! route list is read from `src/startup.rs`, so a new route without an owner check fails here.

use serde_json::{Value, json};

use crate::support::app::{TestApp, csrf_of};

/// Every `(method, path)` with a path parameter, from the route tables in startup.rs.
fn routes_with_ids() -> Vec<(String, String)> {
    crate::support::routes::route_table()
        .into_iter()
        .filter(|(_, path)| path.contains("{id}"))
        .collect()
}

struct Owned {
    project: String,
    agent: String,
    prompt: String,
    conversation: String,
    message: String,
    session: String,
    file: String,
    key: String,
}

fn fill(path: &str, owned: &Owned) -> String {
    let id = if path.contains("/keys/") {
        &owned.key
    } else if path.contains("/sessions/") {
        &owned.session
    } else if path.contains("/files/{id}") {
        &owned.file
    } else if path.contains("/projects/") {
        &owned.project
    } else if path.contains("/conversations/{id}") {
        &owned.conversation
    } else if path.contains("/messages/") {
        &owned.message
    } else if path.contains("/agents/") || path.starts_with("/v1/models/") {
        &owned.agent
    } else {
        &owned.prompt
    };
    path.replace("{id}", id).replace("{version}", "1")
}

fn json_body(path: &str) -> Value {
    if path.starts_with("/api/chat/") {
        json!({"message": "hijack"})
    } else if path.starts_with("/api/conversations/") {
        json!({"title": "hijack"})
    } else if path.ends_with("/knowledge") {
        json!({"enabled": true})
    } else if path.ends_with("/prompts") {
        json!({"title": "hijack", "content": "hijack"})
    } else if path.starts_with("/api/prompts/") {
        json!({"title": "hijack"})
    } else {
        json!({"name": "hijack"})
    }
}

#[tokio::test]
async fn another_users_things_are_not_found_on_every_route() {
    let app = TestApp::spawn().await;
    let owner = app.user_token("owner@example.com").await;
    let project = app.project(&owner, "Mine").await;
    let (_, agents) = app
        .get_json(&owner, &format!("/api/projects/{project}/agents"))
        .await;
    let agent = agents[0]["id"].as_str().unwrap().to_string();
    let (_, prompt) = app
        .post_json(
            &owner,
            &format!("/api/agents/{agent}/prompts"),
            json!({"title": "Mine", "content": "secret"}),
        )
        .await;
    // A conversation of the owner's (no provider is configured: the answer fails at once, but
    // the conversation and both messages exist).
    let response = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&owner)
        .json(&json!({"message": "mine"}))
        .send()
        .await
        .unwrap();
    let (_, done) = crate::support::sse::Events::of(response)
        .collect_json()
        .await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"secret notes".to_vec()).file_name("notes.txt"),
    );
    let file: Value = app
        .api
        .post(app.url(&format!("/api/projects/{project}/files")))
        .bearer_auth(&owner)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, key) = app
        .post_json(&owner, "/api/keys", json!({"name": "mine"}))
        .await;
    let owned = Owned {
        key: key["id"].as_str().unwrap().to_string(),
        file: file["id"].as_str().unwrap().to_string(),
        project,
        agent,
        prompt: prompt["id"].as_str().unwrap().to_string(),
        conversation: done["conversation_id"].as_str().unwrap().to_string(),
        message: done["message_id"].as_str().unwrap().to_string(),
        session: app.get_json(&owner, "/api/auth/sessions").await.1[0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    };

    let intruder = app.user_token("intruder@example.com").await;
    let browser = app.browser("intruder-web@example.com").await;
    let csrf = csrf_of(&browser.get("/account").await.1);

    let routes = routes_with_ids();
    assert!(routes.len() >= 30, "route table parsed: {routes:?}");
    assert!(
        routes.iter().any(|(_, path)| path == "/v1/models/{id}"),
        "the OpenAI-compatible routes are read too: {routes:?}"
    );
    for (method, pattern) in &routes {
        let path = fill(pattern, &owned);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = if pattern.starts_with("/api/") || pattern.starts_with("/v1/") {
            let mut request = app
                .api
                .request(method.clone(), app.url(&path))
                .bearer_auth(&intruder);
            if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
                request = request.json(&json_body(pattern));
            }
            request.send().await.unwrap().status()
        } else {
            let mut request = browser.client.request(method.clone(), app.url(&path));
            if method == reqwest::Method::POST {
                request = request.header("X-CSRF-Token", &csrf).form(&[
                    ("name", "hijack"),
                    ("title", "hijack"),
                    ("content", "hijack"),
                    ("direction", "up"),
                    ("provider", "openai"),
                    ("model", "x"),
                    ("message", "hijack"),
                ]);
            }
            request.send().await.unwrap().status()
        };
        assert_eq!(status, 404, "{method} {pattern} as another user");
    }

    // And nothing of the owner's changed.
    let (status, project) = app
        .get_json(&owner, &format!("/api/projects/{}", owned.project))
        .await;
    assert_eq!((status, project["name"].as_str()), (200, Some("Mine")));
    let (status, prompt) = app
        .get_json(&owner, &format!("/api/prompts/{}", owned.prompt))
        .await;
    assert_eq!((status, prompt["version"].as_i64()), (200, Some(1)));
    let (_, agents) = app
        .get_json(&owner, &format!("/api/projects/{}/agents", owned.project))
        .await;
    assert_eq!(agents.as_array().unwrap().len(), 1);
    let (status, conversation) = app
        .get_json(
            &owner,
            &format!("/api/conversations/{}", owned.conversation),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        conversation["messages"].as_array().unwrap().len(),
        2,
        "no message was added or removed"
    );
    assert_eq!(conversation["title"], "mine");
    let (_, keys) = app.get_json(&owner, "/api/keys").await;
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "the owner's key was not revoked"
    );
    // Lists never show another user's things.
    let (_, list) = app.get_json(&intruder, "/api/projects").await;
    assert!(list.as_array().unwrap().is_empty());
    let (_, list) = app.get_json(&intruder, "/api/keys").await;
    assert_eq!(list, json!([]));
    let (status, _) = app
        .get_json(
            &intruder,
            &format!("/api/agents/{}/conversations", owned.agent),
        )
        .await;
    assert_eq!(status, 404);
}
