//! JSON API for accounts: `/api/auth/*` and `/api/users/me`.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::accounts::model::UserView;
use crate::accounts::service::{self, Credentials, PasswordChange, Registration};
use crate::error::{AppError, AppResult, bounded};
use crate::session::CurrentUser;
use crate::state::AppState;

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Registration>,
) -> AppResult<HttpResponse> {
    let user = service::register(
        &state.pool,
        &state.settings.auth,
        &state.registration_limiter,
        req.peer_addr().map(|a| a.ip()),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
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
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.essence_str() == "application/x-www-form-urlencoded");
    // JSON, or an OAuth2-style form `username=…&password=…` as token clients send it.
    let parsed = if is_form {
        serde_urlencoded::from_bytes::<Credentials>(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Credentials>(&body).map_err(|e| e.to_string())
    };
    let credentials = parsed.map_err(|e| {
        AppError::invalid(
            "body",
            format!("send {{\"email\", \"password\"}}: {}", bounded(&e)),
        )
    })?;
    let ip = req.peer_addr().map(|a| a.ip());
    let user = service::authenticate(
        &state.pool,
        &state.login_limiter,
        &state.dummy_password_hash,
        ip,
        credentials,
    )
    .await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user.id, user.session_epoch)))
}

pub async fn me(state: web::Data<AppState>, user: CurrentUser) -> AppResult<HttpResponse> {
    let user = service::profile(&state.pool, &user).await?;
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

/// Changes the password and answers with a fresh token: every earlier one is revoked.
pub async fn change_password(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<PasswordChange>,
) -> AppResult<HttpResponse> {
    let epoch = service::change_password(
        &state.pool,
        &state.settings.auth,
        &state.dummy_password_hash,
        &user,
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user.id, epoch)))
}
