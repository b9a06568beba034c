//! Files attached from the chat's composer, as a browser without JavaScript sends them: a chip
//! per file (a checkbox named `attach`), several in one message; a file that is not the
//! person's is refused before anything goes upstream; the agent picker's change brings that
//! agent's files.

use crate::support::app::{Browser, TestApp, csrf_of};
use crate::support::fake_llm::{FakeLlm, Script};

/// Uploads through the project page's plain form (the token first, as the page puts it).
async fn upload(browser: &Browser, project_url: &str, name: &str, text: &str) {
    let csrf = csrf_of(&browser.get(project_url).await.1);
    let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
        .file_name(name.to_string())
        .mime_str("text/plain")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", csrf)
        .part("file", part);
    let r = browser
        .client
        .post(format!("{}{project_url}/files", browser.base))
        // A plain upload's token is checked in the body, where its Origin says it came from us.
        .header("Origin", &browser.base)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "upload {name}");
}

/// The id of the chip named `name` in a page's composer.
fn chip(page: &str, name: &str) -> String {
    let end = page
        .find(&format!("\"><span>{name}</span></label>"))
        .unwrap_or_else(|| panic!("a chip for {name}"));
    let start = page[..end].rfind("value=\"").unwrap() + "value=\"".len();
    page[start..end].to_string()
}

#[tokio::test]
async fn chips_send_several_files_without_javascript_and_the_message_lists_them() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Both read."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("chips@example.com").await;
    let (project_url, agent) = browser.project_with_agent("Papers").await;
    upload(
        &browser,
        &project_url,
        "notes.md",
        "The launch code is 7781.",
    )
    .await;
    upload(&browser, &project_url, "plan.txt", "Launch on Tuesday.").await;
    // More files than chips: the newest eight are chips, the rest under "More files".
    for n in 1..=7 {
        let name = format!("extra-{n}.txt");
        upload(&browser, &project_url, &name, &format!("filler {n}")).await;
    }

    let (_, page) = browser.get(&format!("/agents/{agent}/chat")).await;
    assert!(page.contains("<legend>Attach files</legend>"), "{page}");
    assert!(page.contains("More files (1)"), "one file folded away");
    let more = &page[page.find("More files (1)").unwrap()..];
    assert!(
        more.contains("<span>notes.md</span>"),
        "the oldest is the one folded away"
    );
    assert!(
        page.contains(&format!(
            "href=\"{project_url}#files-heading\" data-attach-add"
        )),
        "without JavaScript, Add file leads to the project's files"
    );
    let (notes, plan) = (chip(&page, "notes.md"), chip(&page, "plan.txt"));

    let r = browser
        .post_form(
            &format!("/agents/{agent}/chat"),
            &[
                ("message", "What is the plan?"),
                ("attach", &notes),
                ("attach", &plan),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let conversation = r.headers()["location"].to_str().unwrap().to_string();
    let conversation = conversation.trim_end_matches("#composer").to_string();

    let (_, page) = browser.get(&conversation).await;
    browser.finish_answer(&page).await;

    // Both went upstream with the message (the provider holds them: as two input_file parts).
    let remote: Vec<String> = fake.files().iter().map(|f| f.id.clone()).collect();
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let last = requests[0].body["input"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let parts = last["content"].as_array().unwrap();
    let sent: Vec<&str> = parts
        .iter()
        .filter(|p| p["type"] == "input_file")
        .map(|p| p["file_id"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 2, "{last}");
    assert!(
        sent.iter().all(|id| remote.iter().any(|r| r == id)),
        "{sent:?} of {remote:?}"
    );

    // The stored message lists both.
    let (_, page) = browser.get(&conversation).await;
    assert!(page.contains("<li>📎 notes.md</li>"), "{page}");
    assert!(page.contains("<li>📎 plan.txt</li>"), "{page}");

    // A reply in the conversation takes chips too (here: one).
    let r = browser
        .post_form(
            &format!("{conversation}/messages"),
            &[("message", "And the code?"), ("attach", &notes)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, page) = browser.get(&conversation).await;
    browser.finish_answer(&page).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let last = requests[1].body["input"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][1]["type"], "input_file", "{last}");
    let (_, page) = browser.get(&conversation).await;
    assert_eq!(page.matches("<li>📎 notes.md</li>").count(), 2, "{page}");
}

#[tokio::test]
async fn a_file_that_is_not_the_persons_is_refused_and_nothing_is_sent() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Fine."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let browser = app.browser("chips-owner@example.com").await;
    let (project_url, agent) = browser.project_with_agent("Mine").await;
    upload(&browser, &project_url, "mine.txt", "mine").await;
    let other = app.browser("chips-other@example.com").await;
    let (their_project, their_agent) = other.project_with_agent("Theirs").await;
    upload(&other, &their_project, "theirs.txt", "secret").await;
    let (_, their_page) = other.get(&format!("/agents/{their_agent}/chat")).await;
    let theirs = chip(&their_page, "theirs.txt");
    let (_, page) = browser.get(&format!("/agents/{agent}/chat")).await;
    let mine = chip(&page, "mine.txt");

    for attach in [theirs.as_str(), "not-a-file-id"] {
        let r = browser
            .post_form(
                &format!("/agents/{agent}/chat"),
                &[
                    ("message", "read these"),
                    ("attach", &mine),
                    ("attach", attach),
                ],
            )
            .await;
        assert_eq!(r.status(), 404, "{attach}");
    }
    assert!(fake.requests().is_empty(), "nothing refused went upstream");
    let (_, home) = browser.get("/chat").await;
    assert!(home.contains("No conversations yet."), "nor was it kept");

    // With two agents, /chat has a picker; its change asks for the chosen agent's files.
    let (second_project, second_agent) = browser.project_with_agent("Second").await;
    upload(&browser, &second_project, "second.txt", "second").await;
    let (_, page) = browser.get(&format!("/chat?agent_id={second_agent}")).await;
    let files = &page[page.find("id=\"composer-files\"").unwrap()..];
    let files = &files[..files.find("</fieldset>").unwrap()];
    assert!(files.contains("<span>second.txt</span>"), "{files}");
    assert!(!files.contains("mine.txt"), "{files}");
    assert!(page.contains("hx-get=\"/chat\" hx-trigger=\"change\""));
}
