//! Blob uploads: existence check, cross-repository mount, monolithic and chunked uploads.
//!
//! A blob is first looked up with HEAD, so a push that was killed half-way and run again skips
//! everything that completed. Small blobs go up as POST + one PUT carrying the bytes; large ones
//! as PATCH chunks with `Content-Range`, so that a dropped connection costs one chunk: the upload
//! session is asked where it stands (GET → `Range`) and the upload resumes from there. Only when
//! the registry has lost the session is it started again. Bodies are streamed from the layout
//! file, so memory does not grow with blob size.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::error::{redact_url, RegistryError};
use super::transport::{is_transient, status_error, Body, Request, Transport};
use crate::digest::Digest;

/// When uploads switch from one PUT to PATCH chunks, and how big the chunks are.
#[derive(Clone, Debug)]
pub struct UploadTuning {
    /// Blobs up to this size go in one PUT.
    pub monolithic_max: u64,
    pub chunk_size: u64,
}

impl Default for UploadTuning {
    fn default() -> Self {
        UploadTuning {
            monolithic_max: 16 << 20,
            chunk_size: 8 << 20,
        }
    }
}

/// Where a blob's bytes are: a layout file (streamed), or a small in-memory value (an artifact's
/// empty config, an SBOM the caller already holds).
#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub source: BlobSource,
}

