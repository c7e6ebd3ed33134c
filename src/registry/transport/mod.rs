//! One registry connection: TLS and scheme choice, authentication, and retries.
//!
//! Every request goes through [`Transport::send`], which adds the `Authorization` the registry
//! asked for, refetches a token once on 401, and retries connection failures, 5xx and 429 with
//! exponential backoff and jitter (honouring `Retry-After`), bounded in attempts and total time.
//! Requests that move an upload session forward (PATCH, the closing PUT) opt out of retries:
//! repeating them blindly could apply a chunk twice, so the upload code asks the registry where
//! the session stands instead.
//!
//! The layers, outermost first: `auth` (the `Authorization` per request and the token
//! handshake), `retry` (backoff over transient failures), then reqwest. `connect` builds the
//! client and chooses the scheme by pinging `/v2/`, which is also where the first challenge is
//! learnt.

mod auth;
mod connect;
mod retry;

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;

use super::auth::{Challenge, TokenCache};
use super::body::{read_prefix, ERROR_LIMIT};
use super::credentials::Credential;
use super::error::{decode_error_body, redact_url, RegistryError};

pub use super::origin::is_loopback;
pub use connect::TransportSettings;
pub use retry::{is_transient, RetryPolicy};

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

impl Transport {
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
