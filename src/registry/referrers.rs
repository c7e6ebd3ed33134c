//! Referrers: artifacts (SBOMs, provenance) attached to an image manifest through `subject`.
//!
//! An artifact is an image manifest with `artifactType`, the empty config, one layer holding the
//! artifact, and `subject` naming the image. Registries implementing distribution 1.1 index it
//! themselves (they answer the manifest PUT with `OCI-Subject`, and `GET /referrers/<digest>`).
//! For older registries the spec's fallback is a tag `sha256-<hex of subject>` holding an image
//! index of the referrers, which the client maintains with read-modify-write. Two clients
//! attaching to the same image at once can lose one entry there; the spec accepts that race.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::body::{read_limited, MANIFEST_LIMIT};
use super::error::{redact_url, RegistryError};
use super::layout::ManifestBlob;
use super::push::{connect, push_shared_blob, put_manifest};
use super::transport::{status_error, Request, Transport};
use super::upload::{Blob, BlobSource};
use super::{PushError, PushOptions, PushStep};
use crate::digest::Digest;
use crate::oci::media_type::{EMPTY, IMAGE_INDEX, IMAGE_MANIFEST};
use crate::oci::Descriptor;
use crate::oci::Manifest;

#[derive(Clone, Debug)]
pub enum ArtifactContent {
    Bytes(Vec<u8>),
    /// Streamed like a layer; hashed once up front to name it.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Artifact {
    /// e.g. `application/spdx+json`, `application/vnd.in-toto+json`.
    pub artifact_type: String,
    /// Media type of the content blob; usually the same as `artifact_type`.
    pub media_type: String,
    pub content: ArtifactContent,
    /// Manifest annotations, e.g. `org.opencontainers.image.created`.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ReferrerReport {
    pub service: String,
    /// `registry/repository@digest` of the artifact manifest.
    pub reference: String,
    pub digest: Digest,
    pub subject: Digest,
    /// The fallback tag updated, when the registry lacks the referrers API.
    pub fallback_tag: Option<String>,
}

pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

fn registry_err(
    opts: &PushOptions,
    service: &str,
    repository: &str,
    step: PushStep,
    source: RegistryError,
) -> PushError {
    PushError::Registry {
        service: service.to_string(),
        registry: opts.registry.clone(),
        repository: repository.to_string(),
        step,
        source: Box::new(source),
    }
}

fn repository_of(opts: &PushOptions, service: &str) -> Result<String, PushError> {
    opts.repository(service)
        .map_err(|source| PushError::Reference {
            service: service.to_string(),
            registry: opts.registry.clone(),
            source,
        })
}

/// Builds the artifact manifest bytes. Field order is fixed by the struct, so the same inputs
/// always give the same digest and re-attaching an SBOM is a no-op.
fn artifact_manifest(
    artifact: &Artifact,
    config: &Blob,
    content: &Blob,
    subject: &Descriptor,
) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: IMAGE_MANIFEST.to_string(),
        artifact_type: Some(artifact.artifact_type.clone()),
        config: Descriptor::new(EMPTY, config.digest, config.size),
        layers: vec![Descriptor::new(
            &artifact.media_type,
            content.digest,
            content.size,
        )],
        subject: Some(subject.clone()),
        annotations: artifact.annotations.clone(),
    };
    serde_json::to_vec(&m).expect("manifest serializes")
}

/// Pushes `artifact` to `<prefix>/<service>` as a referrer of `subject` (an image manifest there).
pub fn push_referrer(
    opts: &PushOptions,
    service: &str,
    subject: &Descriptor,
    artifact: &Artifact,
) -> Result<ReferrerReport, PushError> {
    push_referrers(opts, service, subject, std::slice::from_ref(artifact)).map(|mut r| r.remove(0))
}

/// Pushes several artifacts as referrers of one subject over one connection (one auth
/// handshake), skipping the ones the registry already holds.
pub fn push_referrers(
    opts: &PushOptions,
    service: &str,
    subject: &Descriptor,
    artifacts: &[Artifact],
) -> Result<Vec<ReferrerReport>, PushError> {
    let repository = repository_of(opts, service)?;
    let t = connect(opts).map_err(|e| e.for_image(opts, service, &repository))?;
    artifacts
        .iter()
        .map(|a| push_one_referrer(&t, opts, service, &repository, subject, a))
        .collect()
}

