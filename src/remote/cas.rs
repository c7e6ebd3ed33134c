//! The content-addressable storage: which blobs the server lacks, and moving blobs both ways.
//!
//! - `FindMissingBlobs` first, and a memory of what the server is known to hold (answered
//!   present, uploaded or read in this process), so a second identical build uploads nothing
//!   and asks about nothing it has already asked.
//! - Blobs whose encoded batch entry fits the server's limit are packed into `BatchUpdateBlobs`
//!   / `BatchReadBlobs` by *encoded* size (the limit is on the message, not on the data).
//! - Larger blobs go over ByteStream in chunks. A write that fails with a transient status asks
//!   `QueryWriteStatus` how much the server committed and resumes from there under the same
//!   resource name; a read resumes with `read_offset`. Both give up after [`ATTEMPTS`].
//! - Every blob read is verified against its digest before it is returned.
//! - The empty blob is never sent or fetched: REAPI servers hold it implicitly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::bytestream::{QueryWriteStatusRequest, ReadRequest, WriteRequest};
use prost::encoding::encoded_len_varint;
use prost::Message;
use tokio_stream::StreamExt;

use super::blob::BlobDigest;
use super::client::Client;
use super::error::{RemoteError, Status};

/// ByteStream chunk size: well under every server's message limit.
pub const CHUNK: usize = 1 << 20;
/// Tries of one ByteStream transfer (the first plus resumptions).
pub const ATTEMPTS: usize = 4;
/// Digests per `FindMissingBlobs` request (each is about 75 encoded bytes).
const FIND_MISSING_CHUNK: usize = 4096;

/// What one upload moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub blobs: usize,
    pub bytes: u64,
    pub batches: usize,
    /// Blobs sent over ByteStream.
    pub streamed: usize,
    /// ByteStream writes resumed after `QueryWriteStatus`.
    pub resumed: usize,
}

pub struct Cas {
    limit: u64,
    known: Mutex<HashSet<BlobDigest>>,
    /// Everything this process sent, for the build's report.
    sent: Mutex<Transfer>,
}

/// Size of one blob's entry in a batch request: the `Request` message (digest, data) and its
/// own tag and length.
pub fn batch_entry_len(blob: &BlobDigest) -> u64 {
    let d = blob.to_proto().encoded_len() as u64;
    let mut inner = 1 + encoded_len_varint(d) as u64 + d;
    if blob.size > 0 {
        inner += 1 + encoded_len_varint(blob.size) as u64 + blob.size;
    }
    1 + encoded_len_varint(inner) as u64 + inner
}

/// Splits blobs into batches whose entries add up to at most `limit`, in the order given, and
/// the blobs too large for any batch.
pub fn pack(blobs: &[BlobDigest], limit: u64) -> (Vec<Vec<BlobDigest>>, Vec<BlobDigest>) {
    let mut batches: Vec<Vec<BlobDigest>> = Vec::new();
    let mut large = Vec::new();
    let mut used = 0;
    for b in blobs {
        let len = batch_entry_len(b);
        if len > limit {
            large.push(*b);
            continue;
        }
        if batches.is_empty() || used + len > limit {
            batches.push(Vec::new());
            used = 0;
        }
        used += len;
        batches.last_mut().expect("pushed above").push(*b);
    }
    (batches, large)
}

/// Statuses after which a ByteStream transfer is resumed rather than failed.
fn transient(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable | Aborted | DeadlineExceeded | Internal | Cancelled | Unknown
    )
}

fn resource_prefix(client: &Client) -> String {
    match client.instance_name() {
        "" => String::new(),
        i => format!("{i}/"),
    }
}

