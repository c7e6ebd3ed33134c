//! What can go wrong talking to a remote cache, typed so that the executor can tell an outage
//! (fall back to local execution with one warning) from a result that must not be trusted.
//!
//! Messages name the method or blob and the server's redacted address; causes are carried by
//! `source()` only. Header values (tokens) appear in no variant.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// A gRPC status as the server sent it, without the metadata tonic keeps (which may echo
/// request headers back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: tonic::Code,
    pub message: String,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{:?}", self.code)
        } else {
            write!(f, "{:?}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

impl From<tonic::Status> for Status {
    fn from(s: tonic::Status) -> Self {
        Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl Status {
    /// A status inside a batch response (`google.rpc.Status`).
    pub fn from_rpc(s: &bazel_remote_apis::google::rpc::Status) -> Self {
        Status {
            code: tonic::Code::from_i32(s.code),
            message: s.message.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote cache URL {url:?} is not usable: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("reading the remote cache's CA file {}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `variable` names where the header came from; its value is never shown.
    #[error("header from {variable} is not valid: {reason}")]
    InvalidHeader {
        variable: &'static str,
        reason: &'static str,
    },
    #[error("starting the remote client's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("setting up the connection to {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{method} on {url} failed")]
    Rpc {
        method: &'static str,
        url: String,
        #[source]
        source: Status,
    },
    #[error("{url} does not offer SHA-256 digests (it offers {offered:?})")]
    DigestFunction { url: String, offered: Vec<i32> },
    #[error("blob {digest} (from {what}) does not match its digest: its bytes hash to {actual}")]
    DigestMismatch {
        what: String,
        digest: Digest,
        actual: Digest,
    },
    #[error("blob for {what} is {actual} bytes, its digest says {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} names a malformed digest {hash:?}/{size}")]
    BadDigest {
        what: String,
        hash: String,
        size: i64,
    },
    #[error("storing blob {digest} on {url} failed")]
    BlobUpload {
        digest: Digest,
        url: String,
        #[source]
        source: Status,
    },
    #[error("reading blob {digest} from {url} failed")]
    BlobRead {
        digest: Digest,
        url: String,
        #[source]
        source: Status,
    },
    #[error("{url} answered without blob {digest}")]
    BlobMissing { digest: Digest, url: String },
    #[error("writing blob {digest} to {url} stopped at {committed} of {size} bytes")]
    WriteIncomplete {
        digest: Digest,
        url: String,
        committed: i64,
        size: u64,
    },
    #[error("input path {path:?} cannot enter a REAPI input root: {reason}")]
    InputPath { path: String, reason: &'static str },
    #[error("output path {path:?} cannot be a REAPI output: {reason}")]
    OutputPath { path: String, reason: &'static str },
    #[error("environment variable {name:?} is given twice")]
    DuplicateEnv { name: String },
    #[error("reading output {}", path.display())]
    ReadOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    /// The gRPC code behind this error, if the server (or the transport) answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            RemoteError::Rpc { source, .. }
            | RemoteError::BlobUpload { source, .. }
            | RemoteError::BlobRead { source, .. } => Some(source.code),
            _ => None,
        }
    }

    /// True when the remote handed back bytes that are not what their digest names: the result
    /// must be refused, not merely retried.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            RemoteError::DigestMismatch { .. }
                | RemoteError::SizeMismatch { .. }
                | RemoteError::BadDigest { .. }
        )
    }
}
