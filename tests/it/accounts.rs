//! Registration, sign-in, sessions and their revocation, over the API and the pages.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::app::{JWT_SECRET, PASSWORD, TestApp, csrf_of};
use crate::support::remote::client_from;

#[tokio::test]
async fn register_login_and_me() {
    let app = TestApp::spawn().await;
    let response = app
        .api
        .post(app.url("/api/auth/register"))
        .json(&json!({"email": "Ada@Example.com", "password": PASSWORD, "display_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "Ada@Example.com");
    assert!(user.get("password_hash").is_none());

    // Login is case-insensitive on the email and answers in the OAuth2 shape.
    let response = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "ada@example.COM", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().unwrap();

    let (status, me) = app.get_json(token, "/api/users/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["display_name"], "Ada");

    // OAuth2 password-flow form fields work too.
    let response = app
        .api
        .post(app.url("/api/auth/login"))
        .form(&[("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn registration_rules_give_field_errors() {
    let app = TestApp::spawn().await;
    let register = |email: &str, password: &str| {
        app.api
            .post(app.url("/api/auth/register"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let body: Value = register("not-an-email", "short")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(
        body["error"]["fields"]["email"]
            .as_str()
            .unwrap()
            .contains("email")
    );
    assert!(
        body["error"]["fields"]["password"]
            .as_str()
            .unwrap()
            .contains("at least 8")
    );

    let response = register("a@b.co", "lettersonly").await.unwrap();
    assert_eq!(response.status(), 422);

    // bcrypt's 72-byte limit is refused, never silently truncated.
    let long = format!("{}1", "a".repeat(72));
    let response = register("a@b.co", &long).await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["fields"]["password"]
            .as_str()
            .unwrap()
            .contains("72"),
        "{body}"
    );

    assert_eq!(register("a@b.co", PASSWORD).await.unwrap().status(), 201);
    let response = register("A@B.CO", PASSWORD).await.unwrap();
    assert_eq!(
        response.status(),
        409,
        "emails are unique regardless of case"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");

    // Malformed JSON is a 400 in the envelope, not a 500.
    let response = app
        .api
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = TestApp::spawn().await;
    app.user_token("known@example.com").await;
    let attempt = |email: &'static str| {
        app.api
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": email, "password": "wrong password 9"}))
            .send()
    };
    let wrong: Value = attempt("known@example.com")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unknown = attempt("nobody@example.com").await.unwrap();
    assert_eq!(unknown.status(), 401);
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["message"], "Wrong email or password.");
}

#[tokio::test]
async fn a_password_with_anything_after_its_72nd_byte_never_signs_in() {
    let app = TestApp::spawn().await;
    let exact = format!("{}1", "b".repeat(71));
    assert_eq!(exact.len(), 72);
    let response = app
        .api
        .post(app.url("/api/auth/register"))
        .json(&json!({"email": "long@example.com", "password": exact}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.login("long@example.com", &exact).await;
    // bcrypt reads only 72 bytes: before, these signed in as well.
    for suffix in ["x", "1", " anything at all"] {
        let response = app
            .api
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": "long@example.com", "password": format!("{exact}{suffix}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "72 bytes + {suffix:?}");
    }
}

#[tokio::test]
async fn an_attack_on_an_account_does_not_lock_its_owner_out() {
    let app = TestApp::spawn_with(|s| s.auth.login_attempts_per_minute = 5).await;
    app.user_token("target@example.com").await;
    let attempt = |client: reqwest::Client, password: &'static str| {
        let url = app.url("/api/auth/login");
        async move {
            client
                .post(url)
                .json(&json!({"email": "target@example.com", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The attacker is refused once over the quota…
    let attacker = client_from(2);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(attempt(attacker.clone(), "guess guess 1").await.as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // …while the owner, from their own address, still signs in (before: 429 for everyone).
    assert_eq!(attempt(client_from(3), PASSWORD).await, 200);
    assert_eq!(
        attempt(attacker, PASSWORD).await,
        429,
        "the attacker stays refused"
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_email_and_per_ip() {
    let app = TestApp::spawn_with(|s| s.auth.login_attempts_per_minute = 3).await;
    app.user_token("limited@example.com").await; // one attempt used
    for _ in 0..2 {
        let r = app
            .api
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": "limited@example.com", "password": "nope nope 1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "limited@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "even the right password is refused once over the limit"
    );
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Too many")
    );

    // The IP (127.0.0.1) has used its quota too: another email is refused as well.
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "other@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn logout_everywhere_and_password_change_revoke_earlier_tokens() {
    let app = TestApp::spawn().await;
    let first = app.user_token("sessions@example.com").await;
    let second = app.login("sessions@example.com", PASSWORD).await;
    assert_eq!(app.get_json(&second, "/api/users/me").await.0, 200);

    let r = app
        .api
        .post(app.url("/api/auth/logout-everywhere"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_json(&first, "/api/users/me").await.0, 401);
    assert_eq!(app.get_json(&second, "/api/users/me").await.0, 401);

    let third = app.login("sessions@example.com", PASSWORD).await;
    let other = app.login("sessions@example.com", PASSWORD).await;
    let (status, body) = app
        .post_json(
            &third,
            "/api/auth/password",
            json!({"current_password": "wrong wrong 1", "new_password": "new password 2"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"]["current_password"].is_string());
    let (status, body) = app
        .post_json(
            &third,
            "/api/auth/password",
            json!({"current_password": PASSWORD, "new_password": "new password 2"}),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_json(&other, "/api/users/me").await.0,
        401,
        "other sessions end"
    );
    assert_eq!(
        app.get_json(fresh, "/api/users/me").await.0,
        200,
        "the returned token works"
    );
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "sessions@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old password no longer works");
    app.login("sessions@example.com", "new password 2").await;
}

fn forge(header: &Value, claims: &Value, key: Option<&[u8]>) -> String {
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = match key {
        Some(key) => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(signing_input.as_bytes());
            b64.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

/// The claims of a token confab issued (its payload, unverified).
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.user_token("forge@example.com").await;
    let (_, me) = app.get_json(&token, "/api/users/me").await;
    let sid = claims_of(&token)["sid"].clone();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": me["id"], "sid": sid, "epoch": 0, "iat": now, "exp": now + 3600});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});

    // Sanity: a token forged with the real key is accepted, so the refusals below mean something.
    assert_eq!(
        app.get_json(
            &forge(&hs256, &claims, Some(JWT_SECRET.as_bytes())),
            "/api/users/me"
        )
        .await
        .0,
        200
    );

    let expired =
        json!({"sub": me["id"], "sid": sid, "epoch": 0, "iat": now - 7200, "exp": now - 3600});
    let cases = [
        ("wrong key", forge(&hs256, &claims, Some(b"another key"))),
        (
            "alg none",
            forge(&json!({"alg": "none", "typ": "JWT"}), &claims, None),
        ),
        (
            "expired",
            forge(&hs256, &expired, Some(JWT_SECRET.as_bytes())),
        ),
        ("tampered", {
            let mut t = token.clone();
            let mid = t.len() / 2;
            t.replace_range(
                mid..mid + 1,
                if &t[mid..mid + 1] == "A" { "B" } else { "A" },
            );
            t
        }),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, bad) in cases {
        let r = app
            .api
            .get(app.url("/api/users/me"))
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        // The same token in the cookie sends a browser to the login page.
        let r = app
            .api
            .get(app.url("/projects"))
            .header("cookie", format!("confab_session={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{what}");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn browser_sign_in_sign_out_and_protected_pages() {
    let app = TestApp::spawn().await;
    let browser = app.browser("web@example.com").await;
    let (status, page) = browser.get("/projects").await;
    assert_eq!(status, 200);
    assert!(page.contains("web@example.com"));

    let r = browser.post_form("/logout", &[]).await;
    assert_eq!(r.status(), 303);
    let r = browser
        .client
        .get(app.url("/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fprojects");

    // A wrong password re-shows the form with the message and the email kept.
    let (_, login) = browser.get("/login").await;
    let csrf = csrf_of(&login);
    let r = browser
        .client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "web@example.com"),
            ("password", "wrong one 1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(html.contains("Wrong email or password."));
    assert!(html.contains("value=\"web@example.com\""));

    let r = browser
        .client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "web@example.com"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/account");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("confab_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "no Secure flag on plain-http deployments"
    );

    // Open redirects are not followed, and no `next` breaks the redirect.
    for next in [
        "//evil.example",
        "/\t/evil.example",
        "/\\evil.example",
        "/\r\nSet-Cookie: x=1",
    ] {
        // Each sign-in rotates the CSRF token; a page shows the current one.
        let csrf = csrf_of(&browser.get("/account").await.1);
        let r = browser
            .client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", "web@example.com"),
                ("password", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/chat", "{next:?}");
    }
    let r = browser
        .client
        .get(app.url("/login?next=%2F%0d%0a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed in: /login sends you on");
    assert_eq!(r.headers()["location"], "/chat");
}

#[tokio::test]
async fn registration_page_shows_errors_next_to_fields() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(app.url("/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = client
        .post(app.url("/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "bad"),
            ("password", "x"),
            ("display_name", "Ann\u{0}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"email-error\""),
        "email error is next to the email field"
    );
    assert!(html.contains("id=\"password-error\""));
    assert!(html.contains("id=\"display_name-error\""));
    assert!(html.contains("value=\"bad\""), "the typed email is kept");
}

#[tokio::test]
async fn control_characters_in_account_fields_are_refused_not_500() {
    let app = TestApp::spawn().await;
    for (email, display_name, field) in [
        ("nul\u{0}@example.com", "Ann", "email"),
        ("ann@example.com", "Ann\u{0}", "display_name"),
        ("ann@example.com", &"n".repeat(101), "display_name"),
    ] {
        let r = app
            .api
            .post(app.url("/api/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": display_name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{email:?} / {display_name:?}");
        let body: Value = r.json().await.unwrap();
        assert!(body.to_string().contains(field), "{body}");
    }
    let r = app
        .api
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "nul\u{0}@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "an impossible email is just a failed login"
    );
}

#[tokio::test]
async fn secure_cookie_when_public_url_is_https() {
    let app =
        TestApp::spawn_with(|s| s.server.public_url = Some("https://chat.example.com".into()))
            .await;
    let r = app.api.get(app.url("/login")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn sessions_past_half_their_life_get_a_fresh_cookie() {
    let app = TestApp::spawn().await;
    let token = app.user_token("renew@example.com").await;
    let (_, me) = app.get_json(&token, "/api/users/me").await;
    let sid = claims_of(&token)["sid"].clone();
    let now = chrono::Utc::now().timestamp();
    let ttl = 168 * 3600;
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let young = forge(
        &hs256,
        &json!({"sub": me["id"], "sid": sid, "epoch": 0, "iat": now - 60, "exp": now - 60 + ttl}),
        Some(JWT_SECRET.as_bytes()),
    );
    let old = forge(
        &hs256,
        &json!({"sub": me["id"], "sid": sid, "epoch": 0, "iat": now - ttl / 2 - 60, "exp": now + ttl / 2 - 60}),
        Some(JWT_SECRET.as_bytes()),
    );

    let r = app
        .api
        .get(app.url("/projects"))
        .header("cookie", format!("confab_session={young}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("confab_session="))
    );

    let r = app
        .api
        .get(app.url("/projects"))
        .header("cookie", format!("confab_session={old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let renewed = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("confab_session="))
        .expect("a renewed cookie");
    let fresh = renewed
        .trim_start_matches("confab_session=")
        .split(';')
        .next()
        .unwrap();
    assert_ne!(fresh, old);
    assert_eq!(app.get_json(fresh, "/api/users/me").await.0, 200);
}

#[tokio::test]
async fn one_address_cannot_create_accounts_by_the_hundred() {
    let app = TestApp::spawn_with(|s| s.auth.registrations_per_hour_per_address = 3).await;
    let register = |client: reqwest::Client, n: usize| {
        let url = app.url("/api/auth/register");
        async move {
            client
                .post(url)
                .json(&json!({"email": format!("many{n}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        }
    };
    let busy = client_from(4);
    for n in 0..3 {
        assert_eq!(register(busy.clone(), n).await.status(), 201);
    }
    let refused = register(busy, 3).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(
        register(client_from(5), 4).await.status(),
        201,
        "another address is not affected"
    );
}

#[tokio::test]
async fn non_ascii_emails_sign_in_as_typed_and_in_other_cases() {
    let app = TestApp::spawn().await;
    let register = |email: &'static str| {
        app.api
            .post(app.url("/api/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
    };
    for email in ["ΟΔΥΣΣΕΥΣ@example.com", "İlker@example.com"] {
        assert_eq!(register(email).await.unwrap().status(), 201, "{email}");
        app.login(email, PASSWORD).await;
    }
    // Other spellings of the same address: the same account, both ways.
    app.login("οδυσσευς@EXAMPLE.com", PASSWORD).await;
    app.login("i\u{307}lker@example.com", PASSWORD).await;
    assert_eq!(
        register("Οδυσσευσ@example.com").await.unwrap().status(),
        409
    );
}

#[tokio::test]
async fn accounts_keyed_before_unicode_folding_get_their_keys_at_start() {
    let app = TestApp::spawn().await;
    app.user_token("ilker@example.com").await;
    // How the key migration left a non-ASCII address: the database's lower(), which in the C
    // locale leaves "İ" alone.
    app.execute_sql(
        "UPDATE users SET email = 'İlker@example.com', email_key = 'İlker@example.com' \
         WHERE email = 'ilker@example.com'",
    )
    .await;
    let changed = confab::accounts::service::rekey_stored_emails(&app.pool)
        .await
        .unwrap();
    assert_eq!(changed, 1);
    app.login("İlker@example.com", PASSWORD).await;
}

#[tokio::test]
async fn signing_out_ends_the_session_at_once_and_other_sessions_can_be_ended() {
    let app = TestApp::spawn().await;
    let browser = app.browser("sessions@example.com").await;
    let laptop = app.login("sessions@example.com", PASSWORD).await;
    let phone = app.login("sessions@example.com", PASSWORD).await;
    let (status, sessions) = app.get_json(&laptop, "/api/auth/sessions").await;
    assert_eq!(status, 200);
    let list = sessions.as_array().unwrap();
    assert_eq!(list.len(), 3, "{sessions}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);

    // The page's sign-out ends the browser's session on the server, not only its cookie.
    let page = browser.get("/account").await.1;
    assert!(
        page.contains("this device"),
        "the account page lists sessions"
    );
    let r = browser.post_form("/logout", &[]).await;
    assert_eq!(r.status(), 303);
    let (_, remaining) = app.get_json(&laptop, "/api/auth/sessions").await;
    assert_eq!(
        remaining.as_array().unwrap().len(),
        2,
        "the browser's session ended"
    );

    // The API's sign-out revokes the bearer token at once (before: valid for 7 more days).
    let r = app
        .api
        .post(app.url("/api/auth/logout"))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_json(&phone, "/api/users/me").await.0, 401);

    // Ending another session from this one.
    let other = app.login("sessions@example.com", PASSWORD).await;
    let (_, sessions) = app.get_json(&laptop, "/api/auth/sessions").await;
    let other_id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .api
        .delete(app.url(&format!("/api/auth/sessions/{other_id}")))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_json(&other, "/api/users/me").await.0, 401);
    assert_eq!(app.get_json(&laptop, "/api/users/me").await.0, 200);
}

#[tokio::test]
async fn sign_up_greets_and_sign_out_says_so_in_fixed_words() {
    let app = TestApp::spawn().await;
    let browser = app.browser("hello@example.com").await;
    let (_, home) = browser.get("/chat").await;
    assert!(
        !home.contains("Welcome to confab"),
        "no greeting on later visits"
    );
    let (status, welcome) = browser.get("/chat?welcome=%3Cb%3Ex").await;
    assert_eq!(status, 200);
    assert!(welcome.contains("Welcome to confab, hello@example.com!"));
    assert!(
        !welcome.contains("<b>x"),
        "nothing from the address is shown"
    );

    let r = browser.post_form("/logout", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?signed_out=1");
    let (_, login) = browser.get("/login?signed_out=1").await;
    assert!(login.contains("You have signed out."));
    let (_, plain) = browser.get("/login").await;
    assert!(!plain.contains("You have signed out."));

    // Nothing from the address is shown: only the fixed text, whatever the parameter holds.
    let (_, odd) = browser
        .get("/login?signed_out=%3Cb%3Ehacked%3C%2Fb%3E")
        .await;
    assert!(odd.contains("You have signed out."));
    assert!(!odd.contains("hacked"));
}

#[tokio::test]
async fn sign_up_lands_on_the_welcome() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(app.url("/register")).send().await.unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let r = client
        .post(app.url("/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "new@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/chat?welcome=1");
}
