//! The remote cache in an action's lifecycle (issue 11): looked up when the local action cache
//! misses, filled after a local run succeeds. The client is [`crate::remote::RemoteCache`].
//!
//! A kiln action is two REAPI actions, as the local cache has a base key and full keys (ccache's
//! direct mode):
//! - the *dependency manifest*: the declared inputs (what the base key covers) and one output,
//!   [`DEPS_OUTPUT`], holding the dependencies runs discovered (depfile, ALI) with their
//!   digests, as the local [`ActionEntry`] holds them: up to [`MAX_VARIANTS`] sets, newest
//!   first, so branches whose headers differ do not push each other out;
//! - the *action*: the declared inputs plus the workspace's discovered dependencies in the input
//!   root, the digest of the files outside the workspace (system headers, the GNAT runtime) as
//!   the platform property [`HOST_DEPS_PROPERTY`], and the action's real outputs. Its key thus covers
//!   what the local full key covers.
//!
//! A lookup reads the manifest, takes the sets whose every dependency has that digest here (as a
//! local entry's must), then looks up the action for each until one is there; the outputs (verified by the client) go
//! into the local CAS with a local entry holding the discovered dependencies, and are restored
//! into `out/` by [`Executor::restore`], the local cache's own path (hashed again while copied,
//! renamed into place). So a machine that got everything from the remote has the same local
//! cache and `out/` state as one that built it: its no-op and incremental builds are the same.
//! An upload stores the action first and then its manifest (the set just discovered put before
//! the ones the server already had), so a manifest never names an action result that is not
//! there yet. Two machines writing one manifest at once may lose a set: a later miss, no harm.
//!
//! Image layers go to the same CAS ([`LayerTier`] for [`Remote`]): each is an action without
//! inputs named by its layer cache key, its facts and gzip blob the outputs, looked up before
//! the image phase compresses a layer and stored after it does.
//!
//! Falls back, never lies: the first error of a lookup (unreachable, UNAVAILABLE, a blob that
//! does not match its digest) turns the remote off for the rest of the build; the action then
//! runs locally like every later one. An upload's error (a read-only credential, a full
//! server) turns off only uploads, so hits are still served. The first failure is kept for one
//! warning at the end. A result whose outputs do not verify never reaches `out/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::plan::Action;
use super::state::State;
use super::{io_ctx, lazy, ActionError, Executor};
use crate::cache::key::{allowed_env, full_key, KEY_VERSION};
use crate::cache::{ActionEntry, OutputEntry};
use crate::debian::sandbox::WORKSPACE;
use crate::digest::{Digest, Hasher};
use crate::layer::cache::LayerTier;
use crate::layer::Layer;
use crate::remote::merkle;
use crate::remote::toolchain_root::{
    self, RootPins, CONTAINER_IMAGE_PROPERTY, ROOT_PROPERTY, SANDBOX_BWRAP, SANDBOX_PROPERTY,
};
use crate::remote::{
    BlobDigest, Executed, InputFile, LocalOutput, LocalRun, RemoteAction, RemoteCache,
    RemoteConfig, RemoteError, RemoteResult, Uploaded,
};
use crate::toolchain::hermetic::HermeticRoot;
use crate::toolchain::{image, ToolchainSpec};

/// The manifest's one output.
pub const DEPS_OUTPUT: &str = "kiln-deps.json";
/// Dependency sets a manifest keeps.
pub const MAX_VARIANTS: usize = 8;

/// One set of discovered dependencies with their digests.
type Deps = Vec<(String, Digest)>;
/// Platform property telling the manifest from the action.
pub const ROLE_PROPERTY: &str = "kiln-role";
/// Platform property naming the action kind (compile, link, ...), which the local base key
/// covers too.
pub const KIND_PROPERTY: &str = "kiln-kind";
/// Platform property: the digest of the inputs and discovered dependencies outside the
/// workspace (which the input root cannot hold).
pub const HOST_DEPS_PROPERTY: &str = "kiln-host-deps";

