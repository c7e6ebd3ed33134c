//! The authentication layer of [`Transport::send`]: the `Authorization` each request to the
//! registry carries (none, Basic, or a Bearer token for its scopes), the token handshake with
//! the realm the registry named (OAuth2 refresh-token POST or GET with Basic credentials), and
//! the one retry after a 401 with a freshly learnt challenge. Credentials go to the registry's
//! own origin and an accepted realm only ([`crate::registry::origin`]).

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};

use super::{status_error, Body, Request, Transport};
use crate::registry::auth::{basic_header, parse_challenge, Challenge, TokenCache, TokenResponse};
use crate::registry::body::{read_limited, read_prefix, ERROR_LIMIT, TOKEN_LIMIT};
use crate::registry::error::{decode_error_body, redact_url, RegistryError};
use crate::registry::origin;

impl Transport {
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
        if let Some(why) = origin::realm_refusal(&url, &self.registry, self.insecure) {
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
}
