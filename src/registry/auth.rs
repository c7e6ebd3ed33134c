//! Registry authentication: `WWW-Authenticate` challenges and the token flow.
//!
//! Registries answer an unauthenticated `/v2/` with either a `Basic` challenge (send the
//! credentials on every request) or a `Bearer` one naming a token service (`realm`), the
//! `service` to ask for, and the `scope` needed. Tokens are scoped per repository and action, so
//! they are cached per scope set; a 401 with a cached token means it expired or was revoked, and
//! the caller refetches once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::credentials::Credential;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// The registry asked for no credentials (`/v2/` answered 200).
    Anonymous,
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value. Unknown schemes yield `None`: kiln cannot answer them.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| params.get(k).cloned();
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic {
            realm: get("realm").unwrap_or_default(),
        }),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        _ => None,
    }
}

/// Parses `key=value` and `key="quoted, value"` pairs separated by commas (RFC 7235 auth-params).
/// Keys are case-insensitive; quoted values may contain commas and `\"` escapes.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_string();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// The scopes a request needs, e.g. `repository:team/api:pull,push`.
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// Token service response: distribution's `token`, or OAuth2's `access_token`.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        // The spec's default lifetime is 60 seconds when none is given.
        let ttl = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| (t, ttl))
    }
}

pub fn basic_header(cred: &Credential) -> String {
    let raw = format!("{}:{}", cred.username, cred.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Tokens cached per scope set. The key is the sorted scopes so that `[a, b]` and `[b, a]` share.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub fn key(scopes: &[String]) -> String {
        let mut s = scopes.to_vec();
        s.sort();
        s.dedup();
        s.join(" ")
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        // Treat tokens as expired a little early so a request never starts with one about to lapse.
        let margin = Duration::from_secs(5);
        tokens
            .get(key)
            .filter(|(_, exp)| Instant::now() + margin < *exp)
            .map(|(t, _)| t.clone())
    }

    pub fn put(&self, key: String, token: String, ttl: Duration) {
        self.tokens
            .lock()
            .unwrap()
            .insert(key, (token, Instant::now() + ttl));
    }

    pub fn forget(&self, key: &str) {
        self.tokens.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_scope_containing_a_comma() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/api:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:team/api:pull,push".into()),
            }
        );
    }

    #[test]
    fn scheme_and_keys_are_case_insensitive_and_values_may_be_unquoted() {
        let c = parse_challenge("bearer Realm=http://127.0.0.1:1/t, Service=reg").unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("reg".into()),
                scope: None
            }
        );
    }

    #[test]
    fn basic_challenge_and_escapes() {
        assert_eq!(
            parse_challenge(r#"Basic realm="say \"hi\"""#),
            Some(Challenge::Basic {
                realm: r#"say "hi""#.into()
            })
        );
        assert_eq!(
            parse_challenge("Basic"),
            Some(Challenge::Basic {
                realm: String::new()
            })
        );
    }

    #[test]
    fn bearer_without_realm_and_unknown_schemes_are_rejected() {
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge(r#"Negotiate abc"#), None);
    }

    #[test]
    fn token_cache_keys_ignore_scope_order_and_expire() {
        let cache = TokenCache::default();
        let k1 = TokenCache::key(&["b".into(), "a".into()]);
        let k2 = TokenCache::key(&["a".into(), "b".into()]);
        assert_eq!(k1, k2);
        cache.put(k1.clone(), "t".into(), Duration::from_secs(60));
        assert_eq!(cache.get(&k2).as_deref(), Some("t"));
        cache.put(k1.clone(), "t".into(), Duration::from_secs(1));
        assert_eq!(
            cache.get(&k1),
            None,
            "a token inside the safety margin is not reused"
        );
    }

    #[test]
    fn token_response_prefers_token_and_defaults_lifetime() {
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"a","token":"t"}"#).unwrap();
        assert_eq!(r.into_token(), Some(("t".into(), Duration::from_secs(60))));
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(r.into_token(), Some(("a".into(), Duration::from_secs(300))));
    }
}