/// The remote cache of one build: connected on first use (a build with nothing to do never
/// connects), turned off by its first failure.
pub struct Remote {
    config: RemoteConfig,
    client: OnceLock<Option<RemoteCache>>,
    /// No more calls of any kind.
    off: AtomicBool,
    /// No more uploads.
    uploads_off: AtomicBool,
    /// No more remote execution (also set when the build did not ask for it).
    exec_off: AtomicBool,
    failure: Mutex<Option<RemoteFailure>>,
    uploads: AtomicUsize,
    /// Image layers served by the remote, and stored on it.
    layers_fetched: AtomicUsize,
    layers_stored: AtomicUsize,
    /// Toolchain .debs the remote served.
    debs_fetched: AtomicUsize,
    /// The pins blob of each toolchain root remote execution named, by set digest.
    pins: Mutex<BTreeMap<Digest, (BlobDigest, Vec<u8>)>>,
    /// Roots whose .debs this build has put in the CAS.
    debs: Mutex<std::collections::BTreeSet<Digest>>,
    /// Outputs of hits this build left in the CAS ([`lazy`]), and how many it left in all.
    left: lazy::LeftOutputs,
    outputs_left: AtomicUsize,
    fetched_later: AtomicUsize,
    /// The pushed toolchain image of each set whose toolchain file names one (None when the
    /// registry does not have it), asked once per build.
    images: Mutex<BTreeMap<Digest, Option<String>>>,
}

/// The first thing that went wrong with the remote in a build.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteFailure {
    /// `lookup` (the remote was not used from then on), `upload` (results stayed local) or
    /// `execute` (later actions ran locally).
    pub during: &'static str,
    pub error: String,
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.during {
            "upload" => write!(
                f,
                "remote cache not updated: {}; later results stay local",
                self.error
            ),
            "execute" => write!(
                f,
                "remote execution not used: {}; later actions run locally",
                self.error
            ),
            _ => write!(f, "remote cache not used: {}; built locally", self.error),
        }
    }
}

/// Which calls a failure turns off.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Lookup,
    Upload,
    /// Remote execution; its failure turns off only execution (lookups and uploads go on).
    Exec,
}

/// What the remote did in one build, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RemoteSummary {
    /// The server, credentials in the URL redacted.
    pub url: String,
    pub instance: String,
    /// Action results this build stored on the server.
    pub uploads: usize,
    /// Blobs (and their bytes) this build sent to the CAS: outputs, inputs of executed
    /// actions, layers and .debs; a second identical build sends none.
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    /// Image layers the server served (not compressed here), and layers stored on it.
    pub layers_fetched: usize,
    pub layers_stored: usize,
    /// Toolchain .debs the server served (a root materialised without a mirror).
    pub debs_fetched: usize,
    /// Outputs of remote hits left in the CAS (objects only links and archives read), and
    /// those of them fetched (or made again) after all, for an action run here.
    pub outputs_left: usize,
    pub outputs_fetched_later: usize,
    /// The first failure, after which the build went on without the remote (or without
    /// uploading).
    pub error: Option<RemoteFailure>,
}

