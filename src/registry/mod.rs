//! OCI distribution API client: pushes OCI image layouts and referrer artifacts to registries.
//!
//! The protocol is the OCI distribution spec 1.1. Ordering is what keeps a registry consistent
//! when a push dies half-way: every blob of an image is in place before its manifest is PUT by
//! digest, and only then are tags moved, so a tag never names an incomplete image. A re-run
//! skips what is already there (HEAD), so an interrupted push is finished, not redone.
//!
//! Files: `reference` (names), `credentials` (where secrets come from), `auth` (challenges and
//! tokens), `origin` (where credentials may go), `tls` (CAs and client certificates), `body`
//! (bounded reads of what registries send), `transport` (retries, auth per request), `upload`
//! (blobs), `layout` (reading what to push), `push` (images), `referrers` (artifacts attached to
//! images), `pull` (manifests and blobs fetched and checked against their digests), `login`.

pub mod auth;
mod body;
pub mod credentials;
pub mod error;
pub mod layout;
mod login;
pub mod origin;
pub mod pull;
mod push;
pub mod reference;
mod referrers;
mod tls;
pub mod transport;
pub mod upload;

use std::path::PathBuf;

pub use crate::oci::LayoutError;
pub use credentials::{Credential, CredentialError, CredentialSources};
pub use error::{OciError, RegistryError};
pub use login::{login, read_password, LoginError, LoginOptions};
pub use pull::{PullError, PulledManifest, Puller};
pub use push::push_all;
pub use reference::{Reference, ReferenceError};
pub use referrers::{
    index_entries, list_referrers, push_referrer, push_referrers, Artifact, ArtifactContent,
    ReferrerReport,
};
pub use transport::RetryPolicy;
pub use upload::UploadTuning;

use crate::oci::Descriptor;

use crate::digest::Digest;

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// `host[:port]`
    pub registry: String,
    /// Repository prefix; each image goes to `<prefix>/<service>` (may be empty).
    pub prefix: String,
    /// Parallel uploads.
    pub jobs: usize,
    /// Registries (`host:port`) that may be reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub upload: UploadTuning,
    /// Where credentials come from; `None` reads the environment (see [`CredentialSources`]).
    pub credentials: Option<CredentialSources>,
    /// `certs.d` roots; `None` uses `KILN_CERTS_D` or /etc/docker and /etc/containers.
    pub certs_d: Option<Vec<PathBuf>>,
    /// Where to remember which repositories hold which blobs across processes (for mounts).
    pub holders_file: Option<PathBuf>,
    /// Bounds each request including its body; `None` is 300 s.
    pub request_timeout: Option<std::time::Duration>,
    /// Host names answered without DNS (see `TransportSettings::resolve`).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// Which repositories are known to hold which blobs, shared by every push made with these
    /// options (and their clones): images and referrers of one publication mount from each
    /// other, and nothing leaks into an unrelated push in the same process.
    pub holders: std::sync::Arc<push::BlobHolders>,
}

impl PushOptions {
    pub fn new(registry: &str) -> PushOptions {
        PushOptions {
            registry: registry.to_string(),
            prefix: String::new(),
            jobs: 4,
            insecure_registries: Vec::new(),
            ca_file: None,
            retry: RetryPolicy::default(),
            upload: UploadTuning::default(),
            credentials: None,
            certs_d: None,
            holders_file: None,
            request_timeout: None,
            resolve: Vec::new(),
            holders: Default::default(),
        }
    }

    pub fn repository(&self, service: &str) -> Result<String, ReferenceError> {
        Reference::repository_for(&self.prefix, service)
    }

    fn transport_settings(&self) -> transport::TransportSettings {
        transport::TransportSettings {
            insecure: self.insecure_registries.iter().any(|r| r == &self.registry),
            ca_file: self.ca_file.clone(),
            certs_d: self
                .certs_d
                .clone()
                .unwrap_or_else(transport::TransportSettings::default_certs_d),
            retry: self.retry.clone(),
            request_timeout: self.request_timeout,
            resolve: self.resolve.clone(),
        }
    }
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions::new("")
    }
}

#[derive(Clone, Debug)]
pub struct PushImage {
    pub service: String,
    /// An OCI image layout directory holding exactly one manifest in index.json.
    pub layout: PathBuf,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    pub service: String,
    /// `registry/repository@digest`
    pub reference: String,
    pub digest: Digest,
    /// Media type and size of the pushed top-level manifest: with `digest`, the descriptor to use
    /// as the `subject` of referrers.
    pub media_type: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub uploaded_blobs: u64,
    pub skipped_blobs: u64,
    pub mounted_blobs: u64,
    pub uploaded_bytes: u64,
    /// Chunked uploads continued from the registry's offset after a failure.
    pub resumed_uploads: u64,
}

impl PushReport {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest, self.size)
    }
}

/// What was being done when a push failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushStep {
    Connecting,
    Blob(Digest),
    Manifest(Digest),
    Tag(String),
    Referrers(Digest),
}

impl std::fmt::Display for PushStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushStep::Connecting => f.write_str("connecting"),
            PushStep::Blob(d) => write!(f, "uploading blob {d}"),
            PushStep::Manifest(d) => write!(f, "putting manifest {d}"),
            PushStep::Tag(t) => write!(f, "tagging {t}"),
            PushStep::Referrers(d) => write!(f, "updating referrers of {d}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing {service} to {registry}: invalid repository name")]
    Reference {
        service: String,
        registry: String,
        source: ReferenceError,
    },
    #[error("pushing {service}: reading OCI layout {}", layout.display())]
    Layout {
        service: String,
        layout: PathBuf,
        source: LayoutError,
    },
    #[error("pushing {service} to {registry}/{repository}: looking up credentials")]
    Credentials {
        service: String,
        registry: String,
        repository: String,
        source: Box<CredentialError>,
    },
    #[error("pushing {service} to {registry}/{repository}: {step}")]
    Registry {
        service: String,
        registry: String,
        repository: String,
        step: PushStep,
        source: Box<RegistryError>,
    },
}

impl PushError {
    /// The blob being uploaded when the push failed.
    pub fn blob(&self) -> Option<Digest> {
        match self {
            PushError::Registry {
                step: PushStep::Blob(d),
                ..
            } => Some(*d),
            _ => None,
        }
    }
}
