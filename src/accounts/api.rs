//! JSON API for accounts: `/api/auth/*` and `/api/users/me`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::accounts::model::UserView;
use crate::accounts::service;
use crate::error::{AppError, AppResult};
use crate::session::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterBody>,
) -> AppResult<HttpResponse> {
    let RegisterBody {
        email,
        password,
        display_name,
    } = body.into_inner();
    let user = service::register(
        &state.pool,
        &state.settings.auth,
        &email,
        password,
        &display_name,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// JSON `{"email"|"username", "password"}` or an OAuth2-style form `username=…&password=…`.
#[derive(Deserialize)]
pub struct LoginBody {
    #[serde(alias = "username")]
    email: String,
    password: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

fn token_response(state: &AppState, user_id: uuid::Uuid, epoch: i32) -> TokenResponse {
    TokenResponse {
        access_token: state.tokens.issue(user_id, epoch),
        token_type: "bearer",
        expires_in: state.tokens.ttl_secs(),
    }
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let is_form = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed = if is_form {
        serde_urlencoded::from_bytes::<LoginBody>(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<LoginBody>(&body).map_err(|e| e.to_string())
    };
    let LoginBody { email, password } = parsed
        .map_err(|e| AppError::invalid("body", format!("send {{\"email\", \"password\"}}: {e}")))?;
    let ip = req.peer_addr().map(|a| a.ip());
    let user = service::authenticate(
        &state.pool,
        &state.login_limiter,
        &state.dummy_password_hash,
        ip,
        &email,
        password,
    )
    .await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user.id, user.session_epoch)))
}

pub async fn me(state: web::Data<AppState>, user: CurrentUser) -> AppResult<HttpResponse> {
    let id = user.id;
    let user = crate::db::run(&state.pool, move |conn| {
        Ok(crate::accounts::model::User::find(conn, id)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

pub async fn logout_everywhere(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    service::log_out_everywhere(&state.pool, &user).await?;
    Ok(HttpResponse::NoContent()
        .cookie(crate::session::cleared_session_cookie(&state))
        .finish())
}

#[derive(Deserialize)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the password and answers with a fresh token: every earlier one is revoked.
pub async fn change_password(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<PasswordBody>,
) -> AppResult<HttpResponse> {
    let PasswordBody {
        current_password,
        new_password,
    } = body.into_inner();
    let epoch = service::change_password(
        &state.pool,
        &state.settings.auth,
        &state.dummy_password_hash,
        &user,
        current_password,
        new_password,
    )
    .await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user.id, epoch)))
}
