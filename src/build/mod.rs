//! Running a [`plan::Plan`]: in dependency order, in parallel, each action through the cache.
//!
//! For every action, in this order:
//! 1. *fresh*: the local state says its outputs in `out/` came from the same base key and the same
//!    discovered dependencies, and they are still there: nothing to do;
//! 2. *cached*: an action-cache entry matches: outputs are restored from the CAS;
//! 3. *remote*: with a remote cache, its result for the action is fetched, verified, stored in the
//!    local cache and restored like a local hit ([`remote`]);
//! 4. *run*: the command runs in a private staging directory; only on success are its outputs
//!    stored in the CAS, recorded in the action cache and renamed into `out/`.
//!
//! A failed action leaves no entry in the cache and removes its old outputs and those of every
//! action depending on it, so `out/` never holds a product older than its sources. By default the
//! first failure stops the build (running actions finish); with `keep_going` (`kiln build -k`)
//! everything that does not depend on a failure still runs, like `make -k`.
//!
//! A cache hit whose blob turns out damaged while it is restored is a miss: the entry is deleted,
//! the next entry or the command itself runs, and the cache records the damage for the CLI.
//!
//! The parts follow ninja's: `schedule` decides what runs when (the ready list, workers, what a
//! failure stops), `lifecycle` takes one action through fresh / cached / remote / run, `remote`
//! is the remote cache's part of that, `lazy` the outputs remote execution leaves in the CAS,
//! and `command`
//! turns an action's template into the concrete command line; the process itself is the
//! [`Runner`]'s.

pub mod lazy;
pub mod plan;
pub mod state;
#[cfg(test)]
mod tests;

mod command;
mod lifecycle;
pub mod remote;
mod schedule;

use std::collections::BTreeMap;
use std::path::Path;

use crate::cache::stat::StatCache;
use crate::cache::Cache;
use crate::exec::Runner;
use crate::toolchain::Toolchain;
use plan::Action;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Fresh,
    Cached,
    /// Fetched from the remote cache (and stored in the local one).
    Remote,
    /// Run by a remote worker (`--remote-exec`), outputs verified and stored locally.
    #[serde(rename = "remote-exec")]
    RemoteExec,
    Ran,
    Failed,
    Skipped,
}

#[derive(Clone, Debug)]
pub struct ActionReport {
    pub outcome: Outcome,
    pub millis: u128,
    /// Compiler output (diagnostics on failure, warnings otherwise).
    pub stderr: String,
    pub command: String,
}

/// Progress callbacks, so the CLI decides between a bar, plain lines and silence.
pub trait Progress: Sync {
    fn started(&self, _action: &Action) {}
    fn finished(&self, _action: &Action, _report: &ActionReport, _done: usize, _total: usize) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

pub struct Executor<'a> {
    pub root: &'a Path,
    pub cache: &'a Cache,
    pub stat: &'a StatCache,
    pub toolchains: &'a BTreeMap<String, Toolchain>,
    pub runner: &'a dyn Runner,
    pub progress: &'a dyn Progress,
    pub jobs: usize,
    /// Keep starting actions that do not depend on a failed one.
    pub keep_going: bool,
    /// The remote cache, consulted after a local miss and filled after a local run.
    pub remote: Option<&'a remote::Remote>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ActionError {
    let context = context.into();
    move |source| ActionError::Io { context, source }
}