fn upload_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    // UUID v4 layout, which some servers check.
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl Cas {
    /// `limit` is the most encoded bytes one batch may hold
    /// ([`super::capabilities::Capabilities::batch_limit`]).
    pub fn new(limit: u64) -> Cas {
        Cas {
            limit,
            known: Mutex::new(HashSet::new()),
            sent: Mutex::new(Transfer::default()),
        }
    }

    fn is_known(&self, b: &BlobDigest) -> bool {
        b.size == 0 || self.known.lock().expect("poisoned").contains(b)
    }

    /// Forgets that the server holds any blob, so the next upload asks again: after the server
    /// said it lost some (Execute's `FAILED_PRECONDITION`).
    pub fn forget_all(&self) {
        self.known.lock().expect("poisoned").clear();
    }

    /// What every [`Cas::upload`] of this process sent so far.
    pub fn sent(&self) -> Transfer {
        *self.sent.lock().expect("poisoned")
    }

    fn count_sent(&self, blobs: &[BlobDigest], streamed: bool) {
        let mut sent = self.sent.lock().expect("poisoned");
        sent.blobs += blobs.len();
        sent.bytes += blobs.iter().map(|b| b.size).sum::<u64>();
        if streamed {
            sent.streamed += blobs.len();
        } else {
            sent.batches += 1;
        }
    }

    fn remember(&self, blobs: impl IntoIterator<Item = BlobDigest>) {
        self.known.lock().expect("poisoned").extend(blobs);
    }

    /// The blobs the server does not hold; blobs known present are not asked about.
    pub fn find_missing(
        &self,
        client: &Client,
        blobs: &[BlobDigest],
    ) -> Result<Vec<BlobDigest>, RemoteError> {
        let mut ask: Vec<BlobDigest> = blobs
            .iter()
            .filter(|b| !self.is_known(b))
            .copied()
            .collect();
        ask.sort();
        ask.dedup();
        let mut missing = Vec::new();
        for chunk in ask.chunks(FIND_MISSING_CHUNK) {
            let req = reapi::FindMissingBlobsRequest {
                instance_name: client.instance_name().to_string(),
                blob_digests: chunk.iter().map(|b| b.to_proto()).collect(),
                digest_function: reapi::digest_function::Value::Sha256 as i32,
            };
            let resp = client
                .unary(|| async { client.cas().find_missing_blobs(req.clone()).await })
                .map_err(|s| client.rpc_error("FindMissingBlobs", s))?
                .into_inner();
            let absent: HashSet<BlobDigest> = resp
                .missing_blob_digests
                .iter()
                .map(|d| BlobDigest::from_proto(Some(d), "FindMissingBlobs"))
                .collect::<Result<_, _>>()?;
            self.remember(chunk.iter().filter(|b| !absent.contains(b)).copied());
            missing.extend(chunk.iter().filter(|b| absent.contains(b)).copied());
        }
        Ok(missing)
    }

    /// Makes sure the server holds every blob, sending only those it lacks.
    pub fn upload(
        &self,
        client: &Client,
        blobs: Vec<(BlobDigest, Vec<u8>)>,
    ) -> Result<Transfer, RemoteError> {
        let mut by_digest: HashMap<BlobDigest, Arc<Vec<u8>>> = HashMap::new();
        for (d, bytes) in blobs {
            by_digest.entry(d).or_insert_with(|| Arc::new(bytes));
        }
        let digests: Vec<BlobDigest> = by_digest.keys().copied().collect();
        let missing = self.find_missing(client, &digests)?;
        let (batches, large) = pack(&missing, self.limit);
        let mut t = Transfer::default();
        for batch in batches {
            let req = reapi::BatchUpdateBlobsRequest {
                instance_name: client.instance_name().to_string(),
                requests: batch
                    .iter()
                    .map(|d| reapi::batch_update_blobs_request::Request {
                        digest: Some(d.to_proto()),
                        data: by_digest[d].to_vec(),
                        compressor: 0,
                    })
                    .collect(),
                digest_function: reapi::digest_function::Value::Sha256 as i32,
            };
            let resp = client
                .unary(|| async { client.cas().batch_update_blobs(req.clone()).await })
                .map_err(|s| client.rpc_error("BatchUpdateBlobs", s))?
                .into_inner();
            for r in &resp.responses {
                if let Some(s) = r.status.as_ref().filter(|s| s.code != 0) {
                    let digest = BlobDigest::from_proto(r.digest.as_ref(), "BatchUpdateBlobs")?;
                    return Err(RemoteError::BlobUpload {
                        digest: digest.digest,
                        url: client.url().to_string(),
                        source: Status::from_rpc(s),
                    });
                }
            }
            t.batches += 1;
            t.blobs += batch.len();
            t.bytes += batch.iter().map(|b| b.size).sum::<u64>();
            self.count_sent(&batch, false);
            self.remember(batch);
        }
        for d in large {
            t.resumed += self.write(client, d, Arc::clone(&by_digest[&d]))?;
            t.streamed += 1;
            t.blobs += 1;
            t.bytes += d.size;
            self.count_sent(&[d], true);
            self.remember([d]);
        }
        Ok(t)
    }

    /// One ByteStream upload; returns how many times it was resumed.
    fn write(
        &self,
        client: &Client,
        d: BlobDigest,
        data: Arc<Vec<u8>>,
    ) -> Result<usize, RemoteError> {
        let resource = format!(
            "{}uploads/{}/blobs/{}/{}",
            resource_prefix(client),
            upload_id(),
            d.digest.hex(),
            d.size
        );
        let failed = |status: tonic::Status| RemoteError::BlobUpload {
            digest: d.digest,
            url: client.url().to_string(),
            source: Status::from(status),
        };
        let mut offset = 0u64;
        let mut committed = 0i64;
        let mut refused = 0;
        let mut attempt = 0;
        while attempt < ATTEMPTS {
            match client.block_on(write_from(client, &resource, &data, offset)) {
                Ok(c) if c == d.size as i64 => return Ok(attempt),
                Ok(c) => committed = c,
                // Turned away (too many calls at once) before it started: the same again.
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted
                        && client.pause_when_exhausted(&mut refused) =>
                {
                    continue
                }
                Err(s) if transient(s.code()) && attempt + 1 < ATTEMPTS => {}
                Err(s) => return Err(failed(s)),
            }
            attempt += 1;
            let query = QueryWriteStatusRequest {
                resource_name: resource.clone(),
            };
            match client
                .unary(|| async { client.bytestream().query_write_status(query.clone()).await })
            {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.complete || r.committed_size == d.size as i64 {
                        return Ok(attempt);
                    }
                    committed = r.committed_size;
                    offset = u64::try_from(r.committed_size).unwrap_or(0).min(d.size);
                }
                // The server kept nothing of this upload: start again.
                Err(s) if s.code() == tonic::Code::NotFound => offset = 0,
                Err(s) => return Err(failed(s)),
            }
        }
        Err(RemoteError::WriteIncomplete {
            digest: d.digest,
            url: client.url().to_string(),
            committed,
            size: d.size,
        })
    }

    /// Fetches blobs, each verified against its digest.
    pub fn read(
        &self,
        client: &Client,
        blobs: &[BlobDigest],
    ) -> Result<HashMap<BlobDigest, Vec<u8>>, RemoteError> {
        let mut out = HashMap::new();
        let mut wanted: Vec<BlobDigest> = Vec::new();
        for b in blobs {
            if b.size == 0 {
                out.insert(*b, Vec::new());
            } else if !wanted.contains(b) {
                wanted.push(*b);
            }
        }
        let (batches, large) = pack(&wanted, self.limit);
        for batch in batches {
            let req = reapi::BatchReadBlobsRequest {
                instance_name: client.instance_name().to_string(),
                digests: batch.iter().map(|b| b.to_proto()).collect(),
                acceptable_compressors: Vec::new(),
                digest_function: reapi::digest_function::Value::Sha256 as i32,
            };
            let resp = client
                .unary(|| async { client.cas().batch_read_blobs(req.clone()).await })
                .map_err(|s| client.rpc_error("BatchReadBlobs", s))?
                .into_inner();
            for r in resp.responses {
                let d = BlobDigest::from_proto(r.digest.as_ref(), "BatchReadBlobs")?;
                if !batch.contains(&d) {
                    continue;
                }
                match r.status.as_ref().filter(|s| s.code != 0) {
                    Some(s) if s.code == tonic::Code::NotFound as i32 => {
                        return Err(RemoteError::BlobMissing {
                            digest: d.digest,
                            url: client.url().to_string(),
                        })
                    }
                    Some(s) => {
                        return Err(RemoteError::BlobRead {
                            digest: d.digest,
                            url: client.url().to_string(),
                            source: Status::from_rpc(s),
                        })
                    }
                    None => {}
                }
                d.verify(client.url(), &r.data)?;
                out.insert(d, r.data);
            }
            if let Some(d) = batch.iter().find(|d| !out.contains_key(d)) {
                return Err(RemoteError::BlobMissing {
                    digest: d.digest,
                    url: client.url().to_string(),
                });
            }
            self.remember(batch);
        }
        for d in large {
            let bytes = self.read_stream(client, d)?;
            d.verify(client.url(), &bytes)?;
            out.insert(d, bytes);
            self.remember([d]);
        }
        Ok(out)
    }

    fn read_stream(&self, client: &Client, d: BlobDigest) -> Result<Vec<u8>, RemoteError> {
        let resource = format!(
            "{}blobs/{}/{}",
            resource_prefix(client),
            d.digest.hex(),
            d.size
        );
        let mut buf = Vec::with_capacity(d.size as usize);
        let mut refused = 0;
        let mut attempt = 0;
        loop {
            match client.block_on(read_into(client, &resource, &mut buf)) {
                Ok(()) => return Ok(buf),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(RemoteError::BlobMissing {
                        digest: d.digest,
                        url: client.url().to_string(),
                    })
                }
                // Turned away (too many calls at once): the same again, from where it was.
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted
                        && client.pause_when_exhausted(&mut refused) =>
                {
                    continue
                }
                Err(s) if transient(s.code()) && attempt + 1 < ATTEMPTS => {}
                Err(s) => {
                    return Err(RemoteError::BlobRead {
                        digest: d.digest,
                        url: client.url().to_string(),
                        source: Status::from(s),
                    })
                }
            }
            attempt += 1;
            // A server that sends more than the blob holds is caught by verification; stop
            // resuming past the end.
            if buf.len() as u64 >= d.size {
                return Ok(buf);
            }
        }
    }
}

