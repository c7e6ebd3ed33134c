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
use crate::recipe::Kind;
use crate::vcs::Meta;
use crate::workspace::{Workspace, WorkspaceError};

pub use copy::CopySource;
pub use layer::diff_archives;

#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    pub services: Vec<ServiceResult>,
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
    /// Manifest digests of the original and the rebuilt image.
    pub original: Digest,
    pub rebuilt: Digest,
}

/// One difference between the original and the rebuild.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub service: String,
    /// What differs: `layer 3 of 4 sha256:... "history text"`, `config sha256:...`, `debug file`.
    pub artifact: String,
    /// The file inside a layer, when the difference is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: ", self.service, self.artifact)?;
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

/// Rebuilds `services` (every service when empty) from a fresh copy and compares; every process
/// (the builds, git) goes through `runner`.
pub fn verify(
    runner: &dyn Runner,
    ws: &Workspace,
    services: &[String],
    jobs: usize,
) -> Result<VerifyReport, VerifyError> {
    let names = service_names(ws, services)?;
    eprintln!(
        "kiln: verify: building {} in the workspace",
        names.join(", ")
    );
    let original = build(
        runner,
        ws,
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
        &names,
        jobs,
        cache.path(),
        Some(&meta),
        "fresh copy",
    )?;

    let mut report = VerifyReport {
        services: Vec::new(),
        mismatches: Vec::new(),
        copied,
        kept: None,
    };
    for name in &names {
        let (a, b) = (&original[name], &rebuilt[name]);
        report
            .mismatches
            .extend(compare_service(ws, &copy_ws, name, a, b)?);
        report.services.push(ServiceResult {
            name: name.clone(),
            original: a.digest,
            rebuilt: b.digest,
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

fn build(
    runner: &dyn Runner,
    ws: &Workspace,
    names: &[String],
    jobs: usize,
    cache_dir: &Path,
    meta: Option<&Meta>,
    which: &'static str,
) -> Result<BTreeMap<String, ImageResult>, VerifyError> {
    let opts = BuildOptions {
        targets: names.to_vec(),
        jobs,
        images: true,
        cache_dir: cache_dir.to_path_buf(),
        keep_going: false,
    };
    let outcome = match meta {
        Some(m) => driver::build_with_meta(ws, &opts, runner, &NoProgress, m)?,
        None => driver::build(ws, &opts, runner, &NoProgress)?,
    };
    let mut problems: Vec<String> = Vec::new();
    for t in &outcome.targets {
        for (id, rep) in &t.failures {
            problems.push(format!("{id}:\n{}", rep.stderr.trim_end()));
        }
    }
    for (service, e) in &outcome.image_errors {
        problems.push(format!("image for `{service}`: {}", crate::error::chain(e)));
    }
    if outcome.failed || !problems.is_empty() {
        return Err(VerifyError::Build {
            which,
            detail: problems.join("\n"),
        });
    }
    Ok(outcome.images)
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
                artifact,
                path: None,
                detail,
            });
        }
    }
    Ok(out)
}
