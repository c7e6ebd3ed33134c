//! `kiln toolchain push` and `kiln toolchain pull`: a workspace's Debian toolchains, as
//! kiln.lock pins them, to and from a registry as images of their package trees
//! ([`crate::toolchain::image`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliError;
use crate::exec::ProcessRunner;
use crate::registry::PushOptions;
use crate::toolchain::hermetic::{self, PinPolicy};
use crate::toolchain::image::{self, ImageError};
use crate::toolchain::{ToolchainSource, ToolchainSpec};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Toolchains to push (default: every Debian toolchain of the workspace).
    pub names: Vec<String>,
    /// Destination: REGISTRY[:PORT]/PREFIX; each toolchain goes to PREFIX/toolchain-NAME.
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    pub to: String,
    /// Parallel uploads (and layers written at a time).
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Allow plain HTTP to this registry (loopback registries always may).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    /// Trust this CA certificate (PEM) for the registry.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Toolchains to pull (default: every Debian toolchain of the workspace).
    pub names: Vec<String>,
    /// Source: REGISTRY[:PORT]/PREFIX, as given to `kiln toolchain push --to`.
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    pub from: String,
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Workspace(Box<super::Error>),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Toolchain(#[from] crate::toolchain::ToolchainError),
    #[error("toolchain `{toolchain}`")]
    Image {
        toolchain: String,
        source: Box<ImageError>,
    },
}

impl CliError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Workspace(e) => e.exit_code(),
            Error::Usage(_) => 2,
            Error::Toolchain(crate::toolchain::ToolchainError::NotLocked { .. }) => 2,
            _ => 1,
        }
    }
}

/// The toolchains named (all Debian ones when none is), each a Debian toolchain.
fn select<'a>(ws: &'a Workspace, names: &[String]) -> Result<Vec<&'a ToolchainSpec>, Error> {
    if names.is_empty() {
        return Ok(ws
            .toolchains
            .values()
            .filter(|s| matches!(s.source, ToolchainSource::Debian { .. }))
            .collect());
    }
    names
        .iter()
        .map(|n| match ws.toolchains.get(n) {
            None => Err(Error::Usage(format!(
                "no toolchain named {n:?} (there are: {})",
                ws.toolchains.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            Some(s) if s.source == ToolchainSource::Host => Err(Error::Usage(format!(
                "toolchain `{n}` uses the host's compilers (source = \"host\"): only Debian toolchains have package trees to push or pull"
            ))),
            Some(s) => Ok(s),
        })
        .collect()
}

fn options(
    location: &str,
    insecure: &[String],
    ca_file: &Option<PathBuf>,
) -> Result<PushOptions, Error> {
    let (registry, prefix) = image::parse_location(location).ok_or_else(|| {
        Error::Usage(format!(
            "{location:?} must start with a registry host (REGISTRY[:PORT]/PREFIX), for example 127.0.0.1:5000/team"
        ))
    })?;
    let mut opts = PushOptions::new(&registry);
    opts.prefix = prefix;
    opts.insecure_registries = insecure.to_vec();
    opts.ca_file = ca_file.clone();
    Ok(opts)
}

fn load(dir: &Option<PathBuf>) -> Result<Workspace, Error> {
    super::load_workspace(dir).map_err(|e| Error::Workspace(Box::new(e)))
}

/// The lock's pins of `spec`. A toolchain kiln.lock does not pin is an error when it was
/// named, and skipped with a note when it was only one of "every toolchain".
fn pins(
    ws: &Workspace,
    spec: &ToolchainSpec,
    cache_dir: &std::path::Path,
    skip_unpinned: bool,
) -> Result<Option<crate::lockfile::LockedRoot>, Error> {
    match hermetic::pins(&ProcessRunner, &ws.root, spec, cache_dir, PinPolicy::Locked) {
        Ok(p) => Ok(Some(p)),
        Err(e @ crate::toolchain::ToolchainError::NotLocked { .. }) if skip_unpinned => {
            eprintln!("kiln: skipping {}", crate::error::chain(&e));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn push(args: &PushArgs, dir: &Option<PathBuf>) -> Result<ExitCode, Error> {
    let ws = load(dir)?;
    let mut opts = options(&args.to, &args.insecure, &args.ca_file)?;
    opts.jobs = args.jobs.max(1);
    let cache_dir = crate::cache::default_dir();
    opts.holders_file = Some(crate::publish::holders_file(&cache_dir, &opts.registry));
    for spec in select(&ws, &args.names)? {
        let Some(pinned) = pins(&ws, spec, &cache_dir, args.names.is_empty())? else {
            continue;
        };
        // The trees the store has are used as they are; missing ones come from the archive.
        let store = hermetic::downloads(&cache_dir);
        let trees =
            hermetic::with_archive(&ProcessRunner, spec, &pinned, store, None, |archive| {
                archive.trees(&pinned.package).map_err(|e| {
                    crate::toolchain::ToolchainError::Debian {
                        toolchain: spec.name.clone(),
                        detail: crate::error::chain(&e),
                    }
                })
            })?;
        let (written, report) = image::push(&opts, &spec.name, &pinned.package, &trees, &cache_dir)
            .map_err(|e| Error::Image {
                toolchain: spec.name.clone(),
                source: Box::new(e),
            })?;
        outln!(
            "{} {}/{}:{} {}",
            spec.name,
            opts.registry,
            opts.repository(&image::repository_name(&spec.name))
                .unwrap_or_default(),
            written.tag,
            report.digest
        );
        eprintln!(
            "kiln: toolchain {}: {} layer(s), {} uploaded ({} bytes), {} already there, {} mounted",
            spec.name,
            written.layers,
            report.uploaded_blobs,
            report.uploaded_bytes,
            report.skipped_blobs,
            report.mounted_blobs
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pull(args: &PullArgs, dir: &Option<PathBuf>) -> Result<ExitCode, Error> {
    let ws = load(dir)?;
    let opts = options(&args.from, &args.insecure, &args.ca_file)?;
    let cache_dir = crate::cache::default_dir();
    let store = hermetic::downloads(&cache_dir);
    for spec in select(&ws, &args.names)? {
        let Some(pinned) = pins(&ws, spec, &cache_dir, args.names.is_empty())? else {
            continue;
        };
        let set = crate::debian::locked::set_digest(&pinned.package);
        if crate::debian::root::root_dir(&store, &set).is_dir() {
            eprintln!(
                "kiln: toolchain {}: root {set} already materialised",
                spec.name
            );
            continue;
        }
        let report =
            image::pull(&opts, &spec.name, &pinned.package, &store).map_err(|e| Error::Image {
                toolchain: spec.name.clone(),
                source: Box::new(e),
            })?;
        outln!(
            "{} {} ({} tree(s) pulled, {} already here)",
            spec.name,
            report.reference,
            report.pulled,
            report.present
        );
    }
    Ok(ExitCode::SUCCESS)
}
