//! Running a [`plan::Plan`]: in dependency order, in parallel, each action through the cache.
//!
//! For every action, in this order:
//! 1. *fresh*: the local state says its outputs in `out/` came from the same base key and the same
//!    discovered dependencies, and they are still there: nothing to do;
//! 2. *cached*: an action-cache entry matches: outputs are restored from the CAS;
//! 3. *run*: the command runs in a private staging directory; only on success are its outputs
//!    stored in the CAS, recorded in the action cache and renamed into `out/`.
//!
//! A failed action leaves no entry in the cache and removes its old outputs and those of every
//! action depending on it, so `out/` never holds a product older than its sources. By default the
//! first failure stops the build (running actions finish); with `keep_going` (`kiln build -k`)
//! everything that does not depend on a failure still runs, like `make -k`.
//!
//! A cache hit whose blob turns out damaged while it is restored is a miss: the entry is deleted,
//! the next entry or the command itself runs, and the cache records the damage for the CLI.

pub mod plan;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::cache::key::{allowed_env, full_key, KeyBuilder};
use crate::cache::stat::StatCache;
use crate::cache::{ActionEntry, Cache, OutputEntry, RestoreError};
use crate::digest::Digest;
use crate::exec::{Command, Runner};
use crate::toolchain::{gcc, gnat, Toolchain};
use plan::{Action, Discover, Plan};
use state::State;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Fresh,
    Cached,
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

struct Sched {
    remaining: Vec<usize>,
    ready: Vec<usize>,
    running: usize,
    done: usize,
    failed: bool,
    reports: Vec<Option<ActionReport>>,
}