fn push_one_referrer(
    t: &super::transport::Transport,
    opts: &PushOptions,
    service: &str,
    repository: &str,
    subject: &Descriptor,
    artifact: &Artifact,
) -> Result<ReferrerReport, PushError> {
    let repository = repository.to_string();
    let content = match &artifact.content {
        ArtifactContent::Bytes(b) => Blob::from_bytes(b.clone()),
        ArtifactContent::File(path) => {
            let (digest, size) = Digest::of_file(path).map_err(|e| {
                registry_err(
                    opts,
                    service,
                    &repository,
                    PushStep::Referrers(subject.digest),
                    RegistryError::Setup(format!("reading {}: {e}", path.display())),
                )
            })?;
            Blob {
                digest,
                size,
                source: BlobSource::File(path.clone()),
            }
        }
    };
    let config = Blob::from_bytes(b"{}".to_vec());
    let bytes = artifact_manifest(artifact, &config, &content, subject);
    let manifest = ManifestBlob {
        media_type: IMAGE_MANIFEST.to_string(),
        digest: Digest::of(&bytes),
        bytes,
    };
    // A manifest the registry holds has its blobs there: skip their HEADs on a re-push.
    let present = manifest_exists(t, &repository, &manifest).unwrap_or(false);
    for blob in [&config, &content].into_iter().filter(|_| !present) {
        push_shared_blob(t, opts, &repository, blob).map_err(|e| {
            registry_err(opts, service, &repository, PushStep::Blob(blob.digest), e)
        })?;
    }
    let manifest_err = |e| {
        registry_err(
            opts,
            service,
            &repository,
            PushStep::Manifest(manifest.digest),
            e,
        )
    };
    let indexed_by_registry = if present {
        false
    } else {
        let resp = put_manifest(t, &repository, &manifest, &manifest.digest.to_string())
            .map_err(manifest_err)?;
        resp.headers().contains_key("OCI-Subject")
    };
    let mut report = ReferrerReport {
        service: service.to_string(),
        reference: format!("{}/{}@{}", opts.registry, repository, manifest.digest),
        digest: manifest.digest,
        subject: subject.digest,
        fallback_tag: None,
    };
    // `OCI-Subject` in the answer means the registry indexed the subject itself.
    if indexed_by_registry {
        return Ok(report);
    }
    let step = || PushStep::Referrers(subject.digest);
    if query_referrers_api(t, &repository, &subject.digest)
        .map_err(|e| registry_err(opts, service, &repository, step(), e))?
        .is_some()
    {
        return Ok(report);
    }
    let mut entry = Descriptor::new(IMAGE_MANIFEST, manifest.digest, manifest.bytes.len() as u64);
    entry.artifact_type = Some(artifact.artifact_type.clone());
    entry.annotations = artifact.annotations.clone();
    let tag = fallback_tag(&subject.digest);
    let mut index = read_fallback_index(t, &repository, &tag)
        .map_err(|e| registry_err(opts, service, &repository, step(), e))?;
    let list = index
        .as_object_mut()
        .and_then(|o| o.get_mut("manifests"))
        .and_then(|m| m.as_array_mut());
    let list = list.expect("read_fallback_index returns an object with manifests");
    if !list
        .iter()
        .any(|d| d.get("digest").and_then(|v| v.as_str()) == Some(&manifest.digest.to_string()))
    {
        list.push(serde_json::to_value(&entry).expect("descriptor serializes"));
        let bytes = serde_json::to_vec(&index).expect("index serializes");
        let m = ManifestBlob {
            media_type: IMAGE_INDEX.to_string(),
            digest: Digest::of(&bytes),
            bytes,
        };
        put_manifest(t, &repository, &m, &tag)
            .map_err(|e| registry_err(opts, service, &repository, PushStep::Tag(tag.clone()), e))?;
    }
    report.fallback_tag = Some(tag);
    Ok(report)
}

/// Whether the registry already holds this exact manifest (a re-push then writes nothing).
fn manifest_exists(
    t: &super::transport::Transport,
    repository: &str,
    manifest: &ManifestBlob,
) -> Result<bool, RegistryError> {
    let url = t.url(&format!("/v2/{repository}/manifests/{}", manifest.digest));
    let req = super::transport::Request::new(
        reqwest::Method::HEAD,
        url,
        vec![super::auth::repository_scope(repository, "pull,push")],
    )
    .header(reqwest::header::ACCEPT, &manifest.media_type);
    Ok(t.send(&req)
        .map(|r| r.status().is_success())
        .unwrap_or(false))
}

