//! `GET /health`: 200 when the database answers, 503 within the pool's connect timeout when not.

use actix_web::{HttpResponse, web};
use diesel::RunQueryDsl;
use serde_json::json;

use crate::db;
use crate::state::AppState;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let probe = db::run(&state.pool, |conn| {
        diesel::sql_query("SELECT 1").execute(conn)?;
        Ok(())
    })
    .await;
    match probe {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "database": "ok"})),
        Err(error) => {
            tracing::warn!(%error, "health check: database unavailable");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "error", "database": "unavailable"}))
        }
    }
}