impl Executor<'_> {
    /// Runs every action of `plan`; returns one report per action (Skipped when a dependency
    /// failed or the build stopped).
    pub fn run(&self, plan: &Plan, state: &Mutex<State>) -> Vec<ActionReport> {
        let n = plan.actions.len();
        let mut dependents = vec![Vec::new(); n];
        let mut remaining = vec![0; n];
        for (i, a) in plan.actions.iter().enumerate() {
            let mut deps = a.deps.clone();
            deps.sort_unstable();
            deps.dedup();
            remaining[i] = deps.len();
            for d in deps {
                dependents[d].push(i);
            }
        }
        let ready: Vec<usize> = (0..n).rev().filter(|&i| remaining[i] == 0).collect();
        let sched = Mutex::new(Sched {
            remaining,
            ready,
            running: 0,
            done: 0,
            failed: false,
            reports: vec![None; n],
        });
        let cv = Condvar::new();
        let workers = self.jobs.max(1).min(n.max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let idx = {
                        let mut s = sched.lock().unwrap();
                        loop {
                            if s.failed && s.running == 0 {
                                cv.notify_all();
                                return;
                            }
                            if !s.failed {
                                if let Some(i) = s.ready.pop() {
                                    s.running += 1;
                                    break i;
                                }
                            }
                            if s.running == 0 && (s.ready.is_empty() || s.failed) {
                                cv.notify_all();
                                return;
                            }
                            s = cv.wait(s).unwrap();
                        }
                    };
                    let action = &plan.actions[idx];
                    self.progress.started(action);
                    let start = Instant::now();
                    let report = match self.execute(action, state) {
                        Ok((outcome, stderr, command)) => ActionReport {
                            outcome,
                            millis: start.elapsed().as_millis(),
                            stderr,
                            command,
                        },
                        Err(e) => {
                            self.remove_stale_outputs(plan, idx, &dependents, state);
                            let command = match &e {
                                ActionError::Failed(_) => self
                                    .command_line(action)
                                    .map(|c| c.display())
                                    .unwrap_or_default(),
                                _ => String::new(),
                            };
                            ActionReport {
                                outcome: Outcome::Failed,
                                millis: start.elapsed().as_millis(),
                                stderr: crate::error::chain(&e),
                                command,
                            }
                        }
                    };
                    let mut s = sched.lock().unwrap();
                    s.running -= 1;
                    s.done += 1;
                    if report.outcome == Outcome::Failed {
                        // With keep_going, the failed action's dependants simply never become
                        // ready; everything else carries on.
                        s.failed = !self.keep_going;
                    } else {
                        for &d in &dependents[idx] {
                            s.remaining[d] -= 1;
                            if s.remaining[d] == 0 {
                                s.ready.push(d);
                            }
                        }
                        // Keep the ready list in plan order: deterministic scheduling, and
                        // libraries (planned first) get going first.
                        s.ready.sort_unstable_by(|a, b| b.cmp(a));
                    }
                    self.progress.finished(action, &report, s.done, n);
                    s.reports[idx] = Some(report);
                    cv.notify_all();
                });
            }
        });
        let s = sched.into_inner().unwrap();
        s.reports
            .into_iter()
            .map(|r| {
                r.unwrap_or(ActionReport {
                    outcome: Outcome::Skipped,
                    millis: 0,
                    stderr: String::new(),
                    command: String::new(),
                })
            })
            .collect()
    }

    fn remove_stale_outputs(
        &self,
        plan: &Plan,
        failed: usize,
        dependents: &[Vec<usize>],
        state: &Mutex<State>,
    ) {
        let mut stack = vec![failed];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            for o in &plan.actions[i].outputs {
                let _ = std::fs::remove_file(self.root.join(&o.dest));
            }
            state.lock().unwrap().actions.remove(&plan.actions[i].id);
            stack.extend(dependents[i].iter().copied());
        }
    }

    fn digest(&self, path: &Path) -> Result<Digest, ActionError> {
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        };
        self.stat
            .digest(&full)
            .map_err(io_ctx(format!("reading {}", path.display())))
    }

    /// The concrete command line, with the Ada binder's object list filled in.
    fn argv(&self, action: &Action) -> Result<Vec<String>, ActionError> {
        let Some(binder) = &action.binder_file else {
            return Ok(action.argv.clone());
        };
        let text = std::fs::read_to_string(self.root.join(binder))
            .map_err(io_ctx(format!("reading {}", binder.display())))?;
        let list = gnat::binder_link_list(&text, plan::FROM_STAGING);
        let mut out = Vec::new();
        for a in &action.argv {
            if a == "@BINDER_LIST@" {
                out.extend(list.iter().cloned());
            } else {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    fn staging(&self, action: &Action) -> PathBuf {
        // One directory per action identity; the workspace lock keeps two processes apart.
        let d = Digest::of(action.id.as_bytes());
        self.root.join("out/.kiln/tmp").join(&d.hex()[..16])
    }

    fn command_line(&self, action: &Action) -> Result<Command, ActionError> {
        let tc = &self.toolchains[&action.toolchain];
        let staging = self.staging(action);
        let ws = self.root.to_string_lossy();
        let out_prefix = if action.in_staging {
            String::new()
        } else {
            format!(
                "{}/",
                staging
                    .strip_prefix(self.root)
                    .unwrap_or(&staging)
                    .display()
            )
        };
        let args = self
            .argv(action)?
            .into_iter()
            .map(|a| a.replace("$OUT/", &out_prefix).replace("$WS", &ws))
            .collect();
        Ok(Command {
            program: tc.program(&action.program).to_path_buf(),
            args,
            cwd: Some(if action.in_staging {
                staging
            } else {
                self.root.to_path_buf()
            }),
            ..Command::default()
        })
    }

    fn base_key(&self, action: &Action, argv: &[String]) -> Result<Digest, ActionError> {
        let tc = &self.toolchains[&action.toolchain];
        let mut k = KeyBuilder::new(action.kind);
        k.toolchain(&tc.fingerprint);
        k.argv(std::slice::from_ref(&action.program));
        k.argv(argv);
        k.env(&allowed_env());
        for input in &action.inputs {
            let d = self.digest(input)?;
            k.input(&input.to_string_lossy(), &d);
        }
        Ok(k.finish())
    }

    /// The full key the recorded dependencies give with their current contents (None when one
    /// is gone).
    fn current_full_key(&self, base: &Digest, paths: &[String]) -> Option<Digest> {
        let deps: Option<Vec<(String, Digest)>> = paths
            .iter()
            .map(|p| self.digest(Path::new(p)).ok().map(|d| (p.clone(), d)))
            .collect();
        Some(full_key(base, &deps?))
    }

    fn deps_match(&self, deps: &[(String, Digest)]) -> bool {
        deps.iter()
            .all(|(p, d)| self.digest(Path::new(p)).map(|c| c == *d).unwrap_or(false))
    }

    fn execute(
        &self,
        action: &Action,
        state: &Mutex<State>,
    ) -> Result<(Outcome, String, String), ActionError> {
        let argv = self.argv(action)?;
        let base = self.base_key(action, &argv)?;

        // 1. Fresh?
        let prior = {
            let st = state.lock().unwrap();
            st.actions
                .get(&action.id)
                .map(|a| (a.clone(), st.dep_paths(a)))
        };
        if let Some((prev, dep_paths)) = &prior {
            if prev.base == base
                && prev
                    .outputs
                    .iter()
                    .all(|(p, d)| self.digest(p).map(|c| c == *d).unwrap_or(false))
                && self.current_full_key(&base, dep_paths).as_ref() == Some(&prev.full)
            {
                return Ok((Outcome::Fresh, String::new(), String::new()));
            }
        }

        // 2. Cached?
        for (full, entry) in self.cache.entries(&base) {
            if entry.outputs.len() != action.outputs.len() || !self.deps_match(&entry.deps) {
                continue;
            }
            if !entry.outputs.iter().all(|o| self.cache.has_blob(&o.digest)) {
                continue;
            }
            self.cache.touch_entry(&base, &full);
            if let Some(outputs) = self.restore(action, &base, &full, &entry)? {
                state
                    .lock()
                    .unwrap()
                    .record(&action.id, base, &entry.deps, outputs);
                return Ok((Outcome::Cached, entry.stderr, String::new()));
            }
        }

        // 3. Run.
        let cmd = self.command_line(action)?;
        let staging = self.staging(action);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(io_ctx(format!("creating {}", staging.display())))?;
        for o in &action.outputs {
            if let Some(parent) = self.root.join(&o.dest).parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_ctx(format!("creating {}", parent.display())))?;
            }
        }
        let out = self
            .runner
            .run(&cmd)
            .map_err(io_ctx(format!("running {}", cmd.program.display())))?;
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.success {
            let _ = std::fs::remove_dir_all(&staging);
            let status = out
                .code
                .map_or("a signal".to_string(), |c| format!("status {c}"));
            return Err(ActionError::Failed(format!(
                "{}\n`{}` exited with {status}",
                stderr.trim_end(),
                cmd.display()
            )));
        }

        let deps = self.discover(action, &staging)?;
        if let Discover::Ali(name, _) = &action.discover {
            scrub_ali(&staging.join(name)).map_err(io_ctx(format!("rewriting {name}")))?;
        }
        let mut entry_outputs = Vec::new();
        for o in &action.outputs {
            let produced = staging.join(&o.name);
            if !produced.is_file() {
                return Err(ActionError::Failed(format!(
                    "`{}` succeeded but did not produce {}",
                    cmd.display(),
                    o.name
                )));
            }
            let digest = self
                .cache
                .put_file(&produced)
                .map_err(io_ctx(format!("storing {} in the cache", o.name)))?;
            entry_outputs.push(OutputEntry {
                name: o.name.clone(),
                digest,
                executable: o.executable,
            });
        }
        let full = full_key(&base, &deps);
        let entry = ActionEntry {
            deps: deps.clone(),
            outputs: entry_outputs.clone(),
            stderr: stderr.clone(),
        };
        self.cache
            .put_entry(&base, &full, &entry)
            .map_err(io_ctx("writing the action cache"))?;

        let mut outputs = Vec::new();
        for (spec, o) in action.outputs.iter().zip(&entry_outputs) {
            let produced = staging.join(&spec.name);
            let dest = self.root.join(&spec.dest);
            use std::os::unix::fs::PermissionsExt;
            let mode = if o.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&produced, std::fs::Permissions::from_mode(mode))
                .map_err(io_ctx(format!("chmod {}", spec.name)))?;
            std::fs::rename(&produced, &dest)
                .map_err(io_ctx(format!("moving {} into place", spec.dest.display())))?;
            self.stat.forget(&dest);
            outputs.push((spec.dest.clone(), o.digest));
        }
        let _ = std::fs::remove_dir_all(&staging);
        state
            .lock()
            .unwrap()
            .record(&action.id, base, &deps, outputs);
        Ok((Outcome::Ran, stderr, cmd.display()))
    }

    /// Restores an entry's outputs into `out/`, each verified as it is copied. None when a blob
    /// is gone (collected meanwhile) or damaged (then the entry is deleted too): a miss.
    fn restore(
        &self,
        action: &Action,
        base: &Digest,
        full: &Digest,
        entry: &ActionEntry,
    ) -> Result<Option<Vec<(PathBuf, Digest)>>, ActionError> {
        let mut outputs = Vec::new();
        for (spec, o) in action.outputs.iter().zip(&entry.outputs) {
            let dest = self.root.join(&spec.dest);
            match self.cache.restore(&o.digest, &dest, o.executable) {
                Ok(()) => {}
                Err(RestoreError::Missing(_)) => return Ok(None),
                Err(RestoreError::Damaged(_)) => {
                    self.cache.remove_entry(base, full);
                    return Ok(None);
                }
                Err(RestoreError::Io { source, .. }) => {
                    return Err(ActionError::Io {
                        context: format!("restoring {} from the cache", spec.dest.display()),
                        source,
                    })
                }
            }
            self.stat.forget(&dest);
            outputs.push((spec.dest.clone(), o.digest));
        }
        Ok(Some(outputs))
    }

    /// Dependencies the compiler reported, as (workspace-relative or absolute path, digest).
    fn discover(
        &self,
        action: &Action,
        staging: &Path,
    ) -> Result<Vec<(String, Digest)>, ActionError> {
        let paths: Vec<PathBuf> = match &action.discover {
            Discover::None => Vec::new(),
            Discover::Depfile(name) => {
                let text = std::fs::read_to_string(staging.join(name))
                    .map_err(io_ctx(format!("reading depfile {name}")))?;
                gcc::parse_depfile(&text)
                    .into_iter()
                    .map(PathBuf::from)
                    .collect()
            }
            Discover::Ali(name, dirs) => {
                let text = std::fs::read_to_string(staging.join(name))
                    .map_err(io_ctx(format!("reading {name}")))?;
                gnat::ali_dependencies(&text)
                    .iter()
                    .filter_map(|f| gnat::resolve_source(f, dirs, self.root))
                    .collect()
            }
        };
        let mut out = Vec::new();
        for p in paths {
            let p = if p.is_absolute() {
                match p.strip_prefix(self.root) {
                    Ok(rel) => rel.to_path_buf(),
                    Err(_) => p,
                }
            } else {
                p
            };
            if action.inputs.contains(&p) {
                continue;
            }
            let d = self.digest(&p)?;
            out.push((p.to_string_lossy().into_owned(), d));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// GNAT records every compiler switch in the ALI file's `A` lines, the prefix map included, and
/// that one holds the workspace's absolute path. It is only a record (gnatbind does not compare
/// it), so it is dropped to keep ALI files, and everything keyed on them, path-independent.
fn scrub_ali(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| {
            !(l.starts_with("A -ffile-prefix-map=") || l.starts_with("A -fdebug-prefix-map="))
        })
        .collect();
    if kept.len() != text.len() {
        std::fs::write(path, kept)?;
    }
    Ok(())
}
