//! The scheduler: runs a plan's actions in dependency order on `jobs` workers, keeps the ready
//! list in plan order so a run is deterministic, and decides what a failure stops (everything
//! not yet started, or with `keep_going` only what depends on it). Each action itself is
//! [`Executor::execute`]'s.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::plan::Plan;
use super::state::State;
use super::{ActionError, ActionReport, Executor, Outcome};

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
}
