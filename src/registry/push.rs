//! Pushing images: blobs in parallel across images, then manifests, then tags.
//!
//! Layers shared between services are uploaded once per registry: a per-digest lock makes the
//! second repository wait for the first upload and then mount it (`?mount=&from=`), which costs
//! the registry a link instead of the bytes. What has been pushed where is remembered in the
//! options' [`BlobHolders`], so separate `push_all` calls with the same options share layers too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::credentials::CredentialSources;
use super::error::RegistryError;
use super::layout::{read_layout, LayoutImage, ManifestBlob};
use super::reference::validate_tag;
use super::transport::{status_error, Body, Request, Transport};
use super::upload::{check_reported_digest, push_blob, Blob, BlobOutcome};
use super::{PushError, PushImage, PushOptions, PushReport, PushStep, ReferenceError};
use crate::digest::Digest;

type Holders = Arc<Mutex<Vec<String>>>;

/// Repositories known to hold a blob, per registry and digest. The inner mutex is held for the
/// whole upload of that blob, which is what serialises shared layers.
#[derive(Debug, Default)]
pub struct BlobHolders {
    known: Mutex<HashMap<(String, Digest), Holders>>,
}

impl BlobHolders {
    fn of(&self, registry: &str, digest: &Digest) -> Holders {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry((registry.to_string(), *digest))
            .or_default()
            .clone()
    }
}

/// What earlier kiln processes pushed where, so that a later `kiln push` of another service
/// mounts shared layers instead of uploading them again. A stale entry only costs a mount
/// attempt that the registry answers with an ordinary upload session.
type HoldersFile = std::collections::BTreeMap<Digest, Vec<String>>;

fn load_holders(opts: &PushOptions) {
    let Some(path) = &opts.holders_file else {
        return;
    };
    let Some(file) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<HoldersFile>(&b).ok())
    else {
        return;
    };
    for (digest, repos) in file {
        let h = opts.holders.of(&opts.registry, &digest);
        let mut held = h.lock().unwrap_or_else(|p| p.into_inner());
        for r in repos {
            if !held.contains(&r) {
                held.push(r);
            }
        }
    }
}

fn save_holders(opts: &PushOptions) {
    let Some(path) = &opts.holders_file else {
        return;
    };
    let mut file: HoldersFile = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let entries: Vec<(Digest, Holders)> = (opts.holders.known.lock())
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|((reg, _), _)| *reg == opts.registry)
        .map(|((_, d), h)| (*d, h.clone()))
        .collect();
    for (d, h) in entries {
        let held = h.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let repos = file.entry(d).or_default();
        for r in held {
            if !repos.contains(&r) {
                repos.push(r);
            }
        }
    }
    if let Ok(bytes) = serde_json::to_vec(&file) {
        let _ = crate::cache::atomic_write(path, &bytes);
    }
}

/// Pushes a blob to `repository`, mounting from another repository the options know holds it.
pub(crate) fn push_shared_blob(
    t: &Transport,
    opts: &PushOptions,
    repository: &str,
    blob: &Blob,
) -> Result<BlobOutcome, RegistryError> {
    let holders = opts.holders.of(&opts.registry, &blob.digest);
    let mut held = holders.lock().unwrap_or_else(|p| p.into_inner());
    let from = held.iter().find(|r| *r != repository).cloned();
    let outcome = push_blob(t, repository, blob, from.as_deref(), &opts.upload)?;
    if !held.iter().any(|r| r == repository) {
        held.push(repository.to_string());
    }
    Ok(outcome)
}

/// Why no connection could be made; cloned onto every image of a push.
#[derive(Clone)]
pub(crate) enum ConnectError {
    Credentials(super::CredentialError),
    Registry(RegistryError),
}

impl ConnectError {
    pub(crate) fn for_image(
        self,
        opts: &PushOptions,
        service: &str,
        repository: &str,
    ) -> PushError {
        let (service, registry, repository) = (
            service.to_string(),
            opts.registry.clone(),
            repository.to_string(),
        );
        match self {
            ConnectError::Credentials(source) => PushError::Credentials {
                service,
                registry,
                repository,
                source: Box::new(source),
            },
            ConnectError::Registry(source) => PushError::Registry {
                service,
                registry,
                repository,
                step: PushStep::Connecting,
                source: Box::new(source),
            },
        }
    }
}

