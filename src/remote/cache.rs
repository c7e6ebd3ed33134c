//! The remote cache as the executor sees it: three blocking calls.
//!
//! - [`RemoteCache::connect`] reads the server's capabilities and refuses one without SHA-256.
//! - [`RemoteCache::lookup`] before running an action: `GetActionResult`, then every output
//!   (and stderr/stdout) is fetched from the CAS and verified against its digest. A result is
//!   returned only if the action succeeded and every declared output is a file in it; a result
//!   whose blobs the server no longer holds is a miss. Bytes that do not match their digest are
//!   an error ([`RemoteError::is_integrity`]), never a result.
//! - [`RemoteCache::upload`] after a successful local run: outputs, stdout/stderr, the Action
//!   and the Command go to the CAS (only what the server lacks), then `UpdateActionResult`.
//!   On a server that refuses updates this uploads nothing and says so.

use std::path::PathBuf;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;

use super::action::{EncodedAction, RemoteAction};
use super::action_cache;
use super::blob::BlobDigest;
use super::capabilities::Capabilities;
use super::cas::{Cas, Transfer};
use super::client::Client;
use super::config::RemoteConfig;
use super::error::RemoteError;
use crate::digest::Digest;

/// One output of a local run, to upload.
#[derive(Clone, Debug)]
pub struct LocalOutput {
    /// As named in [`RemoteAction::outputs`].
    pub path: String,
    /// Where the file is on disk now.
    pub file: PathBuf,
    pub executable: bool,
    /// Set for an output the server already holds and this machine does not (one a remote
    /// run produced and left there): named by it, never read.
    pub known: Option<BlobDigest>,
}

/// A successful local run of an action.
#[derive(Clone, Debug, Default)]
pub struct LocalRun {
    pub outputs: Vec<LocalOutput>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One output of a remote result, already verified; or, when the caller left it in the CAS
/// ([`RemoteCache::lookup_leaving`]), only named: `left`, no bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOutput {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
    pub bytes: Vec<u8>,
    pub left: bool,
}

