//! The HTTP clients confab reaches providers with: one TLS configuration for all of them (the
//! system's certificate authorities and the operator's own, read once), and answers spread over
//! as many connections as the providers' HTTP/2 stream limits need.
//!
//! Why more than one client: reqwest (hyper) sends every request to a host over its one HTTP/2
//! connection, and a request beyond the number of streams the server allows on a connection
//! (`SETTINGS_MAX_CONCURRENT_STREAMS`, 100 to 256 at hosted providers' edges) waits in that
//! connection's queue until another stream ends. An answer's stream lasts as long as the answer,
//! so behind such a limit the 101st live answer would get its first token only when an earlier
//! answer had finished. Each client here (a lane) has a pool of its own, so a connection of its
//! own to each provider; an answer takes the first lane that carries fewer than
//! `llm.streams_per_connection` answers, and a new lane is made when none does. Over HTTP/1.1
//! (local servers) a lane's pool opens a connection per live answer as one client would.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How long a provider may send nothing at all before the attempt is given up (the default
/// of `llm.stall_timeout_secs`).
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one Files API call may take before it is given up (a 512 MB upload at 2 MB/s).
const FILES_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How confab reaches providers: the `llm` settings about HTTP.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest an answer's connection may stay silent (`llm.stall_timeout_secs`).
    pub stall_timeout: Duration,
    /// Certificate authorities trusted besides the system's (`llm.ca_file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Answers one connection carries at once before another is opened
    /// (`llm.streams_per_connection`).
    pub streams_per_connection: usize,
}

impl Default for ClientOptions {
    /// The settings' defaults; tests and tools that build a router of their own start here.
    fn default() -> Self {
        ClientOptions {
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            extra_roots: Vec::new(),
            // The least a server should allow (RFC 9113 §6.5.2: no fewer than 100 streams).
            streams_per_connection: 100,
        }
    }
}

/// A certificate bundle bigger than this is not one (the system's own is about 200 KB).
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// The certificates of a PEM file (`llm.ca_file`), each checked to be one an authority can be
/// made of. A file that holds none is an error too: trusting nothing more is surely not what
/// was meant.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |what: String| format!("llm.ca_file: {}: {what}", path.display());
    // A FIFO would hang the start, and /dev/zero would fill the memory.
    let file =
        std::fs::File::open(path).map_err(|error| fail(format!("cannot read it: {error}")))?;
    match file.metadata() {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(fail("not a regular file".into())),
        Err(error) => return Err(fail(format!("cannot read it: {error}"))),
    }
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| fail(format!("cannot read it: {error}")))?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(fail(format!(
            "over {} MB, too big for a certificate bundle",
            MAX_CA_FILE_BYTES >> 20
        )));
    }
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| fail(format!("not a PEM file of certificates ({error})")))?;
    if certificates.is_empty() {
        return Err(fail(
            "holds no certificate (a PEM file with BEGIN CERTIFICATE blocks)".into(),
        ));
    }
    let mut checked = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        checked
            .add(certificate.clone())
            .map_err(|error| fail(format!("certificate {} is not valid: {error}", index + 1)))?;
    }
    Ok(certificates)
}

/// The clients of one process; made at start-up and shared.
pub struct Clients {
    tls: rustls::ClientConfig,
    stall_timeout: Duration,
    streams_per_connection: usize,
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// For the Files API: an upload may take far longer than a chat may stay silent, and
    /// reqwest's read timeout runs from sending the request until the answer's headers.
    files: reqwest::Client,
}

struct Lane {
    client: reqwest::Client,
    /// Answers on this lane now.
    live: AtomicUsize,
}

/// An answer's place on its lane, given back when the answer's response is dropped.
pub(crate) struct OnLane(Arc<Lane>);

impl Drop for OnLane {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Clients {
    /// Reads the system's certificate authorities; fails when there are none and none are
    /// configured (a container without its CA certificates), as no HTTPS provider could be
    /// reached.
    pub fn new(options: &ClientOptions) -> Result<Clients, String> {
        let tls = tls_config(options.extra_roots.clone())?;
        Ok(Clients {
            files: client(&tls, FILES_TIMEOUT)?,
            lanes: Mutex::new(vec![Arc::new(Lane {
                client: client(&tls, options.stall_timeout)?,
                live: AtomicUsize::new(0),
            })]),
            tls,
            stall_timeout: options.stall_timeout,
            streams_per_connection: options.streams_per_connection.max(1),
        })
    }