impl Remote {
    pub fn new(config: RemoteConfig) -> Remote {
        let execute = config.execute;
        Remote {
            config,
            client: OnceLock::new(),
            off: AtomicBool::new(false),
            uploads_off: AtomicBool::new(false),
            exec_off: AtomicBool::new(!execute),
            failure: Mutex::new(None),
            uploads: AtomicUsize::new(0),
            layers_fetched: AtomicUsize::new(0),
            layers_stored: AtomicUsize::new(0),
            debs_fetched: AtomicUsize::new(0),
            pins: Mutex::new(BTreeMap::new()),
            debs: Mutex::new(std::collections::BTreeSet::new()),
            left: lazy::LeftOutputs::default(),
            outputs_left: AtomicUsize::new(0),
            fetched_later: AtomicUsize::new(0),
            images: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn summary(&self) -> RemoteSummary {
        let sent = self
            .client
            .get()
            .and_then(|c| c.as_ref())
            .map(|c| c.sent())
            .unwrap_or_default();
        RemoteSummary {
            blobs_uploaded: sent.blobs,
            bytes_uploaded: sent.bytes,
            url: self.config.redacted_url(),
            instance: self.config.instance_name.clone(),
            uploads: self.uploads.load(Ordering::SeqCst),
            layers_fetched: self.layers_fetched.load(Ordering::SeqCst),
            layers_stored: self.layers_stored.load(Ordering::SeqCst),
            debs_fetched: self.debs_fetched.load(Ordering::SeqCst),
            outputs_left: self.outputs_left.load(Ordering::SeqCst),
            outputs_fetched_later: self.fetched_later.load(Ordering::SeqCst),
            error: self.failure.lock().unwrap().clone(),
        }
    }

    fn fail(&self, call: Call, e: &RemoteError) {
        self.exec_off.store(true, Ordering::SeqCst);
        if call != Call::Exec {
            self.uploads_off.store(true, Ordering::SeqCst);
        }
        if call == Call::Lookup {
            self.off.store(true, Ordering::SeqCst);
        }
        let mut f = self.failure.lock().unwrap();
        if f.is_none() {
            *f = Some(RemoteFailure {
                during: match call {
                    Call::Lookup => "lookup",
                    Call::Upload => "upload",
                    Call::Exec => "execute",
                },
                error: crate::error::chain(e),
            });
        }
    }

    /// The canonical pins blob of `root`, encoded once per build.
    fn pins(&self, root: &HermeticRoot) -> (BlobDigest, Vec<u8>) {
        self.pins
            .lock()
            .unwrap()
            .entry(root.set)
            .or_insert_with(|| RootPins::new(root.packages()).encode())
            .clone()
    }

    /// The outputs this build left in the CAS.
    pub fn left_outputs(&self) -> &lazy::LeftOutputs {
        &self.left
    }

    /// Whether this build leaves outputs in the CAS ([`lazy`]): with remote execution, whose
    /// point is not to have the bytes here. A remote cache alone brings everything, so that
    /// the machine's local cache and `out/` are those of one that built it.
    pub(super) fn leaves_outputs(&self) -> bool {
        self.config.execute
    }

    /// A left output was needed here after all (fetched, or made again).
    pub(super) fn fetched_later(&self) {
        self.fetched_later.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn leave(&self, path: PathBuf, output: lazy::LeftOutput) {
        self.left.insert(path, output);
        self.outputs_left.fetch_add(1, Ordering::SeqCst);
    }

    /// A blob from the CAS, verified; None when the server does not hold it (not a failure of
    /// the remote), when it failed (which turns it off), or when it is off.
    pub(super) fn fetch_blob(&self, blob: BlobDigest) -> Option<Vec<u8>> {
        self.call(Call::Lookup, |c| match c.read_blobs(&[blob]) {
            Ok(mut got) => Ok(got.remove(&blob)),
            Err(RemoteError::BlobMissing { .. }) => Ok(None),
            Err(e) => Err(e),
        })?
    }

    /// Puts the .debs of `root` that this machine's Debian store holds into the CAS, once per
    /// set and build, only those the server lacks: a worker then materialises the root from
    /// the CAS without reaching a mirror (REAPI names a blob by the sha256 and size a pin
    /// records). Each is checked against its pin first; a .deb this machine does not keep (a
    /// root pulled from a toolchain image) is left to the worker's other sources.
    fn upload_debs(&self, root: &HermeticRoot, cache_dir: &Path) {
        // Held through the upload: an action naming the root waits until its .debs are there
        // (a worker without a mirror would otherwise be sent it too early).
        let mut uploaded = self.debs.lock().unwrap();
        if !uploaded.insert(root.set) {
            return;
        }
        let store = crate::toolchain::hermetic::downloads(cache_dir);
        let blobs: Vec<BlobDigest> = root
            .packages()
            .iter()
            .filter(|p| store.has(&p.sha256, p.size))
            .map(|p| BlobDigest {
                digest: p.sha256,
                size: p.size,
            })
            .collect();
        let Some(missing) = self.call(Call::Upload, |c| c.find_missing(&blobs)) else {
            return;
        };
        for blob in missing {
            let Ok(bytes) = std::fs::read(store.blob_path(&blob.digest)) else {
                continue;
            };
            if bytes.len() as u64 != blob.size || Digest::of(&bytes) != blob.digest {
                continue;
            }
            if self
                .call(Call::Upload, |c| c.upload_blobs(vec![(blob, bytes)]))
                .is_none()
            {
                return;
            }
        }
    }

    /// `docker://REGISTRY/REPOSITORY@sha256:…` of the toolchain image holding `root`, when the
    /// toolchain file names an `image` location and the registry has the set's image. Only a
    /// hint for workers that run actions in containers (kiln's own materialises the root from
    /// the pins), so a registry that does not answer leaves the property out, without a warning.
    fn container_image(&self, spec: &ToolchainSpec, root: &HermeticRoot) -> Option<String> {
        let location = spec.image.as_ref()?;
        self.images
            .lock()
            .unwrap()
            .entry(root.set)
            .or_insert_with(|| {
                image::pushed_reference(location, &spec.name, &root.set)
                    .ok()
                    .map(|r| format!("docker://{r}"))
            })
            .clone()
    }

    fn is_off(&self, call: Call) -> bool {
        match call {
            Call::Lookup => self.off.load(Ordering::SeqCst),
            Call::Upload => self.uploads_off.load(Ordering::SeqCst),
            Call::Exec => self.exec_off.load(Ordering::SeqCst),
        }
    }

    /// Runs `f` on the connected client; None when that kind of call is off or `f` failed
    /// (which turns it off). A failed connection is a lookup's failure, whoever made it.
    fn call<T>(
        &self,
        call: Call,
        f: impl FnOnce(&RemoteCache) -> Result<T, RemoteError>,
    ) -> Option<T> {
        if self.is_off(call) {
            return None;
        }
        let client = self
            .client
            .get_or_init(|| match RemoteCache::connect(&self.config) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.fail(Call::Lookup, &e);
                    None
                }
            })
            .as_ref()?;
        match f(client) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(call, &e);
                None
            }
        }
    }
}

