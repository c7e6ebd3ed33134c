//! The image phase of a build: one [`ImageRequest`] per service built, assembled by a pool of
//! workers unless the image in `out/` is still current, with its SBOM and provenance beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::select::Prepared;
use crate::build::plan;
use crate::build::state::State;
use crate::cache::key::KeyBuilder;
use crate::cache::stat::StatCache;
use crate::digest::Digest;
use crate::exec::Runner;
use crate::graph;
use crate::image::{self, ImageContext, ImageError, ImageRequest, ImageResult};
use crate::layer::cache::LayerTier;
use crate::oci;
use crate::recipe::Language;
use crate::sbom::SbomError;
use crate::vcs::Meta;
use crate::workspace::Workspace;

/// Why one service got no image.
#[derive(Debug, thiserror::Error)]
pub enum ImagePhaseError {
    #[error("reading the image's inputs")]
    Inputs(#[source] std::io::Error),
    #[error(transparent)]
    Assemble(#[from] ImageError),
    #[error("writing the SBOM")]
    Sbom(#[source] SbomError),
}

/// What the image phase produced: the images by service, and the services that failed.
#[derive(Default)]
pub struct Images {
    pub built: BTreeMap<String, ImageResult>,
    pub errors: Vec<(String, ImagePhaseError)>,
    /// How many images had to be assembled (not already in out/): each may have written layers
    /// to the cache.
    pub assembled: usize,
}

/// What the image phase works from: the build so far and where its memo and state live.
pub struct ImagePhase<'a> {
    pub ws: &'a Workspace,
    pub prepared: &'a Prepared,
    pub meta: &'a Meta,
    pub stat: &'a StatCache,
    pub state: &'a Mutex<State>,
    pub cache_dir: &'a Path,
    pub jobs: usize,
    /// Per toolchain: where its images take their runtime from (dpkg database, binutils),
    /// sharing one memo of system-file digests.
    pub contexts: &'a BTreeMap<String, Arc<ImageContext>>,
    /// Runs binutils.
    pub runner: &'a dyn Runner,
    /// Where layers this machine has not cached may already be (the remote cache).
    pub layers: Option<&'a dyn LayerTier>,
}

/// Assembles the images of `services` (recipe indices) on up to `jobs` threads; results are
/// in service order whatever order the workers finish in.
pub fn build_images(phase: &ImagePhase<'_>, services: &[usize]) -> Images {
    let ImagePhase {
        ws,
        prepared,
        meta,
        stat,
        state,
        cache_dir,
        jobs,
        contexts,
        runner,
        layers,
    } = *phase;
    let queue = Mutex::new(services.to_vec());
    let results = Mutex::new(Vec::new());
    let assembled = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(services.len().max(1)) {
            scope.spawn(|| {
                loop {
                    // A statement of its own: in a `while let` scrutinee the guard would live
                    // to the end of the body and hold the queue through the whole assembly,
                    // so the other workers would wait and images would be built one at a time.
                    let Some(i) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let req = image_request(ws, i, prepared, meta, cache_dir);
                    let context = &contexts[&ws.recipes[i].toolchain.value];
                    let res = assemble_unless_fresh(context, runner, &req, stat, state, layers)
                        .and_then(|(img, fresh)| {
                            if !fresh {
                                assembled.fetch_add(1, Ordering::Relaxed);
                            }
                            if !fresh
                                || !crate::sbom::written_for(
                                    &ws.root,
                                    ws.platform.as_ref(),
                                    &ws.recipes[i].name,
                                )
                            {
                                write_sbom(ws, i, prepared, meta, &img, cache_dir)
                                    .map_err(ImagePhaseError::Sbom)?;
                            }
                            Ok(img)
                        });
                    results.lock().unwrap().push((i, res));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut images = Images {
        assembled: assembled.into_inner(),
        ..Images::default()
    };
    for (i, res) in results {
        let name = ws.recipes[i].name.clone();
        match res {
            Ok(img) => {
                images.built.insert(name, img);
            }
            Err(e) => images.errors.push((name, e)),
        }
    }
    images
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
    meta: &Meta,
    cache_dir: &Path,
) -> ImageRequest {
    let r = &ws.recipes[i];
    let root = &ws.root;
    let out = ws.out();
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
        layout_dir: out.image(&r.name),
        debug_dir: out.debug(),
        cache_dir: cache_dir.join("layers"),
    }
}

/// The request's fields as a canonical JSON value, for the image key. The destructuring is
/// exhaustive on purpose: a field added to [`ImageRequest`] does not compile until it is
/// either keyed here or said not to matter.
fn request_fields(req: &ImageRequest) -> serde_json::Value {
    let ImageRequest {
        service,
        family,
        version,
        description,
        licenses,
        revision,
        source,
        binary,
        binary_name,
        workspace_libs,
        library_paths,
        extra_files,
        extra_libraries,
        entrypoint,
        cmd,
        env,
        ports,
        workdir,
        labels,
        healthcheck,
        stop_signal,
        ca_certificates,
        format,
        source_date_epoch,
        budget,
        layout_dir,
        debug_dir,
        cache_dir,
    } = req;
    let extra_files: Vec<_> = extra_files
        .iter()
        .map(|f| serde_json::json!({ "src": f.src, "dst": f.dst, "mode": f.mode }))
        .collect();
    let healthcheck = healthcheck.as_ref().map(|h| {
        serde_json::json!({
            "test": h.test,
            "interval_ns": h.interval_ns,
            "timeout_ns": h.timeout_ns,
            "start_period_ns": h.start_period_ns,
            "retries": h.retries,
        })
    });
    serde_json::json!({
        "service": service,
        "family": family,
        "version": version,
        "description": description,
        "licenses": licenses,
        "revision": revision,
        "source": source,
        "binary": binary,
        "binary_name": binary_name,
        "workspace_libs": workspace_libs,
        "library_paths": library_paths,
        "extra_files": extra_files,
        "extra_libraries": extra_libraries,
        "entrypoint": entrypoint,
        "cmd": cmd,
        "env": env,
        "ports": ports,
        "workdir": workdir,
        "labels": labels,
        "healthcheck": healthcheck,
        "stop_signal": stop_signal,
        "ca_certificates": ca_certificates,
        "format": format,
        "source_date_epoch": source_date_epoch,
        "budget": budget,
        "layout_dir": layout_dir,
        "debug_dir": debug_dir,
        "cache_dir": cache_dir,
    })
}

/// Everything an image is made from, for deciding that the image in out/ is still current.
/// Local to this workspace (it may hold absolute paths); the layers themselves are cached by
/// content in the image module.
fn image_key(req: &ImageRequest, dpkg_root: &Path, stat: &StatCache) -> std::io::Result<Digest> {
    let mut k = KeyBuilder::new("image-inputs");
    k.argv(&[request_fields(req).to_string()]);
    // A different kiln may write different bytes. The running one's: when its file was replaced
    // or removed during the build (an upgrade), its path says "(deleted)" but /proc/self/exe
    // still opens the binary that runs.
    if let Ok(exe) = std::env::current_exe() {
        let running = match digest(stat, &exe) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                digest(stat, Path::new("/proc/self/exe"))?
            }
            d => d?,
        };
        k.input("kiln", &running);
    }
    // System libraries come from installed packages: this machine's, or a toolchain root's.
    let status = dpkg_root.join("var/lib/dpkg/status");
    k.input(&status.to_string_lossy(), &digest(stat, &status)?);
    k.input("binary", &digest(stat, &req.binary)?);
    for lib in &req.workspace_libs {
        k.input(&lib.to_string_lossy(), &digest(stat, lib)?);
    }
    for f in &req.extra_files {
        for entry in walk(&f.src) {
            k.input(&entry.to_string_lossy(), &digest(stat, &entry)?);
        }
    }
    Ok(k.finish())
}

/// A file's digest; a failure names the file (the OS error alone does not say which).
fn digest(stat: &StatCache, path: &Path) -> std::io::Result<Digest> {
    stat.digest(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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
    context: &ImageContext,
    runner: &dyn Runner,
    req: &ImageRequest,
    stat: &StatCache,
    state: &Mutex<State>,
    layers: Option<&dyn LayerTier>,
) -> Result<(ImageResult, bool), ImagePhaseError> {
    let key = image_key(req, context.dpkg_root(), stat).map_err(ImagePhaseError::Inputs)?;
    let index = req.layout_dir.join(oci::layout::INDEX_FILE);
    if let Some((k, v)) = state.lock().unwrap().images.get(&req.service) {
        if *k == key && index.is_file() {
            if let Ok(img) = serde_json::from_value::<ImageResult>(v.clone()) {
                // The manifest blob the state names must still be in the layout.
                if oci::layout::blob_path(&req.layout_dir, &img.digest).is_file() {
                    return Ok((img, true));
                }
            }
        }
    }
    let img = image::assemble_tiered(context, runner, req, layers)?;
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
    meta: &Meta,
    img: &ImageResult,
    cache_dir: &Path,
) -> Result<(), SbomError> {
    let r = &ws.recipes[i];
    let mut toolchains = Vec::new();
    let mut recipes = Vec::new();
    for j in graph::build_order(&ws.graph(), &[i]) {
        let rj = &ws.recipes[j];
        let tc = &prepared.toolchains[&rj.toolchain.value];
        if !toolchains.iter().any(|(n, _)| n == &tc.spec.name) {
            toolchains.push((tc.spec.name.clone(), tc.fingerprint));
        }
        recipes.push((rj.file.clone(), Digest::of(rj.source_text.as_bytes())));
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
    crate::sbom::write_for_image(&input).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ImageRequest {
        ImageRequest {
            service: "svc".into(),
            family: image::Family::Cxx,
            version: "1.0.0".into(),
            description: String::new(),
            licenses: String::new(),
            revision: "r".into(),
            source: String::new(),
            binary: "/ws/out/bin/svc".into(),
            binary_name: "svc".into(),
            workspace_libs: vec![],
            library_paths: vec![],
            extra_files: vec![],
            extra_libraries: vec![],
            entrypoint: vec!["/usr/local/bin/svc".into()],
            cmd: vec![],
            env: BTreeMap::new(),
            ports: vec![8080],
            workdir: "/".into(),
            labels: BTreeMap::new(),
            healthcheck: None,
            stop_signal: "SIGTERM".into(),
            ca_certificates: false,
            format: image::ManifestFormat::Oci,
            source_date_epoch: 0,
            budget: 1,
            layout_dir: "/ws/out/images/svc".into(),
            debug_dir: "/ws/out/debug".into(),
            cache_dir: "/cache/layers".into(),
        }
    }

    #[test]
    fn every_field_that_shapes_the_image_changes_the_key() {
        let base = request_fields(&request());
        let changes: Vec<fn(&mut ImageRequest)> = vec![
            |r| r.ports.push(9090),
            |r| r.format = image::ManifestFormat::Docker,
            |r| r.stop_signal = "SIGINT".into(),
            |r| r.source_date_epoch = 1,
            |r| {
                r.healthcheck = Some(image::Healthcheck {
                    test: vec!["CMD".into()],
                    ..Default::default()
                })
            },
            |r| {
                r.extra_files.push(image::ExtraFile {
                    src: "/ws/a".into(),
                    dst: "/a".into(),
                    mode: None,
                })
            },
            |r| {
                r.env.insert("A".into(), "1".into());
            },
        ];
        for change in changes {
            let mut r = request();
            change(&mut r);
            assert_ne!(request_fields(&r), base);
        }
        assert_eq!(request_fields(&request()), base);
    }
}
