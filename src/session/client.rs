//! The client's address, the one way every part of confab reads it (sign-in and sign-up limits,
//! the API's rate limit, who may read `/metrics`).
//!
//! `X-Forwarded-For` is anyone's to write, so it is believed only as far as proxies we trust
//! wrote it: when the TCP peer is in `server.trusted_proxies`, the header is read from the right
//! (each proxy appends the address it saw), skipping trusted proxies, and the first address not
//! in the list is the client. From any other peer the header is ignored: a client cannot dodge a
//! limit by sending one.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage, HttpRequest, web};
use ipnet::IpNet;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::state::AppState;

/// The client's address of a request (`None` only when the connection has no peer address, as
/// in some unit tests).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.settings.server.trusted_proxies.as_slice())
        .unwrap_or_default();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    Some(client_ip_of(peer, forwarded, trusted))
}

/// Each request's log span, as tracing-actix-web's default makes it, with the client address
/// from [`client_ip`]: the default believes `X-Forwarded-For` from anyone, so the log could name
/// whoever a client claimed to be. The host is left out for the same reason (`X-Forwarded-Host`).
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let client_ip = client_ip(request.request())
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let empty = tracing::field::Empty;
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %request.match_pattern().unwrap_or_else(|| "default".into()),
            http.client_ip = %client_ip,
            http.user_agent = %user_agent,
            http.target = %request.uri().path_and_query().map(actix_web::http::uri::PathAndQuery::as_str).unwrap_or_default(),
            http.status_code = empty,
            otel.status_code = empty,
            request_id = %request_id,
            exception.message = empty,
            exception.details = empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        // The status and any error are recorded into the fields left empty above.
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// [`client_ip`] without the request: the peer, the `X-Forwarded-For` header values in the order
/// they came, and the trusted proxies.
pub fn client_ip_of<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
    // The nearest address known so far: the peer, then each trusted proxy walked through.
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return canonical(ip),
            // Not an address (a port, garbage, `unknown`): whoever wrote it is not trusted, and
            // the last trusted hop is the best that is known.
            Err(_) => return canonical(nearest),
        }
    }
    // Every hop was a trusted proxy: the farthest of them is the client.
    canonical(nearest)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:192.0.2.1`) is the IPv4 address, so the
/// two spellings share one limit and match IPv4 CIDRs.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = nets(&["10.0.0.0/8"]);
        let spoofed = ["198.51.100.7"];
        assert_eq!(
            client_ip_of(ip("203.0.113.9"), spoofed.into_iter(), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip_of(ip("203.0.113.9"), spoofed.into_iter(), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client wrote a fake first hop; our proxies appended what they saw.
        let header = ["1.2.3.4, 198.51.100.7", "192.168.1.1"];
        assert_eq!(
            client_ip_of(ip("10.0.0.2"), header.into_iter(), &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_garbled_hop_stops_at_the_nearest_trusted_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip_of(ip("10.0.0.2"), ["unknown, 10.0.0.3"].into_iter(), &trusted),
            ip("10.0.0.3")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            client_ip_of(ip("10.0.0.2"), std::iter::empty(), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_ip_of(
                ip("::ffff:127.0.0.1"),
                ["2001:db8::1"].into_iter(),
                &trusted
            ),
            ip("2001:db8::1")
        );
    }
}
