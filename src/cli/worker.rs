//! `kiln worker --server URL [--instance NAME]`: a bot for BuildGrid's Remote Workers API that
//! runs what `kiln build --remote-exec` sends ([`crate::worker`]). Run inside a workspace (or
//! with `-C DIR`), it advertises the fingerprints of that workspace's host toolchains, so the
//! scheduler gives it only actions whose toolchain it has, and `kiln-sandbox=bwrap` when
//! bubblewrap is on its `PATH`: then it takes any Debian toolchain's action, materialising the
//! root from the pins the action names in the machine's Debian store.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Error;
use crate::debian::sandbox::find_bwrap;
use crate::exec::ProcessRunner;
use crate::remote::RemoteConfig;
use crate::toolchain::hermetic;
use crate::toolchain::{Toolchain, ToolchainSource};
use crate::worker::{session, Roots, WorkerOptions};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The server's Bots, CAS and ByteStream services (grpc://HOST:PORT, grpcs://HOST:PORT).
    /// A token comes from KILN_REMOTE_TOKEN, other headers from KILN_REMOTE_HEADER.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The instance (farm) name (default "").
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,
    /// The bot's id, unique among the server's bots (default: host name and process id).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Where input roots are materialised (default: the temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Exit after this many leases (default: run until stopped).
    #[arg(long, value_name = "N")]
    pub max_leases: Option<usize>,
}

pub fn run(ws: &Workspace, args: &WorkerArgs) -> Result<ExitCode, Error> {
    let mut cfg = RemoteConfig::new(args.server.trim());
    cfg.instance_name = args.instance.clone();
    let cfg = cfg
        .with_headers_from(|k| std::env::var(k).ok())
        .map_err(|e| Error::Remote(crate::remote::settings::SettingsError::Remote(e)))?;
    let cache_dir = crate::cache::default_dir();
    let mut toolchains = Vec::new();
    for spec in ws.toolchains.values() {
        // Host toolchains are what this machine has installed; a Debian one's root comes with
        // each action instead.
        if matches!(spec.source, ToolchainSource::Host) {
            let tc = Toolchain::resolve(&ProcessRunner, spec, &cache_dir)
                .map_err(|e| Error::Failed(crate::error::chain(&e)))?;
            toolchains.push(tc.fingerprint);
        }
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host.trim(), std::process::id()));
    // Debian toolchains' actions bring their root's pins; bubblewrap runs them over it.
    let roots = find_bwrap(std::env::var_os("PATH").as_deref()).map(|bwrap| Roots {
        bwrap,
        store: hermetic::downloads(&cache_dir),
    });
    let opts = WorkerOptions {
        server: cfg,
        bot_id: id.clone(),
        toolchains,
        work_dir: args.work_dir.clone(),
        max_leases: args.max_leases,
        roots,
    };
    eprintln!(
        "kiln: worker {id} serving {} for {} host toolchain(s){}",
        opts.server.redacted_url(),
        opts.toolchains.len(),
        if opts.roots.is_some() {
            " and Debian toolchains (bubblewrap)"
        } else {
            "; no Debian toolchains (bubblewrap is not installed)"
        }
    );
    session::serve(&opts, &ProcessRunner).map_err(|e| Error::Failed(crate::error::chain(&e)))?;
    Ok(ExitCode::SUCCESS)
}
