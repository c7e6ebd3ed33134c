//! `GetCapabilities`: what the server offers, read once at connect, and how kiln adapts.
//!
//! kiln needs SHA-256 (its only digest function); without it the remote is refused. Everything
//! else is adapted to: the batch limit sizes [`super::cas`]'s batches (0, "no limit", is capped at
//! what gRPC servers accept by default), a server that refuses action-cache updates is used
//! read-only, and API 2.1+ servers get `Command.output_paths` instead of the deprecated
//! `output_files`. [`Capabilities::missing`] names what is absent so the caller can say so once.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::build::bazel::semver::SemVer;
use reapi::{digest_function, symlink_absolute_path_strategy};

use super::client::Client;
use super::error::RemoteError;

/// gRPC's default largest message (4 MiB), used when the server names no batch limit.
pub const DEFAULT_MESSAGE_LIMIT: u64 = 4 << 20;
/// Room left in a batch for the request's own fields and framing.
const BATCH_HEADROOM: u64 = 16 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub sha256: bool,
    /// As the server said it; 0 means it named no limit.
    pub max_batch_total_size_bytes: u64,
    pub action_cache_updates: bool,
    pub execution: bool,
    /// `DISALLOWED`, `ALLOWED` or `UNKNOWN`; kiln uploads no symlinks, so this is informational.
    pub symlink_absolute_path_strategy: &'static str,
    pub low_api_version: (i32, i32),
    pub high_api_version: (i32, i32),
    /// The digest functions offered, as protocol numbers, for the error when SHA-256 is absent.
    pub digest_functions: Vec<i32>,
}

fn version(v: Option<&SemVer>) -> (i32, i32) {
    v.map_or((0, 0), |v| (v.major, v.minor))
}

impl Capabilities {
    pub fn fetch(client: &Client) -> Result<Capabilities, RemoteError> {
        let req = reapi::GetCapabilitiesRequest {
            instance_name: client.instance_name().to_string(),
        };
        let caps = client
            .unary(|| async { client.capabilities().get_capabilities(req.clone()).await })
            .map_err(|s| client.rpc_error("GetCapabilities", s))?
            .into_inner();
        Ok(Capabilities::from_proto(&caps))
    }

    pub fn from_proto(caps: &reapi::ServerCapabilities) -> Capabilities {
        let cache = caps.cache_capabilities.clone().unwrap_or_default();
        let exec = caps.execution_capabilities.clone().unwrap_or_default();
        // Servers before API 2.0 name only `deprecated_api_version`.
        let low = caps
            .low_api_version
            .as_ref()
            .or(caps.deprecated_api_version.as_ref());
        let high = caps
            .high_api_version
            .as_ref()
            .or(caps.deprecated_api_version.as_ref());
        Capabilities {
            sha256: cache
                .digest_functions
                .contains(&(digest_function::Value::Sha256 as i32)),
            max_batch_total_size_bytes: cache.max_batch_total_size_bytes.max(0) as u64,
            action_cache_updates: cache
                .action_cache_update_capabilities
                .is_some_and(|u| u.update_enabled),
            execution: exec.exec_enabled,
            symlink_absolute_path_strategy: match symlink_absolute_path_strategy::Value::try_from(
                cache.symlink_absolute_path_strategy,
            ) {
                Ok(symlink_absolute_path_strategy::Value::Disallowed) => "DISALLOWED",
                Ok(symlink_absolute_path_strategy::Value::Allowed) => "ALLOWED",
                _ => "UNKNOWN",
            },
            low_api_version: version(low),
            high_api_version: version(high),
            digest_functions: cache.digest_functions,
        }
    }

    /// Refuses a server kiln cannot use as a cache.
    pub fn require_cache(&self, url: &str) -> Result<(), RemoteError> {
        if self.sha256 {
            Ok(())
        } else {
            Err(RemoteError::DigestFunction {
                url: url.to_string(),
                offered: self.digest_functions.clone(),
            })
        }
    }

    /// The most encoded bytes one `BatchUpdateBlobs` / `BatchReadBlobs` may carry.
    pub fn batch_limit(&self) -> u64 {
        let limit = match self.max_batch_total_size_bytes {
            0 => DEFAULT_MESSAGE_LIMIT,
            n => n.min(DEFAULT_MESSAGE_LIMIT),
        };
        limit.saturating_sub(BATCH_HEADROOM.min(limit / 4))
    }

    /// Whether the server reads `Command.output_paths` (REAPI 2.1 and later).
    pub fn output_paths(&self) -> bool {
        self.high_api_version >= (2, 1)
    }

    /// What the server does not offer that kiln could use, for one line of warning.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.sha256 {
            m.push("SHA-256 digests");
        }
        if !self.action_cache_updates {
            m.push("action-cache updates (results are read, never stored)");
        }
        if !self.execution {
            m.push("remote execution");
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(limit: i64, updates: bool, high: (i32, i32)) -> reapi::ServerCapabilities {
        reapi::ServerCapabilities {
            cache_capabilities: Some(reapi::CacheCapabilities {
                digest_functions: vec![digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities {
                    update_enabled: updates,
                }),
                max_batch_total_size_bytes: limit,
                ..Default::default()
            }),
            high_api_version: Some(SemVer {
                major: high.0,
                minor: high.1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn adapts_to_what_the_server_offers() {
        let c = Capabilities::from_proto(&server(1 << 20, true, (2, 3)));
        assert!(c.sha256 && c.action_cache_updates && !c.execution);
        assert!(c.batch_limit() < 1 << 20 && c.batch_limit() > 900 << 10);
        assert!(c.output_paths());
        assert_eq!(c.missing(), ["remote execution"]);

        let c = Capabilities::from_proto(&server(0, false, (2, 0)));
        assert!(c.batch_limit() <= DEFAULT_MESSAGE_LIMIT);
        assert!(!c.output_paths());
        assert!(c
            .missing()
            .iter()
            .any(|m| m.starts_with("action-cache updates")));
    }

    #[test]
    fn a_server_without_sha256_is_refused() {
        let mut s = server(0, true, (2, 0));
        s.cache_capabilities.as_mut().unwrap().digest_functions =
            vec![digest_function::Value::Sha1 as i32];
        let c = Capabilities::from_proto(&s);
        assert!(c.require_cache("grpc://h:1").is_err());
    }
}