/// An image layer as a REAPI action: no inputs, no command a worker could run (it is only ever
/// looked up and stored, never executed), the layer cache key as its one argument, and the
/// layer's facts and gzip blob as its outputs. The key covers every byte of the layer, so the
/// Action digest names the layer on any machine.
fn layer_action(key: &str) -> RemoteAction {
    RemoteAction {
        program: LAYER_PROGRAM.into(),
        argv: vec![key.to_string()],
        env: Vec::new(),
        working_directory: String::new(),
        inputs: Vec::new(),
        outputs: vec![LAYER_FACTS.into(), LAYER_BLOB.into()],
        toolchain: None,
        platform: vec![(ROLE_PROPERTY.to_string(), "layer".to_string())],
        salt: KEY_VERSION.to_string(),
        blobs: Vec::new(),
    }
}

/// The program name of [`layer_action`]s, and their two outputs.
pub const LAYER_PROGRAM: &str = "kiln-layer";
const LAYER_FACTS: &str = "layer.json";
const LAYER_BLOB: &str = "layer.tar.gz";

impl crate::debian::DebSource for Remote {
    /// A .deb this machine lacks, from the CAS (where machines that built with it put it); a
    /// blob the server does not hold is a miss, not a failure of the remote.
    fn deb(&self, sha256: &Digest, size: u64) -> Option<Vec<u8>> {
        let blob = BlobDigest {
            digest: *sha256,
            size,
        };
        let bytes = self.call(Call::Lookup, |c| match c.read_blobs(&[blob]) {
            Ok(mut got) => Ok(got.remove(&blob)),
            Err(RemoteError::BlobMissing { .. }) => Ok(None),
            Err(e) => Err(e),
        })??;
        self.debs_fetched.fetch_add(1, Ordering::SeqCst);
        Some(bytes)
    }
}

impl LayerTier for Remote {
    fn fetch(&self, key: &str) -> Option<(Layer, Vec<u8>)> {
        let hit = self.call(Call::Lookup, |c| c.lookup(&layer_action(key)))??;
        let output = |name: &str| hit.outputs.iter().find(|o| o.path == name);
        let facts: Layer = serde_json::from_slice(&output(LAYER_FACTS)?.bytes).ok()?;
        let blob = output(LAYER_BLOB)?.bytes.clone();
        self.layers_fetched.fetch_add(1, Ordering::SeqCst);
        Some((facts, blob))
    }

