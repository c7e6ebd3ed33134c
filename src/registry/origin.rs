//! Where credentials may go. A registry's credentials and tokens are for the registry's own
//! origin (scheme, host, port) and for the token realm it names, nothing else:
//!
//! - a request to another origin (an upload `Location` or a blob redirect pointing at object
//!   storage, as S3-backed registries send) carries no `Authorization`; such URLs authorize
//!   themselves with a signature in the query;
//! - redirects are followed only within the same scheme or upward (http → https), except on
//!   loopback, and reqwest drops `Authorization` whenever a redirect changes host or port;
//! - a token realm may be plain HTTP only on loopback, or on the registry's own host when that
//!   registry is listed as insecure: Basic credentials or refresh tokens sent to it would
//!   otherwise cross the network in clear.

use std::net::IpAddr;

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

/// The host of `host[:port]` (IPv6 literals keep their brackets).
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split(']')
            .next()
            .map(|h| &registry[..h.len() + 1])
            .unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether `url` is on the same origin as `base` (scheme, host and effective port).
pub fn same_origin(base: &url::Url, url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => {
            u.scheme() == base.scheme()
                && u.host_str() == base.host_str()
                && u.port_or_known_default() == base.port_or_known_default()
        }
        Err(_) => false,
    }
}

/// Why a token realm must not be sent credentials, or `None` when it may.
pub fn realm_refusal(realm: &url::Url, registry: &str, insecure: bool) -> Option<&'static str> {
    match realm.scheme() {
        "https" => None,
        "http" => {
            let host = realm.host_str().unwrap_or("");
            if is_loopback(host) || (insecure && host.eq_ignore_ascii_case(host_of(registry))) {
                None
            } else {
                Some("refusing a plain-HTTP token realm off loopback: credentials would travel in clear")
            }
        }
        _ => Some("token realm is neither https nor http"),
    }
}

/// The redirect policy: at most five hops, never from https down to plain HTTP off loopback.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("more than 5 redirects");
        }
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https")
            && !is_loopback(attempt.url().host_str().unwrap_or(""));
        if downgrade {
            return attempt.error("refusing a redirect from https to plain HTTP");
        }
        attempt.follow()
    })
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
    fn origins_differ_by_host_port_or_scheme() {
        let base = url::Url::parse("http://127.0.0.1:5000").unwrap();
        assert!(same_origin(
            &base,
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=s"
        ));
        assert!(!same_origin(&base, "http://127.0.0.2:5000/v2/a"));
        assert!(!same_origin(&base, "http://127.0.0.1:5001/v2/a"));
        assert!(!same_origin(&base, "https://127.0.0.1:5000/v2/a"));
        assert!(!same_origin(&base, "/v2/relative"));
        let tls = url::Url::parse("https://reg.example").unwrap();
        assert!(same_origin(&tls, "https://reg.example:443/v2/"));
    }

    #[test]
    fn plain_http_realms_are_refused_off_loopback() {
        let realm = |s: &str| url::Url::parse(s).unwrap();
        // A remote registry must use an https realm, insecure or not, unless the realm is its
        // own (insecure) host.
        assert!(realm_refusal(&realm("http://auth.example/token"), "reg.example", false).is_some());
        assert!(realm_refusal(&realm("http://auth.example/token"), "reg.example", true).is_some());
        assert!(
            realm_refusal(&realm("http://reg.example:81/t"), "reg.example:5000", true).is_none()
        );
        assert!(realm_refusal(&realm("http://reg.example/t"), "reg.example", false).is_some());
        // A loopback registry may not send credentials to a remote plain-HTTP realm either.
        assert!(
            realm_refusal(&realm("http://auth.example/token"), "127.0.0.1:5000", false).is_some()
        );
        assert!(
            realm_refusal(&realm("http://127.0.0.2:9/token"), "127.0.0.1:5000", false).is_none()
        );
        assert!(
            realm_refusal(&realm("https://auth.example/token"), "reg.example", false).is_none()
        );
        assert!(realm_refusal(&realm("ftp://auth.example/token"), "reg.example", false).is_some());
    }
}
