//! Sign-in, sign-up and account pages. These are plain forms (full page loads) so they work
//! everywhere, including password managers.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::accounts::service::{self, Credentials, PasswordChange, Registration};
use crate::api_keys;
use crate::api_keys::model::ApiKey;
use crate::api_keys::service::KeyInput;
use crate::auth::api_key::KeyScope;
use crate::error::{AppError, AppResult};
use crate::session::csrf::{CsrfToken, rotated_cookie};
use crate::session::model::Session;
use crate::session::{self, Credential, CurrentUser};
use crate::site::errors::safe_next;
use crate::site::{Chrome, FormErrors, PageForm, Refusal, html, refused, see_other};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "pages/accounts/login.html")]
struct LoginPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    email: String,
    next: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "pages/accounts/register.html")]
struct RegisterPage {
    chrome: Chrome,
    email: String,
    display_name: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "pages/accounts/account.html")]
struct AccountPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    errors: FormErrors,
    sessions: Vec<SessionRow>,
    /// `None` when the page is seen with an API key, which may not see the other keys.
    keys: Option<Vec<KeyRow>>,
    /// The new-key form: what was typed, and its messages.
    key_form: KeyInput,
    key_errors: FormErrors,
    /// A key just made, shown this once.
    new_key: Option<String>,
}

/// An API key as the account page lists it.
struct KeyRow {
    id: Uuid,
    name: String,
    prefix: String,
    scope: &'static str,
    created: String,
    last_used: String,
    expires: String,
    expired: bool,
}

impl KeyRow {
    fn of(key: ApiKey) -> KeyRow {
        let when = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
        KeyRow {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            scope: match key.scope {
                KeyScope::Full => "Full",
                KeyScope::ReadOnly => "Read-only",
            },
            created: when(key.created_at),
            last_used: key.last_used_at.map_or_else(|| "Never".into(), when),
            expires: key.expires_at.map_or_else(|| "Never".into(), when),
            expired: key.expires_at.is_some_and(|at| at <= chrono::Utc::now()),
        }
    }
}

/// A signed-in device as the account page lists it.
struct SessionRow {
    id: Uuid,
    device: String,
    last_used: String,
    signed_in: String,
    current: bool,
}

impl SessionRow {
    fn of(session: Session, current: Option<Uuid>) -> SessionRow {
        SessionRow {
            id: session.id,
            device: device_name(&session.user_agent),
            last_used: session
                .last_used_at
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
            signed_in: session.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            current: Some(session.id) == current,
        }
    }
}

/// "Firefox on Linux" from a user agent, or the start of it when it is not a browser's.
fn device_name(user_agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        _ if user_agent.is_empty() => "Unknown device".into(),
        _ => user_agent.chars().take(60).collect(),
    }
}

/// What the client calls itself, to recognise the session by on the account page.
pub fn user_agent(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    /// Set by sign-out's redirect; the page says so (a fixed text: nothing from the URL is shown).
    signed_out: Option<String>,
}

/// Where signing up sends you: the chat home, which greets you.
const WELCOME: &str = "/chat?welcome=1";

/// Where signing out sends you.
const SIGNED_OUT: &str = "/login?signed_out=1";

pub async fn login_page(
    user: Option<CurrentUser>,
    csrf: CsrfToken,
    query: web::Query<NextQuery>,
) -> AppResult<HttpResponse> {
    let next = safe_next(query.next.as_deref()).to_string();
    if user.is_some() {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .finish());
    }
    html(
        StatusCode::OK,
        &LoginPage {
            chrome: Chrome::new(None, &csrf),
            notice: query.signed_out.is_some().then_some("You have signed out."),
            email: String::new(),
            next,
            errors: FormErrors::default(),
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(flatten)]
    credentials: Credentials,
    next: Option<String>,
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: CsrfToken,
    PageForm(form): PageForm<LoginForm>,
) -> AppResult<HttpResponse> {
    let LoginForm { credentials, next } = form;
    let next = safe_next(next.as_deref()).to_string();
    let email = credentials.email.clone();
    let ip = session::client_ip(&req);
    let result = service::authenticate(
        &state.pool,
        &state.login_limiter,
        &state.dummy_password_hash,
        ip,
        credentials,
    )
    .await;
    match refused(result, "form")? {
        Ok(user) => {
            let token = session::service::begin(
                &state.pool,
                &state.tokens,
                user.id,
                user.session_epoch,
                user_agent(&req),
            )
            .await?
            .token;
            Ok(HttpResponse::SeeOther()
                .cookie(session::session_cookie(&state, token))
                .cookie(rotated_cookie(state.settings.cookie_secure()))
                .insert_header((header::LOCATION, next))
                .finish())
        }
        Err(Refusal { status, errors }) => html(
            status,
            &LoginPage {
                chrome: Chrome::new(None, &csrf),
                notice: None,
                email,
                next,
                errors,
            },
        ),
    }
}

