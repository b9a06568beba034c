//! JSON API for accounts: `/api/auth/*` and `/api/users/me`.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Serialize;
use uuid::Uuid;

use crate::accounts::model::UserView;
use crate::accounts::service::{self, Credentials, PasswordChange, Registration};
use crate::accounts::web::user_agent;
use crate::error::{AppError, AppResult, bounded};
use crate::session::model::Session;
use crate::session::{self, CurrentUser};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = Registration, security(()),
    responses((status = 201, description = "The new account (sign in next)", body = UserView),
        (status = 409, description = "That email has an account", body = crate::error::Envelope),
        (status = 403, description = "Registration is closed", body = crate::error::Envelope)))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Registration>,
) -> AppResult<HttpResponse> {
    let user = service::register(
        &state.pool,
        &state.settings.auth,
        &state.registration_limiter,
        session::client_ip(&req),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// A new session for a signed-in client, and its token.
async fn token_response(
    req: &HttpRequest,
    state: &AppState,
    user_id: Uuid,
    epoch: i32,
) -> AppResult<TokenResponse> {
    let token =
        session::service::begin(&state.pool, &state.tokens, user_id, epoch, user_agent(req))
            .await?
            .token;
    Ok(TokenResponse {
        access_token: token,
        token_type: "bearer",
        expires_in: state.tokens.ttl_secs(),
    })
}

#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", security(()),
    request_body(content((Credentials = "application/json"), (Credentials = "application/x-www-form-urlencoded")),
        description = "`email` (or `username`, as OAuth2 password forms send it) and `password`"),
    responses((status = 200, description = "A session token for `Authorization: Bearer`", body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = crate::error::Envelope)))]
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
    let ip = session::client_ip(&req);
    let user = service::authenticate(
        &state.pool,
        &state.login_limiter,
        &state.dummy_password_hash,
        ip,
        credentials,
    )
    .await?;
    Ok(HttpResponse::Ok().json(token_response(&req, &state, user.id, user.session_epoch).await?))
}

#[utoipa::path(get, path = "/api/users/me", tag = "accounts",
    responses((status = 200, description = "Who is signed in", body = UserView)))]
pub async fn me(state: web::Data<AppState>, user: CurrentUser) -> AppResult<HttpResponse> {
    let user = service::profile(&state.pool, &user).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

#[utoipa::path(post, path = "/api/auth/logout-everywhere", tag = "accounts",
    responses((status = 204, description = "Every session of the account has ended, this one too")))]
pub async fn logout_everywhere(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    service::log_out_everywhere(&state.pool, &user).await?;
    Ok(HttpResponse::NoContent()
        .cookie(session::cleared_session_cookie(&state))
        .finish())
}

/// Changes the password and answers with a fresh token: every earlier one is revoked.
#[utoipa::path(post, path = "/api/auth/password", tag = "accounts", request_body = PasswordChange,
    responses((status = 200, description = "Changed; every other session has ended, and this is a new token", body = TokenResponse)))]
pub async fn change_password(
    req: HttpRequest,
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
    Ok(HttpResponse::Ok().json(token_response(&req, &state, user.id, epoch).await?))
}

/// `POST /api/auth/logout`: ends the session of the token (or cookie) it comes with. An API key
/// has no session to end: it is revoked with `DELETE /api/keys/{id}`.
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts",
    responses((status = 204, description = "This session has ended")))]
pub async fn logout(state: web::Data<AppState>, user: CurrentUser) -> AppResult<HttpResponse> {
    let Some(session_id) = user.session_id() else {
        return Err(AppError::BadRequest(
            "This request is signed with an API key, which has no session to sign out of; \
             revoke the key instead (DELETE /api/keys/{id})."
                .into(),
        ));
    };
    session::service::end(&state.pool, user.id, session_id).await?;
    Ok(HttpResponse::NoContent()
        .cookie(session::cleared_session_cookie(&state))
        .finish())
}

#[derive(Serialize, utoipa::ToSchema)]
struct SessionView {
    #[serde(flatten)]
    session: Session,
    /// The session of this request's token (never, for a request signed with an API key).
    current: bool,
}

/// `GET /api/auth/sessions`: where the user is signed in, most recently used first.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "accounts",
    responses((status = 200, description = "The account's live sessions, `current` marking this one", body = [SessionView])))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> AppResult<HttpResponse> {
    let sessions: Vec<SessionView> = session::service::list(&state.pool, user.id)
        .await?
        .into_iter()
        .map(|session| SessionView {
            current: Some(session.id) == user.session_id(),
            session,
        })
        .collect();
    Ok(HttpResponse::Ok().json(sessions))
}

/// `DELETE /api/auth/sessions/{id}`: signs one session out.
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "accounts",
    responses((status = 204, description = "That session has ended")))]
pub async fn end_session(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    user.require_session()?;
    session::service::end(&state.pool, user.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
