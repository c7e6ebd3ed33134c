//! One build, end to end: workspace -> toolchains -> plan -> execution -> images.
//!
//! The CLI's `build`, `test`, `verify` and `push` all start here. [`select`] turns names into
//! targets and a plan, the executor ([`crate::build`]) runs the plan's actions, [`images`]
//! assembles the services' images and SBOMs, [`report`] tallies what happened per target and
//! [`upkeep`] looks after the cache afterwards. This file only sequences them.

mod images;
mod phases;
mod platforms;
mod report;
mod select;
mod upkeep;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::build::remote::{Remote, RemoteSummary};
use crate::build::state::State;
use crate::build::{Executor, Outcome, Progress};
use crate::cache::gc::GcReport;
use crate::cache::stat::StatCache;
use crate::cache::Cache;
use crate::exec::Runner;
use crate::image::strip::Binutils;
use crate::image::{ImageContext, ImageResult};
use crate::recipe::Kind;
use crate::vcs::Meta;
use crate::workspace::Workspace;

pub use images::{default_budget, image_request, ImagePhaseError};
pub use platforms::{build_platforms, chosen as chosen_platforms, PlatformsOutcome};
pub use report::TargetReport;
pub use select::{
    prepare, resolve_toolchains, resolve_toolchains_with, select, select_kind, Prepared,
};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Toolchain(#[from] crate::toolchain::ToolchainError),
    #[error(transparent)]
    CacheConfig(#[from] crate::cache::config::ConfigError),
    #[error(transparent)]
    Lock(#[from] crate::workspace::LockError),
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let context = context.into();
    move |source| DriverError::Io { context, source }
}

pub struct BuildOptions {
    pub targets: Vec<String>,
    pub jobs: usize,
    /// Assemble images for the services built.
    pub images: bool,
    pub cache_dir: PathBuf,
    /// Build everything that does not depend on a failure (`-k`).
    pub keep_going: bool,
}

/// Cache upkeep that went wrong without failing the build: it costs speed, not correctness.
#[derive(Debug, thiserror::Error)]
pub enum UpkeepError {
    #[error("could not save the file-digest memo (the next build hashes again)")]
    SaveMemo(#[source] std::io::Error),
    #[error("could not save the system-file digest memo (the next build hashes again)")]
    SaveHostMemo(#[source] std::io::Error),
    #[error("could not record the cache statistics")]
    RecordStats(#[source] std::io::Error),
    #[error("listing the cache")]
    ListCache(#[source] std::io::Error),
    #[error("collecting the cache")]
    Collect(#[source] std::io::Error),
}

pub struct BuildOutcome {
    pub targets: Vec<TargetReport>,
    pub failed: bool,
    pub image_errors: Vec<(String, ImagePhaseError)>,
    pub images: BTreeMap<String, ImageResult>,
    /// The checkout's revision and time the images were labelled with (when images were built).
    pub meta: Option<Meta>,
    /// Cache upkeep that failed without failing the build, said once each.
    pub upkeep: Vec<UpkeepError>,
    /// Damaged cache blobs found (removed, and their actions rerun), each once.
    pub damage: Vec<crate::cache::Damage>,
    /// The automatic collection after the build, when the cache was over its limits.
    pub gc: Option<Result<GcReport, UpkeepError>>,
    /// The toolchains the build used, by name (a Debian toolchain's sandbox runs its tests).
    pub toolchains: BTreeMap<String, crate::toolchain::Toolchain>,
    /// What the remote cache did, when the build had one.
    pub remote: Option<RemoteSummary>,
}

pub fn build(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
) -> Result<BuildOutcome, DriverError> {
    build_selected(ws, opts, runner, progress, false)
}

/// Like [`build`]; with `tests`, an empty target list means every test instead of every
/// library and service.
pub fn build_selected(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    tests: bool,
) -> Result<BuildOutcome, DriverError> {
    build_impl(ws, opts, runner, progress, tests, None, None)
}

/// Like [`build`], with a remote cache consulted after local misses and filled after local runs
/// (see [`crate::build::remote`]).
pub fn build_with_remote(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    remote: Option<&Remote>,
) -> Result<BuildOutcome, DriverError> {
    build_impl(ws, opts, runner, progress, false, None, remote)
}

/// Like [`build`], with the source metadata (revision, SOURCE_DATE_EPOCH, source URL) given
/// instead of read from the workspace: `kiln verify` rebuilds a copy that has no `.git`.
pub fn build_with_meta(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    meta: &Meta,
) -> Result<BuildOutcome, DriverError> {
    build_impl(ws, opts, runner, progress, false, Some(meta), None)
}

/// The image context of each toolchain: this machine's for host toolchains, one over its root
/// (with the root's binutils, in its sandbox; a cross toolchain's are the target's,
/// `aarch64-linux-gnu-strip`) for each Debian toolchain; all share one memo.
fn image_contexts(
    host: &Arc<ImageContext>,
    prepared: &Prepared,
) -> BTreeMap<String, Arc<ImageContext>> {
    prepared
        .toolchains
        .iter()
        .map(|(name, tc)| {
            let cx = match &tc.root {
                None => Arc::clone(host),
                Some(root) => {
                    let prefix = if tc.spec.platform.is_default() {
                        String::new()
                    } else {
                        format!("{}-", tc.spec.platform.triplet)
                    };
                    Arc::new(host.sibling(
                        Binutils {
                            objcopy: format!("/usr/bin/{prefix}objcopy").into(),
                            strip: format!("/usr/bin/{prefix}strip").into(),
                            sandbox: Some(root.sandbox.clone()),
                        },
                        &root.dir,
                    ))
                }
            };
            (name.clone(), cx)
        })
        .collect()
}

fn build_impl(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    tests: bool,
    meta: Option<&Meta>,
    remote: Option<&Remote>,
) -> Result<BuildOutcome, DriverError> {
    let (root, out) = (ws.root.as_path(), ws.out());
    let phases = phases::Phases::start();
    let roots = select(ws, &opts.targets, |r| (r.kind == Kind::Test) == tests)?;
    let _lock = crate::workspace::lock(root)?;
    // Under the lock, a temporary file beside an output can only be a killed build's leftover.
    out.sweep_stale_temporaries();
    let cache = Cache::open(opts.cache_dir.clone()).map_err(io_err(format!(
        "opening the cache {}",
        opts.cache_dir.display()
    )))?;
    // Read first: a bad limit is a usage error before anything is built.
    let limits = crate::cache::config::load(cache.root())?;
    let prepared = prepare(
        runner,
        ws,
        &roots,
        &opts.cache_dir,
        remote.map(|r| r as &dyn crate::debian::DebSource),
    )?;
    phases.mark("plan");
    let host_context = Arc::new(ImageContext::host(&opts.cache_dir.join("layers")));
    let contexts = image_contexts(&host_context, &prepared);
    let stat = StatCache::load(out.stat_memo());
    let state = Mutex::new(State::load(&out.state()));
    // An image that out/ does not hold yet (a first build, a build after `kiln clean`) will be
    // assembled and needs its dpkg database: load it during the action phase. When every image
    // is recorded, a no-op is the likely case and nothing is loaded ahead.
    let images_missing = opts.images && {
        let st = state.lock().unwrap();
        prepared.order.iter().any(|&i| {
            let r = &ws.recipes[i];
            r.kind == Kind::Service
                && (!st.images.contains_key(&r.name)
                    || !out
                        .image(&r.name)
                        .join(crate::oci::layout::INDEX_FILE)
                        .is_file())
        })
    };
    if images_missing {
        let mut started: Vec<&Arc<ImageContext>> = Vec::new();
        for cx in contexts.values() {
            if !started.iter().any(|s| Arc::ptr_eq(s, cx)) {
                cx.preload();
                started.push(cx);
            }
        }
    }
    let exec = Executor {
        root,
        cache: &cache,
        stat: &stat,
        toolchains: &prepared.toolchains,
        runner,
        progress,
        jobs: opts.jobs,
        keep_going: opts.keep_going,
        remote,
    };
    if let Some(r) = remote {
        r.left_outputs()
            .load(&state.lock().unwrap().left, &prepared.plan);
    }
    phases.mark("load state");
    let reports = exec.run(&prepared.plan, &state);
    // Without a remote, nothing can stand for a file `out/` lacks.
    state.lock().unwrap().left = remote
        .map(|r| r.left_outputs().records())
        .unwrap_or_default();
    phases.mark("actions");
    let failed = reports.iter().any(|r| r.outcome == Outcome::Failed);
    let mut targets = report::tally(ws, &prepared, &reports);

    let mut images = images::Images::default();
    let mut upkeep = Vec::new();
    let mut built_meta = None;
    // With -k, the services whose binaries were built still get their images.
    if opts.images && (!failed || opts.keep_going) {
        let built = |i: &usize| {
            let actions = &prepared.plan.targets[i].actions;
            actions.iter().all(|&a| {
                matches!(
                    reports[a].outcome,
                    Outcome::Fresh
                        | Outcome::Cached
                        | Outcome::Remote
                        | Outcome::RemoteExec
                        | Outcome::Ran
                )
            })
        };
        let services: Vec<usize> = (prepared.order.iter().copied())
            .filter(|&i| ws.recipes[i].kind == Kind::Service)
            .filter(built)
            .collect();
        let meta = meta.cloned().unwrap_or_else(|| Meta::of(runner, root));
        let phase = images::ImagePhase {
            ws,
            prepared: &prepared,
            meta: &meta,
            stat: &stat,
            state: &state,
            cache_dir: &opts.cache_dir,
            jobs: opts.jobs,
            contexts: &contexts,
            runner,
            layers: remote.map(|r| r as &dyn crate::layer::cache::LayerTier),
        };
        images = images::build_images(&phase, &services);
        upkeep.extend(host_context.save().err().map(UpkeepError::SaveHostMemo));
        built_meta = Some(meta);
    }
    for (name, img) in &images.built {
        for d in &img.damage {
            cache.record_damage(d.clone());
        }
        if let Some(t) = targets.iter_mut().find(|t| &t.name == name) {
            t.image = Some(serde_json::json!({
                "layout": img.layout,
                "digest": img.digest,
                "compressed_size": img.compressed_size,
                "uncompressed_size": img.uncompressed_size,
                "budget": img.budget,
            }));
        }
    }
    phases.mark("images");

    let state_path = out.state();
    state
        .lock()
        .unwrap()
        .save(&state_path)
        .map_err(io_err(format!("saving {}", state_path.display())))?;
    upkeep.extend(stat.save().err().map(UpkeepError::SaveMemo));
    let damage = cache.damage();
    let counts = report::counts(&reports, damage.len());
    // Statistics and collection are the cache's upkeep: neither may fail a finished build.
    upkeep.extend(
        crate::cache::stats::record(cache.root(), &counts)
            .err()
            .map(UpkeepError::RecordStats),
    );
    // A build that stored nothing cannot have pushed the cache over its size, and walking a
    // large cache would be most of a no-op's time: only an age limit needs looking at then.
    let stored = images.assembled > 0 || reports.iter().any(|r| r.outcome != Outcome::Fresh);
    let gc = upkeep::auto_gc(&cache, &limits, stored);
    phases.mark("cache upkeep");
    Ok(BuildOutcome {
        targets,
        failed,
        image_errors: images.errors,
        images: images.built,
        meta: built_meta,
        upkeep,
        damage,
        gc,
        toolchains: prepared.toolchains,
        remote: remote.map(Remote::summary),
    })
}
