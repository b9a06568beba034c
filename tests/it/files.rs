//! A project's files over the JSON API: streamed into confab's store, listed, downloaded
//! byte-identical, deduplicated, deleted with their bytes; limits; another person's are 404.

use std::future::Future;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::app::TestApp;

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn upload(
    app: &TestApp,
    token: &str,
    project: &str,
    name: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(body)
        .file_name(name.to_string())
        .mime_str("text/plain")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let r = app
        .api
        .post(app.url(&format!("/api/projects/{project}/files")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Everything under the store that is a file (kept bytes and leftovers alike).
fn stored_files(app: &TestApp) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.state.settings.data_dir.join("files"), &mut out);
    out
}

#[tokio::test]
async fn a_file_is_kept_listed_downloaded_whole_deduplicated_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.user_token("files@example.com").await;
    let project = app.project(&token, "Files").await;
    let body = bytes_of(5 * 1024 * 1024 + 17, 7);
    let sha = hex::encode(Sha256::digest(&body));

    let (status, file) = upload(&app, &token, &project, "../notes.txt", body.clone()).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["filename"], "notes.txt", "only the last path segment");
    assert_eq!(file["bytes"], body.len());
    assert_eq!(file["sha256"], sha);
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["project_id"], project);
    let id = file["id"].as_str().unwrap().to_string();

    let (status, list) = app
        .get_json(&token, &format!("/api/projects/{project}/files"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, one) = app.get_json(&token, &format!("/api/files/{id}")).await;
    assert_eq!(
        (status, one["sha256"].clone()),
        (200, Value::from(sha.clone()))
    );

    let r = app
        .api
        .get(app.url(&format!("/api/files/{id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
        "always a download, never a page of this site"
    );
    assert_eq!(r.headers()["content-security-policy"], "sandbox");
    let downloaded = r.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&downloaded)),
        sha,
        "byte-identical"
    );

    // The same bytes again: the file the project has, stored once.
    let (status, again) = upload(&app, &token, &project, "copy.txt", body.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(stored_files(&app).len(), 1);

    // Another project with the same bytes shares the copy; deleting one keeps it for the other.
    let other_project = app.project(&token, "Other").await;
    let (status, shared) = upload(&app, &token, &other_project, "same.txt", body).await;
    assert_eq!(status, 201);
    let (status, _) = app.delete(&token, &format!("/api/files/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(
        stored_files(&app).len(),
        1,
        "still used by the other project"
    );
    let (status, _) = app.get_json(&token, &format!("/api/files/{id}")).await;
    assert_eq!(status, 404);

    // Deleting that project deletes its file and, now unused, the bytes.
    let (status, _) = app
        .delete(&token, &format!("/api/projects/{other_project}"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .get_json(
            &token,
            &format!("/api/files/{}", shared["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404);
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
}

#[tokio::test]
async fn empty_and_oversized_files_are_refused_and_leave_nothing() {
    // With a provider: what confab refuses half-way, the provider does not keep either.
    let fake = crate::support::fake_llm::FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |s| s.files.max_upload_bytes = 1024 * 1024).await;
    let token = app.user_token("limits@example.com").await;
    let project = app.project(&token, "Limits").await;

    let (status, body) = upload(&app, &token, &project, "empty.txt", Vec::new()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");

    let (status, body) = upload(
        &app,
        &token,
        &project,
        "big.bin",
        bytes_of(1024 * 1024 + 1, 1),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1 MB"),
        "{body}"
    );
    let (status, exactly) =
        upload(&app, &token, &project, "fits.bin", bytes_of(1024 * 1024, 1)).await;
    assert_eq!(status, 201, "{exactly}");

    let (_, list) = app
        .get_json(&token, &format!("/api/projects/{project}/files"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "only the one that fits");
    assert_eq!(stored_files(&app).len(), 1, "{:?}", stored_files(&app));

    // Programs: by name before a byte is read, and by their first bytes whatever the name.
    let (status, body) = upload(&app, &token, &project, "setup.EXE", b"hello".to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(".EXE"),
        "{body}"
    );
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.extend(bytes_of(4096, 3));
    let (status, body) = upload(&app, &token, &project, "notes.txt", elf).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Programs"),
        "{body}"
    );
    let (status, body) = upload(&app, &token, &project, "mz.csv", b"MZ, 12\n".to_vec()).await;
    assert_eq!(
        status, 201,
        "a CSV that starts like a program is not one: {body}"
    );
    assert_eq!(stored_files(&app).len(), 2, "{:?}", stored_files(&app));

    // A purpose other than the two the Files API takes.
    let form = reqwest::multipart::Form::new()
        .text("purpose", "fine-tune")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
        );
    let r = app
        .api
        .post(app.url(&format!("/api/projects/{project}/files")))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(stored_files(&app).len(), 2);

    // No file field at all.
    let form = reqwest::multipart::Form::new().text("purpose", "assistants");
    let r = app
        .api
        .post(app.url(&format!("/api/projects/{project}/files")))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let kept: Vec<String> = fake
        .files()
        .into_iter()
        .filter(|f| !f.deleted)
        .map(|f| f.filename)
        .collect();
    assert_eq!(
        kept,
        ["fits.bin", "mz.csv"],
        "the provider has only what confab kept"
    );
}

#[tokio::test]
async fn a_programs_name_with_trailing_dots_or_spaces_is_refused_too() {
    // Windows drops trailing dots and spaces when it saves a file: "run.bat." is "run.bat" once
    // downloaded, so it must meet the refused extensions as ".bat", not as ".bat.".
    let app = TestApp::spawn().await;
    let token = app.user_token("dots@example.com").await;
    let project = app.project(&token, "Dots").await;
    for name in ["run.bat.", "setup.exe. . ", "tool.ps1..."] {
        let (status, body) = upload(&app, &token, &project, name, b"echo hi\r\n".to_vec()).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot be uploaded here"),
            "{name}: {body}"
        );
    }
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));

    // Any other name just loses them, as it would on the way to disk.
    let (status, body) = upload(&app, &token, &project, "notes.", b"notes".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["filename"], "notes");
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_nothing_behind() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = crate::support::fake_llm::FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let token = app.user_token("cut@example.com").await;
    let project = app.project(&token, "Cut").await;

    let boundary = "confab-cut-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let address = app.address.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /api/projects/{project}/files HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n{head}",
        head.len() + 4 * 1024 * 1024
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&bytes_of(512 * 1024, 3)).await.unwrap();
    socket.flush().await.unwrap();
    // Half-way, the client goes away.
    socket.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    drop(socket);

    // The server answered (or closed) only after the handler gave up on the body, and the
    // half-written file goes before that.
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 4"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
    let (_, list) = app
        .get_json(&token, &format!("/api/projects/{project}/files"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    // Reset instead of closed (RST): the handler is dropped mid-body; the provider's copy must
    // fail with it, not end early as a shorter file.
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&bytes_of(512 * 1024, 5)).await.unwrap();
    socket.flush().await.unwrap();
    // A zero linger resets at once: nothing to block on (the deprecation's concern).
    #[allow(deprecated)]
    socket.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(socket);
    // The provider's copy was aborted, not ended early: a whole file after it is the only one.
    let (status, whole) = upload(&app, &token, &project, "whole.bin", bytes_of(1000, 4)).await;
    assert_eq!(status, 201, "{whole}");
    let at_provider = fake.files();
    assert_eq!(at_provider.len(), 1, "{at_provider:?}");
    assert_eq!(at_provider[0].filename, "whole.bin");
}

#[tokio::test]
async fn another_persons_files_are_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.user_token("owner-files@example.com").await;
    let project = app.project(&owner, "Mine").await;
    let (status, file) = upload(&app, &owner, &project, "secret.txt", b"secret".to_vec()).await;
    assert_eq!(status, 201);
    let id = file["id"].as_str().unwrap();

    let intruder = app.user_token("intruder-files@example.com").await;
    let (status, _) = upload(&app, &intruder, &project, "x.txt", b"x".to_vec()).await;
    assert_eq!(status, 404, "no upload into someone else's project");
    for path in [
        format!("/api/projects/{project}/files"),
        format!("/api/files/{id}"),
        format!("/api/files/{id}/content"),
    ] {
        let (status, _) = app.get_json(&intruder, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = app.delete(&intruder, &format!("/api/files/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&owner, &format!("/api/files/{id}")).await;
    assert_eq!(status, 200, "still there for its owner");
}

/// A plain (no-JavaScript) upload form as a browser sends it: the CSRF token first, then the file,
/// with the page's own Origin.
async fn page_upload(
    browser: &crate::support::app::Browser,
    project_url: &str,
    token: Option<&str>,
    origin: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    if let Some(token) = token {
        form = form.text("csrf_token", token.to_string());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(body)
            .file_name("page.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    browser
        .client
        .post(format!("{}{project_url}/files", browser.base))
        .header("Origin", origin)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_project_page_uploads_lists_downloads_and_deletes_without_javascript() {
    let app = TestApp::spawn_with(|s| s.files.max_upload_bytes = 64 * 1024).await;
    let browser = app.browser("page-files@example.com").await;
    let (project_url, _) = browser.project_with_agent("Paper").await;
    let (_, page) = browser.get(&project_url).await;
    assert!(page.contains("id=\"files-section\"") && page.contains("No files yet."));
    let csrf = crate::support::app::csrf_of(&page);
    let origin = app.address.clone();

    let r = page_upload(
        &browser,
        &project_url,
        Some(&csrf),
        &origin,
        b"hello page".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, page) = browser.get(&project_url).await;
    assert!(
        page.contains(">page.txt</a>") && page.contains("10 B"),
        "{page}"
    );
    let file_id = page
        .split("href=\"/files/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let r = browser
        .client
        .get(app.url(&format!("/files/{file_id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello page");

    // Without the token, with a wrong one, or from another site: refused, nothing stored.
    for (token, from) in [
        (None, origin.as_str()),
        (Some("0".repeat(64)), origin.as_str()),
        (Some(csrf.clone()), "https://evil.example"),
    ] {
        let r = page_upload(
            &browser,
            &project_url,
            token.as_deref(),
            from,
            b"forged".to_vec(),
        )
        .await;
        assert_eq!(r.status(), 403, "{token:?} from {from}");
    }
    // Too big: the page says so in the files section, with a 413.
    let r = page_upload(
        &browser,
        &project_url,
        Some(&csrf),
        &origin,
        bytes_of(65 * 1024, 2),
    )
    .await;
    assert_eq!(r.status(), 413);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("over the upload limit of 0 MB") || page.contains("over the upload limit"),
        "{page}"
    );
    assert_eq!(
        stored_files(&app).len(),
        1,
        "only the accepted file is kept"
    );

    // Delete asks first without JavaScript, then deletes.
    let (status, confirm) = browser.get(&format!("/files/{file_id}/delete")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("page.txt") && confirm.contains("cannot be undone"));
    let r = browser
        .post_form(&format!("/files/{file_id}/delete"), &[])
        .await;
    assert_eq!(r.status(), 303);
    let (_, page) = browser.get(&project_url).await;
    assert!(page.contains("No files yet."));
    assert!(stored_files(&app).is_empty());
}

#[tokio::test]
async fn the_seed_upload_route_takes_the_project_in_a_field() {
    let app = TestApp::spawn().await;
    let token = app.user_token("seed-upload@example.com").await;
    let project = app.project(&token, "Seed").await;
    let send = |form: reqwest::multipart::Form| {
        app.api
            .post(app.url("/api/files/upload"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
    };
    let file = || reqwest::multipart::Part::bytes(b"seed bytes".to_vec()).file_name("seed.txt");
    let r = send(
        reqwest::multipart::Form::new()
            .text("project_id", project.clone())
            .part("file", file()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["filename"], "seed.txt");
    assert!(body.get("file_id").is_some(), "{body}");
    assert_eq!(body["project_id"], project.as_str());

    // The project must come first, and must be the caller's.
    let r = send(
        reqwest::multipart::Form::new()
            .part("file", file())
            .text("project_id", project.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let other = app.user_token("seed-other@example.com").await;
    let r = app
        .api
        .post(app.url("/api/files/upload"))
        .bearer_auth(&other)
        .multipart(
            reqwest::multipart::Form::new()
                .text("project_id", project.clone())
                .part("file", file()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(stored_files(&app).len(), 1);
}

#[tokio::test]
async fn attached_files_go_upstream_with_the_message_and_stay_in_its_history() {
    use crate::support::fake_llm::{FakeLlm, Script};
    use crate::support::sse::Events;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Read it."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, agent) = app.chat_setup("attach@example.com").await;
    let (_, notes) = upload(
        &app,
        &token,
        &project,
        "notes.md",
        b"The launch code is 7781.".to_vec(),
    )
    .await;
    let notes = notes["id"].as_str().unwrap().to_string();
    let (_, binary) = upload(&app, &token, &project, "blob.bin", vec![0, 159, 146, 150]).await;

    let ask = |body: Value| {
        app.api
            .post(app.url(&format!("/api/chat/agents/{agent}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = ask(serde_json::json!({"message": "What is the code?", "file_ids": [notes]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, done) = Events::of(r).collect_json().await;
    let conversation = done["conversation_id"].as_str().unwrap().to_string();
    // The provider holds the file (it went there on upload): it gets the file, not its text.
    let notes_remote = fake.files()[0].id.clone();
    let last = fake.requests()[0].body["input"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][0]["type"], "input_text");
    assert_eq!(last["content"][0]["text"], "What is the code?");
    assert_eq!(last["content"][1]["type"], "input_file");
    assert_eq!(last["content"][1]["file_id"], notes_remote.as_str());
    assert!(!last.to_string().contains("7781"), "not twice: {last}");
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["messages"][0]["content"], "What is the code?");
    assert_eq!(
        stored["messages"][0]["attachments"][0]["filename"],
        "notes.md"
    );
    assert!(
        stored["messages"][0].get("context").is_none(),
        "the text is not repeated in the API"
    );

    // The next turn sends the file's text again as part of the history.
    let r = ask(serde_json::json!({"message": "And again?", "conversation_id": conversation}))
        .await
        .unwrap();
    Events::of(r).collect_json().await;
    let history = serde_json::to_string(&fake.requests()[1].body).unwrap();
    assert!(history.contains("The launch code is 7781."), "{history}");

    // A file without text, too many characters, of another project or of someone else:
    // refused with its reason, nothing sent.
    let refused_with = |file: Value, reason: &'static str| {
        let (app, token, agent) = (&app, &token, &agent);
        async move {
            let (status, body) = app
                .post_json(
                    token,
                    &format!("/api/chat/agents/{agent}"),
                    serde_json::json!({"message": "read this", "file_ids": [file]}),
                )
                .await;
            assert_eq!(status, 422, "{body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(reason),
                "{reason}: {body}"
            );
        }
    };
    refused_with(binary["id"].clone(), "has no text").await;
    let (_, long) = upload(&app, &token, &project, "long.txt", vec![b'a'; 20_000]).await;
    refused_with(long["id"].clone(), "too long").await;
    let elsewhere = app.project(&token, "Elsewhere").await;
    let (_, far) = upload(&app, &token, &elsewhere, "far.txt", b"far away".to_vec()).await;
    refused_with(far["id"].clone(), "another project").await;
    let (other, _, their_agent) = app.chat_setup("attach-other@example.com").await;
    let (status, _) = app
        .post_json(
            &other,
            &format!("/api/chat/agents/{their_agent}"),
            serde_json::json!({"message": "steal", "file_ids": [notes]}),
        )
        .await;
    assert_eq!(status, 404, "someone else's file");
    assert_eq!(fake.requests().len(), 2, "nothing refused went upstream");
}

#[tokio::test]
async fn project_knowledge_answers_from_the_files_and_cites_them() {
    use crate::support::fake_llm::{FakeLlm, Script};
    use crate::support::sse::Events;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("The code is 7781 [1]."));
    // A Responses provider without a Files API: confab's own search is all there is.
    let plain_url = fake.base_url();
    let app = TestApp::with_llm(&fake.base_url(), move |s| {
        let mut plain = crate::support::app::compatible_provider("plain", &plain_url);
        plain.api = confab::llm::Api::Responses;
        s.llm.providers.push(plain);
    })
    .await;
    let (token, project, agent) = app.chat_setup("knowledge@example.com").await;
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/agents/{agent}"),
            serde_json::json!({"provider": "plain"}),
        )
        .await;
    assert_eq!(status, 200);
    let manual = format!(
        "{}\n\nRocket launches need the launch code, which is 7781, entered twice.\n\n{}",
        "Safety first. ".repeat(80),
        "Weather rules apply. ".repeat(80)
    );
    upload(&app, &token, &project, "manual.md", manual.into_bytes()).await;
    upload(
        &app,
        &token,
        &project,
        "recipes.txt",
        b"Bake the bread for forty minutes.".to_vec(),
    )
    .await;
    let ask = |message: &'static str| {
        app.api
            .post(app.url(&format!("/api/chat/agents/{agent}")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "message": message }))
            .send()
    };

    // Off by default: nothing from the files goes upstream.
    Events::of(ask("What is the launch code?").await.unwrap())
        .collect_json()
        .await;
    let off = fake.requests()[0].body["instructions"].clone();
    assert!(!off.to_string().contains("7781"), "{off}");

    let (status, turned) = app
        .send_json(
            &token,
            reqwest::Method::PUT,
            &format!("/api/projects/{project}/knowledge"),
            serde_json::json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 200, "{turned}");
    assert_eq!(turned["knowledge"], true);

    let (_, done) = Events::of(ask("Which code launches the rocket?").await.unwrap())
        .collect_json()
        .await;
    let instructions = fake.requests()[1].body["instructions"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        instructions.contains("[1] manual.md:") && instructions.contains("7781"),
        "the best passage goes first: {instructions}"
    );
    assert!(
        !instructions.contains("Bake the bread"),
        "an unrelated file stays out"
    );
    let conversation = done["conversation_id"].as_str().unwrap();
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    let citations = &stored["messages"][1]["citations"];
    assert_eq!(citations[0]["filename"], "manual.md", "{citations}");
    assert_eq!(citations[0]["n"], 1);

    // A failed answer retried is given the same passages and keeps the sources (both
    // providers refuse: the agent's, then the fallback).
    fake.push(Script::status(400));
    fake.push(Script::status(400));
    let (_, failed) = Events::of(ask("Which code launches the rocket?").await.unwrap())
        .collect_json()
        .await;
    assert_eq!(failed["status"], "failed");
    let r = app
        .api
        .post(app.url(&format!(
            "/messages/{}/retry",
            failed["message_id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    fake.wait_for_requests(4).await;
    let retried = fake.requests()[3].body["instructions"].to_string();
    assert!(retried.contains("7781"), "{retried}");

    // The page shows the sources under the answer.
    let page = app
        .api
        .get(app.url(&format!("/conversations/{conversation}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Sources from the project") && page.contains("<strong>manual.md</strong>"),
        "{page}"
    );
    let other = app.user_token("knowledge-other@example.com").await;
    let (status, _) = app
        .send_json(
            &other,
            reqwest::Method::PUT,
            &format!("/api/projects/{project}/knowledge"),
            serde_json::json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 404, "someone else's project");
}

#[tokio::test]
async fn files_go_on_to_the_providers_files_api_and_are_deleted_there_too() {
    use crate::support::fake_llm::FakeLlm;
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, _) = app.chat_setup("remote@example.com").await;
    let body = bytes_of(3 * 1024 * 1024 + 5, 9);
    let sha = hex::encode(Sha256::digest(&body));

    let (status, file) = upload(&app, &token, &project, "report.txt", body).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["status"], "uploaded");
    let remote = file["provider_file_id"].as_str().unwrap().to_string();
    let at_provider = fake.files();
    assert_eq!(at_provider.len(), 1);
    assert_eq!(at_provider[0].id, remote);
    assert_eq!(at_provider[0].sha256, sha, "byte-identical at the provider");
    assert_eq!(at_provider[0].purpose, "user_data");
    assert_eq!(at_provider[0].filename, "report.txt");

    // A provider that will not delete: the file stays, marked, and the person is told.
    fake.fail_file_deletes(true);
    let id = file["id"].as_str().unwrap();
    let (status, body) = app.delete(&token, &format!("/api/files/{id}")).await;
    assert_eq!(status, 502);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try deleting it again"),
        "{body}"
    );
    let (_, kept) = app.get_json(&token, &format!("/api/files/{id}")).await;
    assert_eq!(kept["status"], "delete_failed");
    assert!(!fake.files()[0].deleted);

    // Again, once the provider works: gone there and here.
    fake.fail_file_deletes(false);
    let (status, _) = app.delete(&token, &format!("/api/files/{id}")).await;
    assert_eq!(status, 204);
    assert!(fake.files()[0].deleted);
    assert!(stored_files(&app).is_empty());

    // Seed 001 asks for purpose=assistants.
    let r = app
        .api
        .post(app.url("/api/files/upload"))
        .bearer_auth(&token)
        .multipart(
            reqwest::multipart::Form::new()
                .text("project_id", project.clone())
                .text("purpose", "assistants")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(b"for assistants".to_vec()).file_name("a.txt"),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let assistants: Value = r.json().await.unwrap();
    let at_provider = fake.files();
    let sent = at_provider.last().unwrap();
    assert_eq!(sent.purpose, "assistants");
    assert_eq!(assistants["file_id"], sent.id.as_str());

    // The provider refuses a file (its own limit): kept here, marked; attached later, it is
    // uploaded then, on demand, and goes as a file.
    fake.fail_file_uploads(Some(413));
    let (status, refused) = upload(&app, &token, &project, "later.txt", b"later".to_vec()).await;
    assert_eq!(status, 201, "{refused}");
    assert_eq!(refused["status"], "upload_failed");
    assert_eq!(refused["provider_file_id"], Value::Null);
    fake.fail_file_uploads(None);
    let agents = app
        .get_json(&token, &format!("/api/projects/{project}/agents"))
        .await
        .1;
    let agent = agents[0]["id"].as_str().unwrap();
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"message": "Read it", "file_ids": [refused["id"]]}))
        .send()
        .await
        .unwrap();
    crate::support::sse::Events::of(r).collect_json().await;
    let (_, now) = app
        .get_json(
            &token,
            &format!("/api/files/{}", refused["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(now["status"], "uploaded", "{now}");
    let last = fake.requests().last().unwrap().body["input"][0]["content"][1].clone();
    assert_eq!(last["type"], "input_file");
    assert_eq!(last["file_id"], now["provider_file_id"]);

    // Deleting a project deletes its files' copies at the provider.
    let (_, second) = upload(&app, &token, &project, "second.txt", b"second".to_vec()).await;
    assert_eq!(second["status"], "uploaded");
    let (status, _) = app
        .delete(&token, &format!("/api/projects/{project}"))
        .await;
    assert_eq!(status, 204);
    assert!(fake.files().iter().all(|f| f.deleted), "{:?}", fake.files());
}

#[tokio::test]
async fn a_provider_without_the_file_gets_its_text_instead() {
    use crate::support::fake_llm::{FakeLlm, Script};
    use crate::support::sse::Events;
    let primary = FakeLlm::start().await;
    primary.set_default(Script::status(500));
    let backup = FakeLlm::start().await;
    backup.set_default(Script::answer("From the backup."));
    let backup_url = backup.base_url();
    let app = TestApp::with_llm(&primary.base_url(), move |s| {
        s.llm.max_retries = 0;
        s.llm
            .providers
            .push(crate::support::app::compatible_provider(
                "backup",
                &backup_url,
            ));
    })
    .await;
    let (token, project, agent) = app.chat_setup("fallback-files@example.com").await;
    let (_, notes) = upload(
        &app,
        &token,
        &project,
        "notes.md",
        b"The launch code is 7781.".to_vec(),
    )
    .await;
    assert_eq!(notes["status"], "uploaded", "kept at openai too");
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"message": "What is the code?", "file_ids": [notes["id"]]}))
        .send()
        .await
        .unwrap();
    let (_, done) = Events::of(r).collect_json().await;
    assert_eq!(done["provider"], "backup");
    let first_try = primary.requests()[0].body.to_string();
    assert!(
        first_try.contains("input_file") && !first_try.contains("7781"),
        "{first_try}"
    );
    let fallback = backup.requests()[0].body.to_string();
    assert!(
        fallback.contains("The launch code is 7781.") && !fallback.contains("input_file"),
        "the fallback, which does not hold the file, gets its text: {fallback}"
    );
}

/// Asks `check` after each round of confab's background indexing (a sync, a round of polls
/// at the provider) until it gives a value: no request waits for that work, and a round is what
/// can change the answer, so no sleeping and guessing.
async fn eventually<T, F, Fut>(app: &TestApp, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut rounds = app.state.indexing.rounds.subscribe();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::timeout(std::time::Duration::from_secs(20), rounds.changed())
            .await
            .unwrap_or_else(|_| panic!("never: {what}"))
            .unwrap();
    }
}

#[tokio::test]
async fn with_the_responses_api_the_provider_searches_the_files_and_its_citations_are_shown() {
    use crate::support::fake_llm::{FakeLlm, Script};
    use crate::support::sse::Events;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Notice is ninety days."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, agent) = app.chat_setup("vector@example.com").await;
    let (_, contract) = upload(
        &app,
        &token,
        &project,
        "contract.md",
        b"The notice period is ninety days.".to_vec(),
    )
    .await;
    assert_eq!(contract["status"], "uploaded");
    assert_eq!(contract["passages"], 1, "confab's own search has it too");
    assert!(fake.vector_stores().is_empty(), "knowledge is off");
    let contract_id = contract["id"].as_str().unwrap().to_string();
    let remote = contract["provider_file_id"].as_str().unwrap().to_string();

    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PUT,
            &format!("/api/projects/{project}/knowledge"),
            serde_json::json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 200);
    // The provider indexes it in a vector store of the project's; confab polls until it is done.
    let indexed = eventually(&app, "the file is indexed", || async {
        let (_, file) = app
            .get_json(&token, &format!("/api/files/{contract_id}"))
            .await;
        (file["index_status"] == "indexed").then_some(file)
    })
    .await;
    assert_eq!(indexed["index_error"], Value::Null);
    let stores: Vec<_> = fake
        .vector_stores()
        .into_iter()
        .filter(|s| !s.deleted)
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
    assert_eq!(stores[0].files[0].file_id, remote);
    assert_eq!(stores[0].files[0].status, "completed");
    let page = app.get_page(&token, &format!("/projects/{project}")).await;
    assert!(page.contains("Indexed at openai"), "{page}");

    let chats_before = fake.request_count();
    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"message": "What is the notice period?"}))
        .send()
        .await
        .unwrap();
    let (_, done) = Events::of(r).collect_json().await;
    assert_eq!(done["status"], "complete", "{done}");
    let sent = &fake.requests()[chats_before].body;
    assert_eq!(
        sent["tools"],
        serde_json::json!([{"type": "file_search", "vector_store_ids": [stores[0].id]}])
    );
    assert!(
        !sent
            .to_string()
            .contains("Passages from this project's files"),
        "the provider searches; confab's passages stay out: {sent}"
    );
    let conversation = done["conversation_id"].as_str().unwrap();
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    let citations = &stored["messages"][1]["citations"];
    assert_eq!(citations[0]["filename"], "contract.md", "{citations}");
    assert_eq!(citations[0]["file_id"], contract_id.as_str());
    let page = app
        .get_page(&token, &format!("/conversations/{conversation}"))
        .await;
    assert!(
        page.contains("Sources from the project's files") && page.contains("contract.md"),
        "{page}"
    );

    // Indexing that fails is shown with the provider's reason.
    fake.fail_indexing(true);
    let (_, scan) = upload(&app, &token, &project, "scan.txt", b"unreadable".to_vec()).await;
    let scan_id = scan["id"].as_str().unwrap().to_string();
    let failed = eventually(&app, "indexing the scan fails", || async {
        let (_, file) = app.get_json(&token, &format!("/api/files/{scan_id}")).await;
        (file["index_status"] == "index_failed").then_some(file)
    })
    .await;
    assert!(!failed["index_error"].as_str().unwrap().is_empty());
    let page = app.get_page(&token, &format!("/projects/{project}")).await;
    assert!(page.contains("Indexing at openai failed"), "{page}");

    // A deleted file leaves the store; a deleted project takes its store with it.
    let (status, _) = app
        .delete(&token, &format!("/api/files/{contract_id}"))
        .await;
    assert_eq!(status, 204);
    let store = |id: &str| {
        fake.vector_stores()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap()
    };
    assert!(
        store(&stores[0].id)
            .files
            .iter()
            .all(|f| f.file_id != remote),
        "{:?}",
        fake.vector_stores()
    );
    let (status, _) = app
        .delete(&token, &format!("/api/projects/{project}"))
        .await;
    assert_eq!(status, 204);
    assert!(store(&stores[0].id).deleted);
}

#[tokio::test]
async fn a_pdfs_text_layer_is_attached_and_searched() {
    use crate::support::fake_llm::{FakeLlm, Script};
    use crate::support::sse::Events;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Read it."));
    // A Chat Completions provider without a Files API: it can only get the text.
    let local_url = fake.base_url();
    let app = TestApp::spawn_with(move |s| {
        s.llm
            .providers
            .push(crate::support::app::compatible_provider(
                "local", &local_url,
            ));
    })
    .await;
    let (token, project, agent) = app.chat_setup("pdf@example.com").await;
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PATCH,
            &format!("/api/agents/{agent}"),
            serde_json::json!({"provider": "local"}),
        )
        .await;
    assert_eq!(status, 200);
    let pdf = crate::support::pdf::with_text(&[
        "Quarterly report",
        "The warehouse in Tromso holds 4410 pallets.",
    ]);
    let part = reqwest::multipart::Part::bytes(pdf)
        .file_name("report.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let r = app
        .api
        .post(app.url(&format!("/api/projects/{project}/files")))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["content_type"], "application/pdf");
    assert_eq!(report["passages"], 1, "its text is searchable: {report}");

    let r = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"message": "How many pallets?", "file_ids": [report["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Events::of(r).collect_json().await;
    let sent = fake.requests()[0].body.to_string();
    assert!(
        sent.contains("The warehouse in Tromso holds 4410 pallets."),
        "the PDF's text goes with the message: {sent}"
    );
    assert!(!sent.contains("%PDF"), "not its bytes");
}

#[tokio::test]
async fn a_50_mb_upload_streams_through_to_the_provider_byte_identical_and_once() {
    use crate::support::fake_llm::FakeLlm;
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 200;
    // Generated as it is sent, so the test holds no 50 MB either. Hashed first: hashing takes
    // seconds in a debug build, long enough for the server to close an idle kept-alive
    // connection that the upload would then be written into.
    let chunk = |i: usize| bytes_of(CHUNK, (i % 251) as u8);
    let mut hasher = Sha256::new();
    for i in 0..CHUNKS {
        hasher.update(chunk(i));
    }
    let sha = hex::encode(hasher.finalize());
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, _) = app.chat_setup("fifty@example.com").await;
    let send = || {
        let body =
            futures_util::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(body),
            (CHUNK * CHUNKS) as u64,
        )
        .file_name("fifty.bin");
        app.api
            .post(app.url(&format!("/api/projects/{project}/files")))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 201);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["bytes"], CHUNK * CHUNKS);
    assert_eq!(file["sha256"], sha.as_str());
    assert_eq!(file["status"], "uploaded");
    let at_provider = fake.files();
    assert_eq!(at_provider.len(), 1);
    assert_eq!(at_provider[0].sha256, sha, "byte-identical at the provider");
    assert_eq!(at_provider[0].bytes, (CHUNK * CHUNKS) as u64);
    assert_eq!(file["provider_file_id"], at_provider[0].id.as_str());

    // The download gives the same bytes back.
    let r = app
        .api
        .get(app.url(&format!(
            "/api/files/{}/content",
            file["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut downloaded = Sha256::new();
    let mut body = r.bytes_stream();
    while let Some(piece) = futures_util::StreamExt::next(&mut body).await {
        downloaded.update(piece.unwrap());
    }
    assert_eq!(hex::encode(downloaded.finalize()), sha);

    // The same bytes again: the project keeps one file, and the provider one live copy.
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    let live: Vec<_> = fake.files().into_iter().filter(|f| !f.deleted).collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].id, at_provider[0].id);
}

#[tokio::test]
async fn indexing_waits_for_a_provider_that_is_down_and_finishes_when_it_is_back() {
    use crate::support::fake_llm::FakeLlm;
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |s| s.files.index_retry_secs = 1).await;
    let (token, project, _) = app.chat_setup("down@example.com").await;
    // The provider is down: the upload keeps the file, and indexing it has to wait.
    fake.fail_file_uploads(Some(503));
    let (status, _) = app
        .send_json(
            &token,
            reqwest::Method::PUT,
            &format!("/api/projects/{project}/knowledge"),
            serde_json::json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, notes) = upload(
        &app,
        &token,
        &project,
        "notes.md",
        b"Rollout is on Friday.".to_vec(),
    )
    .await;
    let notes_id = notes["id"].as_str().unwrap().to_string();
    let waiting = eventually(&app, "the file waits for the provider", || async {
        let (_, file) = app
            .get_json(&token, &format!("/api/files/{notes_id}"))
            .await;
        (file["index_status"] == "index_waiting").then_some(file)
    })
    .await;
    assert!(!waiting["index_error"].as_str().unwrap().is_empty());
    let page = app.get_page(&token, &format!("/projects/{project}")).await;
    assert!(page.contains("Waiting for openai to answer"), "{page}");

    // Back up: the next try uploads and indexes it, with nobody asking again.
    fake.fail_file_uploads(None);
    let indexed = eventually(
        &app,
        "the file is indexed once the provider is back",
        || async {
            let (_, file) = app
                .get_json(&token, &format!("/api/files/{notes_id}"))
                .await;
            (file["index_status"] == "indexed").then_some(file)
        },
    )
    .await;
    assert_eq!(indexed["status"], "uploaded");
    let live: Vec<_> = fake.files().into_iter().filter(|f| !f.deleted).collect();
    assert_eq!(live.len(), 1, "one copy at the provider: {live:?}");
}

#[tokio::test]
async fn a_file_deleted_while_it_is_sent_to_the_provider_leaves_no_copy_there() {
    use crate::support::fake_llm::FakeLlm;
    use confab::files::model::StoredFile;
    use diesel::prelude::*;
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, project, _) = app.chat_setup("racer@example.com").await;
    // The provider refuses it at first: confab keeps the file, the provider has no copy.
    fake.fail_file_uploads(Some(400));
    let (_, file) = upload(&app, &token, &project, "late.md", b"late words".to_vec()).await;
    // Another project holds the same bytes, so they stay on disk when this file goes (as they
    // do, open, while a deleted file is being sent).
    let (_, other) = app
        .post_json(
            &token,
            "/api/projects",
            serde_json::json!({"name": "Other"}),
        )
        .await;
    let other = other["id"].as_str().unwrap();
    upload(&app, &token, other, "late.md", b"late words".to_vec()).await;
    fake.fail_file_uploads(None);
    let id: uuid::Uuid = file["id"].as_str().unwrap().parse().unwrap();
    let mut pooled = app.pool.get().unwrap();
    let conn = &mut pooled.conn;
    let row = confab::db::schema::files::table
        .find(id)
        .select(StoredFile::as_select())
        .first(conn)
        .unwrap();
    drop(pooled);
    // The person deletes the file while confab is sending it (the sync read the row first).
    let (status, _) = app.delete(&token, &format!("/api/files/{id}")).await;
    assert_eq!(status, 204);
    let router = app.state.generations.shared_router();
    let provider = router.provider("openai").unwrap().clone();
    let sent = confab::files::service::upload_to(
        &app.pool,
        &confab::files::api::store(&app.state),
        &router,
        "user_data",
        &provider,
        row,
    )
    .await;
    assert!(sent.is_err(), "the file is not found any more");
    let files = fake.files();
    assert!(!files.is_empty(), "the provider got the bytes");
    assert!(
        files.iter().all(|f| f.deleted),
        "and its copy was deleted again: {files:?}"
    );
}