/// `GET /v2/<name>/referrers/<digest>`: `None` when the registry does not implement it (404).
fn query_referrers_api(
    t: &Transport,
    repository: &str,
    subject: &Digest,
) -> Result<Option<Vec<Descriptor>>, RegistryError> {
    let url = t.url(&format!("/v2/{repository}/referrers/{subject}"));
    let req = Request::new(
        Method::GET,
        url.clone(),
        vec![repository_scope(repository, "pull")],
    )
    .header(ACCEPT, IMAGE_INDEX);
    let resp = t.send(&req)?;
    match resp.status() {
        StatusCode::OK => {
            let body = read_limited(resp, MANIFEST_LIMIT, "GET", &url)?;
            Ok(Some(index_entries(&body, "GET", &url)?))
        }
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(status_error("GET", &url, resp)),
    }
}

/// The `manifests` of a referrers index body (the referrers API answer or a fallback tag).
pub fn index_entries(
    body: &[u8],
    method: &str,
    url: &str,
) -> Result<Vec<Descriptor>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    serde_json::from_slice::<Index>(body)
        .map(|i| i.manifests)
        .map_err(|e| RegistryError::Protocol {
            method: method.into(),
            url: redact_url(url),
            what: format!("referrers index does not parse: {e}"),
        })
}

/// The fallback tag's index as JSON (kept as a value so entries we do not model survive), or a
/// new empty index.
fn read_fallback_index(
    t: &Transport,
    repository: &str,
    tag: &str,
) -> Result<serde_json::Value, RegistryError> {
    let url = t.url(&format!("/v2/{repository}/manifests/{tag}"));
    let req = Request::new(
        Method::GET,
        url.clone(),
        vec![repository_scope(repository, "pull,push")],
    )
    .header(ACCEPT, IMAGE_INDEX);
    let resp = t.send(&req)?;
    let empty =
        serde_json::json!({ "schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [] });
    match resp.status() {
        StatusCode::OK => {
            let reported = resp
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_limited(resp, MANIFEST_LIMIT, "GET", &url)?;
            // The index is rewritten and PUT back: one whose bytes are not what the registry
            // says it holds was damaged on the way and must not be built upon.
            let actual = Digest::of(&body);
            if let Some(reported) = reported.filter(|r| *r != actual.to_string()) {
                return Err(RegistryError::BodyDigest {
                    method: "GET".into(),
                    url: redact_url(&url),
                    actual,
                    reported,
                });
            }
            let mut v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                    method: "GET".into(),
                    url: redact_url(&url),
                    what: format!("fallback referrers index does not parse: {e}"),
                })?;
            match v.as_object_mut() {
                Some(o) => {
                    if !o.get("manifests").is_some_and(|m| m.is_array()) {
                        o.insert("manifests".into(), serde_json::json!([]));
                    }
                    Ok(v)
                }
                None => Ok(empty),
            }
        }
        StatusCode::NOT_FOUND => Ok(empty),
        _ => Err(status_error("GET", &url, resp)),
    }
}

/// Referrers of `subject` in `<prefix>/<service>`, optionally only those of `artifact_type`.
pub fn list_referrers(
    opts: &PushOptions,
    service: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>, PushError> {
    let repository = repository_of(opts, service)?;
    let t = connect(opts).map_err(|e| e.for_image(opts, service, &repository))?;
    let err = |e| registry_err(opts, service, &repository, PushStep::Referrers(*subject), e);
    let entries = match query_referrers_api(&t, &repository, subject).map_err(err)? {
        Some(e) => e,
        None => {
            let tag = fallback_tag(subject);
            let index = read_fallback_index(&t, &repository, &tag).map_err(err)?;
            let bytes = serde_json::to_vec(&index).expect("value serializes");
            index_entries(
                &bytes,
                "GET",
                &t.url(&format!("/v2/{repository}/manifests/{tag}")),
            )
            .map_err(err)?
        }
    };
    // Registries may ignore the filter (they say so with OCI-Filters-Applied); filter here always.
    Ok(entries
        .into_iter()
        .filter(|d| artifact_type.map_or(true, |a| d.artifact_type.as_deref() == Some(a)))
        .collect())
}
