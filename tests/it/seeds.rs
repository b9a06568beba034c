//! Requests shaped as other clients of this API send them (the seeds' front ends) are accepted
//! where they do not clash with confab's own: documented aliases of fields and paths, and the
//! environment variables those deployments set.

use serde_json::{Value, json};

use crate::support::app::{PASSWORD, TestApp};
use crate::support::fake_llm::{FakeLlm, Script};

#[tokio::test]
async fn users_register_and_login_under_their_other_paths_with_a_name() {
    let app = TestApp::spawn().await;
    let (status, user) = app
        .post_json(
            "",
            "/api/users/register",
            json!({"email": "seed@example.com", "password": PASSWORD, "name": "Ada"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["display_name"], "Ada");
    let (status, login) = app
        .post_json(
            "",
            "/api/users/login",
            json!({"email": "seed@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap();
    let (_, me) = app.get_json(token, "/api/users/me").await;
    assert_eq!(me["display_name"], "Ada");
}

#[tokio::test]
async fn prompts_take_a_name_or_only_content() {
    let app = TestApp::spawn().await;
    let token = app.user_token("prompts-seed@example.com").await;
    let project = app.project(&token, "Seeds").await;
    let path = format!("/api/projects/{project}/prompts");
    let (status, named) = app
        .post_json(
            &token,
            &path,
            json!({"name": "Tone", "content": "Be brief."}),
        )
        .await;
    assert_eq!(status, 201, "{named}");
    assert_eq!(named["title"], "Tone");
    let (status, bare) = app
        .post_json(
            &token,
            &path,
            json!({"content": "\n  You answer in **French**.\nAlways."}),
        )
        .await;
    assert_eq!(status, 201, "{bare}");
    assert_eq!(bare["title"], "You answer in French.");
    // Nothing at all is still refused, by field.
    let (status, refused) = app.post_json(&token, &path, json!({})).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["fields"]["content"].is_string(),
        "{refused}"
    );
}

#[tokio::test]
async fn an_agent_takes_a_system_prompt_and_the_seeds_model_fields() {
    let app = TestApp::spawn().await;
    let token = app.user_token("agent-seed@example.com").await;
    let project = app.project(&token, "Seeds").await;
    let (status, agent) = app
        .post_json(
            &token,
            &format!("/api/projects/{project}/agents"),
            json!({"name": "Helper", "system_prompt": "You are a helpful assistant.",
                   "model_provider": "openai", "model_name": "gpt-4o"}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["provider"], "openai");
    assert_eq!(agent["model"], "gpt-4o");
    let id = agent["id"].as_str().unwrap();
    let (_, detail) = app.get_json(&token, &format!("/api/agents/{id}")).await;
    assert_eq!(detail["system_message"], "You are a helpful assistant.");

    // A change is the first prompt's next version.
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/agents/{id}"),
            json!({"system_prompt": "You are terse."}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, prompts) = app
        .get_json(&token, &format!("/api/agents/{id}/prompts"))
        .await;
    let prompts = prompts.as_array().unwrap();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert_eq!(prompts[0]["title"], "System prompt");
    assert_eq!(prompts[0]["content"], "You are terse.");
    assert_eq!(prompts[0]["version"], 2);

    // An empty one is refused by name.
    let (status, refused) = app
        .post_json(
            &token,
            &format!("/api/projects/{project}/agents"),
            json!({"name": "Blank", "system_prompt": "  "}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["fields"]["system_prompt"].is_string(),
        "{refused}"
    );
}

#[tokio::test]
async fn chat_takes_project_id_in_camel_case_and_the_default_system_prompt_applies() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Bonjour."));
    let app = TestApp::with_llm(&fake.base_url(), |s| {
        s.chat.default_system_prompt = "Be kind.".into();
    })
    .await;
    let (token, project, _) = app.chat_setup("chat-seed@example.com").await;
    let (status, reply) = app
        .post_json(
            &token,
            "/api/chat",
            json!({"projectId": project, "message": "Salut"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Bonjour.");
    // The agent has no prompts: the default is its system message.
    let sent: Value = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["instructions"], "Be kind.", "{sent}");
}

#[test]
fn secret_key_and_groq_api_key_are_read_as_the_seeds_set_them() {
    use confab::settings::{Overrides, Settings};
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    let settings = Settings::load_from(
        &Overrides::default(),
        env(&[
            ("SECRET_KEY", "s3cret-from-seed"),
            ("GROQ_API_KEY", "gsk-test"),
        ]),
    )
    .unwrap();
    assert_eq!(
        settings.auth.jwt_secret.as_ref().unwrap().expose(),
        "s3cret-from-seed"
    );
    let clients = confab::generation::clients_from_settings(&settings.llm).unwrap();
    let router = confab::generation::router_from_settings(&settings, clients);
    let groq = router.provider("groq").expect("GROQ_API_KEY enables groq");
    assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(groq.api, confab::llm::Api::ChatCompletions);
    // JWT_SECRET wins over SECRET_KEY.
    let settings = Settings::load_from(
        &Overrides::default(),
        env(&[("SECRET_KEY", "seed"), ("JWT_SECRET", "ours")]),
    )
    .unwrap();
    assert_eq!(settings.auth.jwt_secret.as_ref().unwrap().expose(), "ours");
}