/// A verified hit, outputs in the order of [`RemoteAction::outputs`] (sorted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteResult {
    pub outputs: Vec<RemoteOutput>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What [`RemoteCache::upload`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uploaded {
    Stored(Transfer),
    /// The server does not accept action-cache updates.
    ReadOnly,
}

pub struct RemoteCache {
    client: Client,
    capabilities: Capabilities,
    cas: Cas,
}

impl RemoteCache {
    pub fn connect(cfg: &RemoteConfig) -> Result<RemoteCache, RemoteError> {
        let client = Client::connect(cfg)?;
        let capabilities = Capabilities::fetch(&client)?;
        capabilities.require_cache(client.url())?;
        Ok(RemoteCache {
            cas: Cas::new(capabilities.batch_limit()),
            client,
            capabilities,
        })
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The Action digest `action` is cached under on this server.
    pub fn action_digest(&self, action: &RemoteAction) -> Result<BlobDigest, RemoteError> {
        Ok(self.encode(action)?.digest)
    }

    pub(super) fn encode(&self, action: &RemoteAction) -> Result<EncodedAction, RemoteError> {
        action.encode(self.capabilities.output_paths())
    }

    pub fn lookup(&self, action: &RemoteAction) -> Result<Option<RemoteResult>, RemoteError> {
        self.lookup_leaving(action, &[])
    }

    /// [`RemoteCache::lookup`], fetching none of the outputs named in `leave`: those stay in the
    /// CAS (REAPI has the server keep a result's blobs while it serves the result), named by
    /// digest, until something here needs their bytes.
    pub fn lookup_leaving(
        &self,
        action: &RemoteAction,
        leave: &[String],
    ) -> Result<Option<RemoteResult>, RemoteError> {
        let enc = self.encode(action)?;
        let Some(result) = action_cache::get(&self.client, enc.digest)? else {
            return Ok(None);
        };
        if result.exit_code != 0 {
            return Ok(None);
        }
        self.fetch_outputs(&enc, &result, leave)
    }

    /// Blobs from the CAS, each verified against its digest (`kiln worker`'s inputs).
    pub fn read_blobs(
        &self,
        blobs: &[BlobDigest],
    ) -> Result<std::collections::HashMap<BlobDigest, Vec<u8>>, RemoteError> {
        self.cas.read(&self.client, blobs)
    }

    /// Which of `blobs` the server lacks.
    pub fn find_missing(&self, blobs: &[BlobDigest]) -> Result<Vec<BlobDigest>, RemoteError> {
        self.cas.find_missing(&self.client, blobs)
    }

    /// Blobs into the CAS, only those the server lacks (`kiln worker`'s outputs).
    pub fn upload_blobs(&self, blobs: Vec<(BlobDigest, Vec<u8>)>) -> Result<Transfer, RemoteError> {
        self.cas.upload(&self.client, blobs)
    }

    /// Every blob this connection sent to the CAS so far.
    pub fn sent(&self) -> Transfer {
        self.cas.sent()
    }

    /// The connection, for the Bots calls of `kiln worker`.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, blob store and capabilities, for [`super::execute`].
    pub(super) fn parts(&self) -> (&Client, &Cas, &Capabilities) {
        (&self.client, &self.cas, &self.capabilities)
    }

    /// Every declared output (and stdout/stderr) of `result`, fetched and verified; None when
    /// the result lacks an output or the server lacks one of its blobs.
    pub(super) fn fetch_outputs(
        &self,
        enc: &EncodedAction,
        result: &reapi::ActionResult,
        leave: &[String],
    ) -> Result<Option<RemoteResult>, RemoteError> {
        let what = format!("the action result of {}", enc.digest.digest);
        let mut wanted = Vec::new();
        let mut files = Vec::new();
        for path in &enc.outputs {
            let Some(f) = result.output_files.iter().find(|f| &f.path == path) else {
                return Ok(None);
            };
            let blob = BlobDigest::from_proto(f.digest.as_ref(), &what)?;
            // A server may inline contents although none were asked for; they are checked
            // like fetched bytes.
            if !f.contents.is_empty() {
                blob.verify(&what, &f.contents)?;
            }
            if !leave.contains(path) {
                wanted.push(blob);
            }
            files.push((path, blob, f.is_executable, f.contents.clone()));
        }
        let stdout = std_blob(result.stdout_digest.as_ref(), &result.stdout_raw, &what)?;
        let stderr = std_blob(result.stderr_digest.as_ref(), &result.stderr_raw, &what)?;
        wanted.extend(stdout.iter().chain(stderr.iter()).copied());
        let inline: Vec<BlobDigest> = files
            .iter()
            .filter(|f| !f.3.is_empty())
            .map(|f| f.1)
            .collect();
        wanted.retain(|b| !inline.contains(b));
        let blobs = match self.cas.read(&self.client, &wanted) {
            Ok(b) => b,
            // Evicted between the two calls, or never uploaded: the result cannot be served.
            Err(RemoteError::BlobMissing { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Two outputs with equal contents share one blob, so blobs are copied out, not moved.
        let take = |b: &BlobDigest| blobs.get(b).cloned().unwrap_or_default();
        let outputs = files
            .into_iter()
            .map(|(path, blob, executable, contents)| {
                let left = leave.contains(path) && contents.is_empty();
                RemoteOutput {
                    path: path.clone(),
                    digest: blob.digest,
                    size: blob.size,
                    executable,
                    bytes: if left {
                        Vec::new()
                    } else if contents.is_empty() {
                        take(&blob)
                    } else {
                        contents
                    },
                    left,
                }
            })
            .collect();
        let stdout = stdout.map_or_else(|| result.stdout_raw.clone(), |b| take(&b));
        let stderr = stderr.map_or_else(|| result.stderr_raw.clone(), |b| take(&b));
        Ok(Some(RemoteResult {
            outputs,
            stdout,
            stderr,
        }))
    }

    pub fn upload(&self, action: &RemoteAction, run: &LocalRun) -> Result<Uploaded, RemoteError> {
        if !self.capabilities.action_cache_updates {
            return Ok(Uploaded::ReadOnly);
        }
        let enc = self.encode(action)?;
        let mut blobs = vec![
            (enc.digest, enc.action.clone()),
            (enc.command_digest, enc.command.clone()),
        ];
        let mut output_files = Vec::new();
        for o in &run.outputs {
            if !enc.outputs.contains(&o.path) {
                return Err(RemoteError::OutputPath {
                    path: o.path.clone(),
                    reason: "the action does not declare it",
                });
            }
            if let Some(blob) = o.known {
                output_files.push(reapi::OutputFile {
                    path: o.path.clone(),
                    digest: Some(blob.to_proto()),
                    is_executable: o.executable,
                    ..Default::default()
                });
                continue;
            }
            let bytes = std::fs::read(&o.file).map_err(|source| RemoteError::ReadOutput {
                path: o.file.clone(),
                source,
            })?;
            let blob = BlobDigest::of(&bytes);
            output_files.push(reapi::OutputFile {
                path: o.path.clone(),
                digest: Some(blob.to_proto()),
                is_executable: o.executable,
                ..Default::default()
            });
            blobs.push((blob, bytes));
        }
        output_files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut result = reapi::ActionResult {
            output_files,
            exit_code: 0,
            ..Default::default()
        };
        if !run.stdout.is_empty() {
            let b = BlobDigest::of(&run.stdout);
            result.stdout_digest = Some(b.to_proto());
            blobs.push((b, run.stdout.clone()));
        }
        if !run.stderr.is_empty() {
            let b = BlobDigest::of(&run.stderr);
            result.stderr_digest = Some(b.to_proto());
            blobs.push((b, run.stderr.clone()));
        }
        let transfer = self.cas.upload(&self.client, blobs)?;
        action_cache::update(&self.client, enc.digest, result)?;
        Ok(Uploaded::Stored(transfer))
    }
}

/// The digest of stdout or stderr, or `None` when it is empty or sent inline (then verified).
fn std_blob(
    digest: Option<&reapi::Digest>,
    raw: &[u8],
    what: &str,
) -> Result<Option<BlobDigest>, RemoteError> {
    let Some(d) = digest else { return Ok(None) };
    let blob = BlobDigest::from_proto(Some(d), what)?;
    if !raw.is_empty() {
        blob.verify(what, raw)?;
        return Ok(None);
    }
    Ok(Some(blob).filter(|b| b.size > 0))
}
