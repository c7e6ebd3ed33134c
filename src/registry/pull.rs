//! Pulling from a registry: a manifest by tag or digest and the blobs it names, every byte
//! checked against the digest it was asked for.
//!
//! The same [`Transport`] as pushes (credentials, Bearer and Basic auth, TLS and `certs.d`,
//! retries with backoff), with `pull` scopes. Manifests and JSON blobs are read whole but
//! bounded ([`MANIFEST_LIMIT`]); layers are streamed to a file, hashed on the way, and cut off
//! one byte past the size their descriptor gives, so a registry (or anything between it and
//! kiln) that sends other bytes, more bytes or fewer is refused with the registry, the
//! repository and the digest named. What the caller does with a refused blob's file is its
//! business; [`Puller::blob_to_file`] leaves nothing at `dest` on failure.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::body::{read_limited, MANIFEST_LIMIT};
use super::error::{redact_url, RegistryError};
use super::push::{connect, ConnectError};
use super::transport::{status_error, Request, Transport};
use super::{CredentialError, PushOptions};
use crate::digest::{Digest, Hasher};
use crate::oci::{media_type, Descriptor};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pulling from {registry}: looking up credentials")]
    Credentials {
        registry: String,
        source: Box<CredentialError>,
    },
    #[error("pulling from {registry}: connecting")]
    Connect {
        registry: String,
        source: Box<RegistryError>,
    },
    #[error("pulling {registry}/{repository}: {what}")]
    Registry {
        registry: String,
        repository: String,
        what: String,
        source: Box<RegistryError>,
    },
    #[error("pulling {registry}/{repository}: {reference} not found")]
    NotFound {
        registry: String,
        repository: String,
        reference: String,
    },
    /// `image` is `registry/repository`.
    #[error("pulling {image}: blob {digest} refused: received {got_size} bytes hashing to {got}, expected {want_size} bytes")]
    BlobMismatch {
        image: String,
        digest: Digest,
        want_size: u64,
        got: Digest,
        got_size: u64,
    },
    #[error("pulling {registry}/{repository}: manifest {reference} is {what}")]
    BadManifest {
        registry: String,
        repository: String,
        reference: String,
        what: String,
    },
    #[error("pulling {registry}/{repository}: writing {}", path.display())]
    Io {
        registry: String,
        repository: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// A manifest as the registry sent it: exact bytes (their digest is the manifest's identity).
#[derive(Clone, Debug)]
pub struct PulledManifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// One connection to a registry for pulls.
pub struct Puller {
    t: Transport,
    registry: String,
}

/// Wraps a writer and hashes what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Puller {
    /// Connects with the options' registry, credentials and TLS settings (as a push would).
    pub fn connect(opts: &PushOptions) -> Result<Puller, PullError> {
        let t = connect(opts).map_err(|e| match e {
            ConnectError::Credentials(source) => PullError::Credentials {
                registry: opts.registry.clone(),
                source: Box::new(source),
            },
            ConnectError::Registry(source) => PullError::Connect {
                registry: opts.registry.clone(),
                source: Box::new(source),
            },
        })?;
        Ok(Puller {
            t,
            registry: opts.registry.clone(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn registry_err(&self, repository: &str, what: String, source: RegistryError) -> PullError {
        PullError::Registry {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            what,
            source: Box::new(source),
        }
    }

    /// GETs `repository`'s manifest `reference` (a tag or a digest), asking for an OCI image
    /// manifest. When `reference` is a digest, the bytes must hash to it.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<PulledManifest, PullError> {
        let url = self
            .t
            .url(&format!("/v2/{repository}/manifests/{reference}"));
        let req = Request::new(
            Method::GET,
            url.clone(),
            vec![repository_scope(repository, "pull")],
        )
        .header(
            ACCEPT,
            &format!(
                "{}, {}",
                media_type::IMAGE_MANIFEST,
                media_type::DOCKER_MANIFEST
            ),
        );
        let what = || format!("getting manifest {reference}");
        let resp = self
            .t
            .send(&req)
            .map_err(|e| self.registry_err(repository, what(), e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(PullError::NotFound {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                reference: reference.to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.registry_err(repository, what(), status_error("GET", &url, resp)));
        }
        let header_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, MANIFEST_LIMIT, "GET", &url)
            .map_err(|e| self.registry_err(repository, what(), e))?;
        let digest = Digest::of(&bytes);
        let bad = |what: String| PullError::BadManifest {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            reference: reference.to_string(),
            what,
        };
        if let Ok(asked) = reference.parse::<Digest>() {
            if asked != digest {
                return Err(bad(format!("{} bytes hashing to {digest}", bytes.len())));
            }
        }
        #[derive(serde::Deserialize)]
        struct Shape {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
        }
        let shape: Shape =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        let media_type = shape.media_type.or(header_type).unwrap_or_default();
        if !media_type::is_image_manifest(&media_type) {
            return Err(bad(format!(
                "of media type {media_type:?}, not an image manifest"
            )));
        }
        Ok(PulledManifest {
            media_type,
            digest,
            bytes,
        })
    }

    fn get_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
    ) -> Result<(reqwest::blocking::Response, String), PullError> {
        let url = self
            .t
            .url(&format!("/v2/{repository}/blobs/{}", desc.digest));
        let req = Request::new(
            Method::GET,
            url.clone(),
            vec![repository_scope(repository, "pull")],
        );
        let what = || format!("getting blob {}", desc.digest);
        let resp = self
            .t
            .send(&req)
            .map_err(|e| self.registry_err(repository, what(), e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(PullError::NotFound {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                reference: format!("blob {}", desc.digest),
            });
        }
        if !resp.status().is_success() {
            return Err(self.registry_err(repository, what(), status_error("GET", &url, resp)));
        }
        Ok((resp, url))
    }

    fn mismatch(
        &self,
        repository: &str,
        desc: &Descriptor,
        got: Digest,
        got_size: u64,
    ) -> PullError {
        PullError::BlobMismatch {
            image: format!("{}/{repository}", self.registry),
            digest: desc.digest,
            want_size: desc.size,
            got,
            got_size,
        }
    }

    /// The bytes of a small blob (a config), at most [`MANIFEST_LIMIT`], checked against `desc`.
    pub fn blob_bytes(&self, repository: &str, desc: &Descriptor) -> Result<Vec<u8>, PullError> {
        let (resp, url) = self.get_blob(repository, desc)?;
        let limit = desc.size.min(MANIFEST_LIMIT);
        let bytes = read_limited(resp, limit, "GET", &url).map_err(|e| {
            self.registry_err(repository, format!("getting blob {}", desc.digest), e)
        })?;
        let got = Digest::of(&bytes);
        if got != desc.digest || bytes.len() as u64 != desc.size {
            return Err(self.mismatch(repository, desc, got, bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Streams the blob `desc` into a new file at `dest`, hashing it on the way and reading at
    /// most one byte past its size. On any failure `dest` does not exist afterwards.
    pub fn blob_to_file(
        &self,
        repository: &str,
        desc: &Descriptor,
        dest: &Path,
    ) -> Result<(), PullError> {
        let (resp, url) = self.get_blob(repository, desc)?;
        let io_err = |source| PullError::Io {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            path: dest.to_path_buf(),
            source,
        };
        let file = fs::File::create_new(dest).map_err(io_err)?;
        let mut sink = HashingWriter {
            inner: io::BufWriter::new(file),
            hasher: Hasher::new(),
        };
        let copied = io::copy(&mut resp.take(desc.size + 1), &mut sink).and_then(|n| {
            sink.flush()?;
            Ok(n)
        });
        let result = match copied {
            Err(e) => Err(self.registry_err(
                repository,
                format!("getting blob {}", desc.digest),
                RegistryError::Transport {
                    method: "GET".into(),
                    url: redact_url(&url),
                    message: format!("reading the blob: {e}"),
                },
            )),
            Ok(n) => {
                let got = sink.hasher.clone().finish();
                if got != desc.digest || n != desc.size {
                    Err(self.mismatch(repository, desc, got, n))
                } else {
                    Ok(())
                }
            }
        };
        drop(sink);
        if result.is_err() {
            let _ = fs::remove_file(dest);
        }
        result
    }
}
