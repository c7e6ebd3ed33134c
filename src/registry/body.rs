//! Bounded reads of response bodies. A registry, a proxy or a token service may announce a
//! huge `Content-Length`, send more than it announced, or never end a chunked body; every body
//! kiln reads goes through [`read_limited`], which refuses an announced size over the limit
//! before reading and stops reading one byte past it, so memory stays bounded whatever arrives.
//! (A body that trickles forever is ended by the client's per-request timeout.)

use std::io::Read;

use reqwest::blocking::Response;

use super::error::{redact_url, RegistryError};

/// Manifests and indexes: distribution refuses manifests over 4 MiB, so nothing larger is valid.
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Token responses: a JWT for many scopes is a few KiB; leave generous room.
pub const TOKEN_LIMIT: u64 = 1 << 20;
/// Error bodies are only decoded for their codes: the start is enough, the rest is dropped.
pub const ERROR_LIMIT: u64 = 64 << 10;

/// Reads the whole body if it is at most `limit` bytes; a larger one is an error.
pub fn read_limited(
    resp: Response,
    limit: u64,
    method: &str,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |what: String| RegistryError::Protocol {
        method: method.into(),
        url: redact_url(url),
        what,
    };
    if let Some(announced) = resp.content_length().filter(|n| *n > limit) {
        return Err(too_large(format!(
            "response body of {announced} bytes is over the {limit}-byte limit"
        )));
    }
    let mut body = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| RegistryError::Transport {
            method: method.into(),
            url: redact_url(url),
            message: format!("reading the response body: {e}"),
        })?;
    if body.len() as u64 > limit {
        return Err(too_large(format!(
            "response body is over the {limit}-byte limit"
        )));
    }
    Ok(body)
}

/// The first `limit` bytes of a body, or what arrived before the connection failed: used for
/// error bodies, where a broken or endless body must not hide the status that came with it.
pub fn read_prefix(resp: Response, limit: u64) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = resp.take(limit).read_to_end(&mut body);
    body
}
