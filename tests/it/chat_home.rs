//! The chat home: where a signed-in person lands, ready to type; the sidebar of every
//! conversation; the agent picker; what the page says when a message is refused.

use std::time::Duration;

use crate::support::app::TestApp;
use crate::support::fake_llm::{FakeLlm, Script};

#[tokio::test]
async fn a_new_person_chats_right_after_signing_up() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Hello there."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("first-chat@example.com").await;

    // Signed in, `/` is the chat, and the box is ready without a project or agent made first.
    let r = browser.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/chat");
    let (status, page) = browser.get("/chat").await;
    assert_eq!(status, 200);
    assert!(page.contains("action=\"/chat\""), "{page}");
    assert!(page.contains("autofocus"), "the message box has the focus");
    assert!(page.contains("No conversations yet."));

    // One message makes a first project with its assistant and a conversation that answers.
    let r = browser
        .post_form("/chat", &[("message", "What is **confab**?")])
        .await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/conversations/") && location.ends_with("#composer"),
        "{location}"
    );
    let (_, projects) = browser.get("/projects").await;
    assert!(projects.contains("My chats"), "{projects}");
    let (_, home) = browser.get("/chat").await;
    assert!(
        home.contains("What is confab?"),
        "the conversation is in the sidebar, titled in plain words"
    );
    // A second message from the home goes to the same assistant, not to another new project.
    let r = browser.post_form("/chat", &[("message", "again")]).await;
    assert_eq!(r.status(), 303);
    let (_, projects) = browser.get("/projects").await;
    assert_eq!(projects.matches("My chats").count(), 1, "{projects}");

    // Someone else's home shows none of it.
    let other = app.browser("someone-else@example.com").await;
    let (_, theirs) = other.get("/chat").await;
    assert!(!theirs.contains("What is confab?"));
}

#[tokio::test]
async fn the_sidebar_lists_every_agents_conversations_and_searches_titles() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("sidebar@example.com").await;
    let (_, first_agent) = browser.project_with_agent("Alpha project").await;
    let (_, second_agent) = browser.project_with_agent("Beta project").await;
    for (agent, message) in [
        (&first_agent, "Planning the garden"),
        (&second_agent, "Tax return questions"),
        (&second_agent, "100% sure about 50_50 odds"),
    ] {
        let r = browser
            .post_form("/chat", &[("message", message), ("agent_id", agent)])
            .await;
        assert_eq!(r.status(), 303, "{message}");
    }
    // The picker offers both projects' agents; the last used one is chosen.
    let (_, home) = browser.get("/chat").await;
    for title in [
        "Planning the garden",
        "Tax return questions",
        "100% sure about 50_50 odds",
    ] {
        assert!(home.contains(title), "{title} in the sidebar");
    }
    assert!(
        home.contains("Assistant · Alpha project") && home.contains("Assistant · Beta project")
    );
    assert!(home.contains(&format!("<option value=\"{second_agent}\" selected>")));
    let (_, chosen) = browser.get(&format!("/chat?agent={first_agent}")).await;
    assert!(chosen.contains(&format!("<option value=\"{first_agent}\" selected>")));

    // Search matches titles in any case; LIKE's wildcards are literal.
    let (status, found) = browser.get("/chat/conversations?q=GARDEN").await;
    assert_eq!(status, 200);
    assert!(found.contains("Planning the garden") && !found.contains("Tax return"));
    let (_, literal) = browser.get("/chat/conversations?q=%25").await;
    assert!(literal.contains("100% sure") && !literal.contains("Planning"));
    let (_, underscore) = browser.get("/chat/conversations?q=0_5").await;
    assert!(underscore.contains("50_50") && !underscore.contains("Tax"));
    let (_, none) = browser
        .get("/chat/conversations?q=nothing%20like%20this")
        .await;
    assert!(none.contains("No conversation title matches."));
    // Without JavaScript the search is the home page with the list filtered.
    let (_, page) = browser.get("/chat?q=tax").await;
    assert!(page.contains("Tax return questions") && !page.contains("Planning the garden"));
}

