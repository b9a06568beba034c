//! Prometheus metrics at `GET /metrics`: answer latency and size, live streams, upstream errors,
//! HTTP requests by route and status.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, http::header};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// A leaf: callers pass labels as text, so this module knows nothing of the rest of confab.

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let seconds = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .expect("valid buckets")
            .install_recorder()
            .expect("the metrics recorder is installed once")
    })
}

pub async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(handle().render())
}

pub fn live_streams(delta: f64) {
    gauge!("confab_live_streams").increment(delta);
}

/// One answer ended.
pub fn finished(
    provider: &Option<String>,
    status: &'static str,
    ttft: Option<Duration>,
    duration: Duration,
    output_tokens: Option<i32>,
) {
    let provider = provider.clone().unwrap_or_else(|| "none".into());
    counter!("confab_answers_total", "provider" => provider.clone(), "status" => status)
        .increment(1);
    if let Some(ttft) = ttft {
        histogram!("confab_time_to_first_token_seconds", "provider" => provider.clone())
            .record(ttft.as_secs_f64());
    }
    histogram!("confab_answer_duration_seconds", "provider" => provider.clone())
        .record(duration.as_secs_f64());
    if let Some(tokens) = output_tokens {
        counter!("confab_output_tokens_total", "provider" => provider)
            .increment(tokens.max(0) as u64);
    }
}

/// A provider failed: before the first token (retried or fallen back from) or mid-stream.
/// `status` is the HTTP status or the kind of failure (`connect`, `stalled`, `stream`, …).
pub fn upstream_error(provider: &str, status: String) {
    counter!("confab_upstream_errors_total", "provider" => provider.to_string(), "status" => status).increment(1);
}

/// Counts every request by its route pattern (not its path, so ids do not explode the labels).
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Anyone can send any method: an unbounded label set would grow /metrics without end.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16().to_string();
    counter!("confab_http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    Ok(response)
}
