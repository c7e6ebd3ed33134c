//! One registry connection: TLS and scheme choice, authentication, and retries.
//!
//! Every request goes through [`Transport::send`], which adds the `Authorization` the registry
//! asked for, refetches a token once on 401, and retries connection failures, 5xx and 429 with
//! exponential backoff and jitter (honouring `Retry-After`), bounded in attempts and total time.
//! Requests that move an upload session forward (PATCH, the closing PUT) opt out of retries:
//! repeating them blindly could apply a chunk twice, so the upload code asks the registry where
//! the session stands instead.

use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::auth::{basic_header, parse_challenge, Challenge, TokenCache, TokenResponse};
use super::credentials::Credential;
use super::error::{decode_error_body, redact_url, transport_message, RegistryError};

/// How failed requests are retried. Tests shrink `base_delay` to keep runs short.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, including the first.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based): exponential, with "equal jitter" so that
    /// parallel uploads failing together do not retry in lockstep; a `Retry-After` is a floor.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..=half)
        };
        let d = half + jitter;
        match retry_after {
            Some(ra) => d.max(ra),
            None => d,
        }
    }
}

/// Connection settings for one registry.
#[derive(Clone, Debug, Default)]
pub struct TransportSettings {
    /// Listed in `insecure_registries`: plain HTTP allowed and certificates not verified.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Roots holding `<host:port>/*.crt` (docker's and containers' `certs.d`).
    pub certs_d: Vec<PathBuf>,
    pub retry: RetryPolicy,
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

/// A request body that can be produced again for each attempt, so retries never buffer a layer.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes of `path` starting at `offset`, streamed from disk.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    fn to_reqwest(&self) -> std::io::Result<reqwest::blocking::Body> {
        Ok(match self {
            Body::Empty => reqwest::blocking::Body::from(Vec::new()),
            Body::Bytes(b) => reqwest::blocking::Body::from(b.as_ref().clone()),
            Body::File { path, offset, len } => {
                let mut f = std::fs::File::open(path)?;
                f.seek(SeekFrom::Start(*offset))?;
                reqwest::blocking::Body::sized(f.take(*len), *len)
            }
        })
    }

    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Token scopes this request needs.
    pub scopes: Vec<String>,
    pub retry: bool,
}

impl Request {
    pub fn new(method: Method, url: String, scopes: Vec<String>) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes,
            retry: true,
        }
    }
    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }
    pub fn no_retry(mut self) -> Request {
        self.retry = false;
        self
    }
}

pub struct Transport {
    client: Client,
    /// `https://host:port` or `http://host:port`.
    base: String,
    pub registry: String,
    allow_http: bool,
    challenge: RwLock<Challenge>,
    credential: Option<Credential>,
    tokens: TokenCache,
    token_fetch: Mutex<()>,
    pub retry: RetryPolicy,
}

/// Loopback hosts may be reached over plain HTTP: traffic never leaves the machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split(']')
            .next()
            .map(|h| &registry[..h.len() + 1])
            .unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn setup_err(what: String) -> RegistryError {
    RegistryError::Setup(what)
}

