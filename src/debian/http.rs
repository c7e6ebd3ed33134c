//! Fetching from a Debian mirror, behind the [`Http`] trait so tests serve a local archive and
//! inject faults. Integrity never depends on the transport: every byte fetched is checked
//! against a signed digest by the caller, which is why plain-HTTP mirrors are fine.

use std::io::{self, Write};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {url} (is the mirror up, and is KILN_DEBIAN_MIRROR or the apt sources right?)")]
    Unreachable {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("reading {url}")]
    Body {
        url: String,
        #[source]
        source: io::Error,
    },
}

impl HttpError {
    /// Whether the server said the file does not exist (as opposed to failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404, .. })
    }
}

pub trait Http: Sync {
    /// Streams the body of `url` into `sink`; returns the number of bytes written.
    fn get(&self, url: &str, sink: &mut dyn Write) -> Result<u64, HttpError>;
}

/// The real transport: reqwest's blocking client with generous timeouts (a .deb of the compiler
/// is tens of megabytes on a slow mirror) and no retries of its own; callers re-fetch on a bad
/// digest.
pub struct ReqwestHttp {
    client: reqwest::blocking::Client,
}

impl ReqwestHttp {
    pub fn new() -> Result<ReqwestHttp, HttpError> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Unreachable {
                url: String::new(),
                source: Box::new(e),
            })?;
        Ok(ReqwestHttp { client })
    }
}

impl Http for ReqwestHttp {
    fn get(&self, url: &str, sink: &mut dyn Write) -> Result<u64, HttpError> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| HttpError::Unreachable {
                url: url.to_string(),
                source: Box::new(e),
            })?;
        if !resp.status().is_success() {
            return Err(HttpError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        resp.copy_to(sink).map_err(|e| HttpError::Body {
            url: url.to_string(),
            source: io::Error::other(e),
        })
    }
}
