//! `kiln worker`: a bot of the Remote Workers API (BuildGrid's Bots service) that runs the
//! actions `kiln build --remote-exec` sends.
//!
//! The session ([`session`]): `CreateBotSession` with the worker's properties (`OSFamily`, and
//! one `kiln-toolchain` per fingerprint of the toolchains it has, so the scheduler gives it only
//! actions it can run), then `UpdateBotSession` in a loop. A lease the server offers (`PENDING`)
//! is accepted (`ACTIVE`) and run on a thread while the loop keeps reporting it, every
//! [`HEARTBEAT`], so the server sees a live bot; the finished lease goes back `COMPLETED` with
//! the `ActionResult` packed in its result. One lease at a time per worker; several workers on
//! one machine each have their own bot id and temporary directories.
//!
//! Running a lease ([`run`]): the Action and Command from the payload and the CAS, the input
//! root materialised in a fresh temporary directory (every blob verified), `$WS` in the arguments
//! replaced by that directory (kiln's commands map it away with `-ffile-prefix-map`, so outputs do
//! not depend on where the worker put them), output parents created, the command run through the
//! [`Runner`] with exactly the Command's environment (plus the worker's `PATH` when the Command
//! sets none), then outputs, stdout and stderr uploaded.
//!
//! An action of a Debian toolchain (platform property `kiln-toolchain-root`, see
//! [`crate::remote::toolchain_root`]) runs as kiln runs it locally: its root materialised from
//! the pins blob ([`root`]), the command in bubblewrap with the root read-only at `/`, the input
//! root at `/ws`, the environment cleared and set to exactly the Command's. A root that cannot
//! be materialised completes the lease `FAILED_PRECONDITION` with a violation naming the root
//! (not a missing blob, so the client does not upload again but runs the action itself).
//!
//! Bounded: each `UpdateBotSession` has a deadline; consecutive failures end the worker after
//! [`MAX_FAILURES`] (a server restart shorter than that is ridden out, and a session the server
//! forgot is created again). A worker that is killed stops updating; the server then expires
//! its session after its keep-alive timeout and gives the lease to another bot.

pub mod root;
pub mod run;
pub mod session;

use std::path::PathBuf;

use crate::digest::Digest;
use crate::remote::RemoteConfig;

/// How often a running lease is reported.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);
/// Consecutive failed calls before the worker gives up.
pub const MAX_FAILURES: usize = 60;

/// What `kiln worker` was asked to do.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub server: RemoteConfig,
    /// The bot's id, unique in the farm.
    pub bot_id: String,
    /// Fingerprints of the toolchains this machine has.
    pub toolchains: Vec<Digest>,
    /// Where temporary input roots go (default: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Stop after this many leases (tests; default: run until killed).
    pub max_leases: Option<usize>,
    /// How this worker runs actions of Debian toolchains; None without bubblewrap (then it
    /// does not advertise `kiln-sandbox` and is given none).
    pub roots: Option<Roots>,
}

/// What running an action in a Debian toolchain's root takes ([`root`]).
#[derive(Clone, Debug)]
pub struct Roots {
    /// bubblewrap.
    pub bwrap: PathBuf,
    /// The Debian store roots are materialised in (the one builds on this machine use).
    pub store: crate::debian::store::Downloads,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker cannot reach its server")]
    Remote(#[source] crate::remote::RemoteError),
    #[error("{0}")]
    Protocol(String),
}
