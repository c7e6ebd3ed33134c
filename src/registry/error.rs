//! Registry errors: the OCI error body decoded, with the method and a redacted URL.
//!
//! Everything that can end up in a message passes through [`redact_url`] first: upload URLs carry
//! `_state` (an HMAC-signed session token) and storage redirects carry signatures, and either is
//! enough to act on someone's behalf. Credentials themselves are never put in an error at all.

use std::fmt;

use crate::digest::Digest;

/// One entry of the `{"errors":[...]}` body defined by the distribution spec.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct OciError {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<OciError>,
}

/// Decodes an error body; a body that is not the spec's shape (a proxy's HTML page, say) yields
/// no entries rather than an error, since the status code still says what happened.
pub fn decode_error_body(body: &[u8]) -> Vec<OciError> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// Formats decoded errors as `CODE: message; CODE: message`.
struct Codes<'a>(&'a [OciError]);

impl fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{}", e.code)?;
            if !e.message.is_empty() {
                write!(f, ": {}", e.message)?;
            }
        }
        Ok(())
    }
}

/// A failed exchange with a registry or its token service. URLs are already redacted.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: HTTP {status}{}", Codes(errors))]
    Status {
        method: String,
        url: String,
        status: u16,
        errors: Vec<OciError>,
    },
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: registry reported digest {reported}, expected {expected}")]
    DigestMismatch {
        method: String,
        url: String,
        expected: Digest,
        reported: String,
    },
    #[error("{method} {url}: the body hashes to {actual}, but the registry says it is {reported}")]
    BodyDigest {
        method: String,
        url: String,
        actual: Digest,
        reported: String,
    },
    #[error("{method} {url}: {what}")]
    Protocol {
        method: String,
        url: String,
        what: String,
    },
    #[error("{method} {url}: authentication failed{}", reason_suffix(reason))]
    Unauthorized {
        method: String,
        url: String,
        reason: String,
    },
    #[error("{0}")]
    Setup(String),
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl RegistryError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first OCI error code in the body, e.g. `BLOB_UPLOAD_UNKNOWN`.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Status { errors, .. } => errors.first().map(|e| e.code.as_str()),
            _ => None,
        }
    }
}

/// Query parameters whose values are safe to show. Everything else (`_state`, signed-URL
/// parameters, tokens) is replaced, because registries put secrets in query strings freely.
const SHOWN_QUERY_KEYS: &[&str] = &[
    "digest",
    "mount",
    "from",
    "n",
    "last",
    "artifactType",
    "service",
    "scope",
];

/// Hides user-info passwords and every query value not known to be harmless.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        // Not a URL we understand: keep only what is before the query, which is never secret.
        return match raw.split_once('?') {
            Some((head, _)) => format!("{head}?REDACTED"),
            None => raw.to_string(),
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SHOWN_QUERY_KEYS.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    "REDACTED".to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Turns a reqwest failure into text without its URL (which may carry `_state`) and with its
/// cause chain, since "error sending request" alone says nothing useful.
pub fn transport_message(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_unknown_query_values_are_hidden_but_digest_is_kept() {
        let d = Digest::of(b"x");
        let raw = format!("https://reg.io/v2/a/blobs/uploads/u1?_state=SECRETSTATE&digest={d}&X-Amz-Signature=abc");
        let shown = redact_url(&raw);
        assert!(!shown.contains("SECRETSTATE"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains(&d.hex()), "{shown}");
        assert!(shown.contains("_state=REDACTED"), "{shown}");
    }

    #[test]
    fn user_info_passwords_are_hidden() {
        let shown = redact_url("https://bob:hunter2@reg.io/v2/");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bob"), "{shown}");
    }

    #[test]
    fn unparsable_urls_lose_their_query() {
        assert_eq!(redact_url("/v2/x?_state=abc"), "/v2/x?REDACTED");
    }

    #[test]
    fn error_bodies_decode_and_show_code_and_message() {
        let body = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content","detail":{}}]}"#;
        let errors = decode_error_body(body);
        assert_eq!(errors[0].code, "DIGEST_INVALID");
        let e = RegistryError::Status {
            method: "PUT".into(),
            url: "https://r/v2/a".into(),
            status: 400,
            errors,
        };
        assert_eq!(
            e.to_string(),
            "PUT https://r/v2/a: HTTP 400: DIGEST_INVALID: provided digest did not match uploaded content"
        );
        assert_eq!(e.code(), Some("DIGEST_INVALID"));
        assert!(decode_error_body(b"<html>bad gateway</html>").is_empty());
    }
}