/// Connects to the registry with credentials from the configured sources.
pub(crate) fn connect(opts: &PushOptions) -> Result<Transport, ConnectError> {
    let sources = opts
        .credentials
        .clone()
        .unwrap_or_else(CredentialSources::from_env);
    let credential = sources
        .lookup(&opts.registry)
        .map_err(ConnectError::Credentials)?;
    Transport::connect(&opts.registry, &opts.transport_settings(), credential)
        .map_err(ConnectError::Registry)
}

/// PUTs a manifest under `reference` (its digest or a tag) with its exact bytes and media type.
/// Whether `repository` holds exactly this manifest (HEAD by digest).
fn manifest_present(t: &Transport, repository: &str, manifest: &ManifestBlob) -> bool {
    let url = t.url(&format!("/v2/{repository}/manifests/{}", manifest.digest));
    let head = Request::new(
        Method::HEAD,
        url,
        vec![repository_scope(repository, "pull,push")],
    )
    .header(ACCEPT, &manifest.media_type);
    t.send(&head)
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// PUTs a manifest unless `reference` already names exactly it: a re-push of an unchanged image
/// costs one HEAD per manifest and tag instead of uploads, and tags are not rewritten.
pub(crate) fn ensure_manifest(
    t: &Transport,
    repository: &str,
    manifest: &ManifestBlob,
    reference: &str,
) -> Result<(), RegistryError> {
    let url = t.url(&format!("/v2/{repository}/manifests/{reference}"));
    let head = Request::new(
        Method::HEAD,
        url,
        vec![repository_scope(repository, "pull,push")],
    )
    .header(ACCEPT, &manifest.media_type);
    if let Ok(resp) = t.send(&head) {
        let current = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if resp.status().is_success() && current == Some(manifest.digest.to_string()) {
            return Ok(());
        }
    }
    put_manifest(t, repository, manifest, reference).map(|_| ())
}

pub(crate) fn put_manifest(
    t: &Transport,
    repository: &str,
    manifest: &ManifestBlob,
    reference: &str,
) -> Result<reqwest::blocking::Response, RegistryError> {
    let url = t.url(&format!("/v2/{repository}/manifests/{reference}"));
    let req = Request::new(
        Method::PUT,
        url.clone(),
        vec![repository_scope(repository, "pull,push")],
    )
    .header(CONTENT_TYPE, &manifest.media_type)
    .body(Body::Bytes(Arc::new(manifest.bytes.clone())));
    let resp = t.send(&req)?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error("PUT", &url, resp));
    }
    check_reported_digest("PUT", &url, &resp, &manifest.digest)?;
    Ok(resp)
}

struct Prepared {
    index: usize,
    repository: String,
    layout: LayoutImage,
    report: PushReport,
    failed: Option<PushError>,
}

