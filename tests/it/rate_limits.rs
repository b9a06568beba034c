//! The API's rate limits: per person, per API key, per client address for requests that are not
//! signed, with the IETF `RateLimit` headers; and the client address behind trusted proxies.

use serde_json::json;

use crate::support::app::TestApp;

/// GET `path` with an optional bearer token and `X-Forwarded-For`.
async fn get(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app.api.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded_for);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is sent"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_burst_over_a_persons_limit_is_refused_while_others_go_on() {
    let app = TestApp::spawn_with(|s| s.server.rate_limit.requests_per_minute = 5).await;
    let busy = app.user_token("busy@example.com").await;
    let calm = app.user_token("calm@example.com").await;

    for remaining in (0..5).rev() {
        let response = get(&app, "/api/users/me", Some(&busy), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-policy"), "\"user\";q=5;w=60");
        let standing = header(&response, "ratelimit");
        assert!(
            standing.starts_with(&format!("\"user\";r={remaining};t=")),
            "{standing}"
        );
    }
    let refused = get(&app, "/api/users/me", Some(&busy), None).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "ratelimit-policy"), "\"user\";q=5;w=60");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"user\";r=0;t={retry_after}")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Every route counts, not only one.
    assert_eq!(
        get(&app, "/api/projects", Some(&busy), None).await.status(),
        429
    );

    let other = get(&app, "/api/users/me", Some(&calm), None).await;
    assert_eq!(other.status(), 200, "another person is not affected");
    assert!(header(&other, "ratelimit").starts_with("\"user\";r=4;"));
}

#[tokio::test]
async fn an_api_key_has_a_limit_of_its_own_within_its_owners() {
    let app = TestApp::spawn_with(|s| s.server.rate_limit.requests_per_minute_per_key = 2).await;
    let session = app.user_token("scripts@example.com").await;
    let (_, created) = app
        .post_json(&session, "/api/keys", json!({"name": "loop"}))
        .await;
    let key = created["key"].as_str().unwrap();
    let first = get(&app, "/api/users/me", Some(key), None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        "\"key\";q=2;w=60, \"user\";q=600;w=60"
    );
    assert_eq!(
        get(&app, "/api/users/me", Some(key), None).await.status(),
        200
    );
    let refused = get(&app, "/api/users/me", Some(key), None).await;
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "ratelimit").starts_with("\"key\";r=0;"));
    // The person, at their browser, goes on.
    assert_eq!(
        get(&app, "/api/users/me", Some(&session), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = TestApp::spawn_with(|s| {
        s.server.rate_limit.requests_per_minute_per_address = 3;
        s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for _ in 0..3 {
        let response = get(&app, "/api/users/me", None, Some("203.0.113.1")).await;
        assert_eq!(response.status(), 401, "not signed, but not over the limit");
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"address\";q=3;w=60"
        );
    }
    let refused = get(&app, "/api/users/me", None, Some("203.0.113.1")).await;
    assert_eq!(refused.status(), 429);
    // The proxy's next client is someone else; a hop the client wrote itself (left of what
    // the proxy appended) changes nothing.
    assert_eq!(
        get(&app, "/api/users/me", None, Some("203.0.113.2"))
            .await
            .status(),
        401
    );
    assert_eq!(
        get(
            &app,
            "/api/users/me",
            None,
            Some("198.51.100.1, 203.0.113.1")
        )
        .await
        .status(),
        429
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_dodges_nothing() {
    let app = TestApp::spawn_with(|s| {
        s.server.rate_limit.requests_per_minute_per_address = 3;
    })
    .await;
    for n in 0..3 {
        let spoofed = format!("203.0.113.{n}");
        let response = get(&app, "/api/users/me", None, Some(&spoofed)).await;
        assert_eq!(response.status(), 401);
    }
    for spoofed in [Some("198.51.100.99"), None] {
        let response = get(&app, "/api/users/me", None, spoofed).await;
        assert_eq!(response.status(), 429, "{spoofed:?} is the same client");
    }
    // Sign-in is counted by the same address too.
    let response = app
        .api
        .post(app.url("/api/auth/login"))
        .header("X-Forwarded-For", "198.51.100.100")
        .json(&json!({"email": "a@example.com", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn the_openai_compatible_routes_are_limited_too_and_say_so_in_openais_shape() {
    let app = TestApp::spawn_with(|s| s.server.rate_limit.requests_per_minute = 2).await;
    let token = app.user_token("v1-limit@example.com").await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            app.api
                .get(app.url("/v1/models"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        );
    }
    let refused = last.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers().contains_key("ratelimit"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "requests", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}