async fn write_from(
    client: &Client,
    resource: &str,
    data: &Arc<Vec<u8>>,
    offset: u64,
) -> Result<i64, tonic::Status> {
    let data = Arc::clone(data);
    let resource = resource.to_string();
    let size = data.len();
    let start = offset as usize;
    // At least one message, so that an upload resumed at the very end still finishes.
    let offsets: Vec<usize> = if start >= size {
        vec![size]
    } else {
        (start..size).step_by(CHUNK).collect()
    };
    let requests = tokio_stream::iter(offsets.into_iter().enumerate().map(move |(i, o)| {
        let end = (o + CHUNK).min(size);
        WriteRequest {
            // The name is required on the first message of a call only.
            resource_name: if i == 0 {
                resource.clone()
            } else {
                String::new()
            },
            write_offset: o as i64,
            finish_write: end == size,
            data: data[o..end].to_vec(),
        }
    }));
    let resp = client.bytestream().write(requests).await?;
    Ok(resp.into_inner().committed_size)
}

async fn read_into(
    client: &Client,
    resource: &str,
    buf: &mut Vec<u8>,
) -> Result<(), tonic::Status> {
    let req = ReadRequest {
        resource_name: resource.to_string(),
        read_offset: buf.len() as i64,
        read_limit: 0,
    };
    let mut stream = client.bytestream().read(req).await?.into_inner();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?.data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(size: u64, tag: u8) -> BlobDigest {
        BlobDigest {
            digest: crate::digest::Digest::of(&[tag]),
            size,
        }
    }

    #[test]
    fn entry_length_matches_prost() {
        for size in [0usize, 1, 127, 128, 70_000] {
            let data = vec![7u8; size];
            let d = BlobDigest::of(&data);
            let req = reapi::BatchUpdateBlobsRequest {
                requests: vec![reapi::batch_update_blobs_request::Request {
                    digest: Some(d.to_proto()),
                    data,
                    compressor: 0,
                }],
                ..Default::default()
            };
            assert_eq!(batch_entry_len(&d), req.encoded_len() as u64, "size {size}");
        }
    }

    #[test]
    fn batches_stay_under_the_limit_and_large_blobs_stream() {
        let limit = 10_000;
        let blobs: Vec<_> = (0..20).map(|i| blob(900 + i * 10, i as u8)).collect();
        let mut all = blobs.clone();
        all.push(blob(20_000, 99));
        let (batches, large) = pack(&all, limit);
        assert_eq!(large, [blob(20_000, 99)]);
        let packed: Vec<_> = batches.iter().flatten().copied().collect();
        assert_eq!(
            packed, blobs,
            "every small blob in exactly one batch, in order"
        );
        for b in &batches {
            let total: u64 = b.iter().map(batch_entry_len).sum();
            assert!(total <= limit, "batch of {total} bytes");
        }
        assert!(batches.len() >= 2);
    }

    #[test]
    fn upload_ids_look_like_uuids() {
        let id = upload_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, upload_id());
    }
}
