//! `kiln toolchain resolve`: the pinned package set of a toolchain root, resolved from the
//! archive's signed index and printed as the `[[debian.package]]` tables a lock will hold.
//! `kiln toolchain root` goes on to fetch, unpack and materialise that root and prints its
//! path. Neither needs a workspace; both write only to `$KILN_CACHE/debian/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use crate::debian::http::{HttpError, ReqwestHttp};
use crate::debian::resolve::ResolveError;
use crate::debian::signature::DEBIAN_KEYRING;
use crate::debian::sources::{self, SourcesError, MIRROR_ENV};
use crate::debian::store::Downloads;
use crate::debian::{locked, Archive, DebianError};
use crate::exec::ProcessRunner;

#[derive(clap::Subcommand, Debug)]
pub enum ToolchainCmd {
    /// Resolve the dependency closure of Debian packages and print it as `[[debian.package]]`.
    Resolve(ResolveArgs),
    /// Resolve, fetch and materialise the toolchain root of Debian packages; prints its path.
    Root(ResolveArgs),
    /// The workspace's toolchains: where each comes from and what kiln.lock pins for it.
    List,
    /// Pin (if kiln.lock does not yet) and materialise the roots of the workspace's Debian
    /// toolchains on every platform of the workspace, fetching only what the store lacks;
    /// prints each root. A CI warm-up step.
    Fetch,
    /// One toolchain in full: its definition, its pinned packages and its root.
    Show {
        /// The toolchain's name (`gcc`, `gnat`, or one of toolchains/).
        name: String,
    },
    /// Push pinned Debian toolchains to a registry as images of their package trees.
    Push(super::toolchain_image::PushArgs),
    /// Pull pinned Debian toolchains' package trees from a registry into the store.
    Pull(super::toolchain_image::PullArgs),
}