    /// The client an answer's request goes out on, and its place there, held as long as the
    /// answer's response.
    pub(crate) fn for_answer(&self) -> (reqwest::Client, OnLane) {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let free = lanes
            .iter()
            .find(|lane| lane.live.load(Ordering::Relaxed) < self.streams_per_connection)
            .cloned();
        let lane = free.unwrap_or_else(|| {
            let lane = Arc::new(Lane {
                // What built the first lane builds this one.
                client: client(&self.tls, self.stall_timeout)
                    .expect("the first lane was built with the same configuration"),
                live: AtomicUsize::new(0),
            });
            lanes.push(lane.clone());
            tracing::debug!(lanes = lanes.len(), "answers now go over one more lane");
            lane
        });
        lane.live.fetch_add(1, Ordering::Relaxed);
        (lane.client.clone(), OnLane(lane))
    }

    /// The client of the Files API and vector stores.
    pub(crate) fn files(&self) -> &reqwest::Client {
        &self.files
    }
}

/// The system's certificate authorities and `extra_roots`, checked by the platform's verifier
/// (as reqwest itself would), and HTTP/2 or HTTP/1.1 as the server prefers.
fn tls_config(extra_roots: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, String> {
    // reqwest's own order: a provider the process installed, else aws-lc-rs.
    let crypto = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    // The extra roots were checked by `read_ca_file`; what fails here is the system's store.
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, crypto.clone())
            .map_err(|error| {
                format!(
                    "no certificate authority to check providers' certificates with ({error}): \
                     install the system's CA certificates, or name a PEM file in llm.ca_file"
                )
            })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// A client on `tls`. A stream may legitimately run for minutes, so there is no total timeout;
/// instead each read waits at most `read_timeout`, which any byte resets (keepalive events and
/// SSE comments included), so a reasoning model that is quiet but alive is not cut off.
/// reqwest takes `tls` only when it is of the rustls version reqwest itself uses (Cargo.toml
/// says so beside the dependency); otherwise building fails, and so does the start.
fn client(tls: &rustls::ClientConfig, read_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(read_timeout)
        // Small SSE requests and first tokens should not wait for Nagle.
        .tcp_nodelay(true)
        .user_agent(concat!("confab/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("the HTTP client for providers: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_fill_a_lane_before_the_next_and_a_freed_place_is_taken_again() {
        let clients = Clients::new(&ClientOptions {
            streams_per_connection: 2,
            ..ClientOptions::default()
        })
        .unwrap();
        let lanes = |clients: &Clients| clients.lanes.lock().unwrap().len();
        let first = clients.for_answer();
        let second = clients.for_answer();
        assert_eq!(lanes(&clients), 1);
        let third = clients.for_answer();
        assert_eq!(lanes(&clients), 2);
        assert!(Arc::ptr_eq(&first.1.0, &second.1.0) && !Arc::ptr_eq(&first.1.0, &third.1.0));
        drop(first);
        let again = clients.for_answer();
        assert!(
            Arc::ptr_eq(&again.1.0, &second.1.0),
            "the first lane had room again"
        );
        assert_eq!(lanes(&clients), 2);
    }

    #[test]
    fn a_ca_file_that_is_not_a_bundle_of_certificates_is_refused_by_name_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |name: &str, contents: Option<&[u8]>| {
            let path = dir.path().join(name);
            if let Some(contents) = contents {
                std::fs::write(&path, contents).unwrap();
            }
            let error = read_ca_file(&path).unwrap_err();
            assert!(error.starts_with("llm.ca_file: "), "{error}");
            error
        };
        assert!(refused("missing.pem", None).contains("cannot read"));
        assert!(refused("text.pem", Some(b"not a certificate\n")).contains("no certificate"));
        // Good base64, but not a certificate: named, not blamed on the system's store.
        let not_x509 =
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(refused("bad.pem", Some(not_x509)).contains("certificate 1 is not valid"));
        let big = vec![b'#'; MAX_CA_FILE_BYTES as usize + 1];
        assert!(refused("big.pem", Some(&big)).contains("too big"));
        let error = read_ca_file(dir.path()).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
    }
}
