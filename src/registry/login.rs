//! `kiln login`: check credentials against the registry, then store them like `docker login`.

use std::io::{self, Read};
use std::path::PathBuf;

use reqwest::{Method, StatusCode};

use super::auth::Challenge;
use super::credentials::{Credential, CredentialError, CredentialSources};
use super::error::RegistryError;
use super::transport::{status_error, Request, RetryPolicy, Transport, TransportSettings};

#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub registry: String,
    pub username: String,
    pub password: String,
    pub insecure_registries: Vec<String>,
    pub ca_file: Option<PathBuf>,
    /// Where to store; `None` reads the environment (`DOCKER_CONFIG` or `~/.docker`).
    pub credentials: Option<CredentialSources>,
    pub certs_d: Option<Vec<PathBuf>>,
    pub retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("logging in to {registry}")]
    Registry {
        registry: String,
        source: Box<RegistryError>,
    },
    #[error("logging in to {registry}: storing credentials")]
    Store {
        registry: String,
        source: Box<CredentialError>,
    },
}

/// Reads a password as `--password-stdin` does: the whole input, minus one trailing newline.
pub fn read_password(mut r: impl Read) -> io::Result<String> {
    let mut s = String::new();
    r.read_to_string(&mut s)?;
    let trimmed = s
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&s);
    Ok(trimmed.to_string())
}

/// Verifies the credentials and stores them; returns the config file written.
pub fn login(opts: &LoginOptions) -> Result<PathBuf, LoginError> {
    let registry_err = |source| LoginError::Registry {
        registry: opts.registry.clone(),
        source: Box::new(source),
    };
    let settings = TransportSettings {
        insecure: opts.insecure_registries.iter().any(|r| r == &opts.registry),
        ca_file: opts.ca_file.clone(),
        certs_d: opts
            .certs_d
            .clone()
            .unwrap_or_else(TransportSettings::default_certs_d),
        retry: opts.retry.clone(),
        request_timeout: None,
        resolve: Vec::new(),
    };
    let cred = Credential {
        username: opts.username.clone(),
        password: opts.password.clone(),
    };
    let t =
        Transport::connect(&opts.registry, &settings, Some(cred.clone())).map_err(registry_err)?;
    match t.challenge() {
        // Nothing to verify against; docker stores the credentials in this case too.
        Challenge::Anonymous => {}
        Challenge::Basic { .. } => {
            let url = t.url("/v2/");
            let resp = t
                .send(&Request::new(Method::GET, url.clone(), Vec::new()))
                .map_err(registry_err)?;
            if resp.status() != StatusCode::OK {
                return Err(registry_err(status_error("GET", &url, resp)));
            }
        }
        // A token issued for no scope proves the token service accepted the credentials.
        Challenge::Bearer { realm, service, .. } => {
            t.fetch_token(&realm, service.as_deref(), &[])
                .map_err(registry_err)?;
        }
    }
    let sources = opts
        .credentials
        .clone()
        .unwrap_or_else(CredentialSources::from_env);
    sources
        .store(&opts.registry, &cred)
        .map_err(|source| LoginError::Store {
            registry: opts.registry.clone(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_loses_exactly_one_trailing_newline() {
        assert_eq!(read_password(&b"s3cret\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"s3cret\r\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"two\n\n"[..]).unwrap(), "two\n");
        assert_eq!(read_password(&b" spaced "[..]).unwrap(), " spaced ");
    }
}
