//! `CurrentUser`: the signed-in user, from `Authorization: Bearer` (a session token or an API
//! key) or the session cookie.

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use crate::auth::api_key::{self, KeyScope, is_api_key};
use crate::db;
use crate::error::AppError;
use crate::session::SESSION_COOKIE;
use crate::session::cache::SESSIONS;
use crate::session::model::{KeyGrant, Session, SessionUser};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub session_epoch: i32,
    /// What signed this request: a session (cookie or its bearer token) or an API key.
    pub credential: Credential,
}

/// What a request was signed with, so handlers and middleware can tell a person at their
/// browser from a script holding a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session {
        /// The server-side session this request belongs to.
        id: Uuid,
        /// Seconds since the token was issued; used to renew cookies past half their life.
        token_age_secs: i64,
    },
    ApiKey {
        id: Uuid,
        scope: KeyScope,
    },
}

impl CurrentUser {
    /// The person `user`, signed in with `credential`.
    fn signed(user: SessionUser, credential: Credential) -> CurrentUser {
        CurrentUser {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            is_admin: user.is_admin,
            session_epoch: user.session_epoch,
            credential,
        }
    }

    /// The session of this request; `None` for an API key.
    pub fn session_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session { id, .. } => Some(id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// The session of this request, or 403 for an API key: managing keys, sessions and the
    /// password needs the person, so a leaked key cannot mint more keys, lock its owner out,
    /// or outlive its revocation.
    pub fn require_session(&self) -> Result<Uuid, AppError> {
        self.session_id().ok_or_else(|| {
            AppError::Forbidden(
                "API keys cannot manage keys, sessions or the password; sign in to do that.".into(),
            )
        })
    }

    /// A read-only key may read (GET, HEAD, OPTIONS) and nothing else.
    fn may(&self, method: &Method) -> Result<(), AppError> {
        match self.credential {
            Credential::ApiKey {
                scope: KeyScope::ReadOnly,
                ..
            } if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) => {
                Err(AppError::Forbidden(
                    "This API key is read-only: it can read but not change anything.".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The token of `Authorization: Bearer <token>`. The CSRF check uses the same reading to decide
/// a request is not cookie-authenticated, so the two can never disagree.
pub(crate) fn bearer_token(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A write per request would be wasteful; minutes are precise enough for "last used".
fn is_stale(last_used_at: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    last_used_at.is_none_or(|at| chrono::Utc::now() - at > chrono::Duration::minutes(5))
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<CurrentUser, AppError>>;

    /// Who is asking, and whether their credential allows this request's method.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = authenticate(&req).await?;
            user.may(req.method())?;
            Ok(user)
        })
    }
}

/// Who signed the request (a session token, its cookie, or an API key), looked up once per
/// request and kept in its extensions: the rate limit and the handler's extractors share it.
/// Says nothing about what the credential allows; the extractor checks that.
pub(crate) async fn authenticate(req: &HttpRequest) -> Result<CurrentUser, AppError> {
    if let Some(user) = req.extensions().get::<CurrentUser>() {
        return Ok(user.clone());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("app state missing".into()))?;
    let bearer = bearer_token(req.headers());
    let current = match bearer {
        Some(key) if is_api_key(key) => {
            if !api_key::is_well_formed(key) {
                return Err(AppError::Unauthorized(
                    "this is not an API key confab made; copy the whole key".into(),
                ));
            }
            by_api_key(&state, api_key::hash(key)).await?
        }
        _ => {
            let token = bearer
                .map(str::to_string)
                .or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()))
                .ok_or_else(AppError::unauthorized)?;
            by_session_token(&state, &token).await?
        }
    };
    req.extensions_mut().insert(current.clone());
    Ok(current)
}

async fn by_session_token(state: &AppState, token: &str) -> Result<CurrentUser, AppError> {
    let claims = state.tokens.verify(token).ok_or_else(|| {
        AppError::Unauthorized("your session is invalid or has expired; sign in again".into())
    })?;
    let (sub, sid) = (claims.sub, claims.sid);
    let user = match SESSIONS.get(sid).filter(|user| user.id == sub) {
        Some(user) => user,
        None => {
            let ticket = SESSIONS.ticket();
            let user = db::run(&state.pool, move |conn| {
                let (user, session) = SessionUser::find_signed_in(conn, sub, sid)?;
                // Looked up at most every `cache::TRUSTED_FOR`: "last used" stays within minutes.
                if is_stale(Some(session.last_used_at)) {
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
            SESSIONS.put(ticket, sid, user.clone());
            user
        }
    };
    if user.session_epoch != claims.epoch || user.disabled_at.is_some() {
        return Err(AppError::Unauthorized(
            "your session has ended; sign in again".into(),
        ));
    }
    Ok(CurrentUser::signed(
        user,
        Credential::Session {
            id: claims.sid,
            token_age_secs: chrono::Utc::now().timestamp() - claims.iat,
        },
    ))
}

/// Every request looks the key up (no cache), so a revoked or expired key is refused at once.
async fn by_api_key(state: &AppState, key_hash: Vec<u8>) -> Result<CurrentUser, AppError> {
    let refused = || {
        AppError::Unauthorized("this API key is not valid: it was revoked or has expired".into())
    };
    let (user, key) = db::run(&state.pool, move |conn| {
        let (user, key) = SessionUser::find_by_api_key(conn, &key_hash)?;
        if is_stale(key.last_used_at) && user.disabled_at.is_none() {
            KeyGrant::touch(conn, key.id)?;
        }
        Ok((user, key))
    })
    .await
    .map_err(|e| match e {
        AppError::NotFound => refused(),
        other => other,
    })?;
    if user.disabled_at.is_some() {
        return Err(refused());
    }
    Ok(CurrentUser::signed(
        user,
        Credential::ApiKey {
            id: key.id,
            scope: key.scope,
        },
    ))
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
        .and_then(|user| match user.credential {
            Credential::Session {
                id, token_age_secs, ..
            } if token_age_secs > state.tokens.ttl_secs() / 2 => {
                Some((user.id, id, user.session_epoch))
            }
            _ => None,
        });
    if let Some((user_id, session_id, epoch)) = stale {
        let cookie =
            crate::session::session_cookie(&state, state.tokens.issue(user_id, session_id, epoch));
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}