#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    /// Root packages (e.g. g++-12 libc6-dev libstdc++-12-dev).
    #[arg(required_unless_present = "toolchain")]
    pub packages: Vec<String>,
    /// Also take the `packages` of this workspace toolchain (`toolchains/NAME.toml`) as roots.
    #[arg(long, value_name = "NAME")]
    pub toolchain: Option<String>,
    /// Suites to read, in order (repeatable).
    #[arg(long = "suite", default_values_t = ["bookworm".to_string(), "bookworm-updates".to_string(), "bookworm-security".to_string()])]
    pub suites: Vec<String>,
    #[arg(long, default_value = "amd64")]
    pub arch: String,
    #[arg(long, default_value = "main")]
    pub component: String,
    /// Keyring the InRelease files must be signed by.
    #[arg(long, default_value = DEBIAN_KEYRING)]
    pub keyring: PathBuf,
    /// Also include every `Essential: yes` package and its closure.
    #[arg(long)]
    pub with_essential: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Debian(#[from] DebianError),
    /// Boxed: the CLI's error is large, and this one travels by value.
    #[error(transparent)]
    Workspace(Box<super::Error>),
    #[error(transparent)]
    Image(#[from] super::toolchain_image::Error),
    #[error("no toolchain named {name:?} in toolchains/ or built in (there are: {known})")]
    UnknownToolchain { name: String, known: String },
}

impl From<super::Error> for ToolchainError {
    fn from(e: super::Error) -> Self {
        ToolchainError::Workspace(Box::new(e))
    }
}

impl CliError for ToolchainError {
    fn exit_code(&self) -> u8 {
        match self {
            // Bad input: a package or suite that does not exist.
            ToolchainError::Sources(SourcesError::NoMirror { .. }) => 2,
            ToolchainError::Debian(DebianError::Resolve(ResolveError::Unknown { .. })) => 2,
            ToolchainError::UnknownToolchain { .. } => 2,
            ToolchainError::Workspace(e) => e.exit_code(),
            ToolchainError::Image(e) => e.exit_code(),
            _ => 1,
        }
    }
}

pub fn run(cmd: &ToolchainCmd, dir: &Option<PathBuf>) -> Result<ExitCode, ToolchainError> {
    let args = match cmd {
        ToolchainCmd::Resolve(args) | ToolchainCmd::Root(args) => args,
        ToolchainCmd::List => return list(dir, None),
        ToolchainCmd::Fetch => return fetch(dir),
        ToolchainCmd::Show { name } => return list(dir, Some(name)),
        ToolchainCmd::Push(args) => return Ok(super::toolchain_image::push(args, dir)?),
        ToolchainCmd::Pull(args) => return Ok(super::toolchain_image::pull(args, dir)?),
    };
    let mut roots = args.packages.clone();
    let mut alone = Vec::new();
    if let Some(name) = &args.toolchain {
        let ws = super::load_workspace(dir)?;
        let Some(tc) = ws.toolchains.get(name) else {
            return Err(ToolchainError::UnknownToolchain {
                name: name.clone(),
                known: ws.toolchains.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        roots.extend(tc.packages.iter().cloned());
        alone = tc.without_dependencies.clone();
    }
    let env_mirror = std::env::var(MIRROR_ENV).ok();
    let mut mirrors = BTreeMap::new();
    for s in &args.suites {
        let m = sources::mirror_for(s, env_mirror.as_deref(), Path::new("/etc/apt"))?;
        mirrors.insert(s.clone(), m);
    }
    let http = ReqwestHttp::new()?;
    let archive = Archive {
        http: &http,
        cas: None,
        runner: &ProcessRunner,
        keyring: args.keyring.clone(),
        downloads: Downloads::new(&crate::cache::default_dir()),
        mirrors,
        component: args.component.clone(),
        architecture: args.arch.clone(),
        now: crate::toolchain::hermetic::unix_now(),
    };
    let packages = archive.resolve_request(
        &args.suites,
        &crate::debian::resolve::Request {
            roots,
            architecture: args.arch.clone(),
            with_essential: args.with_essential,
            without_dependencies: alone,
        },
    )?;
    if let ToolchainCmd::Root(_) = cmd {
        let (set, root) = archive.root(&packages)?;
        outln!("{}", root.display());
        eprintln!("kiln: toolchain root {set} ({} package(s))", packages.len());
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", locked::to_toml(&packages));
    eprintln!(
        "kiln: {} package(s), set digest {}",
        packages.len(),
        locked::set_digest(&packages)
    );
    Ok(ExitCode::SUCCESS)
}

/// `kiln toolchain list` (every toolchain, one line each) and `show NAME` (one, in full).
fn list(dir: &Option<PathBuf>, only: Option<&String>) -> Result<ExitCode, ToolchainError> {
    let ws = super::load_workspace(dir)?;
    if let Some(name) = only.filter(|n| !ws.toolchains.contains_key(*n)) {
        return Err(ToolchainError::UnknownToolchain {
            name: name.clone(),
            known: ws.toolchains.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let lock = crate::lockfile::read(&crate::lockfile::path(&ws.root))
        .ok()
        .flatten()
        .unwrap_or_default();
    let store = crate::toolchain::hermetic::downloads(&crate::cache::default_dir());
    for (name, spec) in &ws.toolchains {
        if only.is_some_and(|n| n != name) {
            continue;
        }
        let origin = if spec.is_builtin() {
            "built-in".to_string()
        } else {
            spec.file.clone()
        };
        let pins = lock.toolchain.get(name).and_then(|t| t.debian.as_ref());
        let (source, pinned) = match &spec.source {
            crate::toolchain::ToolchainSource::Host => (
                "host: this machine's installed packages (not reproducible elsewhere)".to_string(),
                String::new(),
            ),
            crate::toolchain::ToolchainSource::Debian {
                suites,
                architecture,
            } => (
                format!("debian {} {architecture}", suites.join(",")),
                match pins {
                    Some(p) => {
                        let set = locked::set_digest(&p.package);
                        let here = crate::debian::root::root_dir(&store, &set).is_dir();
                        format!(
                            ", {} package(s) pinned, set {set}{}",
                            p.package.len(),
                            if here { ", root materialised" } else { "" }
                        )
                    }
                    None => ", not pinned yet (the next build pins it)".to_string(),
                },
            ),
        };
        outln!(
            "{name}\t{} ({origin}) from {source}{pinned}",
            spec.language_name()
        );
        if only.is_none() {
            continue;
        }
        for (role, program) in spec.programs() {
            outln!("  {role}: {program}");
        }
        outln!("  cflags: {}", spec.cflags.join(" "));
        if let Some(p) = pins {
            outln!("  requested: {}", p.packages.join(" "));
            if !p.without_dependencies.is_empty() {
                outln!(
                    "  without dependencies: {}",
                    p.without_dependencies.join(" ")
                );
            }
            for pkg in &p.package {
                outln!(
                    "  {} {} {} (source {} {})",
                    pkg.name,
                    pkg.version,
                    pkg.architecture,
                    pkg.source,
                    pkg.source_version
                );
            }
            let set = locked::set_digest(&p.package);
            let root = crate::debian::root::root_dir(&store, &set);
            if root.is_dir() {
                outln!("  root: {}", root.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln toolchain fetch`: every Debian toolchain a recipe uses, on every platform of the
/// workspace (`gcc` and `gcc-arm64`), pinned and materialised.
fn fetch(dir: &Option<PathBuf>) -> Result<ExitCode, ToolchainError> {
    let ws = super::load_workspace(dir)?;
    let mut printed = std::collections::BTreeSet::new();
    for platform in &ws.platforms {
        let view = ws.for_platform(*platform);
        // A recipe with no toolchain for this platform is the build's error, not fetch's.
        let all: Vec<usize> = (0..view.recipes.len())
            .filter(|&i| !view.no_toolchain.contains_key(&view.recipes[i].name))
            .collect();
        let toolchains = crate::driver::resolve_toolchains(
            &ProcessRunner,
            &view,
            &all,
            &crate::cache::default_dir(),
            crate::toolchain::hermetic::PinPolicy::Update,
        )
        .map_err(|e| ToolchainError::Workspace(Box::new(super::Error::Driver(e))))?;
        for (name, tc) in &toolchains {
            if let Some(root) = &tc.root {
                if printed.insert(name.clone()) {
                    outln!("{name}\t{}\t{}", root.set, root.dir.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
