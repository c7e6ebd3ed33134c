//! One build, end to end: workspace -> toolchains -> plan -> execution -> images.
//!
//! The CLI's `build`, `test`, `verify` and `push` all start here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::build::plan::{self, Context, Plan};
use crate::build::state::State;
use crate::build::{ActionReport, Executor, Outcome, Progress};
use crate::cache::stat::StatCache;
use crate::cache::Cache;
use crate::diag::did_you_mean;
use crate::exec::Runner;
use crate::graph;
use crate::image::{self, ImageRequest, ImageResult};
use crate::recipe::{Kind, Language, Recipe};
use crate::toolchain::{SystemFlags, Toolchain};
use crate::workspace::Workspace;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Toolchain(#[from] crate::toolchain::ToolchainError),
    #[error(transparent)]
    CacheConfig(#[from] crate::cache::config::ConfigError),
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

#[derive(Debug, serde::Serialize)]
pub struct TargetReport {
    pub name: String,
    pub kind: Kind,
    pub outputs: Vec<PathBuf>,
    pub actions_run: usize,
    pub actions_cached: usize,
    pub actions_fresh: usize,
    /// Actions not started because something they need failed (or the build stopped).
    pub skipped: usize,
    /// Ids of the actions that ran a command.
    pub ran: Vec<String>,
    pub duration_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<serde_json::Value>,
    #[serde(skip)]
    pub failures: Vec<(String, ActionReport)>,
}

pub struct BuildOutcome {
    pub targets: Vec<TargetReport>,
    pub failed: bool,
    pub image_errors: Vec<(String, String)>,
    pub images: BTreeMap<String, ImageResult>,
    /// The checkout's revision and time the images were labelled with (when images were built).
    pub meta: Option<crate::vcs::Meta>,
    /// Cache upkeep that failed without failing the build (the file-digest memo or the
    /// statistics could not be saved): said once each, since they cost speed, not correctness.
    pub upkeep: Vec<String>,
    /// Damaged cache blobs found (removed, and their actions rerun), each once.
    pub damage: Vec<crate::cache::Damage>,
    /// The automatic collection after the build, when the cache was over its limits.
    pub gc: Option<Result<crate::cache::gc::GcReport, String>>,
}

/// Resolves target names (all when empty) to recipe indices, with suggestions for typos.
pub fn select(
    ws: &Workspace,
    names: &[String],
    filter: impl Fn(&Recipe) -> bool,
) -> Result<Vec<usize>, DriverError> {
    if names.is_empty() {
        return Ok((0..ws.recipes.len())
            .filter(|&i| filter(&ws.recipes[i]))
            .collect());
    }
    names
        .iter()
        .map(|n| {
            ws.index(n).ok_or_else(|| {
                let help = did_you_mean(n, ws.recipes.iter().map(|r| r.name.as_str()))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                DriverError::Usage(format!("no target named `{n}`{help}"))
            })
        })
        .collect()
}

/// Holds `out/.kiln/lock` for the lifetime of a build so two kiln processes on one workspace
/// take turns instead of interleaving writes.
pub struct WorkspaceLock {
    _file: std::fs::File,
}

pub fn lock_workspace(root: &Path) -> Result<WorkspaceLock, DriverError> {
    use fs4::fs_std::FileExt;
    let dir = root.join("out/.kiln");
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(io_err("opening out/.kiln/lock"))?;
    if !file.try_lock_exclusive().unwrap_or(false) {
        eprintln!("kiln: waiting for another kiln process using this workspace");
        file.lock_exclusive()
            .map_err(io_err("locking out/.kiln/lock"))?;
    }
    Ok(WorkspaceLock { _file: file })
}

pub fn resolve_toolchains(
    runner: &dyn Runner,
    ws: &Workspace,
    used: &[usize],
    cache_dir: &Path,
) -> Result<BTreeMap<String, Toolchain>, DriverError> {
    let names: std::collections::BTreeSet<&String> = used
        .iter()
        .map(|&i| &ws.recipes[i].toolchain.value)
        .collect();
    // Fingerprinting hashes each compiler (tens of MB) the first time: do the toolchains at once.
    let resolved: Vec<(String, Result<Toolchain, crate::toolchain::ToolchainError>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    let spec = &ws.toolchains[*name];
                    (
                        name.to_string(),
                        scope.spawn(move || Toolchain::resolve(runner, spec, cache_dir)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| (n, h.join().expect("toolchain probe panicked")))
                .collect()
        });
    let mut out = BTreeMap::new();
    for (name, tc) in resolved {
        out.insert(name, tc?);
    }
    Ok(out)
}

pub struct Prepared {
    pub order: Vec<usize>,
    pub toolchains: BTreeMap<String, Toolchain>,
    pub plan: Plan,
}

pub fn prepare(
    runner: &dyn Runner,
    ws: &Workspace,
    roots: &[usize],
    cache_dir: &Path,
) -> Result<Prepared, DriverError> {
    let order = graph::build_order(&ws.graph(), roots);
    let toolchains = resolve_toolchains(runner, ws, &order, cache_dir)?;
    let mut system_flags: BTreeMap<usize, SystemFlags> = BTreeMap::new();
    for &i in &order {
        let libs = plan::inherited_system_libs(ws, i);
        let tc = &toolchains[&ws.recipes[i].toolchain.value];
        system_flags.insert(i, tc.system_lib_flags(runner, &libs, cache_dir)?);
    }
    let cx = Context {
        ws,
        toolchains: &toolchains,
        system_flags: &system_flags,
    };
    let plan = plan::plan(&cx, &order);
    Ok(Prepared {
        order,
        toolchains,
        plan,
    })
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
    build_impl(ws, opts, runner, progress, tests, None)
}

/// Like [`build`], with the source metadata (revision, SOURCE_DATE_EPOCH, source URL) given
/// instead of read from the workspace: `kiln verify` rebuilds a copy that has no `.git`.
pub fn build_with_meta(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    meta: &crate::vcs::Meta,
) -> Result<BuildOutcome, DriverError> {
    build_impl(ws, opts, runner, progress, false, Some(meta))
}

fn build_impl(
    ws: &Workspace,
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    tests: bool,
    meta: Option<&crate::vcs::Meta>,
) -> Result<BuildOutcome, DriverError> {
    let root = ws.root.as_path();
    let phases = Phases::start();
    let roots = select(ws, &opts.targets, |r| (r.kind == Kind::Test) == tests)?;
    let _lock = lock_workspace(root)?;
    let cache = Cache::open(opts.cache_dir.clone()).map_err(io_err(format!(
        "opening the cache {}",
        opts.cache_dir.display()
    )))?;
    // Read first: a bad limit is a usage error before anything is built.
    let limits = crate::cache::config::load(cache.root())?;
    let prepared = prepare(runner, ws, &roots, &opts.cache_dir)?;
    phases.mark("plan");
    let stat = StatCache::load(root.join("out/.kiln/stat.json"));
    let state_path = root.join("out/.kiln/state.json");
    let state = Mutex::new(State::load(&state_path));

    let exec = Executor {
        root,
        cache: &cache,
        stat: &stat,
        toolchains: &prepared.toolchains,
        runner,
        progress,
        jobs: opts.jobs,
        keep_going: opts.keep_going,
    };
    phases.mark("load state");
    let reports = exec.run(&prepared.plan, &state);
    phases.mark("actions");
    let failed = reports.iter().any(|r| r.outcome == Outcome::Failed);

    let mut targets = Vec::new();
    for &i in &prepared.order {
        let r = &ws.recipes[i];
        let tp = &prepared.plan.targets[&i];
        let mut t = TargetReport {
            name: r.name.clone(),
            kind: r.kind,
            outputs: tp.product.iter().cloned().collect(),
            actions_run: 0,
            actions_cached: 0,
            actions_fresh: 0,
            skipped: 0,
            ran: Vec::new(),
            duration_ms: 0,
            image: None,
            failures: Vec::new(),
        };
        for &a in &tp.actions {
            let rep = &reports[a];
            t.duration_ms += rep.millis;
            match rep.outcome {
                Outcome::Ran => {
                    t.actions_run += 1;
                    t.ran.push(prepared.plan.actions[a].id.clone());
                }
                Outcome::Cached => t.actions_cached += 1,
                Outcome::Fresh => t.actions_fresh += 1,
                Outcome::Failed => t
                    .failures
                    .push((prepared.plan.actions[a].id.clone(), rep.clone())),
                Outcome::Skipped => t.skipped += 1,
            }
        }
        targets.push(t);
    }

    let mut image_errors = Vec::new();
    let mut images = BTreeMap::new();
    let mut built_meta = None;
    // With -k, the services whose binaries were built still get their images.
    if opts.images && (!failed || opts.keep_going) {
        let services: Vec<usize> = prepared
            .order
            .iter()
            .copied()
            .filter(|&i| ws.recipes[i].kind == Kind::Service)
            .filter(|i| {
                prepared.plan.targets[i].actions.iter().all(|&a| {
                    matches!(
                        reports[a].outcome,
                        Outcome::Fresh | Outcome::Cached | Outcome::Ran
                    )
                })
            })
            .collect();
        let meta = meta
            .cloned()
            .unwrap_or_else(|| crate::vcs::Meta::of(runner, root));
        let results: Vec<(usize, Result<ImageResult, String>)> = {
            let jobs = opts.jobs.max(1);
            let queue = Mutex::new(services.clone());
            let results = Mutex::new(Vec::new());
            std::thread::scope(|scope| {
                for _ in 0..jobs.min(services.len().max(1)) {
                    scope.spawn(|| loop {
                        let Some(i) = queue.lock().unwrap().pop() else {
                            return;
                        };
                        let req = image_request(ws, i, &prepared, &meta, &opts.cache_dir);
                        let res = assemble_unless_fresh(runner, &req, &stat, &state).and_then(
                            |(img, fresh)| {
                                if !fresh
                                    || !crate::sbom::written_for(&ws.root, &ws.recipes[i].name)
                                {
                                    write_sbom(ws, i, &prepared, &meta, &img, &opts.cache_dir)?;
                                }
                                Ok(img)
                            },
                        );
                        results.lock().unwrap().push((i, res));
                    });
                }
            });
            let mut r = results.into_inner().unwrap();
            r.sort_by_key(|(i, _)| *i);
            r
        };
        built_meta = Some(meta.clone());
        for (i, res) in results {
            let name = ws.recipes[i].name.clone();
            match res {
                Ok(img) => {
                    for d in &img.damage {
                        cache.record_damage(d.clone());
                    }
                    if let Some(t) = targets.iter_mut().find(|t| t.name == name) {
                        t.image = Some(serde_json::json!({
                            "layout": img.layout,
                            "digest": img.digest,
                            "compressed_size": img.compressed_size,
                            "uncompressed_size": img.uncompressed_size,
                            "budget": img.budget,
                        }));
                    }
                    images.insert(name, img);
                }
                Err(e) => image_errors.push((name, e)),
            }
        }
    }

    phases.mark("images");
    state
        .lock()
        .unwrap()
        .save(&state_path)
        .map_err(io_err("saving out/.kiln/state.json"))?;
    let mut upkeep = Vec::new();
    if let Err(e) = stat.save() {
        upkeep.push(format!(
            "could not save the file-digest memo (the next build hashes again): {e}"
        ));
    }
    let damage = cache.damage();
    let mut counts = crate::cache::stats::BuildStats {
        damaged: damage.len() as u64,
        ..Default::default()
    };
    for r in &reports {
        match r.outcome {
            Outcome::Cached => counts.cached += 1,
            Outcome::Ran => counts.ran += 1,
            Outcome::Fresh => counts.fresh += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Skipped => {}
        }
    }
    // Statistics and collection are the cache's upkeep: neither may fail a finished build.
    if let Err(e) = crate::cache::stats::record(cache.root(), &counts) {
        upkeep.push(format!("could not record the cache statistics: {e}"));
    }
    let gc = auto_gc(&cache, &limits);
    phases.mark("cache upkeep");
    Ok(BuildOutcome {
        targets,
        failed,
        image_errors,
        images,
        meta: built_meta,
        upkeep,
        damage,
        gc,
    })
}

/// Collects when the cache is over its configured limits; None when it is within them. Only
/// stats the cache's files unless there is something to remove.
fn auto_gc(
    cache: &Cache,
    limits: &crate::cache::config::CacheConfig,
) -> Option<Result<crate::cache::gc::GcReport, String>> {
    use crate::cache::gc;
    if limits.max_size.is_none() && limits.max_age.is_none() {
        return None;
    }
    let now = std::time::SystemTime::now();
    let inv = match gc::inventory(cache.root()) {
        Ok(inv) => inv,
        Err(e) => return Some(Err(format!("listing the cache: {e}"))),
    };
    let over_size = limits.max_size.is_some_and(|m| inv.item_bytes() > m);
    let over_age = limits.max_age.is_some_and(|m| {
        inv.items
            .iter()
            .any(|i| now.duration_since(i.used).is_ok_and(|a| a > m))
    });
    if !over_size && !over_age {
        return None;
    }
    let opts = gc::GcOptions {
        max_size: limits.max_size,
        max_age: limits.max_age,
        grace: gc::DEFAULT_GRACE,
    };
    Some(gc::collect(cache.root(), &opts, now).map_err(|e| format!("collecting the cache: {e}")))
}

pub fn default_budget(language: Language) -> u64 {
    match language {
        Language::Cxx => 100_000_000,
        Language::Ada => 150_000_000,
    }
}

pub fn image_request(
    ws: &Workspace,
    i: usize,
    prepared: &Prepared,
    meta: &crate::vcs::Meta,
    cache_dir: &Path,
) -> ImageRequest {
    let r = &ws.recipes[i];
    let root = &ws.root;
    let binary = root.join(plan::product_path(r));
    let workspace_libs = graph::link_closure(&ws.graph(), i)
        .into_iter()
        .filter(|&j| ws.recipes[j].shared)
        .map(|j| root.join(plan::product_path(&ws.recipes[j])))
        .collect();
    let tc = &prepared.toolchains[&r.toolchain.value];
    let img = &r.image;
    ImageRequest {
        service: r.name.clone(),
        family: match r.language {
            Language::Cxx => image::Family::Cxx,
            Language::Ada => image::Family::Ada,
        },
        version: r.version.clone(),
        description: r.description.clone(),
        licenses: r.license.clone(),
        revision: meta.revision.clone(),
        source: meta.source.clone(),
        binary,
        binary_name: r.output.clone(),
        workspace_libs,
        library_paths: tc.library_paths.clone(),
        extra_files: img
            .files
            .iter()
            .map(|f| image::ExtraFile {
                src: root.join(&f.src),
                dst: f.dst.clone(),
                mode: f.mode,
            })
            .collect(),
        extra_libraries: img.libraries.clone(),
        entrypoint: img
            .entrypoint
            .clone()
            .unwrap_or_else(|| vec![format!("/usr/local/bin/{}", r.output)]),
        cmd: img.cmd.clone(),
        env: img.env.clone(),
        ports: img.ports.clone(),
        workdir: img.workdir.clone().unwrap_or_else(|| "/".into()),
        labels: img.labels.clone(),
        healthcheck: img.healthcheck.clone(),
        stop_signal: img.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        ca_certificates: img.ca_certificates,
        format: if img.docker_format {
            image::ManifestFormat::Docker
        } else {
            image::ManifestFormat::Oci
        },
        source_date_epoch: meta.source_date_epoch,
        budget: img.budget.unwrap_or_else(|| default_budget(r.language)),
        layout_dir: root.join("out/images").join(&r.name),
        debug_dir: root.join("out/debug"),
        cache_dir: cache_dir.join("layers"),
    }
}

/// Everything an image is made from, for deciding that the image in out/ is still current.
/// Local to this workspace (it may hold absolute paths); the layers themselves are cached by
/// content in the image module.
fn image_key(req: &ImageRequest, stat: &StatCache) -> std::io::Result<crate::digest::Digest> {
    let mut k = crate::cache::key::KeyBuilder::new("image-inputs");
    k.argv(&[format!("{req:?}")]);
    // A different kiln may write different bytes.
    if let Ok(exe) = std::env::current_exe() {
        k.input("kiln", &stat.digest(&exe)?);
    }
    // System libraries come from installed packages.
    k.input(
        "/var/lib/dpkg/status",
        &stat.digest(Path::new("/var/lib/dpkg/status"))?,
    );
    k.input("binary", &stat.digest(&req.binary)?);
    for lib in &req.workspace_libs {
        k.input(&lib.to_string_lossy(), &stat.digest(lib)?);
    }
    for f in &req.extra_files {
        for entry in walk(&f.src) {
            k.input(&entry.to_string_lossy(), &stat.digest(&entry)?);
        }
    }
    Ok(k.finish())
}

fn walk(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries.iter().flat_map(|e| walk(e)).collect()
    } else {
        vec![p.to_path_buf()]
    }
}

/// The image, and whether it was already in out/ (true) or had to be assembled.
fn assemble_unless_fresh(
    runner: &dyn Runner,
    req: &ImageRequest,
    stat: &StatCache,
    state: &Mutex<State>,
) -> Result<(ImageResult, bool), String> {
    let key = image_key(req, stat).map_err(|e| format!("reading the image's inputs: {e}"))?;
    let index = req.layout_dir.join(crate::oci::layout::INDEX_FILE);
    if let Some((k, v)) = state.lock().unwrap().images.get(&req.service) {
        if *k == key && index.is_file() {
            if let Ok(img) = serde_json::from_value::<ImageResult>(v.clone()) {
                // The manifest blob the state names must still be in the layout.
                if crate::oci::layout::blob_path(&req.layout_dir, &img.digest).is_file() {
                    return Ok((img, true));
                }
            }
        }
    }
    let img = image::assemble(runner, req).map_err(|e| crate::error::chain(&e))?;
    if let Ok(v) = serde_json::to_value(&img) {
        state
            .lock()
            .unwrap()
            .images
            .insert(req.service.clone(), (key, v));
    }
    Ok((img, false))
}

fn write_sbom(
    ws: &Workspace,
    i: usize,
    prepared: &Prepared,
    meta: &crate::vcs::Meta,
    img: &ImageResult,
    cache_dir: &Path,
) -> Result<(), String> {
    let r = &ws.recipes[i];
    let mut toolchains = Vec::new();
    let mut recipes = Vec::new();
    for j in graph::build_order(&ws.graph(), &[i]) {
        let rj = &ws.recipes[j];
        let tc = &prepared.toolchains[&rj.toolchain.value];
        if !toolchains.iter().any(|(n, _)| n == &tc.spec.name) {
            toolchains.push((tc.spec.name.clone(), tc.fingerprint));
        }
        recipes.push((
            rj.file.clone(),
            crate::digest::Digest::of(rj.source_text.as_bytes()),
        ));
    }
    let input = crate::sbom::SbomInput {
        root: &ws.root,
        cache_dir,
        recipe: r,
        meta,
        image: img,
        toolchains,
        recipes,
    };
    crate::sbom::write_for_image(&input)
        .map(|_| ())
        .map_err(|e| format!("writing the SBOM: {e}"))
}

/// Phase timings on stderr when `KILN_TIMINGS` is set: where a build's time goes, for
/// benchmarks and for users asking why a no-op build is slow.
struct Phases {
    start: Option<std::time::Instant>,
    last: std::cell::Cell<Option<std::time::Instant>>,
}

impl Phases {
    fn start() -> Phases {
        let start = std::env::var_os("KILN_TIMINGS").map(|_| std::time::Instant::now());
        Phases {
            start,
            last: std::cell::Cell::new(start),
        }
    }

    fn mark(&self, phase: &str) {
        if let (Some(start), Some(last)) = (self.start, self.last.get()) {
            let now = std::time::Instant::now();
            eprintln!(
                "kiln: timing: {phase:12} {:>8.2} ms (total {:.2} ms)",
                (now - last).as_secs_f64() * 1e3,
                (now - start).as_secs_f64() * 1e3
            );
            self.last.set(Some(now));
        }
    }
}
