//! JSON API for accounts: `/api/auth/*` and `/api/users/me`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::accounts::model::UserView;
use crate::accounts::service;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::startup::AppState;

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
    let user = service::register(&state, &email, password, &display_name).await?;
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
    let user = service::authenticate(&state, ip, &email, password).await?;
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
    service::log_out_everywhere(&state, &user).await?;
    Ok(HttpResponse::NoContent()
        .cookie(service::cleared_session_cookie(&state))
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
    let epoch = service::change_password(&state, &user, current_password, new_password).await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user.id, epoch)))
}

/// Extractor errors (bad JSON, wrong types, missing fields) as the API's error envelope.
pub fn json_error(error: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let app = match &error {
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            AppError::Validation(vec![crate::error::FieldError {
                field: "body",
                message: format!("invalid request body: {e}"),
            }])
        }
        JsonPayloadError::ContentType => {
            AppError::BadRequest("send JSON with Content-Type: application/json".into())
        }
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            AppError::BadRequest("request body too large".into())
        }
        other => AppError::BadRequest(format!("invalid JSON: {other}")),
    };
    app.into()
}