impl Blob {
    pub fn from_bytes(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            source: BlobSource::Bytes(Arc::new(bytes)),
        }
    }

    fn body(&self, offset: u64, len: u64) -> Body {
        match &self.source {
            BlobSource::File(path) => Body::File {
                path: path.clone(),
                offset,
                len,
            },
            BlobSource::Bytes(b) if offset == 0 && len == b.len() as u64 => Body::Bytes(b.clone()),
            BlobSource::Bytes(b) => Body::Bytes(Arc::new(
                b[offset as usize..(offset + len) as usize].to_vec(),
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Already in the repository.
    Skipped,
    /// Mounted from another repository of the same registry (the registry answered 201).
    Mounted,
    /// Sent; `resumes` counts chunked uploads continued after a failure.
    Uploaded { bytes: u64, resumes: u32 },
}

/// `Content-Range` for `len` bytes at `offset`: inclusive `start-end`, no unit, per the spec.
pub fn content_range(offset: u64, len: u64) -> String {
    debug_assert!(len > 0);
    format!("{}-{}", offset, offset + len - 1)
}

/// The next offset to send, from an upload status `Range: 0-<last>` header. Distribution reports
/// an empty session as `0-0` too; reading that as 0 is safe, since a wrong start is refused with
/// 416 and the upload then restarts.
pub fn next_offset(range: &str) -> Option<u64> {
    let r = range.trim();
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (start, end) = r.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if start != 0 || end < start {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The `(offset, len)` chunks covering `[from, size)`.
pub fn chunks(from: u64, size: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    (0..)
        .map(move |i| from + i * chunk)
        .take_while(move |&o| o < size)
        .map(move |o| (o, chunk.min(size - o)))
}

fn with_digest(location: &str, digest: &Digest) -> String {
    match url::Url::parse(location) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            u.to_string()
        }
        Err(_) => {
            let sep = if location.contains('?') { '&' } else { '?' };
            format!("{location}{sep}digest={digest}")
        }
    }
}

fn location_of(
    t: &Transport,
    method: &str,
    url: &str,
    resp: &reqwest::blocking::Response,
) -> Result<String, RegistryError> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| t.resolve(l))
        .ok_or_else(|| RegistryError::Protocol {
            method: method.into(),
            url: redact_url(url),
            what: format!("HTTP {} without a Location header", resp.status().as_u16()),
        })
}

/// Checks the registry's `Docker-Content-Digest`, when it sends one, against what we sent.
pub fn check_reported_digest(
    method: &str,
    url: &str,
    resp: &reqwest::blocking::Response,
    expected: &Digest,
) -> Result<(), RegistryError> {
    if let Some(reported) = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
    {
        if reported.parse::<Digest>().ok().as_ref() != Some(expected) {
            return Err(RegistryError::DigestMismatch {
                method: method.into(),
                url: redact_url(url),
                expected: *expected,
                reported: reported.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether the registry has this blob in `repository`.
pub fn blob_exists(
    t: &Transport,
    repository: &str,
    digest: &Digest,
) -> Result<bool, RegistryError> {
    let url = t.url(&format!("/v2/{repository}/blobs/{digest}"));
    let resp = t.send(&Request::new(
        Method::HEAD,
        url.clone(),
        vec![repository_scope(repository, "pull,push")],
    ))?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(status_error("HEAD", &url, resp)),
    }
}

enum Session {
    Mounted,
    Open(String),
}

fn start_session(
    t: &Transport,
    repository: &str,
    digest: &Digest,
    mount_from: Option<&str>,
) -> Result<Session, RegistryError> {
    let push = repository_scope(repository, "pull,push");
    let (url, scopes) = match mount_from {
        Some(from) => {
            let mut u = url::Url::parse(&t.url(&format!("/v2/{repository}/blobs/uploads/")))
                .expect("base URL parses");
            u.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
            (u.to_string(), vec![push, repository_scope(from, "pull")])
        }
        None => (
            t.url(&format!("/v2/{repository}/blobs/uploads/")),
            vec![push],
        ),
    };
    let resp = t.send(&Request::new(Method::POST, url.clone(), scopes))?;
    match resp.status() {
        StatusCode::CREATED if mount_from.is_some() => {
            check_reported_digest("POST", &url, &resp, digest)?;
            Ok(Session::Mounted)
        }
        StatusCode::ACCEPTED => Ok(Session::Open(location_of(t, "POST", &url, &resp)?)),
        _ => Err(status_error("POST", &url, resp)),
    }
}

/// Failures after which a fresh upload session may succeed.
fn worth_restarting(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status, .. } => {
            is_transient(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                || matches!(*status, 404 | 416)
                || e.code() == Some("BLOB_UPLOAD_INVALID")
                || e.code() == Some("BLOB_UPLOAD_UNKNOWN")
        }
        _ => false,
    }
}

/// Pushes one blob to `repository`, mounting it from `mount_from` (a repository of the same
/// registry that has it) when given.
pub fn push_blob(
    t: &Transport,
    repository: &str,
    blob: &Blob,
    mount_from: Option<&str>,
    tuning: &UploadTuning,
) -> Result<BlobOutcome, RegistryError> {
    if blob_exists(t, repository, &blob.digest)? {
        return Ok(BlobOutcome::Skipped);
    }
    let mut attempt = 0u32;
    let mut mount_from = mount_from;
    loop {
        let result = start_session(t, repository, &blob.digest, mount_from).and_then(|s| match s {
            Session::Mounted => Ok(BlobOutcome::Mounted),
            Session::Open(location) => {
                if blob.size <= tuning.monolithic_max {
                    put_monolithic(t, repository, blob, &location)
                } else {
                    put_chunked(t, repository, blob, location, tuning)
                }
            }
        });
        // Mount once: a 202 already fell through to a plain upload in that session.
        mount_from = None;
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(e) if worth_restarting(&e) && attempt + 1 < t.retry.attempts => {
                // The closing PUT may have landed even though its answer was lost.
                if blob_exists(t, repository, &blob.digest)? {
                    return Ok(BlobOutcome::Uploaded {
                        bytes: blob.size,
                        resumes: 0,
                    });
                }
                std::thread::sleep(t.retry.delay(attempt, None));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn put_monolithic(
    t: &Transport,
    repository: &str,
    blob: &Blob,
    location: &str,
) -> Result<BlobOutcome, RegistryError> {
    let url = with_digest(location, &blob.digest);
    let req = Request::new(
        Method::PUT,
        url.clone(),
        vec![repository_scope(repository, "pull,push")],
    )
    .header(CONTENT_TYPE, "application/octet-stream")
    .header(CONTENT_LENGTH, &blob.size.to_string())
    .body(blob.body(0, blob.size))
    .no_retry();
    finish_upload(t, &req, &url, blob, 0)
}

/// Sends the PUT that completes an upload and checks that the registry took the blob under its
/// digest.
fn finish_upload(
    t: &Transport,
    req: &Request,
    url: &str,
    blob: &Blob,
    resumes: u32,
) -> Result<BlobOutcome, RegistryError> {
    let resp = t.send(req)?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error("PUT", url, resp));
    }
    check_reported_digest("PUT", url, &resp, &blob.digest)?;
    Ok(BlobOutcome::Uploaded {
        bytes: blob.size,
        resumes,
    })
}

fn put_chunked(
    t: &Transport,
    repository: &str,
    blob: &Blob,
    mut location: String,
    tuning: &UploadTuning,
) -> Result<BlobOutcome, RegistryError> {
    let scopes = vec![repository_scope(repository, "pull,push")];
    let mut offset = 0u64;
    let mut resumes = 0u32;
    let mut failures = 0u32;
    while offset < blob.size {
        let (at, len) = chunks(offset, blob.size, tuning.chunk_size)
            .next()
            .expect("offset < size");
        let req = Request::new(Method::PATCH, location.clone(), scopes.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_RANGE, &content_range(at, len))
            .header(CONTENT_LENGTH, &len.to_string())
            .body(blob.body(at, len))
            .no_retry();
        let failure = match t.send(&req) {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                location = location_of(t, "PATCH", &location, &resp)?;
                let reported = resp
                    .headers()
                    .get(RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_offset);
                offset = reported.unwrap_or(at + len);
                // Bound failures per chunk, not per blob: a long upload over a flaky link must
                // not give up just because it has many chunks.
                failures = 0;
                continue;
            }
            Ok(resp)
                if is_transient(resp.status())
                    || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                status_error("PATCH", &location, resp)
            }
            Ok(resp) => return Err(status_error("PATCH", &location, resp)),
            Err(e @ RegistryError::Transport { .. }) => e,
            Err(e) => return Err(e),
        };
        failures += 1;
        if failures >= t.retry.attempts {
            return Err(failure);
        }
        std::thread::sleep(t.retry.delay(failures - 1, None));
        // Ask the session how much it holds; a lost session surfaces as an error and the caller
        // starts a new one.
        let resp = t.send(&Request::new(Method::GET, location.clone(), scopes.clone()))?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(status_error("GET", &location, resp));
        }
        if resp.headers().contains_key(LOCATION) {
            location = location_of(t, "GET", &location, &resp)?;
        }
        offset = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(next_offset)
            .unwrap_or(0);
        resumes += 1;
    }
    let url = with_digest(&location, &blob.digest);
    let req = Request::new(Method::PUT, url.clone(), scopes)
        .header(CONTENT_LENGTH, "0")
        .no_retry();
    finish_upload(t, &req, &url, blob, resumes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range(0, 1), "0-0");
        assert_eq!(content_range(0, 8 << 20), "0-8388607");
        assert_eq!(content_range(8 << 20, 10), "8388608-8388617");
    }

    #[test]
    fn next_offset_reads_the_inclusive_end() {
        assert_eq!(next_offset("0-8388607"), Some(8 << 20));
        assert_eq!(next_offset("bytes=0-99"), Some(100));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-10"), None, "sessions always hold a prefix");
        assert_eq!(next_offset("garbage"), None);
    }

    #[test]
    fn chunks_cover_the_rest_exactly_once() {
        let c: Vec<_> = chunks(0, 25, 10).collect();
        assert_eq!(c, vec![(0, 10), (10, 10), (20, 5)]);
        let c: Vec<_> = chunks(12, 25, 10).collect();
        assert_eq!(c, vec![(12, 10), (22, 3)]);
        assert_eq!(chunks(25, 25, 10).count(), 0);
        let total: u64 = chunks(0, (16 << 20) + 1, 8 << 20).map(|(_, l)| l).sum();
        assert_eq!(total, (16 << 20) + 1);
    }

    #[test]
    fn digest_is_appended_to_locations_with_and_without_a_query() {
        let d = Digest::of(b"x");
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u", &d),
            format!("http://r/v2/a/blobs/uploads/u?digest=sha256%3A{}", d.hex())
        );
        assert!(with_digest("http://r/u?_state=s", &d).starts_with("http://r/u?_state=s&digest="));
    }
}
