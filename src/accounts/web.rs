//! Sign-in, sign-up and account pages. These are plain forms (full page loads) so they work
//! everywhere, including password managers.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::accounts::service::{self, Credentials, PasswordChange, Registration};
use crate::error::AppResult;
use crate::session::CurrentUser;
use crate::session::csrf::{CsrfToken, rotated_cookie};
use crate::site::errors::safe_next;
use crate::site::{Chrome, FormErrors, PageForm, Refusal, html, refused};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "pages/accounts/login.html")]
struct LoginPage {
    chrome: Chrome,
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
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

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
    let ip = req.peer_addr().map(|a| a.ip());
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
            let token = state.tokens.issue(user.id, user.session_epoch);
            Ok(HttpResponse::SeeOther()
                .cookie(crate::session::session_cookie(&state, token))
                .cookie(rotated_cookie(state.settings.cookie_secure()))
                .insert_header((header::LOCATION, next))
                .finish())
        }
        Err(Refusal { status, errors }) => html(
            status,
            &LoginPage {
                chrome: Chrome::new(None, &csrf),
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
            .insert_header((header::LOCATION, "/projects"))
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
        req.peer_addr().map(|a| a.ip()),
        registration,
    )
    .await;
    match refused(result, "email")? {
        Ok(user) => {
            let token = state.tokens.issue(user.id, user.session_epoch);
            Ok(HttpResponse::SeeOther()
                .cookie(crate::session::session_cookie(&state, token))
                .cookie(rotated_cookie(state.settings.cookie_secure()))
                .insert_header((header::LOCATION, "/projects"))
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

pub async fn logout(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::SeeOther()
        .cookie(crate::session::cleared_session_cookie(&state))
        .insert_header((header::LOCATION, "/login"))
        .finish()
}

pub async fn account_page(user: CurrentUser, csrf: CsrfToken) -> AppResult<HttpResponse> {
    html(
        StatusCode::OK,
        &AccountPage {
            chrome: Chrome::new(Some(&user), &csrf),
            notice: None,
            errors: FormErrors::default(),
        },
    )
}

pub async fn change_password(
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
            // This browser stays signed in with a token of the new epoch; every other one is out.
            let token = state.tokens.issue(user.id, epoch);
            let page = AccountPage {
                chrome: Chrome::new(Some(&user), &csrf),
                notice: Some("Password changed. Every other session has been signed out."),
                errors: FormErrors::default(),
            };
            Ok(HttpResponse::Ok()
                .cookie(crate::session::session_cookie(&state, token))
                .content_type("text/html; charset=utf-8")
                .body(page.render()?))
        }
        Err(Refusal { status, errors }) => html(
            status,
            &AccountPage {
                chrome: Chrome::new(Some(&user), &csrf),
                notice: None,
                errors,
            },
        ),
    }
}

pub async fn logout_everywhere(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    service::log_out_everywhere(&state.pool, &user).await?;
    Ok(HttpResponse::SeeOther()
        .cookie(crate::session::cleared_session_cookie(&state))
        .insert_header((header::LOCATION, "/login"))
        .finish())
}
