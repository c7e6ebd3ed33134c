//! What the build did per target, tallied from the executor's per-action reports.

use std::path::PathBuf;

use super::select::Prepared;
use crate::build::{ActionReport, Outcome};
use crate::cache::stats::BuildStats;
use crate::recipe::Kind;
use crate::workspace::Workspace;

#[derive(Debug, serde::Serialize)]
pub struct TargetReport {
    pub name: String,
    pub kind: Kind,
    pub outputs: Vec<PathBuf>,
    pub actions_run: usize,
    pub actions_cached: usize,
    /// Actions whose outputs came from the remote cache.
    pub actions_remote: usize,
    /// Actions a remote worker ran (`--remote-exec`).
    pub actions_remote_exec: usize,
    pub actions_fresh: usize,
    /// Actions not started because something they need failed (or the build stopped).
    pub skipped: usize,
    /// Ids of the actions that ran a command.
    pub ran: Vec<String>,
    /// Where each action's outputs came from this build, in plan order (failed and skipped
    /// actions are in `failures` and `skipped`).
    pub actions: Vec<ActionSource>,
    pub duration_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<serde_json::Value>,
    #[serde(skip)]
    pub failures: Vec<(String, ActionReport)>,
}

/// One action and where its outputs came from.
#[derive(Debug, serde::Serialize)]
pub struct ActionSource {
    pub id: String,
    /// `local` (its command ran), `local-cache`, `remote-cache`, `remote-exec` (a remote worker
    /// ran it), or `up-to-date` (out/ already
    /// held its outputs).
    pub source: &'static str,
}

/// One report per target, in build order.
pub fn tally(ws: &Workspace, prepared: &Prepared, reports: &[ActionReport]) -> Vec<TargetReport> {
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
            actions_remote: 0,
            actions_remote_exec: 0,
            actions_fresh: 0,
            skipped: 0,
            ran: Vec::new(),
            actions: Vec::new(),
            duration_ms: 0,
            image: None,
            failures: Vec::new(),
        };
        for &a in &tp.actions {
            let rep = &reports[a];
            t.duration_ms += rep.millis;
            let source = match rep.outcome {
                Outcome::Ran => Some("local"),
                Outcome::Cached => Some("local-cache"),
                Outcome::Remote => Some("remote-cache"),
                Outcome::RemoteExec => Some("remote-exec"),
                Outcome::Fresh => Some("up-to-date"),
                Outcome::Failed | Outcome::Skipped => None,
            };
            if let Some(source) = source {
                t.actions.push(ActionSource {
                    id: prepared.plan.actions[a].id.clone(),
                    source,
                });
            }
            match rep.outcome {
                Outcome::Ran => {
                    t.actions_run += 1;
                    t.ran.push(prepared.plan.actions[a].id.clone());
                }
                Outcome::Cached => t.actions_cached += 1,
                Outcome::Remote => t.actions_remote += 1,
                Outcome::RemoteExec => t.actions_remote_exec += 1,
                Outcome::Fresh => t.actions_fresh += 1,
                Outcome::Failed => t
                    .failures
                    .push((prepared.plan.actions[a].id.clone(), rep.clone())),
                Outcome::Skipped => t.skipped += 1,
            }
        }
        targets.push(t);
    }
    targets
}

/// The cache statistics' view of a build: how many actions came from where.
pub fn counts(reports: &[ActionReport], damaged: usize) -> BuildStats {
    let mut counts = BuildStats {
        damaged: damaged as u64,
        ..Default::default()
    };
    for r in reports {
        match r.outcome {
            Outcome::Cached => counts.cached += 1,
            Outcome::Remote => counts.remote += 1,
            // The command ran (elsewhere); for the cache statistics, a miss like a local run.
            Outcome::Ran | Outcome::RemoteExec => counts.ran += 1,
            Outcome::Fresh => counts.fresh += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Skipped => {}
        }
    }
    counts
}
