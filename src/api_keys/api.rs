//! JSON API: `/api/keys`. Every handler needs a signed-in session (see `service`).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use uuid::Uuid;

use crate::api_keys::model::ApiKey;
use crate::api_keys::service::{self, KeyInput};
use crate::error::AppResult;
use crate::session::CurrentUser;
use crate::state::AppState;

/// The answer to `POST /api/keys`: the key, this once, and what the list shows of it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKeyView {
    /// The whole key: keep it now, it is never shown again.
    key: String,
    #[serde(flatten)]
    metadata: ApiKey,
}

/// `POST /api/keys` → 201 with the key.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = KeyInput,
    responses((status = 201, description = "The key, shown this once", body = CreatedKeyView),
        (status = 409, description = "You have as many keys as one person may: revoke one first", body = crate::error::Envelope)))]
pub async fn create_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<KeyInput>,
) -> AppResult<HttpResponse> {
    let created = service::create(&state.pool, &user, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(CreatedKeyView {
        key: created.key.expose().to_string(),
        metadata: created.metadata,
    }))
}

/// `GET /api/keys`: the user's keys, newest first, without the keys themselves.
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, description = "Your keys, newest first (never the keys themselves)", body = [ApiKey])))]
pub async fn list_keys(state: web::Data<AppState>, user: CurrentUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.pool, &user).await?))
}

/// `DELETE /api/keys/{id}` → 204; another user's key is 404.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys",
    responses((status = 204, description = "Revoked: it stops working at once")))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    service::revoke(&state.pool, &user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