pub fn push_all(opts: &PushOptions, images: &[PushImage]) -> Vec<Result<PushReport, PushError>> {
    let mut results: Vec<Option<Result<PushReport, PushError>>> =
        images.iter().map(|_| None).collect();
    let mut prepared = Vec::new();
    for (index, image) in images.iter().enumerate() {
        match prepare(opts, index, image) {
            Ok(p) => prepared.push(p),
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    if !prepared.is_empty() {
        load_holders(opts);
        match connect(opts) {
            Ok(t) => {
                push_prepared(opts, &t, images, &mut prepared);
                save_holders(opts);
            }
            Err(e) => {
                for p in &mut prepared {
                    p.failed = Some(e.clone().for_image(
                        opts,
                        &images[p.index].service,
                        &p.repository,
                    ));
                }
            }
        }
    }
    for p in prepared {
        results[p.index] = Some(match p.failed {
            Some(e) => Err(e),
            None => Ok(p.report),
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every image has a result"))
        .collect()
}

fn prepare(opts: &PushOptions, index: usize, image: &PushImage) -> Result<Prepared, PushError> {
    let reference_err = |source: ReferenceError| PushError::Reference {
        service: image.service.clone(),
        registry: opts.registry.clone(),
        source,
    };
    let repository = opts.repository(&image.service).map_err(reference_err)?;
    for tag in &image.tags {
        validate_tag(tag).map_err(reference_err)?;
    }
    let layout = read_layout(&image.layout).map_err(|source| PushError::Layout {
        service: image.service.clone(),
        layout: image.layout.clone(),
        source,
    })?;
    let top = layout.top();
    let report = PushReport {
        service: image.service.clone(),
        reference: format!("{}/{}@{}", opts.registry, repository, top.digest),
        digest: top.digest,
        media_type: top.media_type.clone(),
        size: top.bytes.len() as u64,
        tags: image.tags.clone(),
        uploaded_blobs: 0,
        skipped_blobs: 0,
        mounted_blobs: 0,
        uploaded_bytes: 0,
        resumed_uploads: 0,
    };
    Ok(Prepared {
        index,
        repository,
        layout,
        report,
        failed: None,
    })
}

fn push_prepared(
    opts: &PushOptions,
    t: &Transport,
    images: &[PushImage],
    prepared: &mut [Prepared],
) {
    let registry_err = |p: &Prepared, step: PushStep, source: RegistryError| PushError::Registry {
        service: images[p.index].service.clone(),
        registry: opts.registry.clone(),
        repository: p.repository.clone(),
        step,
        source: Box::new(source),
    };
    // An image whose manifest the repository already holds has all its blobs there too (a
    // registry refuses a manifest whose blobs are missing), so a re-push asks one HEAD per
    // image instead of one per blob.
    let next = Mutex::new(0usize);
    let found = Mutex::new(vec![false; prepared.len()]);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1).min(prepared.len().max(1)) {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(p) = prepared.get(i) else { break };
                let top = p.layout.top();
                if manifest_present(t, &p.repository, top) {
                    found.lock().unwrap()[i] = true;
                }
            });
        }
    });
    let complete = found.into_inner().unwrap();
    for (p, &done) in prepared.iter_mut().zip(&complete) {
        if done {
            p.report.skipped_blobs += p.layout.blobs.len() as u64;
        }
    }
    // Blobs: one queue across all images so `jobs` bounds the total parallelism.
    let queue: Mutex<VecDeque<(usize, usize)>> = Mutex::new(
        prepared
            .iter()
            .enumerate()
            .filter(|(i, _)| !complete[*i])
            .flat_map(|(i, p)| (0..p.layout.blobs.len()).map(move |b| (i, b)))
            .collect(),
    );
    let state: Vec<Mutex<(PushReport, Option<PushError>)>> = prepared
        .iter()
        .map(|p| Mutex::new((p.report.clone(), None)))
        .collect();
    let workers = opts.jobs.max(1).min(queue.lock().unwrap().len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((i, b)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let p = &prepared[i];
                if state[i].lock().unwrap().1.is_some() {
                    continue;
                }
                let blob = &p.layout.blobs[b];
                let outcome = push_shared_blob(t, opts, &p.repository, blob);
                let mut st = state[i].lock().unwrap();
                match outcome {
                    Ok(BlobOutcome::Skipped) => st.0.skipped_blobs += 1,
                    Ok(BlobOutcome::Mounted) => st.0.mounted_blobs += 1,
                    Ok(BlobOutcome::Uploaded { bytes, resumes }) => {
                        st.0.uploaded_blobs += 1;
                        st.0.uploaded_bytes += bytes;
                        st.0.resumed_uploads += u64::from(resumes);
                    }
                    Err(e) => {
                        if st.1.is_none() {
                            st.1 = Some(registry_err(p, PushStep::Blob(blob.digest), e));
                        }
                    }
                }
            });
        }
    });
    for (p, st) in prepared.iter_mut().zip(state) {
        let (report, failed) = st.into_inner().unwrap();
        p.report = report;
        p.failed = failed;
    }
    // Manifests by digest, children first, then tags, so every tag lands on a complete image;
    // images in parallel, since each is a few small requests.
    let next = Mutex::new(0usize);
    let slots: Vec<Mutex<&mut Prepared>> = prepared.iter_mut().map(Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(slots.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(slot) = slots.get(i) else { break };
                let mut guard = slot.lock().unwrap();
                let p: &mut Prepared = &mut guard;
                if p.failed.is_some() {
                    continue;
                }
                p.failed = publish_manifests(t, p, &images[p.index].tags)
                    .map(|(step, e)| registry_err(p, step, e));
            });
        }
    });
}

fn publish_manifests(
    t: &Transport,
    p: &Prepared,
    tags: &[String],
) -> Option<(PushStep, RegistryError)> {
    for m in &p.layout.manifests {
        if let Err(e) = ensure_manifest(t, &p.repository, m, &m.digest.to_string()) {
            return Some((PushStep::Manifest(m.digest), e));
        }
    }
    let top = p.layout.top();
    for tag in tags {
        if let Err(e) = ensure_manifest(t, &p.repository, top, tag) {
            return Some((PushStep::Tag(tag.clone()), e));
        }
    }
    None
}