fn add_ca(
    builder: reqwest::blocking::ClientBuilder,
    path: &Path,
) -> Result<reqwest::blocking::ClientBuilder, RegistryError> {
    let pem = std::fs::read(path)
        .map_err(|e| setup_err(format!("reading CA file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        setup_err(format!(
            "parsing CA file {}: {}",
            path.display(),
            transport_message(e)
        ))
    })?;
    if certs.is_empty() {
        return Err(setup_err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

impl Transport {
    /// Builds the client, chooses the scheme and learns how the registry authenticates.
    pub fn connect(
        registry: &str,
        settings: &TransportSettings,
        credential: Option<Credential>,
    ) -> Result<Transport, RegistryError> {
        let mut builder = Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Bounds one request; a request carries at most one chunk or one small blob.
            .timeout(Duration::from_secs(300))
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(ca) = &settings.ca_file {
            builder = add_ca(builder, ca)?;
        }
        for root in &settings.certs_d {
            let dir = root.join(registry);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut crts: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            crts.sort();
            for crt in crts {
                builder = add_ca(builder, &crt)?;
            }
        }
        if settings.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| setup_err(format!("building HTTP client: {}", transport_message(e))))?;
        let allow_http = settings.insecure || is_loopback(registry);
        let mut t = Transport {
            client,
            base: format!("https://{registry}"),
            registry: registry.to_string(),
            allow_http,
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Resolves a `Location` header, which registries may send relative to the request.
    pub fn resolve(&self, location: &str) -> String {
        match url::Url::parse(&self.base).and_then(|b| b.join(location)) {
            Ok(u) => u.to_string(),
            Err(_) => location.to_string(),
        }
    }

    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }

    pub fn challenge(&self) -> Challenge {
        self.challenge.read().unwrap().clone()
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

    /// Sends a request, answering authentication challenges and retrying transient failures.
    /// Returns any response that is not 401, 429 or 5xx; statuses are the caller's to judge.
    pub fn send(&self, req: &Request) -> Result<Response, RegistryError> {
        let mut auth = self.authorization(&req.scopes, false)?;
        let resp = self.attempt_loop(req, auth.as_deref())?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // The token expired, or the registry wants auth only for this repository: learn the
        // challenge this response carries and try exactly once more.
        if let Some(c) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        {
            *self.challenge.write().unwrap() = c;
        }
        self.tokens.forget(&TokenCache::key(&req.scopes));
        auth = self.authorization(&req.scopes, true)?;
        let resp = self.attempt_loop(req, auth.as_deref())?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let method = req.method.to_string();
            let reason = if self.credential.is_some() {
                "the registry rejected the credentials"
            } else {
                "no credentials found (KILN_REGISTRY_USERNAME/PASSWORD, docker config.json or containers auth.json)"
            };
            let errors = decode_error_body(&resp.bytes().unwrap_or_default());
            let detail = errors
                .first()
                .map(|e| format!("; {}: {}", e.code, e.message))
                .unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                method,
                url: redact_url(&req.url),
                reason: format!("{reason}{detail}"),
            });
        }
        Ok(resp)
    }

    /// The `Authorization` value for these scopes, fetching a token if needed.
    fn authorization(
        &self,
        scopes: &[String],
        refresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        match self.challenge() {
            Challenge::Anonymous => Ok(None),
            Challenge::Basic { .. } => Ok(self.credential.as_ref().map(basic_header)),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut all = scopes.to_vec();
                // A 401 may name a scope we did not think of (e.g. for a mount source).
                if refresh {
                    if let Some(s) = scope {
                        all.extend(s.split(' ').map(str::to_string));
                    }
                }
                let key = TokenCache::key(&all);
                if let Some(t) = self.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                // One fetch at a time: parallel uploads starting together would otherwise all
                // miss the cache and each ask the token service for the same scope.
                let _single_flight = self.token_fetch.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = self.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), &all)?;
                self.tokens.put(key, token.clone(), ttl);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// GETs a token from the realm, sending Basic credentials when we have them.
    pub fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), RegistryError> {
        let mut url = url::Url::parse(realm).map_err(|e| RegistryError::Protocol {
            method: "GET".into(),
            url: redact_url(realm),
            what: format!("token realm is not a URL: {e}"),
        })?;
        // Credentials must not travel in clear text to some other host.
        let realm_host = url.host_str().unwrap_or("");
        if url.scheme() != "https" && !(is_loopback(realm_host) || self.allow_http) {
            return Err(RegistryError::Protocol {
                method: "GET".into(),
                url: redact_url(realm),
                what: "refusing a plain-HTTP token realm for a registry that is neither loopback nor insecure".into(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes.iter().filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let url = url.to_string();
        let req = Request::new(Method::GET, url.clone(), Vec::new());
        let basic = self.credential.as_ref().map(basic_header);
        let resp = self.attempt_loop(&req, basic.as_deref())?;
        match resp.status() {
            s if s.is_success() => {
                let body = resp.bytes().map_err(|e| RegistryError::Transport {
                    method: "GET".into(),
                    url: redact_url(&url),
                    message: transport_message(e),
                })?;
                serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| RegistryError::Protocol {
                        method: "GET".into(),
                        url: redact_url(&url),
                        what: "token response holds neither token nor access_token".into(),
                    })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
                method: "GET".into(),
                url: redact_url(&url),
                reason: if self.credential.is_some() {
                    "the token service rejected the credentials".into()
                } else {
                    "the token service requires credentials and none were found".into()
                },
            }),
            _ => Err(status_error("GET", &url, resp)),
        }
    }

    /// Sends with retries on transport errors, 429 and 5xx (when the request allows them).
    fn attempt_loop(&self, req: &Request, auth: Option<&str>) -> Result<Response, RegistryError> {
        let start = Instant::now();
        let method = req.method.to_string();
        let mut attempt = 0u32;
        loop {
            let body = req
                .body
                .to_reqwest()
                .map_err(|e| RegistryError::Setup(format!("reading request body: {e}")))?;
            let mut builder = self
                .client
                .request(req.method.clone(), &req.url)
                .headers(req.headers.clone());
            if let Some(a) = auth {
                builder = builder.header(AUTHORIZATION, a);
            }
            if req.body.len() > 0
                || matches!(req.method, Method::PUT | Method::PATCH | Method::POST)
            {
                builder = builder.body(body);
            }
            let outcome = builder.send();
            let (retry_after, err) = match outcome {
                Ok(resp) if is_transient(resp.status()) => {
                    let ra = retry_after(resp.headers());
                    (ra, status_error(&method, &req.url, resp))
                }
                Ok(resp) => return Ok(resp),
                Err(e) => (
                    None,
                    RegistryError::Transport {
                        method: method.clone(),
                        url: redact_url(&req.url),
                        message: transport_message(e),
                    },
                ),
            };
            attempt += 1;
            if !req.retry || attempt >= self.retry.attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt - 1, retry_after);
            if start.elapsed() + delay > self.retry.max_total {
                return Err(err);
            }
            std::thread::sleep(delay);
        }
    }
}

pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in seconds; the HTTP-date form is rare from registries and treated as absent.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Consumes a response into a `Status` error with its decoded OCI error body.
pub fn status_error(method: &str, url: &str, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.bytes().unwrap_or_default();
    RegistryError::Status {
        method: method.to_string(),
        url: redact_url(url),
        status,
        errors: decode_error_body(&body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection_covers_v4_v6_and_localhost() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("127.0.0.1.example.com"));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for attempt in 0..10 {
            let d = p.delay(attempt, None);
            let exp =
                Duration::from_millis(100 * (1 << attempt.min(4))).min(Duration::from_millis(1000));
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} not in [{:?}, {exp:?}]",
                exp / 2
            );
        }
        assert!(p.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_seconds_are_parsed() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
