//! `CurrentUser`: the signed-in user, from `Authorization: Bearer` or the session cookie.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::session::SESSION_COOKIE;
use crate::session::model::{Session, SessionUser};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub session_epoch: i32,
    /// The server-side session this request belongs to.
    pub session_id: Uuid,
    /// Seconds since the token was issued; used to renew cookies past half their life.
    pub token_age_secs: i64,
}

/// The token of `Authorization: Bearer <token>`. The CSRF check uses the same reading to decide
/// a request is not cookie-authenticated, so the two can never disagree.
pub(crate) fn bearer_token(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<CurrentUser, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Several extractors in one request share one lookup.
        if let Some(user) = req.extensions().get::<CurrentUser>() {
            let user = user.clone();
            return Box::pin(async move { Ok(user) });
        }
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| AppError::Internal("app state missing".into()))?;
            let token = bearer_token(req.headers())
                .map(str::to_string)
                .or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()))
                .ok_or_else(AppError::unauthorized)?;
            let claims = state.tokens.verify(&token).ok_or_else(|| {
                AppError::Unauthorized(
                    "your session is invalid or has expired; sign in again".into(),
                )
            })?;
            let (sub, sid) = (claims.sub, claims.sid);
            let user = db::run(&state.pool, move |conn| {
                let (user, session) = SessionUser::find_signed_in(conn, sub, sid)?;
                // A write per request would be wasteful; minutes are precise enough.
                if chrono::Utc::now() - session.last_used_at > chrono::Duration::minutes(5) {
                    Session::touch(conn, session.id)?;
                }
                Ok(user)
            })
            .await
            .map_err(|e| match e {
                AppError::NotFound => {
                    AppError::Unauthorized("your session has ended; sign in again".into())
                }
                other => other,
            })?;
            if user.session_epoch != claims.epoch || user.disabled_at.is_some() {
                return Err(AppError::Unauthorized(
                    "your session has ended; sign in again".into(),
                ));
            }
            let current = CurrentUser {
                id: user.id,
                email: user.email,
                display_name: user.display_name,
                is_admin: user.is_admin,
                session_epoch: user.session_epoch,
                session_id: claims.sid,
                token_age_secs: chrono::Utc::now().timestamp() - claims.iat,
            };
            req.extensions_mut().insert(current.clone());
            Ok(current)
        })
    }
}

/// Re-issues the session cookie once its token has lived past half its life, so people who use
/// confab stay signed in while an idle session still expires.
pub async fn renew_session(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let by_cookie = req.cookie(SESSION_COOKIE).is_some() && bearer_token(req.headers()).is_none();
    let mut response = next.call(req).await?;
    if !by_cookie
        || response
            .response()
            .cookies()
            .any(|c| c.name() == SESSION_COOKIE)
    {
        return Ok(response);
    }
    let Some(state) = response
        .request()
        .app_data::<web::Data<AppState>>()
        .cloned()
    else {
        return Ok(response);
    };
    let stale = response
        .request()
        .extensions()
        .get::<CurrentUser>()
        .filter(|user| user.token_age_secs > state.tokens.ttl_secs() / 2)
        .cloned();
    if let Some(user) = stale {
        let cookie = crate::session::session_cookie(
            &state,
            state
                .tokens
                .issue(user.id, user.session_id, user.session_epoch),
        );
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}
