//! Command-line interface: arguments become validated options here, and only here does an error
//! chain become text (`kiln: error: ...` then one `caused by:` line per cause).
//!
//! Exit status: 0 success; 1 build, test, verification or push failure; 2 usage or recipe error.

#[macro_use]
mod output;
mod build;
mod cache;
mod clean;
mod k8s;
mod lock;
mod push;
mod scan;
mod test;
mod toolchain;
mod toolchain_image;
mod verify;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workspace::{self, Workspace, WorkspaceError};

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Daemonless builds and minimal OCI images for C++ and Ada services"
)]
pub struct Cli {
    /// Run as if started in DIR (like make -C).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// Targets to build (default: every library and service).
    pub targets: Vec<String>,
    /// Parallel jobs (default: number of cores).
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write a `docker load`-able tarball of the images built (a single service's image,
    /// or all of them in one archive).
    #[arg(long, value_name = "PATH")]
    pub docker_archive: Option<PathBuf>,
    /// Fail if the machine's toolchains differ from kiln.lock.
    #[arg(long)]
    pub locked: bool,
    /// Build binaries only; skip image assembly.
    #[arg(long)]
    pub no_images: bool,
    /// Keep going after a failure: build everything that does not depend on it, then report
    /// every failure (like make -k). Still exits 1.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// A REAPI remote cache (grpc://HOST:PORT, grpcs://HOST:PORT): looked up after a local
    /// miss, filled after a local run. Overrides `[remote] cache` in kiln.toml and the user's
    /// config. A token comes from KILN_REMOTE_TOKEN, other headers from KILN_REMOTE_HEADER.
    #[arg(long, value_name = "URL")]
    pub remote_cache: Option<String>,
    /// The remote cache's instance name (default: `[remote] instance`, else "").
    #[arg(long, value_name = "NAME")]
    pub remote_instance: Option<String>,
    /// Use no remote cache, whatever the config files say.
    #[arg(long, conflicts_with_all = ["remote_cache", "remote_instance", "remote_exec"])]
    pub no_remote_cache: bool,
    /// Remote execution (grpc://HOST:PORT): actions that miss both caches are sent to this
    /// server's Execute service (and its CAS and action cache serve as the remote cache).
    /// Overrides `[remote] exec`. See docs/remote.md for what its workers need.
    #[arg(long, value_name = "URL")]
    pub remote_exec: Option<String>,
    /// Build for this platform (`linux/amd64`, `linux/arm64`; repeatable). Default: the
    /// workspace's `platforms` in kiln.toml, else linux/amd64.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platform: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build targets and their dependencies into out/, and images for services.
    Build(BuildArgs),
    /// Remove out/ (the cache is kept, so the next build is served from it).
    Clean,
    /// Print the target graph in Graphviz DOT.
    Graph,
    /// Write compile_commands.json for clangd and other tools.
    CompileCommands,
    /// Build and run test targets; writes JUnit XML to out/test-results/.
    Test {
        targets: Vec<String>,
        #[arg(short = 'j', long = "jobs")]
        jobs: Option<usize>,
        /// Run tests even if their inputs did not change.
        #[arg(long)]
        rerun: bool,
        #[arg(long)]
        json: bool,
        /// Build and run every test a build failure does not block, then report all failures.
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// Build and run the tests for this platform (`linux/arm64` ones run under
        /// qemu-user's `qemu-aarch64`). Default: linux/amd64.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
    },
    /// Push service images to an OCI registry (builds first if needed).
    Push(push::PushArgs),
    /// Store registry credentials in the docker config, like `docker login`.
    Login(push::LoginArgs),
    /// Show an image's layers and largest files.
    Inspect {
        service: String,
        #[arg(long)]
        json: bool,
        /// The platform's image to show (`linux/arm64`) in a multi-platform workspace.
        /// Default: linux/amd64.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
    },
    /// Rebuild in a fresh copy with an empty cache and compare every blob.
    Verify {
        services: Vec<String>,
        /// Verify this platform's images (repeatable). Default: every platform of the
        /// workspace, and the image indexes over them.
        #[arg(long = "platform", value_name = "OS/ARCH")]
        platform: Vec<String>,
        #[arg(short = 'j', long = "jobs")]
        jobs: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Record toolchain fingerprints and package versions in kiln.lock.
    Lock,
    /// Check, collect or describe the shared cache ($KILN_CACHE).
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Write Kubernetes manifests for services (a Kustomize layout with -o DIR).
    K8s(k8s::K8sArgs),
    /// Rewrite kiln://SERVICE image references to the digests `kiln push` recorded.
    Resolve(k8s::ResolveArgs),
    /// Check the Debian packages in service images against an OSV database.
    Scan(scan::ScanArgs),
    /// Toolchain roots from pinned Debian packages.
    #[command(subcommand)]
    Toolchain(toolchain::ToolchainCmd),
    /// Run actions for a REAPI server's Remote Workers (Bots) service, e.g. BuildGrid's.
    Worker(worker::WorkerArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&*e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// An error with the exit status it deserves.
pub trait CliError: std::error::Error {
    fn exit_code(&self) -> u8;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Driver(#[from] crate::driver::DriverError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Resolve(#[from] crate::deploy::resolve::ResolveError),
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error(transparent)]
    Lock(Box<crate::lock::LockError>),
    #[error(transparent)]
    Verify(Box<crate::verify::VerifyError>),
    #[error(transparent)]
    Clean(Box<clean::CleanError>),
    #[error(transparent)]
    Remote(#[from] crate::remote::settings::SettingsError),
    #[error("{0}")]
    Failed(String),
}

impl CliError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Workspace(_) => 2,
            Error::Driver(crate::driver::DriverError::Usage(_)) => 2,
            Error::Driver(crate::driver::DriverError::Toolchain(_)) => 2,
            Error::Driver(crate::driver::DriverError::CacheConfig(_)) => 2,
            Error::Driver(_) => 1,
            Error::Deploy(
                crate::deploy::DeployError::UnknownService(_)
                | crate::deploy::DeployError::NotAService { .. }
                | crate::deploy::DeployError::NoPorts { .. },
            ) => 2,
            Error::Deploy(_) => 1,
            Error::Resolve(crate::deploy::resolve::ResolveError::UnknownService { .. }) => 2,
            Error::Resolve(_) => 1,
            // Could not scan (bad database or allowlist, no image yet): not a finding, so not 1.
            Error::Scan(crate::scan::ScanError::Write { .. }) => 1,
            Error::Scan(_) => 2,
            // A bad [remote] table, URL or header: the build has not started.
            Error::Remote(_) => 2,
            Error::Lock(_) | Error::Verify(_) | Error::Clean(_) | Error::Failed(_) => 1,
        }
    }
}

pub fn load_workspace(dir: &Option<PathBuf>) -> Result<Workspace, Error> {
    let start = dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = workspace::find_root(&start)?;
    Ok(Workspace::load(&root)?)
}

pub fn jobs(j: Option<usize>) -> usize {
    j.filter(|&j| j > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn CliErrorBox>> {
    if let Cmd::Login(args) = &cli.command {
        return push::login(args).map_err(boxed);
    }
    // The cache belongs to the machine, not to a workspace.
    if let Cmd::Cache(cmd) = &cli.command {
        return cache::run(cmd).map_err(boxed);
    }
    if let Cmd::Toolchain(cmd) = &cli.command {
        return toolchain::run(cmd, &cli.dir).map_err(|e| Box::new(e) as Box<dyn CliErrorBox>);
    }
    let ws = load_workspace(&cli.dir).map_err(boxed)?;
    match cli.command {
        Cmd::Build(args) => build::run(&ws, &args).map_err(boxed),
        Cmd::Clean => clean::run(&ws).map_err(boxed),
        Cmd::Graph => {
            out!("{}", crate::graph::to_dot(&ws.graph()));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CompileCommands => build::compile_commands(&ws).map_err(boxed),
        Cmd::Test {
            targets,
            jobs: j,
            rerun,
            json,
            keep_going,
            platform,
        } => {
            let ws = match platform {
                None => ws,
                Some(p) => ws.for_platform(parse_platform(&p)?),
            };
            test::run(&ws, &targets, jobs(j), rerun, json, keep_going).map_err(boxed)
        }
        Cmd::Push(args) => push::run(&ws, &args).map_err(boxed),
        Cmd::Login(_) | Cmd::Cache(_) | Cmd::Toolchain(_) => {
            unreachable!("handled before loading a workspace")
        }
        Cmd::Inspect {
            service,
            json,
            platform,
        } => {
            let ws = match platform {
                None => ws,
                Some(p) => ws.for_platform(parse_platform(&p)?),
            };
            build::inspect(&ws, &service, json).map_err(boxed)
        }
        Cmd::Verify {
            services,
            platform,
            jobs: j,
            json,
        } => verify::run(&ws, &services, &platform, jobs(j), json).map_err(boxed),
        Cmd::K8s(args) => k8s::run(&ws, &args).map_err(boxed),
        Cmd::Resolve(args) => k8s::resolve(&ws, &args).map_err(boxed),
        Cmd::Scan(args) => scan::run(&ws, &args).map_err(boxed),
        Cmd::Lock => lock::run(&ws).map_err(boxed),
        Cmd::Worker(args) => worker::run(&ws, &args).map_err(boxed),
    }
}

/// Object-safe view of [`CliError`] for the top-level error box.
pub trait CliErrorBox: std::error::Error {
    fn exit_code(&self) -> u8;
}
impl<T: CliError> CliErrorBox for T {
    fn exit_code(&self) -> u8 {
        CliError::exit_code(self)
    }
}

/// `--platform`'s value; an unknown one is a usage error naming the known ones.
fn parse_platform(text: &str) -> Result<crate::platform::Platform, Box<dyn CliErrorBox>> {
    crate::platform::Platform::parse(text)
        .map_err(|e| boxed(crate::driver::DriverError::Usage(e.to_string()).into()))
}

fn boxed(e: Error) -> Box<dyn CliErrorBox> {
    Box::new(e)
}
