//! CORS: the origins in `server.cors_origins` may call the API from their pages; others may not,
//! and a cookie from another origin still needs the CSRF token.

use reqwest::Method;

use crate::support::app::TestApp;

const ALLOWED: &str = "https://app.example.com";

async fn preflight(app: &TestApp, origin: &str, method: &str) -> reqwest::Response {
    preflight_to(app, "/api/projects", origin, method).await
}

async fn preflight_to(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.api
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_allowed_origin_gets_a_preflight_and_readable_answers() {
    let app = TestApp::spawn_with(|s| s.server.cors_origins = vec![ALLOWED.into()]).await;
    let response = preflight(&app, ALLOWED, "POST").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let methods = header(&response, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(header(&response, "access-control-max-age"), Some("7200"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    // The OpenAI-compatible routes too.
    let response = preflight_to(&app, "/v1/chat/completions", ALLOWED, "POST").await;
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );

    // The answer itself: readable by that origin, with the headers a client needs exposed.
    let (token, _, _) = app.chat_setup("cors@example.com").await;
    let response = app
        .api
        .get(app.url("/api/projects"))
        .header("Origin", ALLOWED)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let exposed = header(&response, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("ratelimit"),
        "{exposed}"
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let app = TestApp::spawn_with(|s| s.server.cors_origins = vec![ALLOWED.into()]).await;
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.example",
        "null",
    ] {
        let response = preflight(&app, origin, "POST").await;
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "{origin}"
        );
    }
    // With none configured (the default), no origin is allowed.
    let app = TestApp::spawn().await;
    let response = preflight(&app, ALLOWED, "GET").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_cookie_from_an_allowed_origin_still_needs_the_csrf_token() {
    let app = TestApp::spawn_with(|s| s.server.cors_origins = vec![ALLOWED.into()]).await;
    let browser = app.browser("cookie-cors@example.com").await;
    let response = browser
        .client
        .post(format!("{}/api/projects", browser.base))
        .header("Origin", ALLOWED)
        .json(&serde_json::json!({"name": "Sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[test]
fn a_wildcard_or_a_path_is_refused_at_start() {
    use confab::settings::{Overrides, Settings};
    for bad in [
        "*",
        "https://app.example.com/",
        "app.example.com",
        "https://*.example.com",
    ] {
        let env = [("CONFAB_SERVER__CORS_ORIGINS".to_string(), bad.to_string())]
            .into_iter()
            .collect();
        let refused = Settings::load_from(&Overrides::default(), env);
        assert!(refused.is_err(), "{bad} was accepted");
    }
    let env = [(
        "CONFAB_SERVER__CORS_ORIGINS".to_string(),
        "https://a.example.com,http://localhost:3000".to_string(),
    )]
    .into_iter()
    .collect();
    let settings = Settings::load_from(&Overrides::default(), env).unwrap();
    assert_eq!(
        settings.server.cors_origins,
        ["https://a.example.com", "http://localhost:3000"]
    );
}
