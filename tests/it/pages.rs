//! The HTML side: forms with and without htmx, CSRF, escaping, security headers.

use crate::support::app::{TestApp, created_project, csrf_of};

#[tokio::test]
async fn cookie_requests_need_the_csrf_token_and_our_origin() {
    let app = TestApp::spawn().await;
    let browser = app.browser("csrf@example.com").await;
    let csrf = csrf_of(&browser.get("/projects").await.1);

    let post = |fields: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut request = browser.client.post(app.url("/projects")).form(&fields);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    let r = post(vec![("name", "No token".into())], None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text().await.unwrap().contains("Reload the page"),
        "a readable HTML error page"
    );

    let r = post(
        vec![
            ("csrf_token", "0".repeat(64)),
            ("name", "Wrong token".into()),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    let r = post(
        vec![("csrf_token", csrf.clone()), ("name", "Foreign".into())],
        Some("https://evil.example"),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a foreign Origin is refused even with the token"
    );

    // A token in the URL does not count: URLs leak through logs, history and Referer.
    let r = browser
        .client
        .post(app.url(&format!("/projects?csrf_token={csrf}")))
        .form(&[("name", "Token in URL")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let own_origin: &'static str = Box::leak(app.address.clone().into_boxed_str());
    let r = post(
        vec![("csrf_token", csrf.clone()), ("name", "Good".into())],
        Some(own_origin),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);

    // The cookie on an API call needs the token as well...
    let r = browser
        .client
        .post(app.url("/api/projects"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    // ...and a Bearer token is exempt.
    let token = app.user_token("bearer@example.com").await;
    let r = app
        .api
        .post(app.url("/api/projects"))
        .bearer_auth(&token)
        .header("Origin", "https://evil.example")
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let (_, page) = browser.get("/projects").await;
    assert!(page.contains("Good") && !page.contains("No token") && !page.contains("Foreign"));
}

#[tokio::test]
async fn every_page_sends_the_security_headers() {
    let app = TestApp::spawn().await;
    let browser = app.browser("headers@example.com").await;
    for path in ["/login", "/projects", "/account", "/does-not-exist"] {
        let r = browser.client.get(app.url(path)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("referrer-policy"));
    }
}

#[tokio::test]
async fn names_with_markup_render_as_text_everywhere() {
    let app = TestApp::spawn().await;
    let browser = app.browser("xss@example.com").await;
    let evil = "<script>alert(1)</script>";
    let r = browser
        .post_form("/projects", &[("name", evil), ("description", evil)])
        .await;
    assert_eq!(r.status(), 303);
    let project_url = created_project(&r);
    let project_id = project_url.trim_start_matches("/projects/").to_string();
    let r = browser
        .post_form(
            &format!("{project_url}/agents"),
            &[
                ("name", evil),
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
            ],
        )
        .await;
    let agent_url = r.headers()["location"].to_str().unwrap().to_string();
    browser
        .post_form(
            &format!("{agent_url}/prompts"),
            &[("title", evil), ("content", evil)],
        )
        .await;
    browser
        .post_form(
            &format!("/projects/{project_id}/prompts"),
            &[("title", evil), ("content", evil)],
        )
        .await;

    let (_, agent_page) = browser.get(&agent_url).await;
    let prompt_href = agent_page
        .split("href=\"/prompts/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    for path in [
        "/projects".to_string(),
        project_url.clone(),
        agent_url.clone(),
        format!("/prompts/{prompt_href}"),
        format!("{project_url}/delete"),
    ] {
        let (status, html) = browser.get(&path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains(evil), "{path} contains the raw script tag");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || html.contains("&#60;script&#62;"),
            "{path} shows it as text"
        );
    }
}

#[tokio::test]
async fn forms_work_without_javascript_and_show_errors_next_to_fields() {
    let app = TestApp::spawn().await;
    let browser = app.browser("nojs@example.com").await;
    let r = browser
        .post_form("/projects", &[("name", "  "), ("description", "kept text")])
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("<html"), "a whole page without htmx");
    assert!(html.contains("id=\"project-name-error\"") && html.contains("Name cannot be empty."));
    assert!(html.contains("kept text"), "what was typed is not lost");

    let r = browser.post_form("/projects", &[("name", "Plain")]).await;
    assert_eq!(r.status(), 303);
    let project_url = created_project(&r);
    let (_, opened) = browser.get(&format!("{project_url}?created=1")).await;
    assert!(
        opened.contains("Project created"),
        "a new project says it was made"
    );

    let r = browser
        .post_form(
            &format!("{project_url}/agents"),
            &[
                ("name", "Bot"),
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("temperature", "7"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("Temperature must be between 0 and 2."));
    assert!(html.contains("value=\"7\""), "the typed value is kept");

    // Delete asks first (GET shows a confirmation), then the POST deletes.
    let (status, confirm) = browser.get(&format!("{project_url}/delete")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("cannot be undone"));
    let r = browser
        .post_form(&format!("{project_url}/delete"), &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(browser.get(&project_url).await.0, 404);
}

#[tokio::test]
async fn htmx_requests_get_fragments() {
    let app = TestApp::spawn().await;
    let browser = app.browser("htmx@example.com").await;
    // A created project opens, with JavaScript too (htmx follows HX-Redirect).
    let r = browser
        .htmx_post("/projects", &[("name", "Fragmented")])
        .await;
    assert_eq!(r.status(), 200);
    let opened = r.headers()["hx-redirect"].to_str().unwrap().to_string();
    assert!(
        opened.starts_with("/projects/") && opened.ends_with("?created=1"),
        "{opened}"
    );

    let r = browser.htmx_post("/projects", &[("name", "")]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Name cannot be empty."));

    // Prompts on an agent page: the fragment carries the new system message out of band.
    let (_, dashboard) = browser.get("/projects").await;
    let project_id = dashboard
        .split("href=\"/projects/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, project_page) = browser.get(&format!("/projects/{project_id}")).await;
    let agent_id = project_page
        .split("href=\"/agents/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = browser
        .htmx_post(
            &format!("/agents/{agent_id}/prompts"),
            &[("title", "Role"), ("content", "You help.")],
        )
        .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"prompts-section\""));
    assert!(html.contains("id=\"system-message\" hx-swap-oob=\"true\""));
    assert!(html.contains("You help."));

    // Signed out, htmx is told to go to the login page rather than swapping an error in.
    let anonymous = reqwest::Client::new();
    let r = anonymous
        .get(app.url("/projects"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

#[tokio::test]
async fn prompt_history_and_rollback_in_the_page() {
    let app = TestApp::spawn().await;
    let browser = app.browser("history@example.com").await;
    let r = browser.post_form("/projects", &[("name", "H")]).await;
    let project_url = created_project(&r);
    browser
        .post_form(
            &format!("{project_url}/prompts"),
            &[("title", "Tone"), ("content", "first")],
        )
        .await;
    let (_, page) = browser.get(&project_url).await;
    let prompt_url = format!(
        "/prompts/{}",
        page.split("href=\"/prompts/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
    );

    let r = browser
        .htmx_post(&prompt_url, &[("title", "Tone"), ("content", "second")])
        .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Saved as version 2."));
    assert!(html.contains("data-version=\"1\"") && html.contains("data-version=\"2\""));

    let r = browser
        .htmx_post(&format!("{prompt_url}/versions/1/restore"), &[])
        .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Version 1 is current again."));
    let (_, page) = browser.get(&project_url).await;
    assert!(page.contains("first") && !page.contains(">second<"));
}

#[tokio::test]
async fn forwarded_host_headers_from_anyone_do_not_pass_the_origin_check() {
    let app = TestApp::spawn().await;
    let browser = app.browser("forwarded@example.com").await;
    let csrf = csrf_of(&browser.get("/projects").await.1);
    // Before, with no public_url set, these made evil.example "our" origin.
    for (name, value) in [
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "host=evil.example;proto=https"),
    ] {
        let r = browser
            .client
            .post(app.url("/projects"))
            .header("Origin", "http://evil.example")
            .header(name, value)
            .form(&[("csrf_token", csrf.as_str()), ("name", "Forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
}

#[tokio::test]
async fn a_form_content_type_is_read_whatever_its_case() {
    let app = TestApp::spawn().await;
    let browser = app.browser("mime@example.com").await;
    let csrf = csrf_of(&browser.get("/projects").await.1);
    let body =
        serde_urlencoded::to_string([("csrf_token", csrf.as_str()), ("name", "Upper")]).unwrap();
    let r = browser
        .client
        .post(app.url("/projects"))
        .header("Content-Type", "Application/X-WWW-Form-Urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn signing_in_replaces_a_csrf_cookie_planted_before() {
    let app = TestApp::spawn().await;
    app.user_token("planted@example.com").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let planted = "a".repeat(64);
    let r = client
        .post(app.url("/login"))
        .header("Cookie", format!("confab_csrf={planted}"))
        .form(&[
            ("csrf_token", planted.as_str()),
            ("email", "planted@example.com"),
            ("password", crate::support::app::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let fresh = r
        .cookies()
        .find(|c| c.name() == "confab_csrf")
        .expect("a new CSRF cookie with the session");
    assert_ne!(fresh.value(), planted);
    assert_eq!(fresh.value().len(), 64);
}

#[tokio::test]
async fn an_empty_dashboard_shows_the_new_project_form_without_a_toggle_that_hides_it() {
    let app = TestApp::spawn().await;
    let browser = app.browser("empty@example.com").await;
    let (_, page) = browser.get("/projects").await;
    assert!(page.contains("Create your first project"));
    assert!(
        !page.contains("<summary"),
        "before: the form sat under a 'New project' toggle that closed it"
    );
    let r = browser.post_form("/projects", &[("name", "First")]).await;
    assert_eq!(r.status(), 303);
    let (_, page) = browser.get("/projects").await;
    assert!(page.contains("New project") && page.contains("<summary"));
}

#[tokio::test]
async fn without_javascript_the_composer_does_not_promise_that_enter_sends() {
    let app = TestApp::spawn().await;
    let browser = app.browser("noscript@example.com").await;
    let (_, agent) = browser.project_with_agent("Quiet").await;
    let (status, page) = browser.get(&format!("/agents/{agent}/chat")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("placeholder=\"Message Assistant…\""),
        "{page}"
    );
    assert!(
        !page.contains("Enter sends"),
        "the hint comes from the script that makes it true"
    );
}

#[tokio::test]
async fn prompt_page_history_and_breadcrumb() {
    let app = TestApp::spawn().await;
    let browser = app.browser("crumbs@example.com").await;
    let (project_url, agent_id) = browser.project_with_agent("Crumbs").await;
    let r = browser
        .post_form(
            &format!("/agents/{agent_id}/prompts"),
            &[("title", "Tone"), ("content", "v1")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, agent_page) = browser.get(&format!("/agents/{agent_id}")).await;
    let prompt_url = format!(
        "/prompts/{}",
        agent_page
            .split("href=\"/prompts/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
    );
    for content in ["v2", "v3"] {
        let r = browser
            .post_form(&prompt_url, &[("title", "Tone"), ("content", content)])
            .await;
        assert!(
            r.status().is_success() || r.status() == 303,
            "{}",
            r.status()
        );
    }
    let (_, page) = browser.get(&prompt_url).await;

    // Projects › Crumbs › Assistant › Tone.
    let crumbs = page.split("aria-label=\"breadcrumb\"").nth(1).unwrap();
    let crumbs = &crumbs[..crumbs.find("</nav>").unwrap()];
    let project_at = crumbs
        .find(&format!("href=\"{project_url}\">Crumbs<"))
        .expect("the project is in the breadcrumb");
    let agent_at = crumbs
        .find(&format!("href=\"/agents/{agent_id}\">Assistant<"))
        .expect("the agent is in the breadcrumb");
    assert!(project_at < agent_at && crumbs.contains("<li>Tone</li>"));

    // The history lists v3, v2, v1 with no list numbers of its own beside them.
    let history = page.split("id=\"version-list\"").nth(1).unwrap();
    assert!(
        page.contains("<ul class=\"versions\" id=\"version-list\">"),
        "not a numbered list"
    );
    let at = |v: &str| history.find(&format!("data-version=\"{v}\"")).unwrap();
    assert!(at("3") < at("2") && at("2") < at("1"));
}
