//! An upstream over TLS that speaks HTTP/2 only and allows few streams per connection, as a
//! hosted provider's edge does (it announces SETTINGS_MAX_CONCURRENT_STREAMS, commonly 100 to 256).
//! Every request to `/responses` is answered with the first text delta of a Responses stream,
//! and then the answer stays open, as a long answer does, until the client drops it; any other
//! path is a 404 with OpenAI's error body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::fake_llm::tls_server_config;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The first event of every answer: the text "Hi".
const FIRST_DELTA: &str = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[],\"sequence_number\":1}\n\n";

const NOT_FOUND: &str = "{\"error\":{\"message\":\"Unknown path\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"unknown_url\"}}";

pub struct TlsUpstream {
    addr: SocketAddr,
    /// What it serves with; its authority is for the client to trust.
    pub certificate: LoopbackCertificate,
    connections: Arc<AtomicUsize>,
}

/// A certificate authority, and a certificate it signed for 127.0.0.1 with its key.
pub struct LoopbackCertificate {
    ca: CertifiedIssuer<'static, KeyPair>,
    certificate: rcgen::Certificate,
    key: KeyPair,
}

/// Where [`LoopbackCertificate::write_to`] put it.
pub struct CertificateFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl LoopbackCertificate {
    pub fn new() -> LoopbackCertificate {
        let ca_params = {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
        };
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        LoopbackCertificate {
            ca,
            certificate,
            key,
        }
    }

    /// The authority, for a client's trusted roots.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The authority, the certificate and its key as PEM files in `dir`.
    pub fn write_to(&self, dir: &Path) -> CertificateFiles {
        let files = CertificateFiles {
            ca: dir.join("ca.pem"),
            certificate: dir.join("certificate.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, self.ca.pem()).unwrap();
        std::fs::write(&files.certificate, self.certificate.pem()).unwrap();
        std::fs::write(&files.key, self.key.serialize_pem()).unwrap();
        files
    }

    /// A server's TLS configuration with this certificate (the fake LLM's).
    fn server_config(&self) -> rustls::ServerConfig {
        tls_server_config(
            vec![self.certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der())),
        )
        .unwrap()
    }
}

impl TlsUpstream {
    /// Listens on a free loopback port; each connection allows `max_streams` streams at once.
    pub async fn start(max_streams: u32) -> TlsUpstream {
        let certificate = LoopbackCertificate::new();
        let mut tls = certificate.server_config();
        // HTTP/2 or nothing: a client that does not offer it fails its handshake.
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let service = service_fn(|request: hyper::Request<_>| async move {
                        let frame = |text: &'static str| {
                            Ok::<_, Infallible>(Frame::data(Bytes::from_static(text.as_bytes())))
                        };
                        let response = hyper::Response::builder();
                        if request.uri().path().ends_with("/responses") {
                            let first = stream::iter([frame(FIRST_DELTA)]);
                            let body = first.chain(stream::pending()).boxed();
                            response
                                .header("content-type", "text/event-stream")
                                .body(StreamBody::new(body))
                        } else {
                            let body = stream::iter([frame(NOT_FOUND)]).boxed();
                            response
                                .status(404)
                                .header("content-type", "application/json")
                                .body(StreamBody::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(max_streams)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            certificate,
            connections,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://{}/v1", self.addr)
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