pub async fn register_page(user: Option<CurrentUser>, csrf: CsrfToken) -> AppResult<HttpResponse> {
    if user.is_some() {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, crate::urls::HOME))
            .finish());
    }
    html(
        StatusCode::OK,
        &RegisterPage {
            chrome: Chrome::new(None, &csrf),
            email: String::new(),
            display_name: String::new(),
            errors: FormErrors::default(),
        },
    )
}

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: CsrfToken,
    PageForm(registration): PageForm<Registration>,
) -> AppResult<HttpResponse> {
    let (email, display_name) = (
        registration.email.clone(),
        registration.display_name.clone(),
    );
    let result = service::register(
        &state.pool,
        &state.settings.auth,
        &state.registration_limiter,
        session::client_ip(&req),
        registration,
    )
    .await;
    match refused(result, "email")? {
        Ok(user) => {
            let token = session::service::begin(
                &state.pool,
                &state.tokens,
                user.id,
                user.session_epoch,
                user_agent(&req),
            )
            .await?
            .token;
            Ok(HttpResponse::SeeOther()
                .cookie(session::session_cookie(&state, token))
                .cookie(rotated_cookie(state.settings.cookie_secure()))
                .insert_header((header::LOCATION, WELCOME))
                .finish())
        }
        Err(Refusal { status, errors }) => html(
            status,
            &RegisterPage {
                chrome: Chrome::new(None, &csrf),
                email,
                display_name,
                errors,
            },
        ),
    }
}

/// Ends this browser's session on the server (its token stops working at once, wherever a copy
/// of it is) and forgets the cookie.
pub async fn logout(
    state: web::Data<AppState>,
    user: Option<CurrentUser>,
) -> AppResult<HttpResponse> {
    if let Some((user_id, session_id)) = user.and_then(|u| Some((u.id, u.session_id()?))) {
        match session::service::end(&state.pool, user_id, session_id).await {
            Ok(()) | Err(AppError::NotFound) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(HttpResponse::SeeOther()
        .cookie(session::cleared_session_cookie(&state))
        .insert_header((header::LOCATION, SIGNED_OUT))
        .finish())
}

async fn account(
    state: &AppState,
    user: &CurrentUser,
    csrf: &CsrfToken,
    notice: Option<&'static str>,
    errors: FormErrors,
) -> AppResult<AccountPage> {
    let sessions = session::service::list(&state.pool, user.id).await?;
    let keys = match user.session_id() {
        Some(_) => Some(
            api_keys::service::list(&state.pool, user)
                .await?
                .into_iter()
                .map(KeyRow::of)
                .collect(),
        ),
        None => None,
    };
    Ok(AccountPage {
        chrome: Chrome::new(Some(user), csrf),
        notice,
        errors,
        sessions: sessions
            .into_iter()
            .map(|s| SessionRow::of(s, user.session_id()))
            .collect(),
        keys,
        key_form: KeyInput::default(),
        key_errors: FormErrors::default(),
        new_key: None,
    })
}

/// `POST /account/keys`: makes a key and shows it on the page, once. The page is the answer
/// itself (no redirect: the key must not be kept anywhere to show it again), and not cached.
pub async fn create_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    PageForm(input): PageForm<KeyInput>,
) -> AppResult<HttpResponse> {
    let result = api_keys::service::create(&state.pool, &user, input.clone()).await;
    let (status, new_key, key_form, key_errors) = match refused(result, "form")? {
        Ok(created) => (
            StatusCode::OK,
            Some(created.key.expose().to_string()),
            KeyInput::default(),
            FormErrors::default(),
        ),
        Err(Refusal { status, errors }) => (status, None, input, errors),
    };
    let page = AccountPage {
        new_key,
        key_form,
        key_errors,
        ..account(&state, &user, &csrf, None, FormErrors::default()).await?
    };
    Ok(HttpResponse::build(status)
        .insert_header(header::CacheControl(vec![header::CacheDirective::NoStore]))
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// `POST /account/keys/{id}/revoke`: the key stops working at once.
pub async fn revoke_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    api_keys::service::revoke(&state.pool, &user, *id).await?;
    Ok(see_other(&req, "/account"))
}

pub async fn account_page(
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
) -> AppResult<HttpResponse> {
    let page = account(&state, &user, &csrf, None, FormErrors::default()).await?;
    html(StatusCode::OK, &page)
}

/// `POST /account/sessions/{id}/end`: signs out one of the user's other devices.
pub async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let current = user.require_session()?;
    session::service::end(&state.pool, user.id, *id).await?;
    if *id == current {
        return Ok(HttpResponse::SeeOther()
            .cookie(session::cleared_session_cookie(&state))
            .insert_header((header::LOCATION, "/login"))
            .finish());
    }
    Ok(see_other(&req, "/account"))
}

pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    csrf: CsrfToken,
    PageForm(change): PageForm<PasswordChange>,
) -> AppResult<HttpResponse> {
    let result = service::change_password(
        &state.pool,
        &state.settings.auth,
        &state.dummy_password_hash,
        &user,
        change,
    )
    .await;
    match refused(result, "current_password")? {
        Ok(epoch) => {
            // Every session ended; this browser stays signed in with a new one.
            let began = session::service::begin(
                &state.pool,
                &state.tokens,
                user.id,
                epoch,
                user_agent(&req),
            )
            .await?;
            let token = began.token;
            let user = CurrentUser {
                session_epoch: epoch,
                credential: Credential::Session {
                    id: began.id,
                    token_age_secs: 0,
                },
                ..user
            };
            let notice = Some("Password changed. Every other session has been signed out.");
            let page = account(&state, &user, &csrf, notice, FormErrors::default()).await?;
            Ok(HttpResponse::Ok()
                .cookie(session::session_cookie(&state, token))
                .content_type("text/html; charset=utf-8")
                .body(page.render()?))
        }
        Err(Refusal { status, errors }) => {
            html(status, &account(&state, &user, &csrf, None, errors).await?)
        }
    }
}

pub async fn logout_everywhere(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    service::log_out_everywhere(&state.pool, &user).await?;
    Ok(HttpResponse::SeeOther()
        .cookie(session::cleared_session_cookie(&state))
        .insert_header((header::LOCATION, SIGNED_OUT))
        .finish())
}
