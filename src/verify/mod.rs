//! `kiln verify`: does a fresh checkout, built from nothing, give the same bytes as this one?
//!
//! 1. The workspace itself is built (incrementally, with the usual cache), so the comparison is
//!    against what the current sources produce, not against a stale `out/`.
//! 2. A fresh copy ([`copy`]: the files git tracks, or everything but `out/`) is built in a
//!    temporary directory with an empty temporary cache, so nothing is reused from step 1: every
//!    compile, link, strip and layer compression runs again. The copy has no `.git`, so the
//!    original's revision, SOURCE_DATE_EPOCH and source URL are passed in explicitly.
//! 3. Every blob of every service's OCI layout, the service binary and its debug file are
//!    compared byte for byte; the first difference is explained ([`compare`]).
//!
//! On a mismatch the rebuilt copy is kept (its path is in the report) so the two can be
//! inspected side by side; the temporary cache is always removed.

mod bytes;
mod compare;
mod copy;
mod json;
mod layer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::build::NoProgress;
use crate::digest::Digest;
use crate::driver::{self, BuildOptions, DriverError};
use crate::exec::Runner;
use crate::image::{ImageError, ImageResult};
use crate::platform::Platform;
use crate::recipe::Kind;
use crate::vcs::Meta;
use crate::workspace::{Workspace, WorkspaceError};

pub use copy::CopySource;
pub use layer::diff_archives;

#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    /// Each service's image, once per platform.
    pub services: Vec<ServiceResult>,
    /// Each service's image index, in a workspace that keeps platforms apart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexResult>,
    /// Each difference found; empty when every service rebuilt bit for bit.
    pub mismatches: Vec<Mismatch>,
    /// Which files were copied for the rebuild.
    pub copied: CopySource,
    /// The rebuilt workspace, kept for inspection when something differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct ServiceResult {
    pub name: String,
    /// The image's platform, in a workspace that keeps platforms apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Manifest digests of the original and the rebuilt image.
    pub original: Digest,
    pub rebuilt: Digest,
}

#[derive(Debug, serde::Serialize)]
pub struct IndexResult {
    pub name: String,
    /// Digests of the original and the rebuilt image index.
    pub original: Digest,
    pub rebuilt: Digest,
}

