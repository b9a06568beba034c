//! Projects, agents and versioned prompts through the JSON API.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;

#[tokio::test]
async fn a_new_project_comes_with_a_default_agent_and_deletes_with_everything_under_it() {
    let app = TestApp::spawn().await;
    let token = app.user_token("p@example.com").await;
    let (status, project) = app
        .post_json(
            &token,
            "/api/projects",
            json!({"name": "  Research  ", "description": "Papers"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(project["name"], "Research", "names are trimmed");
    let id = project["id"].as_str().unwrap();

    let (_, agents) = app
        .get_json(&token, &format!("/api/projects/{id}/agents"))
        .await;
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["is_default"], true);
    assert_eq!(agents[0]["model"], "gpt-4o-mini");
    assert_eq!(agents[0]["provider"], "openai");
    assert!(agents[0]["temperature"].is_null());
    let agent_id = agents[0]["id"].as_str().unwrap().to_string();

    let (status, renamed) = app
        .send_json(
            &token,
            Method::PATCH,
            &format!("/api/projects/{id}"),
            json!({"name": "Reading"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(renamed["name"], "Reading");
    assert_eq!(
        renamed["description"], "Papers",
        "fields not sent stay as they were"
    );

    let (status, body) = app
        .send_json(
            &token,
            Method::PATCH,
            &format!("/api/projects/{id}"),
            json!({"name": ""}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"]["name"].is_string());

    let (_, prompt) = app
        .post_json(
            &token,
            &format!("/api/agents/{agent_id}/prompts"),
            json!({"title": "t", "content": "c"}),
        )
        .await;
    let (_, list) = app.get_json(&token, "/api/projects").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    let r = app
        .api
        .delete(app.url(&format!("/api/projects/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get_json(&token, &format!("/api/projects/{id}")).await.0,
        404
    );
    assert_eq!(
        app.get_json(&token, &format!("/api/agents/{agent_id}"))
            .await
            .0,
        404
    );
    assert_eq!(
        app.get_json(
            &token,
            &format!("/api/prompts/{}", prompt["id"].as_str().unwrap())
        )
        .await
        .0,
        404
    );
    let (_, list) = app.get_json(&token, "/api/projects").await;
    assert!(list.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn agents_validate_their_settings() {
    let app = TestApp::spawn().await;
    let token = app.user_token("a@example.com").await;
    let project = app.project(&token, "P").await;
    let (status, body) = app
        .post_json(&token, &format!("/api/projects/{project}/agents"), json!({"name": "Bad", "temperature": 2.5, "max_output_tokens": 3, "model": "has space"}))
        .await;
    assert_eq!(status, 422);
    let fields = &body["error"]["fields"];
    assert!(
        fields["temperature"]
            .as_str()
            .unwrap()
            .contains("between 0 and 2")
    );
    assert!(fields["max_output_tokens"].is_string());
    assert!(fields["model"].is_string());

    let (status, agent) = app
        .post_json(&token, &format!("/api/projects/{project}/agents"), json!({"name": "Writer", "model": "gpt-4.1", "temperature": 0.3, "max_output_tokens": 800}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        agent["is_default"], false,
        "the project already has a default agent"
    );
    let id = agent["id"].as_str().unwrap();
    assert!((agent["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);

    // null clears an optional setting; absent leaves it.
    let (status, agent) = app
        .send_json(
            &token,
            Method::PATCH,
            &format!("/api/agents/{id}"),
            json!({"temperature": null}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(agent["temperature"].is_null());
    assert_eq!(agent["max_output_tokens"], 800);

    // Making it the default takes that from the other agent.
    let (_, agent) = app
        .send_json(
            &token,
            Method::PATCH,
            &format!("/api/agents/{id}"),
            json!({"is_default": true}),
        )
        .await;
    assert_eq!(agent["is_default"], true);
    let (_, agents) = app
        .get_json(&token, &format!("/api/projects/{project}/agents"))
        .await;
    assert_eq!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["is_default"] == true)
            .count(),
        1
    );

    // Unknown fields are refused rather than silently ignored.
    let (status, _) = app
        .send_json(
            &token,
            Method::PATCH,
            &format!("/api/agents/{id}"),
            json!({"modle": "x"}),
        )
        .await;
    assert_eq!(status, 422);
    // JSON types stay JSON types: text where a number or a boolean belongs is refused, never
    // read the way a form's text is.
    for (body, field) in [
        (json!({"is_default": "no"}), "is_default"),
        (json!({"temperature": "0.7"}), "temperature"),
        (json!({"max_output_tokens": "4096"}), "max_output_tokens"),
    ] {
        let (status, answer) = app
            .send_json(&token, Method::PATCH, &format!("/api/agents/{id}"), body)
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["error"]["fields"][field].is_string(), "{answer}");
    }

    let r = app
        .api
        .delete(app.url(&format!("/api/agents/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, agents) = app
        .get_json(&token, &format!("/api/projects/{project}/agents"))
        .await;
    assert_eq!(
        agents[0]["is_default"], true,
        "the remaining agent becomes the default again"
    );
}

fn titles(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn prompts_are_versioned_ordered_and_compose_the_system_message() {
    let app = TestApp::spawn().await;
    let token = app.user_token("v@example.com").await;
    let project = app.project(&token, "P").await;
    let (_, agents) = app
        .get_json(&token, &format!("/api/projects/{project}/agents"))
        .await;
    let agent = agents[0]["id"].as_str().unwrap().to_string();

    let create = |owner: String, title: &'static str, content: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let (status, body) = app
                .post_json(&token, &owner, json!({"title": title, "content": content}))
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let tone = create(
        format!("/api/projects/{project}/prompts"),
        "Tone",
        "Be brief.",
    )
    .await;
    let safety = create(
        format!("/api/projects/{project}/prompts"),
        "Safety",
        "Be kind.",
    )
    .await;
    let role = create(
        format!("/api/agents/{agent}/prompts"),
        "Role",
        "You are a librarian.",
    )
    .await;

    let (_, detail) = app.get_json(&token, &format!("/api/agents/{agent}")).await;
    assert_eq!(
        detail["system_message"],
        "Be brief.\n\nBe kind.\n\nYou are a librarian."
    );

    // Reorder: Safety first.
    let (status, moved) = app
        .send_json(
            &token,
            Method::PUT,
            &format!("/api/prompts/{safety}"),
            json!({"position": 0}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(moved["position"], 0);
    assert_eq!(moved["version"], 1, "moving is not an edit");
    let (_, list) = app
        .get_json(&token, &format!("/api/projects/{project}/prompts"))
        .await;
    assert_eq!(titles(&list), ["Safety", "Tone"]);

    // Edit makes version 2; the old text stays in the history.
    let (status, edited) = app
        .send_json(
            &token,
            Method::PUT,
            &format!("/api/prompts/{tone}"),
            json!({"content": "Be very brief."}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(edited["version"], 2);
    let (_, versions) = app
        .get_json(&token, &format!("/api/prompts/{tone}/versions"))
        .await;
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["content"], "Be very brief.");
    assert_eq!(versions[0]["current"], true);
    assert_eq!(versions[1]["content"], "Be brief.");

    // Saving the same text again makes no new version.
    let (_, same) = app
        .send_json(
            &token,
            Method::PUT,
            &format!("/api/prompts/{tone}"),
            json!({"content": "Be very brief."}),
        )
        .await;
    assert_eq!(same["version"], 2);

    // Disable one: it leaves the system message.
    app.send_json(
        &token,
        Method::PUT,
        &format!("/api/prompts/{safety}"),
        json!({"enabled": false}),
    )
    .await;
    let (_, detail) = app.get_json(&token, &format!("/api/agents/{agent}")).await;
    assert_eq!(
        detail["system_message"],
        "Be very brief.\n\nYou are a librarian."
    );

    // Roll back to version 1.
    let r = app
        .api
        .post(app.url(&format!("/api/prompts/{tone}/versions/1/restore")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let restored: Value = r.json().await.unwrap();
    assert_eq!(restored["version"], 1);
    assert_eq!(restored["content"], "Be brief.");
    let (_, detail) = app.get_json(&token, &format!("/api/agents/{agent}")).await;
    assert_eq!(
        detail["system_message"],
        "Be brief.\n\nYou are a librarian."
    );
    let r = app
        .api
        .post(app.url(&format!("/api/prompts/{tone}/versions/9/restore")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Delete renumbers the rest.
    let r = app
        .api
        .delete(app.url(&format!("/api/prompts/{safety}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, list) = app
        .get_json(&token, &format!("/api/projects/{project}/prompts"))
        .await;
    assert_eq!(list[0]["position"], 0);
    let (_, list) = app
        .get_json(&token, &format!("/api/agents/{agent}/prompts"))
        .await;
    assert_eq!(titles(&list), ["Role"]);
    let _ = role;

    let (status, body) = app
        .post_json(
            &token,
            &format!("/api/projects/{project}/prompts"),
            json!({"title": "", "content": ""}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["fields"]["title"].is_string()
            && body["error"]["fields"]["content"].is_string()
    );
}

#[tokio::test]
async fn concurrent_prompt_changes_all_land_without_clashing() {
    let app = TestApp::spawn().await;
    let token = app.user_token("busy@example.com").await;
    let project = app.project(&token, "Busy").await;
    let list_path = format!("/api/projects/{project}/prompts");

    // Six prompts created at once get six distinct places.
    let creates = (0..6).map(|i| {
        app.post_json(
            &token,
            &list_path,
            json!({"title": format!("P{i}"), "content": format!("Text {i}")}),
        )
    });
    let created = futures_util::future::join_all(creates).await;
    assert!(
        created.iter().all(|(status, _)| *status == 201),
        "{created:?}"
    );
    let (_, list) = app.get_json(&token, &list_path).await;
    let mut positions: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["position"].as_i64().unwrap())
        .collect();
    positions.sort();
    assert_eq!(positions, [0, 1, 2, 3, 4, 5]);

    // Six edits of one prompt at once make six new versions, none lost.
    let id = created[0].1["id"].as_str().unwrap().to_string();
    let prompt_path = format!("/api/prompts/{id}");
    let edits = (0..6).map(|i| {
        app.send_json(
            &token,
            Method::PUT,
            &prompt_path,
            json!({"content": format!("Edit {i}")}),
        )
    });
    let edited = futures_util::future::join_all(edits).await;
    assert!(
        edited.iter().all(|(status, _)| *status == 200),
        "{edited:?}"
    );
    let (_, versions) = app
        .get_json(&token, &format!("/api/prompts/{id}/versions"))
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn a_project_has_one_default_agent_however_many_ask_at_once() {
    let app = TestApp::spawn().await;
    let token = app.user_token("defaults@example.com").await;
    let project = app.project(&token, "Race").await;
    let path = format!("/api/projects/{project}/agents");
    let creates = (0..20).map(|i| {
        app.post_json(
            &token,
            &path,
            json!({"name": format!("Agent {i}"), "is_default": true}),
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let (_, agents) = app.get_json(&token, &path).await;
    let defaults = agents
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["is_default"] == true)
        .count();
    assert_eq!(defaults, 1, "{agents}");
}