#[tokio::test]
async fn a_rename_updates_the_sidebar_and_the_tab_title() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("ok"));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("rename-everywhere@example.com").await;
    let r = browser.post_form("/chat", &[("message", "old name")]).await;
    let conversation = r.headers()["location"]
        .to_str()
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .to_string();
    let r = browser
        .htmx_post(&conversation, &[("title", "Brand <new> name")])
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<h1>Brand &#60;new&#62; name</h1>")
            || html.contains("<h1>Brand &lt;new&gt; name</h1>"),
        "{html}"
    );
    assert!(
        html.contains(
            "id=\"conversation-results\" class=\"conversation-results\" hx-swap-oob=\"true\""
        ),
        "the sidebar's list comes along: {html}"
    );
    assert!(
        html.matches("Brand &").count() >= 3,
        "heading, sidebar and title: {html}"
    );
    assert!(html.contains("<title>Brand"), "{html}");
}

#[tokio::test]
async fn a_message_refused_under_htmx_is_explained_above_the_composer() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer(&"word ".repeat(500)).token_delay(Duration::from_millis(20)));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("busy@example.com").await;
    let r = browser.htmx_post("/chat", &[("message", "go on")]).await;
    assert_eq!(r.status(), 200);
    let conversation = r.headers()["hx-push-url"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(html.contains("<title>go on · confab</title>"), "{html}");

    let r = browser
        .htmx_post(
            &format!("{conversation}/messages"),
            &[("message", "second")],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["hx-retarget"], "#composer-error");
    let body = r.text().await.unwrap();
    assert!(body.contains("still being written"), "{body}");

    let r = browser
        .htmx_post(&format!("{conversation}/messages"), &[("message", " ")])
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["hx-retarget"], "#composer-error");

    // Without JavaScript the page comes back with the reason and the text kept.
    let r = browser
        .post_form(
            &format!("{conversation}/messages"),
            &[("message", "kept text")],
        )
        .await;
    assert_eq!(r.status(), 409);
    let page = r.text().await.unwrap();
    assert!(page.contains("still being written") && page.contains(">kept text</textarea>"));
}

#[tokio::test]
async fn first_messages_sent_at_once_make_one_first_project() {
    // Two tabs, or a script sending in parallel, right after signing up: each message found no
    // agent and made a "My chats" of its own.
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Hi."));
    // Connections open and ready for every message, so the transactions truly overlap.
    let app = TestApp::with_llm(&fake.base_url(), |s| {
        s.chat.max_live_answers_per_user = 16;
        s.database.warm_connections = 8;
        s.database.wait_before_opening_ms = 0;
    })
    .await;
    for round in 0..3 {
        let token = app
            .user_token(&format!("at-once-{round}@example.com"))
            .await;
        let sends = (0..8).map(|i| {
            app.post_json(
                &token,
                "/api/chat",
                serde_json::json!({"message": format!("first message {i}")}),
            )
        });
        for (status, reply) in futures_util::future::join_all(sends).await {
            assert_eq!(status, 200, "{reply}");
        }
        let (_, projects) = app.get_json(&token, "/api/projects").await;
        assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");
        let (_, list) = app.get_json(&token, "/api/conversations").await;
        assert_eq!(list.as_array().unwrap().len(), 8, "{list}");
    }
}

#[tokio::test]
async fn an_api_client_chats_without_naming_a_project_and_lists_every_conversation() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Hi from the default agent."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let token = app.user_token("api-home@example.com").await;
    let (status, reply) = app
        .post_json(
            &token,
            "/api/chat",
            serde_json::json!({"message": "Hello without a project"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Hi from the default agent.");
    let (_, projects) = app.get_json(&token, "/api/projects").await;
    assert_eq!(projects.as_array().unwrap().len(), 1);
    assert_eq!(projects[0]["name"], "My chats");

    // The same conversation goes on by its id alone.
    let conversation = reply["conversation_id"].as_str().unwrap();
    let (status, _) = app
        .post_json(
            &token,
            "/api/chat",
            serde_json::json!({"message": "and again", "conversation_id": conversation}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, list) = app.get_json(&token, "/api/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["title"], "Hello without a project");
    assert_eq!(list[0]["agent_name"], "Assistant");
    let (status, _) = app.get_json(&token, "/api/conversations?q=%00").await;
    assert_eq!(status, 200, "a NUL in a search is no error");
    let (_, none) = app.get_json(&token, "/api/conversations?q=zebra").await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    let other = app.user_token("api-home-other@example.com").await;
    let (_, theirs) = app.get_json(&other, "/api/conversations").await;
    assert_eq!(theirs.as_array().unwrap().len(), 0, "nobody else's");
}
