//! Outputs left in the remote CAS (issue 11's "downloaded only when needed"): a C++ compile
//! served by the remote cache brings its depfile here (dependency discovery reads it) but not
//! its object, which only a link or an archive reads. The object is named by digest in the
//! build's [`LeftOutputs`], and its path in `out/` is removed, so nothing stale can be read in
//! its place. While the build runs:
//! - its digest answers the keys of the actions that read it ([`Executor::digest`]), and its
//!   size and mode the input roots of those that run remotely: neither needs the bytes;
//! - an action about to run *here* first fetches every left input it reads into the local CAS
//!   and `out/`, verified against its digest ([`Executor::fetch_left_inputs`]); when the remote
//!   no longer has it (evicted, unreachable, damaged), the action that produced it runs here
//!   instead, so a lost blob costs a compile, never a wrong or failed build. So does a left
//!   input a remote action needs that the server reports missing: it is made here and sent.
//!
//! What is still left when the build ends is recorded in `out/.kiln/state.json`, so a no-op
//! build with the remote is fresh without asking it anything; one without a remote finds the
//! object missing and compiles it. Anything that puts a file in place takes its path out of
//! the map ([`Executor::placed`]), so a left digest never stands for a file that is there.
//!
//! [`Executor::digest`]: super::Executor

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::plan::{Action, ActionOutput, Discover, Plan};
use super::state::{LeftRecord, State};
use super::{io_ctx, ActionError, Executor};
use crate::digest::Digest;
use crate::remote::BlobDigest;

/// An output in the remote CAS only.
#[derive(Clone, Debug)]
pub struct LeftOutput {
    pub blob: BlobDigest,
    pub executable: bool,
    /// The action that produced it, to run here should the blob be lost.
    pub producer: Action,
}

/// An output of a remote run left in the CAS, by its staging name.
#[derive(Clone, Debug)]
pub struct LeftName {
    pub name: String,
    pub blob: BlobDigest,
}

/// The outputs a build left in the remote CAS, by workspace-relative path.
#[derive(Debug, Default)]
pub struct LeftOutputs {
    files: Mutex<HashMap<PathBuf, LeftOutput>>,
}

impl LeftOutputs {
    pub fn insert(&self, path: PathBuf, left: LeftOutput) {
        self.files.lock().unwrap().insert(path, left);
    }

    pub fn get(&self, path: &Path) -> Option<LeftOutput> {
        self.files.lock().unwrap().get(path).cloned()
    }

    pub fn remove(&self, path: &Path) {
        self.files.lock().unwrap().remove(path);
    }

    pub fn len(&self) -> usize {
        self.files.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The outputs an earlier build left, from its state, each with the action of `plan` that
    /// produces it (a record no action produces any more is dropped).
    pub fn load(&self, records: &BTreeMap<PathBuf, LeftRecord>, plan: &Plan) {
        let mut files = self.files.lock().unwrap();
        for action in &plan.actions {
            for o in &action.outputs {
                if let Some(r) = records.get(&o.dest) {
                    files.insert(
                        o.dest.clone(),
                        LeftOutput {
                            blob: BlobDigest {
                                digest: r.digest,
                                size: r.size,
                            },
                            executable: r.executable,
                            producer: action.clone(),
                        },
                    );
                }
            }
        }
    }

    /// What is still left, for the state.
    pub fn records(&self) -> BTreeMap<PathBuf, LeftRecord> {
        self.files
            .lock()
            .unwrap()
            .iter()
            .map(|(p, l)| {
                (
                    p.clone(),
                    LeftRecord {
                        digest: l.blob.digest,
                        size: l.blob.size,
                        executable: l.executable,
                    },
                )
            })
            .collect()
    }
}

/// The staging names of `action`'s outputs a remote hit may leave in the CAS: a C++ compile's
/// object (its depfile is read here).
pub fn may_leave(action: &Action) -> Vec<String> {
    let Discover::Depfile(depfile) = &action.discover else {
        return Vec::new();
    };
    action
        .outputs
        .iter()
        .filter(|o| &o.name != depfile && o.dest.extension().is_some_and(|e| e == "o"))
        .map(|o| o.name.clone())
        .collect()
}

impl Executor<'_> {
    /// The output at workspace-relative `path` when this build left it in the remote CAS.
    pub(super) fn left(&self, path: &Path) -> Option<LeftOutput> {
        let rel = path.strip_prefix(self.root).unwrap_or(path);
        self.remote?.left_outputs().get(rel)
    }

    /// Before `action` runs here: every input it reads that is only in the remote CAS, fetched
    /// (verified) into the local CAS and put in place; one the remote cannot give is made again
    /// by running its producer here.
    pub(super) fn fetch_left_inputs(
        &self,
        action: &Action,
        state: &Mutex<State>,
    ) -> Result<(), ActionError> {
        let Some(remote) = self.remote else {
            return Ok(());
        };
        for input in &action.inputs {
            let Some(left) = self.left(input) else {
                continue;
            };
            let dest = self.root.join(input);
            let fetched = remote.fetch_blob(left.blob).and_then(|bytes| {
                let digest = self.cache.put_bytes(&bytes).ok()?;
                (digest == left.blob.digest).then_some(digest)
            });
            match fetched {
                Some(digest) => {
                    self.cache
                        .restore(&digest, &dest, left.executable)
                        .map_err(|e| ActionError::Io {
                            context: format!("restoring {} from the cache", input.display()),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                    self.stat.forget(&dest);
                }
                None => self.remake_left(input, &left, state)?,
            }
            remote.left_outputs().remove(input);
            remote.fetched_later();
        }
        Ok(())
    }

    /// A left output the remote can no longer give, made again here by its producer.
    pub(super) fn remake_left(
        &self,
        path: &Path,
        left: &LeftOutput,
        state: &Mutex<State>,
    ) -> Result<(), ActionError> {
        eprintln!(
            "kiln: the remote no longer has {} ({}); running `{}` here",
            path.display(),
            left.blob.digest,
            left.producer.id
        );
        self.rerun_here(&left.producer, state)
    }

    /// Runs `action` here, whatever the caches hold, and puts its outputs in place.
    fn rerun_here(&self, action: &Action, state: &Mutex<State>) -> Result<(), ActionError> {
        let argv = self.argv(action)?;
        let base = self.base_key_for(action, &argv)?;
        let cmd = self.command_line(action)?;
        let staging = self.staging(action);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(io_ctx(format!("creating {}", staging.display())))?;
        let stderr = self.run_locally(&cmd, &staging)?;
        self.finish_run(action, &argv, base, &cmd, &staging, stderr, &[], state)
            .map(|_| ())
    }

    /// Records `output` of `action` as left in the CAS as `blob`, removing whatever its path
    /// in `out/` held, so nothing stale can be read in its place.
    pub(super) fn leave_output(&self, action: &Action, output: &ActionOutput, blob: BlobDigest) {
        let Some(remote) = self.remote else {
            return;
        };
        let dest = self.root.join(&output.dest);
        let _ = std::fs::remove_file(&dest);
        self.stat.forget(&dest);
        remote.leave(
            output.dest.clone(),
            LeftOutput {
                blob,
                executable: output.executable,
                producer: action.clone(),
            },
        );
    }

    /// `path` (workspace-relative) now holds a real file: it is no longer left.
    pub(super) fn placed(&self, path: &Path) {
        if let Some(remote) = self.remote {
            remote.left_outputs().remove(path);
        }
    }

    /// The digest of `path` when this build left it in the remote CAS.
    pub(super) fn left_digest(&self, path: &Path) -> Option<Digest> {
        self.left(path).map(|l| l.blob.digest)
    }
}