/// One difference between the original and the rebuild.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub service: String,
    /// The platform whose image differs, in a workspace that keeps platforms apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// What differs: `layer 3 of 4 sha256:... "history text"`, `config sha256:...`, `debug file`.
    pub artifact: String,
    /// The file inside a layer, when the difference is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.platform {
            Some(p) => write!(f, "{} ({p}): {}: ", self.service, self.artifact)?,
            None => write!(f, "{}: {}: ", self.service, self.artifact)?,
        }
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.detail)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("building the {which} failed:\n{detail}")]
    Build { which: &'static str, detail: String },
    #[error("copying the workspace {path}: {reason}")]
    Copy { path: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: not valid JSON: {detail}")]
    BadJson { path: PathBuf, detail: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl VerifyError {
    fn io(verb: &str, path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> VerifyError {
        let context = format!("{verb} {}", path.as_ref().display());
        move |source| VerifyError::Io { context, source }
    }
}

/// Rebuilds `services` (every service when empty) from a fresh copy and compares, for each of
/// `platforms` (`linux/arm64`; the workspace's platforms when empty) and, in a workspace that
/// keeps platforms apart, each service's image index too; every process (the builds, git) goes
/// through `runner`.
pub fn verify(
    runner: &dyn Runner,
    ws: &Workspace,
    services: &[String],
    platforms: &[String],
    jobs: usize,
) -> Result<VerifyReport, VerifyError> {
    let names = service_names(ws, services)?;
    let chosen = driver::chosen_platforms(ws, platforms)?;
    // A workspace of the one default platform builds into `out/` itself, without an index.
    let split = ws.splits_platforms() || chosen.iter().any(|p| !p.is_default());
    let platforms = split.then_some(chosen.as_slice());
    eprintln!(
        "kiln: verify: building {} in the workspace",
        names.join(", ")
    );
    let original = build(
        runner,
        ws,
        platforms,
        &names,
        jobs,
        &crate::cache::default_dir(),
        None,
        "workspace",
    )?;

    let meta = Meta::of(runner, &ws.root);
    let tmp = tempfile::Builder::new()
        .prefix("kiln-verify-")
        .tempdir()
        .map_err(VerifyError::io(
            "creating a temporary directory in",
            std::env::temp_dir(),
        ))?;
    let copy_root = tmp.path().join("workspace");
    let copied = copy::copy_workspace(runner, &ws.root, &copy_root)?;
    let cache = tempfile::Builder::new()
        .prefix("kiln-verify-cache-")
        .tempdir()
        .map_err(VerifyError::io(
            "creating a temporary directory in",
            std::env::temp_dir(),
        ))?;
    eprintln!(
        "kiln: verify: rebuilding from a fresh copy in {} with an empty cache",
        copy_root.display()
    );
    let copy_ws = Workspace::load(&copy_root)?;
    let rebuilt = build(
        runner,
        &copy_ws,
        platforms,
        &names,
        jobs,
        cache.path(),
        Some(&meta),
        "fresh copy",
    )?;

    let mut report = VerifyReport {
        services: Vec::new(),
        indexes: Vec::new(),
        mismatches: Vec::new(),
        copied,
        kept: None,
    };
    for (a, b) in original.platforms.iter().zip(&rebuilt.platforms) {
        let platform = a.platform.map(|p| p.to_string());
        for name in &names {
            let (ia, ib) = (&a.images[name], &b.images[name]);
            let mut found = compare_service(&a.view, &b.view, name, ia, ib)?;
            for m in &mut found {
                m.platform.clone_from(&platform);
            }
            report.mismatches.extend(found);
            report.services.push(ServiceResult {
                name: name.clone(),
                platform: platform.clone(),
                original: ia.digest,
                rebuilt: ib.digest,
            });
        }
    }
    for name in &names {
        let (Some(da), Some(db)) = (original.indexes.get(name), rebuilt.indexes.get(name)) else {
            continue;
        };
        // A difference in a platform's image is already reported; the index follows from it.
        if da != db && !report.mismatches.iter().any(|m| &m.service == name) {
            let out = |w: &Workspace| crate::workspace::OutDir::of(&w.root).image(name);
            report
                .mismatches
                .extend(compare::index_layouts(name, &out(ws), &out(&copy_ws))?);
        }
        report.indexes.push(IndexResult {
            name: name.clone(),
            original: *da,
            rebuilt: *db,
        });
    }
    if !report.mismatches.is_empty() {
        report.kept = Some(tmp.keep().join("workspace"));
    }
    Ok(report)
}

fn service_names(ws: &Workspace, services: &[String]) -> Result<Vec<String>, VerifyError> {
    let selected = driver::select(ws, services, |r| r.kind == Kind::Service)?;
    let mut names = Vec::new();
    for i in selected {
        let r = &ws.recipes[i];
        if r.kind != Kind::Service {
            return Err(VerifyError::Usage(format!(
                "`{}` is a {}, not a service; kiln verify compares service images",
                r.name,
                r.kind.as_str()
            )));
        }
        names.push(r.name.clone());
    }
    if names.is_empty() {
        return Err(VerifyError::Usage(
            "the workspace has no services to verify".into(),
        ));
    }
    Ok(names)
}

/// What one build of the selected services made.
struct Built {
    platforms: Vec<PlatformImages>,
    /// Service → its image index digest (a workspace that keeps platforms apart).
    indexes: BTreeMap<String, Digest>,
}

/// One platform's images, with the workspace view (its `out/`) they were built in.
struct PlatformImages {
    /// `None` for a workspace of the one default platform.
    platform: Option<Platform>,
    view: Workspace,
    images: BTreeMap<String, ImageResult>,
}

#[allow(clippy::too_many_arguments)]
fn build(
    runner: &dyn Runner,
    ws: &Workspace,
    platforms: Option<&[Platform]>,
    names: &[String],
    jobs: usize,
    cache_dir: &Path,
    meta: Option<&Meta>,
    which: &'static str,
) -> Result<Built, VerifyError> {
    let opts = BuildOptions {
        targets: names.to_vec(),
        jobs,
        images: true,
        cache_dir: cache_dir.to_path_buf(),
        keep_going: false,
    };
    let mut problems: Vec<String> = Vec::new();
    let mut failed = false;
    let mut check = |outcome: &driver::BuildOutcome, prefix: &str| {
        failed |= outcome.failed;
        for t in &outcome.targets {
            for (id, rep) in &t.failures {
                problems.push(format!("{prefix}{id}:\n{}", rep.stderr.trim_end()));
            }
        }
        for (service, e) in &outcome.image_errors {
            problems.push(format!(
                "{prefix}image for `{service}`: {}",
                crate::error::chain(e)
            ));
        }
    };
    let built = match platforms {
        None => {
            let outcome = match meta {
                Some(m) => driver::build_with_meta(ws, &opts, runner, &NoProgress, m)?,
                None => driver::build(ws, &opts, runner, &NoProgress)?,
            };
            check(&outcome, "");
            Built {
                platforms: vec![PlatformImages {
                    platform: None,
                    view: ws.clone(),
                    images: outcome.images,
                }],
                indexes: BTreeMap::new(),
            }
        }
        Some(platforms) => {
            let all =
                driver::build_platforms(ws, platforms, &opts, runner, &NoProgress, None, meta)?;
            for (p, outcome) in &all.builds {
                check(outcome, &format!("{p}: "));
            }
            for (service, e) in &all.index_errors {
                problems.push(format!(
                    "image index for `{service}`: {}",
                    crate::error::chain(e)
                ));
            }
            Built {
                platforms: all
                    .builds
                    .into_iter()
                    .map(|(p, outcome)| PlatformImages {
                        platform: Some(p),
                        view: ws.for_platform(p),
                        images: outcome.images,
                    })
                    .collect(),
                indexes: all.indexes,
            }
        }
    };
    if failed || !problems.is_empty() {
        return Err(VerifyError::Build {
            which,
            detail: problems.join("\n"),
        });
    }
    Ok(built)
}

/// Differences for one service: its OCI layout, then the unstripped binary and its debug file
/// (neither is in the image whole, and both are release artifacts).
fn compare_service(
    ws: &Workspace,
    copy_ws: &Workspace,
    name: &str,
    a: &ImageResult,
    b: &ImageResult,
) -> Result<Vec<Mismatch>, VerifyError> {
    let mut out = compare::layouts(name, &a.layout, &b.layout)?;
    // The view's recipe: its product is under the platform's `out/`.
    let recipe = ws.recipe(name).expect("selected from this workspace");
    let product = crate::build::plan::product_path(recipe);
    let files = [
        (
            format!("binary {}", product.display()),
            ws.root.join(&product),
            copy_ws.root.join(&product),
        ),
        (
            format!("debug file out/debug/{name}.debug"),
            a.debug_file.clone(),
            b.debug_file.clone(),
        ),
    ];
    for (artifact, fa, fb) in files {
        let read = |p: &Path| std::fs::read(p).map_err(VerifyError::io("reading", p));
        if let Some(detail) = bytes::describe(&read(&fa)?, &read(&fb)?) {
            out.push(Mismatch {
                service: name.to_string(),
                platform: None,
                artifact,
                path: None,
                detail,
            });
        }
    }
    Ok(out)
}
