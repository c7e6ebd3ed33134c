//! Connecting to a registry: the HTTP client (TLS roots, client certificates, timeouts, the
//! redirect policy) and the scheme. HTTPS comes first; plain HTTP only for loopback registries
//! and those listed as insecure, and only when HTTPS did not connect, so a registry that speaks
//! TLS is never downgraded. The ping of `/v2/` also tells how the registry authenticates.

use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};

use super::{is_loopback, status_error, Request, RetryPolicy, Transport};
use crate::registry::auth::{parse_challenge, Challenge, TokenCache};
use crate::registry::credentials::Credential;
use crate::registry::error::{redact_url, transport_message, RegistryError};
use crate::registry::{origin, tls};

/// Connection settings for one registry.
#[derive(Clone, Debug, Default)]
pub struct TransportSettings {
    /// Listed in `insecure_registries`: plain HTTP allowed and certificates not verified.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Roots holding `<host:port>/*.crt` (docker's and containers' `certs.d`).
    pub certs_d: Vec<PathBuf>,
    pub retry: RetryPolicy,
    /// Bounds one request including its body; `None` is 300 s. Tests shorten it to show that a
    /// body that stalls or trickles forever ends in an error.
    pub request_timeout: Option<Duration>,
    /// Host names answered without DNS (`curl --resolve`): lets tests give a loopback server a
    /// non-loopback name, so the rules for remote registries can be shown without a network.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
}

impl TransportSettings {
    /// `certs.d` roots: `KILN_CERTS_D` (colon-separated) replaces the system ones, so tests can
    /// supply a CA without writing to /etc.
    pub fn default_certs_d() -> Vec<PathBuf> {
        match std::env::var_os("KILN_CERTS_D").filter(|v| !v.is_empty()) {
            Some(v) => std::env::split_paths(&v).collect(),
            None => vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
            ],
        }
    }
}

impl Transport {
    /// Builds the client, chooses the scheme and learns how the registry authenticates.
    pub fn connect(
        registry: &str,
        settings: &TransportSettings,
        credential: Option<Credential>,
    ) -> Result<Transport, RegistryError> {
        let builder = Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Bounds one request; a request carries at most one chunk or one small blob.
            .timeout(settings.request_timeout.unwrap_or(Duration::from_secs(300)))
            .redirect(origin::redirect_policy());
        let mut builder = tls::configure(
            builder,
            registry,
            settings.ca_file.as_deref(),
            &settings.certs_d,
        )?;
        for (host, addr) in &settings.resolve {
            builder = builder.resolve(host, *addr);
        }
        if settings.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| {
            RegistryError::Setup(format!("building HTTP client: {}", transport_message(e)))
        })?;
        let allow_http = settings.insecure || is_loopback(registry);
        let mut t = Transport {
            client,
            base: format!("https://{registry}"),
            registry: registry.to_string(),
            insecure: settings.insecure,
            challenge: RwLock::new(Challenge::Anonymous),
            credential,
            tokens: TokenCache::default(),
            token_fetch: Mutex::new(()),
            retry: settings.retry.clone(),
        };
        let challenge = match t.ping(!allow_http) {
            Ok(c) => c,
            // HTTPS did not even connect (or spoke to a plain-HTTP server): fall back where allowed.
            Err(https_err @ RegistryError::Transport { .. }) if allow_http => {
                t.base = format!("http://{registry}");
                // If plain HTTP does not give a registry answer either, the HTTPS failure (say,
                // an untrusted certificate) is the one that explains the problem.
                t.ping(true).map_err(|_| https_err)?
            }
            Err(e) => return Err(e),
        };
        *t.challenge.write().unwrap() = challenge;
        Ok(t)
    }

    fn ping(&self, retry: bool) -> Result<Challenge, RegistryError> {
        let url = self.url("/v2/");
        let req = Request {
            retry,
            ..Request::new(Method::GET, url.clone(), Vec::new())
        };
        let resp = self.attempt_loop(&req, None)?;
        match resp.status() {
            s if s.is_success() => Ok(Challenge::Anonymous),
            StatusCode::UNAUTHORIZED => {
                let header = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                parse_challenge(header).ok_or_else(|| RegistryError::Protocol {
                    method: "GET".into(),
                    url: redact_url(&url),
                    what: format!("401 with an unsupported WWW-Authenticate challenge {header:?}"),
                })
            }
            _ => Err(status_error("GET", &url, resp)),
        }
    }
}
