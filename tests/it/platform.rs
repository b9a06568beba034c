//! Health, static assets, unknown routes, and riding out a database outage.

use std::time::Instant;

use crate::support::app::TestApp;
use crate::support::remote::{Frozen, own_cluster};

#[tokio::test]
async fn health_reports_the_database() {
    let app = TestApp::spawn().await;
    let r = app.api.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok", "database": "ok"}));
}

#[tokio::test]
async fn a_database_outage_answers_503_and_recovers_by_itself() {
    // A cluster of its own, so stopping it does not disturb other tests.
    let dir = tempfile::tempdir().unwrap();
    let server = own_cluster(dir.path()).await;
    let url = server.url("postgres");
    let app = TestApp::spawn_on(&url, None, |_| {}).await;
    assert_eq!(
        app.api
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let browser = app.browser("outage@example.com").await;

    let server = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server
    })
    .await
    .unwrap();
    let started = Instant::now();
    let r = app.api.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // A page says it in a sentence, as every page's message is written.
    let (status, page) = browser.get("/projects").await;
    assert_eq!(status, 503);
    assert!(
        page.contains("The database is not answering right now. Try again in a few seconds."),
        "{page}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "unavailable");
    // Requests that need the database fail fast with the API's envelope rather than hanging.
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"email": "a@b.co", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert!(
        started.elapsed().as_secs() < 20,
        "answers came within the pool's connect timeout, not a hang"
    );

    drop(server);
    let server = own_cluster(dir.path()).await;
    assert_eq!(
        app.api
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "recovered without a restart"
    );
    tokio::task::spawn_blocking(move || server.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn static_files_are_served_from_the_binary_with_long_caching() {
    let app = TestApp::spawn().await;
    let page = app
        .api
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for prefix in [
        "/static/vendor/htmx-2.0.11.min.js",
        "/static/vendor/pico-classless-",
        "/static/app.css?v=",
    ] {
        let start = page
            .find(prefix)
            .unwrap_or_else(|| panic!("{prefix} linked from the page"));
        let url = &page[start..start + page[start..].find('"').unwrap()];
        let r = app.api.get(app.url(url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let cache = r.headers()["cache-control"].to_str().unwrap();
        assert!(
            cache.contains("immutable") && cache.contains("max-age=31536000"),
            "{url}: {cache}"
        );
    }
    let r = app
        .api
        .get(app.url("/static/vendor/htmx-2.0.11.min.js"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        app.api
            .get(app.url("/static/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_right_shape() {
    let app = TestApp::spawn().await;
    let r = app
        .api
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let token = app.user_token("shape@example.com").await;
    let (status, body) = app.get_json(&token, "/api/projects/not-a-uuid").await;
    assert_eq!(status, 404, "a malformed id is simply not found");
    assert_eq!(body["error"]["code"], "not_found");
    let r = app.api.get(app.url("/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn head_is_get_without_a_body_and_other_methods_are_405() {
    let app = TestApp::spawn().await;
    let r = app.api.head(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app.api.head(app.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let token = app.user_token("head@example.com").await;
    let r = app
        .api
        .head(app.url("/api/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = app.api.put(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405, "not a CSRF refusal");
}

/// A path that exists, asked with a method it does not take, says so (405 and `Allow`) in the
/// shape of the rest of its surface: the API's envelope, or a page.
#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_what_it_takes() {
    let app = TestApp::spawn().await;
    let token = app.user_token("method@example.com").await;
    let project = app.project(&token, "Methods").await;

    let r = app
        .api
        .put(app.url(&format!("/api/projects/{project}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "{allow}");
    }
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let r = app
        .api
        .get(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["type"], "invalid_request_error",
        "OpenAI's shape"
    );

    // (A page's unsafe methods meet the CSRF check first.)
    let r = app
        .api
        .get(app.url(&format!("/projects/{project}/agents")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("does not take that method")
    );
}

#[tokio::test]
async fn nothing_with_personal_data_or_tokens_is_cached() {
    let app = TestApp::spawn().await;
    let r = app
        .api
        .post(app.url("/api/auth/register"))
        .json(&serde_json::json!({"email": "cache@example.com", "password": crate::support::app::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"email": "cache@example.com", "password": crate::support::app::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "the access token");
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = app.get_json(&token, "/api/projects").await;
    assert_eq!(status, 200);
    let r = app
        .api
        .get(app.url("/api/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let browser = app.browser("cache-web@example.com").await;
    let r = browser
        .client
        .get(app.url("/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "a signed-in page");
    // Static files keep their long caching.
    let page = browser.get("/projects").await.1;
    let css = page
        .split("href=\"/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = app
        .api
        .get(app.url(&format!("/static/{css}")))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
}

#[tokio::test]
async fn metrics_need_the_configured_token() {
    let app = TestApp::spawn_with(|s| {
        s.server.metrics_token = Some(confab::settings::Secret::new("scrape-me"));
    })
    .await;
    let r = app.api.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404, "not even from this machine without it");
    let r = app
        .api
        .get(app.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .api
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("confab_http_requests_total")
    );
}

#[tokio::test]
async fn bodies_over_the_limit_and_wrong_types_get_short_enveloped_errors() {
    let app = TestApp::spawn().await;
    // Sign-in reads JSON or a form from the raw body: over the limit, the same envelope.
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    // A megabyte of text where a boolean belongs is not echoed back (or into the log) whole.
    let token = app.user_token("echo@example.com").await;
    let project = app.project(&token, "Echo").await;
    let huge = format!("\u{0}{}", "y".repeat(1024 * 1024));
    let r = app
        .api
        .post(app.url(&format!("/api/projects/{project}/prompts")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "t", "content": "c", "enabled": huge}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.len() < 2048, "{} bytes of error", text.len());
    assert!(
        !text.contains("\\u0000"),
        "control characters are escaped, not passed on"
    );
}

#[tokio::test]
async fn a_frozen_database_gets_answers_in_time_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = own_cluster(dir.path()).await;
    let url = server.url("postgres");
    let app = TestApp::spawn_on(&url, None, |s| s.database.query_timeout_secs = 2).await;
    let token = app.user_token("frozen@example.com").await;
    // A client that would rather fail than wait for the thaw.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();

    let frozen = Frozen::freeze(server.pgdata());
    let r = client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 503, "health says so instead of hanging");
    let r = client
        .get(app.url("/api/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "requests answer instead of hanging");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");

    drop(frozen);
    let r = client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "recovered without a restart");
    let (status, _) = app.get_json(&token, "/api/projects").await;
    assert_eq!(status, 200);
    tokio::task::spawn_blocking(move || server.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn odd_methods_and_huge_targets_are_refused_before_they_reach_logs_or_metrics() {
    let app = TestApp::spawn().await;
    let odd = reqwest::Method::from_bytes(format!("X{}", "A".repeat(1000)).as_bytes()).unwrap();
    for _ in 0..3 {
        let r = app
            .api
            .request(odd.clone(), app.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let r = app
        .api
        .get(app.url(&format!("/projects?q={}", "a".repeat(8000))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    let metrics = app
        .api
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("XAAAA"),
        "a method of anyone's choosing is not a label"
    );
}

#[tokio::test]
async fn a_form_too_big_to_read_is_refused_as_too_big_not_as_forged() {
    let app = TestApp::spawn().await;
    let browser = app.browser("big-form@example.com").await;
    // The token comes first in the body, as the page's forms send it; the rest is 3 MB.
    let huge = "x".repeat(3 * 1024 * 1024);
    let response = browser
        .post_form("/projects", &[("name", "Big"), ("description", &huge)])
        .await;
    assert_eq!(response.status(), 413);
    let page = response.text().await.unwrap();
    assert!(!page.contains("expired"), "not the forged-form message");
}

/// A message sent while the database is frozen answers 503; the statement, already sent, may
/// still commit when the database wakes. Its answer, which nobody generates, must then read as
/// failed, not as an answer still being written.
#[tokio::test]
async fn a_message_stored_after_its_request_gave_up_is_not_left_streaming() {
    let fake = crate::support::fake_llm::FakeLlm::start().await;
    fake.set_default(crate::support::fake_llm::Script::answer("Thawed."));
    let dir = tempfile::tempdir().unwrap();
    let server = own_cluster(dir.path()).await;
    let url = server.url("postgres");
    let base_url = fake.base_url();
    let app = TestApp::spawn_on(&url, None, move |s| {
        s.llm.openai_api_key = Some(confab::settings::Secret::new("sk-test"));
        s.llm.openai_base_url = Some(base_url);
        s.database.query_timeout_secs = 1;
        s.database.connect_timeout_secs = 1;
    })
    .await;
    let (token, _, agent) = app.chat_setup("late@example.com").await;
    let send = || {
        app.api
            .post(app.url(&format!("/api/chat/agents/{agent}")))
            .bearer_auth(&token)
            .json(&serde_json::json!({"message": "sent into the freeze"}))
            .send()
    };
    // The agent is remembered, so the next message is one statement.
    crate::support::sse::Events::of(send().await.unwrap())
        .collect_json()
        .await;

    let frozen = Frozen::freeze(server.pgdata());
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 503);
    drop(frozen);

    // Whatever the database stored of it, nothing reads as still being written.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, conversations) = app.get_json(&token, "/api/conversations").await;
        assert_eq!(status, 200);
        let mut streaming = 0;
        for conversation in conversations.as_array().unwrap() {
            let id = conversation["id"].as_str().unwrap();
            let (_, stored) = app
                .get_json(&token, &format!("/api/conversations/{id}"))
                .await;
            streaming += stored["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["status"] == "streaming")
                .count();
        }
        if streaming == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "an answer stored after its 503 still reads as being written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || server.stop().unwrap())
        .await
        .unwrap();
}

/// The pool keeps `database.warm_connections` open, no more: each connection is a PostgreSQL
/// process of 1.6–2.6 MB, and an idle confab is meant to be small. (r2d2's own `min_idle` kept
/// that many spare beyond the ones in use and opened more at start-up while they connected.)
#[tokio::test]
async fn an_idle_confab_keeps_its_warm_connections_and_no_more() {
    let app = TestApp::spawn_with(|settings| settings.database.warm_connections = 3).await;
    let backends = "SELECT count(*) AS count FROM pg_stat_activity \
                    WHERE datname = current_database() AND backend_type = 'client backend'";
    // Open before the first request, so it waits for none (the start-up's own queries use 2).
    assert_eq!(app.count_sql(backends).await, 3);
    let token = app.user_token("warm@example.com").await;
    for _ in 0..5 {
        let (status, _) = app.get_json(&token, "/api/projects").await;
        assert_eq!(status, 200);
    }
    assert_eq!(app.count_sql(backends).await, 3);
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn number(conn: &mut diesel::PgConnection, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql).get_result::<Number>(conn).unwrap().n
}

/// The test database's open connections.
const BACKENDS: &str = "SELECT count(*) AS n FROM pg_stat_activity \
                        WHERE datname = current_database() AND backend_type = 'client backend'";
const PID: &str = "SELECT pg_backend_pid()::bigint AS n";

/// A request that finds every open connection busy waits for one to be handed back before the
/// pool opens another: each opened is a PostgreSQL process that starts with cold caches, and
/// r2d2 opened one for every such request, so a crowd of a few milliseconds grew the pool to its
/// limit and the new processes' start-up stalled the page views for 100–200 ms.
#[tokio::test]
async fn a_request_that_finds_every_connection_busy_waits_for_one_before_another_is_opened() {
    // A patience no test run reaches: the request must get the connection handed back.
    let app =
        TestApp::spawn_with(|settings| settings.database.wait_before_opening_ms = 60_000).await;
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut first = pool.get().unwrap();
        let open = number(&mut first.conn, BACKENDS);
        assert!(
            open < i64::from(pool.max_size()),
            "the pool could open another"
        );
        // Every open connection busy.
        let others: Vec<_> = (1..open).map(|_| pool.get().unwrap()).collect();
        let waiting = std::thread::spawn({
            let pool = pool.clone();
            move || {
                let mut next = pool.get().unwrap();
                (
                    number(&mut next.conn, PID),
                    number(&mut next.conn, BACKENDS),
                )
            }
        });
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while pool.waiting_for_connections() == 0 {
            assert!(
                Instant::now() < deadline && !waiting.is_finished(),
                "the request did not wait for a busy connection"
            );
            std::thread::yield_now();
        }
        let handed_back = number(&mut first.conn, PID);
        let dropped = Instant::now();
        drop(first);
        let (got, backends) = waiting.join().unwrap();
        // Woken by the hand-back, not by its patience running out.
        assert!(
            dropped.elapsed() < std::time::Duration::from_secs(10),
            "the waiting request was not told a connection was handed back"
        );
        assert_eq!(got, handed_back, "it got the connection handed back");
        assert_eq!(backends, open, "no connection was opened");
        drop(others);
    })
    .await
    .unwrap();
}

/// A crowd that outlasts the wait opens connections one at a time, not one per request: a
/// stall of a few tens of ms made every waiting request open one, and their cold starts grew the
/// pool to its limit (the 1,000-message page's p99 went from 4 to 79 ms).
#[tokio::test]
async fn a_crowd_that_outlasts_the_wait_opens_one_connection_at_a_time() {
    const CROWD: usize = 8;
    // Long enough that the next opening cannot start before the held connections are back.
    let app = TestApp::spawn_with(|settings| {
        settings.database.wait_before_opening_ms = 500;
        // Room for a few waits before a checkout gives up.
        settings.database.connect_timeout_secs = 10;
        // Connections handed back one after another while one is being opened.
        settings.database.warm_connections = 4;
        settings.database.pool_size = 16;
    })
    .await;
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || {
        // Every open connection busy.
        let mut first = pool.get().unwrap();
        let open = number(&mut first.conn, BACKENDS);
        let held: Vec<_> = std::iter::once(first)
            .chain((1..open).map(|_| pool.get().unwrap()))
            .collect();
        let opened_before = pool.connections_opened();
        let crowd: Vec<_> = (0..CROWD)
            .map(|_| {
                let pool = pool.clone();
                // Each hands its connection back and asks again: while one is being opened,
                // many are handed back and taken.
                std::thread::spawn(move || {
                    for _ in 0..30 {
                        let mut connection = pool.get().unwrap();
                        number(&mut connection.conn, PID);
                    }
                })
            })
            .collect();
        // The crowd's wait runs out and the opening starts.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while pool.connections_opened() == opened_before {
            assert!(Instant::now() < deadline, "nobody opened a connection");
            std::thread::yield_now();
        }
        for connection in held {
            drop(connection);
        }
        for request in crowd {
            request.join().unwrap();
        }
        let opened = pool.connections_opened() - opened_before;
        assert!(
            opened <= 2,
            "{opened} connections opened for a crowd of {CROWD} that connections handed back could serve"
        );
    })
    .await
    .unwrap();
}
