//! Operational endpoints. `GET /health`: 200 when the database answers, 503 within the pool's
//! connect timeout when not. `GET /metrics`: Prometheus text, for those allowed to read it.

use actix_web::{HttpRequest, HttpResponse, web};
use diesel::RunQueryDsl;
use serde_json::json;

use crate::auth::constant_time_eq;
use crate::db;
use crate::state::AppState;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    // Within 2 s whatever the database does, so a load balancer is never left waiting.
    let probe = db::run_within(&state.pool, std::time::Duration::from_secs(2), |conn| {
        diesel::sql_query("SELECT 1").execute(conn)?;
        Ok(())
    })
    .await;
    match probe {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "database": "ok"})),
        Err(error) => {
            static HEALTH_ERRORS: crate::error::LogThrottle =
                crate::error::LogThrottle::new(std::time::Duration::from_secs(30));
            if let Some(held_back) = HEALTH_ERRORS.admit() {
                tracing::warn!(%error, held_back, "health check: database unavailable");
            }
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "error", "database": "unavailable"}))
        }
    }
}

/// Metrics tell how busy confab is and which providers fail: with `server.metrics_token` set,
/// only that bearer token reads them; without, only a client on this machine. That is the client
/// address (`session::client_ip`): the TCP peer, or — behind a proxy in `server.trusted_proxies`,
/// which is often on this machine too — the client the proxy names, so the proxy does not make
/// every visitor look local. Anyone else gets the same 404 as an unknown path.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let allowed = match &state.settings.server.metrics_token {
        Some(token) => crate::session::extract::bearer_token(req.headers())
            .is_some_and(|sent| constant_time_eq(sent.as_bytes(), token.expose().as_bytes())),
        None => crate::session::client_ip(&req).is_some_and(|ip| ip.is_loopback()),
    };
    if !allowed {
        return HttpResponse::NotFound().finish();
    }
    crate::metrics::render().await
}
