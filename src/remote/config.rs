//! Where the remote cache is and how to authenticate to it.
//!
//! URLs: `grpc://host:port` or `http://host:port` speak plaintext HTTP/2; `grpcs://host:port` or
//! `https://host:port` speak TLS, verified against the system's roots plus an optional CA file.
//! Credentials come from the environment only, so they never sit in a config file or a command
//! line: `KILN_REMOTE_TOKEN` becomes `authorization: Bearer <token>`, and `KILN_REMOTE_HEADER`
//! holds extra `Name: value` headers, one a line (for services that want an API-key header).
//! Header values are kept in [`Secret`], whose `Debug` prints `<redacted>`, and no error names
//! them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::error::RemoteError;

/// Environment variable holding a bearer token.
pub const TOKEN_VAR: &str = "KILN_REMOTE_TOKEN";
/// Environment variable holding extra request headers, `Name: value`, one a line.
pub const HEADER_VAR: &str = "KILN_REMOTE_HEADER";

/// How long one call may take before it counts as a failed remote. Generous, because a busy
/// machine must not turn a working remote into a fallback.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A header value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One request header sent with every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Lowercase, as gRPC metadata keys are.
    pub name: String,
    pub value: Secret,
    /// Where it came from, for errors (`KILN_REMOTE_TOKEN`, ...).
    pub origin: &'static str,
}

#[derive(Clone, Debug)]
pub struct RemoteConfig {
    pub url: String,
    /// REAPI instance name; empty for servers with one unnamed instance.
    pub instance_name: String,
    /// Extra PEM CA certificates trusted for a TLS URL.
    pub ca_file: Option<PathBuf>,
    pub headers: Vec<Header>,
    pub timeout: Duration,
    /// Send actions that miss the caches to the server's Execute service (`--remote-exec`).
    pub execute: bool,
}

impl RemoteConfig {
    /// A config without credentials.
    pub fn new(url: impl Into<String>) -> RemoteConfig {
        RemoteConfig {
            url: url.into(),
            instance_name: String::new(),
            ca_file: None,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            execute: false,
        }
    }

    /// Adds the headers named by [`TOKEN_VAR`] and [`HEADER_VAR`] in the process environment.
    pub fn with_env_headers(self) -> Result<RemoteConfig, RemoteError> {
        self.with_headers_from(|k| std::env::var(k).ok())
    }

    /// Adds the headers found by `lookup` (the environment, or a map in tests).
    pub fn with_headers_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RemoteConfig, RemoteError> {
        if let Some(token) = lookup(TOKEN_VAR).filter(|t| !t.trim().is_empty()) {
            self.headers.push(Header {
                name: "authorization".into(),
                value: Secret::new(format!("Bearer {}", token.trim())),
                origin: TOKEN_VAR,
            });
        }
        if let Some(lines) = lookup(HEADER_VAR) {
            for line in lines.lines().filter(|l| !l.trim().is_empty()) {
                self.headers.push(parse_header(line, HEADER_VAR)?);
            }
        }
        Ok(self)
    }

    /// Whether the URL asks for TLS.
    pub fn is_tls(&self) -> Result<bool, RemoteError> {
        match self.url.split_once("://").map(|(s, _)| s) {
            Some("grpc" | "http") => Ok(false),
            Some("grpcs" | "https") => Ok(true),
            _ => Err(RemoteError::InvalidUrl {
                url: self.redacted_url(),
                reason: "it must start with grpc://, grpcs://, http:// or https://",
            }),
        }
    }

    /// The URL as HTTP/2 sees it (`grpc` spelt `http`).
    pub fn endpoint_url(&self) -> Result<String, RemoteError> {
        let tls = self.is_tls()?;
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        if rest.is_empty() || rest.starts_with('/') {
            return Err(RemoteError::InvalidUrl {
                url: self.redacted_url(),
                reason: "it names no host",
            });
        }
        Ok(format!("{}://{rest}", if tls { "https" } else { "http" }))
    }

    /// The URL for messages: any `user:password@` part is replaced.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn parse_header(line: &str, origin: &'static str) -> Result<Header, RemoteError> {
    let invalid = |reason| RemoteError::InvalidHeader {
        variable: origin,
        reason,
    };
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid("a line is not 'Name: value'"))?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(
            "a header name may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    if name.ends_with("-bin") {
        return Err(invalid("binary ('-bin') headers are not supported"));
    }
    let value = value.trim();
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid("a header value must be printable ASCII"));
    }
    Ok(Header {
        name,
        value: Secret::new(value),
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn token_becomes_a_bearer_header_that_debug_does_not_print() {
        let cfg = RemoteConfig::new("grpc://127.0.0.1:1")
            .with_headers_from(env(&[(TOKEN_VAR, "s3cret-token")]))
            .unwrap();
        assert_eq!(cfg.headers.len(), 1);
        assert_eq!(cfg.headers[0].name, "authorization");
        assert_eq!(cfg.headers[0].value.expose(), "Bearer s3cret-token");
        assert!(!format!("{cfg:?}").contains("s3cret"), "{cfg:?}");
    }

    #[test]
    fn extra_headers_are_parsed_one_a_line() {
        let cfg = RemoteConfig::new("grpc://h:1")
            .with_headers_from(env(&[(HEADER_VAR, "X-Api-Key: abc\n\nx-other:  d e ")]))
            .unwrap();
        let got: Vec<_> = cfg
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.expose()))
            .collect();
        assert_eq!(got, [("x-api-key", "abc"), ("x-other", "d e")]);
    }

    #[test]
    fn a_bad_header_is_refused_without_showing_its_value() {
        let err = RemoteConfig::new("grpc://h:1")
            .with_headers_from(env(&[(HEADER_VAR, "no colon here-secret")]))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(HEADER_VAR), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let err = RemoteConfig::new("grpc://h:1")
            .with_headers_from(env(&[(HEADER_VAR, "bad name: secret")]))
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn schemes_choose_tls_and_credentials_in_urls_are_redacted() {
        assert!(!RemoteConfig::new("grpc://h:1").is_tls().unwrap());
        assert!(RemoteConfig::new("grpcs://h:1").is_tls().unwrap());
        assert_eq!(
            RemoteConfig::new("grpcs://h:1").endpoint_url().unwrap(),
            "https://h:1"
        );
        assert!(RemoteConfig::new("ftp://h:1").is_tls().is_err());
        assert!(RemoteConfig::new("grpc://").endpoint_url().is_err());
        let cfg = RemoteConfig::new("ftp://user:pw@h:1/x");
        let err = cfg.is_tls().unwrap_err().to_string();
        assert!(!err.contains("pw"), "{err}");
        assert_eq!(cfg.redacted_url(), "ftp://<redacted>@h:1/x");
    }
}
