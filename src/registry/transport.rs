//! One registry connection: TLS and scheme choice, authentication, and retries.
//!
//! Every request goes through [`Transport::send`], which adds the `Authorization` the registry
//! asked for, refetches a token once on 401, and retries connection failures, 5xx and 429 with
//! exponential backoff and jitter (honouring `Retry-After`), bounded in attempts and total time.
//! Requests that move an upload session forward (PATCH, the closing PUT) opt out of retries:
//! repeating them blindly could apply a chunk twice, so the upload code asks the registry where
//! the session stands instead.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::auth::{basic_header, parse_challenge, Challenge, TokenCache, TokenResponse};
use super::body::{read_limited, read_prefix, ERROR_LIMIT, TOKEN_LIMIT};
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
    insecure: bool,
    challenge: RwLock<Challenge>,
    credential: Option<Credential>,
    tokens: TokenCache,
    token_fetch: Mutex<()>,
    pub retry: RetryPolicy,
}

pub use super::origin::is_loopback;

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
            .redirect(super::origin::redirect_policy());
        let mut builder = super::tls::configure(
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

    /// Whether `url` is the registry itself, the only origin its credentials are sent to.
    pub fn is_own_origin(&self, url: &str) -> bool {
        url::Url::parse(&self.base)
            .map(|b| super::origin::same_origin(&b, url))
            .unwrap_or(false)
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
        if !self.is_own_origin(&req.url) {
            // Object storage behind an upload Location or a redirect: its URL carries its own
            // signature, and our credentials are not its business.
            return self.attempt_loop(req, None);
        }
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
            let errors = decode_error_body(&read_prefix(resp, ERROR_LIMIT));
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
            // A refresh token is for the token service only; a Basic registry never sees it.
            Challenge::Basic { .. } => Ok(self
                .credential
                .as_ref()
                .filter(|c| c.refresh_token().is_none())
                .map(basic_header)),
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

    /// Gets a token from the realm: with a refresh token (docker's `identitytoken`) by the
    /// OAuth2 POST exchange, otherwise by GET with Basic credentials when there are any.
    pub fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), RegistryError> {
        let refresh = self.credential.as_ref().and_then(|c| c.refresh_token());
        let method = if refresh.is_some() { "POST" } else { "GET" };
        let mut url = url::Url::parse(realm).map_err(|e| RegistryError::Protocol {
            method: method.into(),
            url: redact_url(realm),
            what: format!("token realm is not a URL: {e}"),
        })?;
        if let Some(why) = super::origin::realm_refusal(&url, &self.registry, self.insecure) {
            return Err(RegistryError::Protocol {
                method: method.into(),
                url: redact_url(realm),
                what: why.into(),
            });
        }
        let scopes: Vec<&str> = scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        let req = match refresh {
            Some(token) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token)
                    .append_pair("client_id", "kiln");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                // OAuth2 takes one space-separated `scope`.
                form.append_pair("scope", &scopes.join(" "));
                Request::new(Method::POST, url.to_string(), Vec::new())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Body::Bytes(Arc::new(form.finish().into_bytes())))
            }
            None => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                Request::new(Method::GET, url.to_string(), Vec::new())
            }
        };
        let url = req.url.clone();
        let basic = self
            .credential
            .as_ref()
            .filter(|_| refresh.is_none())
            .map(basic_header);
        let resp = self.attempt_loop(&req, basic.as_deref())?;
        match resp.status() {
            s if s.is_success() => {
                let body = read_limited(resp, TOKEN_LIMIT, method, &url)?;
                serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| RegistryError::Protocol {
                        method: method.into(),
                        url: redact_url(&url),
                        what: "token response holds neither token nor access_token".into(),
                    })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                Err(RegistryError::Unauthorized {
                    method: method.into(),
                    url: redact_url(&url),
                    reason: match (refresh, &self.credential) {
                        (Some(_), _) => "the token service rejected the identity token".into(),
                        (None, Some(_)) => "the token service rejected the credentials".into(),
                        (None, None) => {
                            "the token service requires credentials and none were found".into()
                        }
                    },
                })
            }
            _ => Err(status_error(method, &url, resp)),
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
                    let ra = retry_after(resp.headers(), SystemTime::now());
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

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3), relative to `now`; a
/// date already past means "now". Capped at an hour: a hostile value must not park a push.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// Consumes a response into a `Status` error with its decoded OCI error body.
pub fn status_error(method: &str, url: &str, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = read_prefix(resp, ERROR_LIMIT);
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
    fn retry_after_takes_seconds_and_http_dates() {
        // 2015-10-21T07:28:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let at = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        assert_eq!(at("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:07 GMT"),
            Some(Duration::from_secs(7))
        );
        // The obsolete forms RFC 9110 still requires recipients to accept.
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Wed Oct 21 07:29:00 2015"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(at("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("999999999"), Some(Duration::from_secs(3600)));
        assert_eq!(at("soon"), None);
    }
}