    fn store(&self, key: &str, facts: &Path, blob: &Path) {
        let file = |path: &str, file: &Path| LocalOutput {
            path: path.to_string(),
            file: file.to_path_buf(),
            executable: false,
            known: None,
        };
        let run = LocalRun {
            outputs: vec![file(LAYER_FACTS, facts), file(LAYER_BLOB, blob)],
            ..LocalRun::default()
        };
        if let Some(Uploaded::Stored(_)) =
            self.call(Call::Upload, |c| c.upload(&layer_action(key), &run))
        {
            self.layers_stored.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Executor<'_> {
    /// An input file of the remote action: workspace-relative path, digest, size, mode.
    fn input_file(&self, path: &str, digest: Digest) -> Result<InputFile, ActionError> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(left) = self.left(Path::new(path)) {
            return Ok(InputFile {
                path: path.to_string(),
                blob: left.blob,
                executable: left.executable,
            });
        }
        let meta =
            std::fs::metadata(self.root.join(path)).map_err(io_ctx(format!("reading {path}")))?;
        Ok(InputFile {
            path: path.to_string(),
            blob: BlobDigest {
                digest,
                size: meta.len(),
            },
            executable: meta.permissions().mode() & 0o100 != 0,
        })
    }

    /// The manifest when `deps` is None, else the action with those discovered dependencies.
    pub(super) fn remote_action(
        &self,
        action: &Action,
        argv: &[String],
        deps: Option<&[(String, Digest)]>,
    ) -> Result<RemoteAction, ActionError> {
        let tc = &self.toolchains[&action.toolchain];
        let mut inputs = Vec::new();
        // Files the input root cannot hold (absolute, or reached through `..`: system headers,
        // the GNAT runtime, a sibling checkout) enter the key as one digest.
        let mut host = Hasher::new();
        let mut add = |path: &str, digest: Digest| -> Result<(), ActionError> {
            if merkle::is_root_path(path) {
                inputs.push(self.input_file(path, digest)?);
            } else {
                host.update(format!("{} {path} {digest}\n", path.len()).as_bytes());
            }
            Ok(())
        };
        for input in &action.inputs {
            add(&input.to_string_lossy(), self.digest(input)?)?;
        }
        let outputs = match deps {
            None => vec![DEPS_OUTPUT.to_string()],
            Some(deps) => {
                for (p, d) in deps {
                    add(p, *d)?;
                }
                action.outputs.iter().map(|o| o.name.clone()).collect()
            }
        };
        let role = if deps.is_some() {
            "action"
        } else {
            "dependencies"
        };
        let platform = vec![
            (KIND_PROPERTY.to_string(), action.kind.to_string()),
            (ROLE_PROPERTY.to_string(), role.to_string()),
            (HOST_DEPS_PROPERTY.to_string(), host.finish().to_string()),
        ];
        Ok(RemoteAction {
            program: action.program.clone(),
            argv: argv.to_vec(),
            env: allowed_env()
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            // gnatbind runs in its staging directory; a stable name stands for it.
            working_directory: if action.in_staging {
                "$OUT".into()
            } else {
                String::new()
            },
            inputs,
            outputs,
            toolchain: Some(tc.fingerprint),
            platform,
            salt: KEY_VERSION.to_string(),
            blobs: Vec::new(),
        })
    }

    /// After a local miss: the action's outputs from the remote cache, put in place and recorded
    /// like a local hit. Some(stderr) on a hit; None on a miss, with the remote off, or after a
    /// remote failure (recorded for the warning).
    pub(super) fn remote_restore(
        &self,
        action: &Action,
        argv: &[String],
        base: &Digest,
        state: &Mutex<State>,
    ) -> Result<Option<String>, ActionError> {
        let Some(remote) = self.remote else {
            return Ok(None);
        };
        let manifest = self.remote_action(action, argv, None)?;
        let Some(variants) = remote.call(Call::Lookup, |c| c.lookup(&manifest)) else {
            return Ok(None);
        };
        // As for a local entry: every discovered dependency must still be what it was.
        let mut hit = None;
        for deps in parse_variants(variants.as_ref()) {
            if !self.deps_match(&deps) {
                continue;
            }
            let full_action = self.remote_action(action, argv, Some(&deps))?;
            let leave = if remote.leaves_outputs() {
                lazy::may_leave(action)
            } else {
                Vec::new()
            };
            match remote.call(Call::Lookup, |c| c.lookup_leaving(&full_action, &leave)) {
                Some(Some(result)) => {
                    hit = Some((deps, result));
                    break;
                }
                Some(None) => continue,
                None => return Ok(None),
            }
        }
        let Some((deps, result)) = hit else {
            return Ok(None);
        };
        let Some(entry) = self.store_remote_result(action, &deps, &result)? else {
            return Ok(None);
        };
        let full = full_key(base, &deps);
        let outputs = if result.outputs.iter().any(|o| o.left) {
            // No local entry: its blobs are not all here.
            self.restore_leaving(action, &entry, &result)?
        } else {
            self.cache
                .put_entry(base, &full, &entry)
                .map_err(io_ctx("writing the action cache"))?;
            let Some(outputs) = self.restore(action, base, &full, &entry)? else {
                return Ok(None);
            };
            outputs
        };
        state
            .lock()
            .unwrap()
            .record(&action.id, *base, &deps, outputs);
        Ok(Some(entry.stderr))
    }

    /// The outputs of a hit that left some in the remote CAS: those fetched restored into
    /// `out/` as a local hit's, each left one's path in `out/` removed and recorded in the
    /// build's [`LeftOutputs`](lazy::LeftOutputs) (see [`lazy`]).
    fn restore_leaving(
        &self,
        action: &Action,
        entry: &ActionEntry,
        result: &RemoteResult,
    ) -> Result<Vec<(PathBuf, Digest)>, ActionError> {
        let mut outputs = Vec::new();
        for (spec, o) in action.outputs.iter().zip(&entry.outputs) {
            let dest = self.root.join(&spec.dest);
            let left = result
                .outputs
                .iter()
                .find(|r| r.path == spec.name && r.left);
            if let Some(r) = left {
                let blob = BlobDigest {
                    digest: r.digest,
                    size: r.size,
                };
                self.leave_output(action, spec, blob);
            } else {
                self.cache
                    .restore(&o.digest, &dest, o.executable)
                    .map_err(|e| ActionError::Io {
                        context: format!("restoring {} from the cache", spec.dest.display()),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                self.stat.forget(&dest);
                self.placed(&spec.dest);
            }
            outputs.push((spec.dest.clone(), o.digest));
        }
        Ok(outputs)
    }

    /// The remote outputs into the local CAS, as the entry a local run would have written.
    /// None when the result lacks an output (then it is not used).
    fn store_remote_result(
        &self,
        action: &Action,
        deps: &[(String, Digest)],
        result: &RemoteResult,
    ) -> Result<Option<ActionEntry>, ActionError> {
        let mut outputs = Vec::new();
        for spec in &action.outputs {
            let Some(o) = result.outputs.iter().find(|o| o.path == spec.name) else {
                return Ok(None);
            };
            let digest = if o.left {
                o.digest
            } else {
                self.cache
                    .put_bytes(&o.bytes)
                    .map_err(io_ctx(format!("storing {} in the cache", spec.name)))?
            };
            if digest != o.digest {
                return Ok(None);
            }
            outputs.push(OutputEntry {
                name: spec.name.clone(),
                digest,
                executable: spec.executable,
            });
        }
        Ok(Some(ActionEntry {
            deps: deps.to_vec(),
            outputs,
            stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        }))
    }

    /// After a successful local run whose outputs are in the local CAS: the action, then its
    /// manifest, to the remote cache. `staging` is the action's staging directory, still there.
    pub(super) fn remote_store(
        &self,
        action: &Action,
        argv: &[String],
        entry: &ActionEntry,
        staging: &Path,
    ) -> Result<(), ActionError> {
        let Some(remote) = self.remote else {
            return Ok(());
        };
        if remote.is_off(Call::Upload) {
            return Ok(());
        }
        let full_action = self.remote_action(action, argv, Some(&entry.deps))?;
        // A machine restoring this build from the remote needs the toolchain root too.
        if let Some(root) = &self.toolchains[&action.toolchain].root {
            remote.upload_debs(root, self.cache.root());
        }
        let run = LocalRun {
            outputs: entry
                .outputs
                .iter()
                .zip(&action.outputs)
                .map(|(o, spec)| LocalOutput {
                    path: o.name.clone(),
                    file: self.cache.blob_path(&o.digest),
                    executable: o.executable,
                    // Left on the server by the remote run that made it.
                    known: self.left(&spec.dest).map(|l| l.blob),
                })
                .collect(),
            stdout: Vec::new(),
            stderr: entry.stderr.clone().into_bytes(),
        };
        match remote.call(Call::Upload, |c| c.upload(&full_action, &run)) {
            Some(Uploaded::Stored(_)) => {}
            // Off, failed, or a server that takes no updates: no manifest either.
            _ => return Ok(()),
        }
        let manifest = self.remote_action(action, argv, None)?;
        let Some(known) = remote.call(Call::Upload, |c| c.lookup(&manifest)) else {
            return Ok(());
        };
        let mut variants = vec![entry.deps.clone()];
        for v in parse_variants(known.as_ref()) {
            if variants.len() < MAX_VARIANTS && !variants.contains(&v) {
                variants.push(v);
            }
        }
        let deps_file = staging.join(DEPS_OUTPUT);
        let bytes = serde_json::to_vec(&variants).map_err(|e| ActionError::Io {
            context: "encoding the discovered dependencies".into(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&deps_file, bytes)
            .map_err(io_ctx(format!("writing {}", deps_file.display())))?;
        let run = LocalRun {
            outputs: vec![LocalOutput {
                path: DEPS_OUTPUT.into(),
                file: deps_file,
                executable: false,
                known: None,
            }],
            ..LocalRun::default()
        };
        if let Some(Uploaded::Stored(_)) = remote.call(Call::Upload, |c| c.upload(&manifest, &run))
        {
            remote.uploads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// The dependency sets of a manifest (none when there is none, or it is not kiln's), at most
/// [`MAX_VARIANTS`] of them.
fn parse_variants(manifest: Option<&RemoteResult>) -> Vec<Deps> {
    let Some(out) = manifest.and_then(|m| m.outputs.first()) else {
        return Vec::new();
    };
    let mut variants: Vec<Deps> = serde_json::from_slice(&out.bytes).unwrap_or_default();
    variants.truncate(MAX_VARIANTS);
    variants
}

/// Files under the directories a compile searches (its `-I` directories, its sources'
/// directories, GNAT's source directories), workspace-relative, outside `out/`: what a remote
/// worker's input root must hold so headers and specs the compiler may open are there. At most
/// [`MAX_SEARCH_FILES`].
fn search_files(root: &Path, action: &Action) -> Vec<String> {
    use super::plan::Discover;
    let mut dirs: Vec<PathBuf> = Vec::new();
    if matches!(action.discover, Discover::None) {
        return Vec::new();
    }
    for a in &action.argv {
        if let Some(d) = a.strip_prefix("-I").filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
    }
    for i in &action.inputs {
        if let Some(p) = i.parent() {
            dirs.push(p.to_path_buf());
        }
    }
    if let Discover::Ali(_, ds) = &action.discover {
        dirs.extend(ds.iter().cloned());
    }
    let out = crate::workspace::OutDir::relative();
    let out_root = out.path().to_path_buf();
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut pending: Vec<PathBuf> = dirs
        .into_iter()
        .filter(|d| d.is_relative() && merkle::is_root_path(&d.to_string_lossy()))
        .collect();
    while let Some(d) = pending.pop() {
        if d.starts_with(&out_root) || !seen.insert(d.clone()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(root.join(&d)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let rel = d.join(&name);
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(rel),
                Ok(t) if t.is_file() => files.push(rel.to_string_lossy().into_owned()),
                _ => {}
            }
            if files.len() >= MAX_SEARCH_FILES {
                return files;
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Most files [`search_files`] adds to one input root.
pub const MAX_SEARCH_FILES: usize = 20_000;

impl Executor<'_> {
    /// After both caches missed: the action run by a remote worker (`--remote-exec`), its
    /// verified outputs written into the staging directory for the local run's tail to take
    /// (discovered dependencies read from the depfile or ALI, CAS, action cache, upload, rename
    /// into `out/`). Some(stderr) when the worker ran it successfully; None when execution is
    /// off, the toolchain is a Debian one (its root does not travel yet), the command failed
    /// there (then it runs here, for the diagnostics), or the remote failed (recorded for the
    /// build's one warning).
    ///
    /// A host toolchain's action names its fingerprint (`kiln-toolchain`), which only a worker
    /// with that toolchain installed advertises; `$WS` is left for the worker. A Debian
    /// toolchain's action is the command the local sandbox runs (program inside the root, `$WS`
    /// as `/ws`, the sandbox's environment) with the root's pins in the CAS
    /// ([`crate::remote::toolchain_root`]) named by `kiln-toolchain-root` and `kiln-sandbox=bwrap`,
    /// so any worker that runs bubblewrap can materialise the root and run it the same way.
    pub(super) fn remote_execute(
        &self,
        action: &Action,
        argv: &[String],
        staging: &Path,
        state: &Mutex<State>,
    ) -> Result<Option<(String, Vec<lazy::LeftName>)>, ActionError> {
        let Some(remote) = self.remote else {
            return Ok(None);
        };
        let tc = &self.toolchains[&action.toolchain];
        if remote.is_off(Call::Exec) {
            return Ok(None);
        }
        let rel = staging.strip_prefix(self.root).unwrap_or(staging);
        let rel = rel.to_string_lossy().into_owned();
        let out_prefix = if action.in_staging {
            String::new()
        } else {
            format!("{rel}/")
        };
        let mut inputs: Vec<InputFile> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut add = |path: String| -> Result<(), ActionError> {
            if merkle::is_root_path(&path) && seen.insert(path.clone()) {
                let d = self.digest(Path::new(&path))?;
                inputs.push(self.input_file(&path, d)?);
            }
            Ok(())
        };
        for i in &action.inputs {
            add(i.to_string_lossy().into_owned())?;
            // gnatbind lists a unit's object only when it finds it beside the ALI file.
            if i.extension().is_some_and(|e| e == "ali") {
                let object = i.with_extension("o");
                if self.root.join(&object).is_file() {
                    add(object.to_string_lossy().into_owned())?;
                }
            }
        }
        for f in search_files(self.root, action) {
            add(f)?;
        }
        // Dependencies earlier runs discovered (workspace files outside the search directories).
        let base_known: Vec<String> = {
            let mut v = Vec::new();
            if let Ok(base) = self.base_key_for(action, argv) {
                for (_, entry) in self.cache.entries(&base) {
                    v.extend(entry.deps.into_iter().map(|(p, _)| p));
                }
            }
            v
        };
        for p in base_known {
            if self.root.join(&p).is_file() {
                add(p)?;
            }
        }
        let mut outputs: Vec<String> = action
            .outputs
            .iter()
            .map(|o| format!("{out_prefix}{}", o.name))
            .collect();
        if let super::plan::Discover::Depfile(name) | super::plan::Discover::Ali(name, _) =
            &action.discover
        {
            let o = format!("{out_prefix}{name}");
            if !outputs.contains(&o) {
                outputs.push(o);
            }
        }
        let mut platform = vec![("OSFamily".to_string(), "linux".to_string())];
        let (env, ws, toolchain, blobs) = match &tc.root {
            None => {
                let mut env: Vec<(String, String)> = allowed_env()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect();
                env.push(("LC_ALL".into(), "C".into()));
                env.push(("SOURCE_DATE_EPOCH".into(), "0".into()));
                (env, "$WS", Some(tc.fingerprint), Vec::new())
            }
            Some(root) => {
                remote.upload_debs(root, self.cache.root());
                let (blob, bytes) = remote.pins(root);
                platform.push((SANDBOX_PROPERTY.into(), SANDBOX_BWRAP.into()));
                platform.push((ROOT_PROPERTY.into(), toolchain_root::property_value(&blob)));
                if let Some(image) = remote.container_image(&tc.spec, root) {
                    platform.push((CONTAINER_IMAGE_PROPERTY.into(), image));
                }
                // Later settings win in the sandbox, so one value per name, the last.
                let env: BTreeMap<String, String> = root.sandbox.env_vars().into_iter().collect();
                (
                    env.into_iter().collect(),
                    WORKSPACE,
                    None,
                    vec![(blob, bytes)],
                )
            }
        };
        let exec_action = RemoteAction {
            program: tc.program(&action.program).to_string_lossy().into_owned(),
            argv: argv
                .iter()
                .map(|a| a.replace("$OUT/", &out_prefix).replace("$WS", ws))
                .collect(),
            env,
            working_directory: if action.in_staging {
                rel.clone()
            } else {
                String::new()
            },
            inputs,
            outputs,
            toolchain,
            platform,
            salt: KEY_VERSION.to_string(),
            blobs,
        };
        let root = self.root;
        // An input the server says it lacks is sent from here: one it made and this build left
        // there (and it has since lost) is made here first.
        let read = |p: &str| -> std::io::Result<Vec<u8>> {
            if let Some(left) = self.left(Path::new(p)) {
                self.remake_left(Path::new(p), &left, state)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                remote.fetched_later();
            }
            std::fs::read(root.join(p))
        };
        let leave: Vec<String> = lazy::may_leave(action)
            .into_iter()
            .map(|name| format!("{out_prefix}{name}"))
            .collect();
        let Some(executed) = remote.call(Call::Exec, |c| {
            c.execute_leaving(&exec_action, &read, &leave)
        }) else {
            return Ok(None);
        };
        let result = match executed {
            Executed::Succeeded(r) => r,
            Executed::Failed { .. } => return Ok(None),
        };
        let cwd = if action.in_staging {
            staging.to_path_buf()
        } else {
            self.root.to_path_buf()
        };
        let mut left = Vec::new();
        for o in &result.outputs {
            use std::os::unix::fs::PermissionsExt;
            if o.left {
                let name = o.path.strip_prefix(&out_prefix).unwrap_or(&o.path);
                left.push(lazy::LeftName {
                    name: name.to_string(),
                    blob: BlobDigest {
                        digest: o.digest,
                        size: o.size,
                    },
                });
                continue;
            }
            let path = cwd.join(&o.path);
            std::fs::write(&path, &o.bytes).map_err(io_ctx(format!("writing {}", o.path)))?;
            let mode = if o.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_ctx(format!("chmod {}", o.path)))?;
        }
        let mut stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        stderr.push_str(&String::from_utf8_lossy(&result.stdout));
        Ok(Some((stderr, left)))
    }
}
