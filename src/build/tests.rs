//! The executor with a scripted runner: scheduling, failure and cache behaviour, where a real
//! compiler is not the point (tests/engine.rs covers the real ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::plan::{Action, ActionOutput, Discover, Plan};
use super::state::State;
use super::{Executor, NoProgress, Outcome};
use crate::cache::stat::StatCache;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::exec::scripted::{self, Scripted};
use crate::exec::{Command, Output, Runner};
use crate::recipe::Language;
use crate::toolchain::{Toolchain, ToolchainSpec};

/// The compiler the executor runs, through a scripted runner: writes `<name>` into the staging
/// directory named by the last argument, after a pause, and fails for arguments listed in `fail`.
/// Tracks the highest concurrency seen. With `pair_up`, calls wait (bounded) until two have run
/// at once, so a parallel executor is seen running two actions together however the machine
/// schedules its threads.
#[derive(Default)]
struct FakeCompiler {
    running: AtomicUsize,
    max_running: AtomicUsize,
    fail: Vec<String>,
    pair_up: bool,
}

impl FakeCompiler {
    fn compile(&self, cmd: &Command) -> std::io::Result<Output> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if self.pair_up {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while self.max_running.load(Ordering::SeqCst) < 2
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(30));
        let name = cmd.args[0].clone();
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail.contains(&name) {
            return Ok(scripted::failed(
                1,
                format!("{name}: error: scripted failure\n"),
            ));
        }
        let cwd = cmd.cwd.as_ref().expect("actions run in a chosen directory");
        std::fs::write(
            cwd.join(cmd.args.last().unwrap()),
            format!("object of {name}"),
        )?;
        Ok(scripted::ok(Vec::new()))
    }
}

/// The actions `runner` was asked to run, by name.
fn names(
    runner: &Scripted<impl Fn(&Command) -> std::io::Result<Output> + Send + Sync>,
) -> Vec<String> {
    runner.calls().iter().map(|c| c.args[0].clone()).collect()
}

fn toolchain() -> BTreeMap<String, Toolchain> {
    let spec = ToolchainSpec {
        name: "fake".into(),
        file: "toolchains/fake.toml".into(),
        language: Language::Cxx,
        compiler: "cc".into(),
        archiver: "ar".into(),
        binder: "gnatbind".into(),
        cflags: Vec::new(),
        ldflags: Vec::new(),
        bindflags: Vec::new(),
        packages: Vec::new(),
        install: "fake".into(),
        wx_config: "wx-config".into(),
        source: crate::toolchain::ToolchainSource::Host,
        without_dependencies: Vec::new(),
        image: None,
        platform: crate::platform::Platform::default(),
    };
    let tc = Toolchain {
        spec,
        programs: [("compiler".to_string(), PathBuf::from("/bin/true"))].into(),
        fingerprint: Digest::of(b"fake toolchain"),
        package_versions: BTreeMap::new(),
        library_paths: Vec::new(),
        ada_include: None,
        root: None,
    };
    [("fake".to_string(), tc)].into()
}

/// `n` actions; `deps[i]` lists the actions action `i` waits for.
fn plan(root: &Path, deps: &[&[usize]]) -> Plan {
    let mut p = Plan::default();
    for (i, d) in deps.iter().enumerate() {
        let src = PathBuf::from(format!("src/a{i}.c"));
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join(&src), format!("source {i}")).unwrap();
        let mut inputs = vec![src];
        inputs.extend(d.iter().map(|j| PathBuf::from(format!("out/a{j}.o"))));
        p.actions.push(Action {
            id: format!("a{i}"),
            target: 0,
            kind: "fake-compile",
            toolchain: "fake".into(),
            program: "compiler".into(),
            argv: vec![format!("a{i}"), format!("$OUT/a{i}.o")],
            in_staging: false,
            inputs,
            deps: d.to_vec(),
            outputs: vec![ActionOutput {
                name: format!("a{i}.o"),
                dest: PathBuf::from(format!("out/a{i}.o")),
                executable: false,
            }],
            discover: Discover::None,
            binder_file: None,
        });
    }
    p
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: Cache,
    stat_path: PathBuf,
    toolchains: BTreeMap<String, Toolchain>,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    std::fs::create_dir_all(root.join("out")).unwrap();
    let cache = Cache::open(tmp.path().join("cache")).unwrap();
    Env {
        root,
        cache,
        stat_path: tmp.path().join("stat.json"),
        toolchains: toolchain(),
        _tmp: tmp,
    }
}

impl Env {
    fn run(
        &self,
        plan: &Plan,
        runner: &dyn Runner,
        jobs: usize,
        state: &Mutex<State>,
    ) -> Vec<Outcome> {
        self.run_with(plan, runner, jobs, state, false)
    }

    fn run_with(
        &self,
        plan: &Plan,
        runner: &dyn Runner,
        jobs: usize,
        state: &Mutex<State>,
        keep_going: bool,
    ) -> Vec<Outcome> {
        // One build, as one kiln process runs it: a stat cache loaded from disk.
        let stat = StatCache::load(self.stat_path.clone());
        let exec = Executor {
            root: &self.root,
            cache: &self.cache,
            stat: &stat,
            toolchains: &self.toolchains,
            runner,
            progress: &NoProgress,
            jobs,
            keep_going,
            remote: None,
        };
        let outcomes = exec
            .run(plan, state)
            .into_iter()
            .map(|r| r.outcome)
            .collect();
        stat.save().unwrap();
        outcomes
    }
}

#[test]
fn independent_actions_run_in_parallel_up_to_the_job_limit() {
    let e = env();
    let plan = plan(&e.root, &[&[], &[], &[], &[], &[], &[]]);
    let compiler = FakeCompiler {
        pair_up: true,
        ..Default::default()
    };
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    let outcomes = e.run(&plan, &runner, 2, &Mutex::new(State::default()));
    assert!(outcomes.iter().all(|o| *o == Outcome::Ran));
    assert_eq!(compiler.max_running.load(Ordering::SeqCst), 2);
}

#[test]
fn an_action_starts_only_after_everything_it_needs() {
    let e = env();
    // a0 -> a1 -> a3, a2 -> a3
    let plan = plan(&e.root, &[&[], &[0], &[], &[1, 2]]);
    let compiler = FakeCompiler::default();
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    e.run(&plan, &runner, 4, &Mutex::new(State::default()));
    let calls = names(&runner);
    let pos = |n: &str| calls.iter().position(|c| c == n).unwrap();
    assert!(
        pos("a0") < pos("a1") && pos("a1") < pos("a3") && pos("a2") < pos("a3"),
        "{calls:?}"
    );
}

#[test]
fn a_failure_skips_dependants_caches_nothing_and_is_retried_next_time() {
    let e = env();
    let plan = plan(&e.root, &[&[], &[0]]);
    let failing_compiler = FakeCompiler {
        fail: vec!["a0".into()],
        ..Default::default()
    };
    let failing = Scripted::new(|c: &Command| failing_compiler.compile(c));
    let state = Mutex::new(State::default());
    assert_eq!(
        e.run(&plan, &failing, 1, &state),
        vec![Outcome::Failed, Outcome::Skipped]
    );
    assert!(!e.root.join("out/a0.o").exists());

    // Nothing was cached for the failure: the next run runs it again (and now it works).
    let compiler = FakeCompiler::default();
    let working = Scripted::new(|c: &Command| compiler.compile(c));
    assert_eq!(
        e.run(&plan, &working, 1, &state),
        vec![Outcome::Ran, Outcome::Ran]
    );
    // Then everything is fresh; after losing out/ and the state, it all comes from the cache.
    assert_eq!(
        e.run(&plan, &working, 1, &state),
        vec![Outcome::Fresh, Outcome::Fresh]
    );
    std::fs::remove_dir_all(e.root.join("out")).unwrap();
    let calls_before = working.calls().len();
    assert_eq!(
        e.run(&plan, &working, 1, &Mutex::new(State::default())),
        vec![Outcome::Cached, Outcome::Cached]
    );
    assert_eq!(
        working.calls().len(),
        calls_before,
        "a cache hit ran the runner"
    );
    assert_eq!(
        std::fs::read_to_string(e.root.join("out/a1.o")).unwrap(),
        "object of a1"
    );
}

#[test]
fn keep_going_runs_everything_that_does_not_depend_on_a_failure() {
    let e = env();
    // a0 fails, a1 needs it; a2 fails on its own; a3 and a4 (after a3) are independent.
    let plan = plan(&e.root, &[&[], &[0], &[], &[], &[3]]);
    let compiler = FakeCompiler {
        fail: vec!["a0".into(), "a2".into()],
        ..Default::default()
    };
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    let outcomes = e.run_with(&plan, &runner, 1, &Mutex::new(State::default()), true);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::Failed,
            Outcome::Ran,
            Outcome::Ran
        ]
    );
    // Without it, the first failure stops the build (one job: nothing else was running).
    let e = env();
    let compiler = FakeCompiler {
        fail: vec!["a0".into(), "a2".into()],
        ..Default::default()
    };
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    let outcomes = e.run(&plan, &runner, 1, &Mutex::new(State::default()));
    assert_eq!(outcomes[0], Outcome::Failed);
    assert!(
        outcomes[1..].iter().all(|o| *o == Outcome::Skipped),
        "{outcomes:?}"
    );
}

#[test]
fn a_damaged_blob_is_a_miss_that_reruns_the_action_and_is_reported_once() {
    let e = env();
    let plan = plan(&e.root, &[&[], &[0]]);
    let compiler = FakeCompiler::default();
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    e.run(&plan, &runner, 1, &Mutex::new(State::default()));
    let good = std::fs::read(e.root.join("out/a0.o")).unwrap();
    let blob = e.cache.blob_path(&Digest::of(&good));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();

    std::fs::remove_dir_all(e.root.join("out")).unwrap();
    let calls_before = runner.calls().len();
    let outcomes = e.run(&plan, &runner, 1, &Mutex::new(State::default()));
    assert_eq!(outcomes, vec![Outcome::Ran, Outcome::Cached]);
    assert_eq!(
        names(&runner)[calls_before..],
        ["a0".to_string()],
        "only the action whose blob was damaged reran"
    );
    assert_eq!(std::fs::read(e.root.join("out/a0.o")).unwrap(), good);
    let damage = e.cache.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].blob, Digest::of(&good));
    assert_eq!(damage[0].actual, Digest::of(&bytes));
    // The rerun stored the good bytes again.
    assert_eq!(std::fs::read(&blob).unwrap(), good);
}

#[test]
fn an_unparsable_entry_is_a_miss_and_is_removed() {
    let e = env();
    let plan = plan(&e.root, &[&[]]);
    let compiler = FakeCompiler::default();
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    e.run(&plan, &runner, 1, &Mutex::new(State::default()));
    let entries: Vec<PathBuf> = walk_files(&e.cache.root().join("ac"));
    assert_eq!(entries.len(), 1);
    std::fs::write(&entries[0], "{ not json").unwrap();
    std::fs::remove_dir_all(e.root.join("out")).unwrap();
    assert_eq!(
        e.run(&plan, &runner, 1, &Mutex::new(State::default())),
        vec![Outcome::Ran]
    );
    // The rerun wrote a good entry in its place.
    let entry: crate::cache::ActionEntry =
        serde_json::from_slice(&std::fs::read(&entries[0]).unwrap()).unwrap();
    assert_eq!(entry.outputs.len(), 1);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn a_changed_input_reruns_its_action_and_the_ones_after_it() {
    let e = env();
    let plan = plan(&e.root, &[&[], &[0], &[]]);
    let compiler = FakeCompiler::default();
    let runner = Scripted::new(|c: &Command| compiler.compile(c));
    let state = Mutex::new(State::default());
    e.run(&plan, &runner, 2, &state);
    std::fs::write(e.root.join("src/a0.c"), "source 0, edited").unwrap();
    // The scripted object does not depend on the source text, so a1's input is unchanged.
    assert_eq!(
        e.run(&plan, &runner, 2, &state),
        vec![Outcome::Ran, Outcome::Fresh, Outcome::Fresh]
    );
}

/// The remote keys (src/build/remote.rs): what enters them and what must not.
#[test]
fn remote_keys_cover_the_discovered_dependencies_and_not_the_workspace_path() {
    fn digests(e: &Env) -> Vec<Digest> {
        let plan = plan(&e.root, &[&[]]);
        std::fs::create_dir_all(e.root.join("inc")).unwrap();
        std::fs::write(e.root.join("inc/a.h"), "header").unwrap();
        let stat = StatCache::load(e.stat_path.clone());
        let exec = Executor {
            root: &e.root,
            cache: &e.cache,
            stat: &stat,
            toolchains: &e.toolchains,
            runner: &crate::exec::scripted::Scripted::new(|_: &Command| {
                Ok(scripted::ok(Vec::new()))
            }),
            progress: &NoProgress,
            jobs: 1,
            keep_going: false,
            remote: None,
        };
        let a = &plan.actions[0];
        let argv = exec.argv(a).unwrap();
        let key = |deps: Option<&[(String, Digest)]>| {
            let ra = exec.remote_action(a, &argv, deps).unwrap();
            let enc = ra.encode(true).unwrap();
            (enc.digest.digest, ra.inputs.len())
        };
        let h = Digest::of(b"header");
        let (manifest, _) = key(None);
        let (with_header, n) = key(Some(&[("inc/a.h".into(), h)]));
        assert_eq!(n, 2, "a workspace header is in the input root");
        let (other_header, _) = key(Some(&[("inc/a.h".into(), Digest::of(b"other"))]));
        let (system, n) = key(Some(&[("/usr/include/x.h".into(), h)]));
        assert_eq!(n, 1, "a system header is not");
        let (other_system, _) = key(Some(&[("/usr/include/x.h".into(), Digest::of(b"2"))]));
        let (sibling, n) = key(Some(&[("../sibling/x.h".into(), h)]));
        assert_eq!(n, 1, "nor one reached through ..");
        let all = [
            manifest,
            with_header,
            other_header,
            system,
            other_system,
            sibling,
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y, "two different actions share a remote key: {all:?}");
            }
        }
        all.to_vec()
    }
    // The same action in two workspaces at different paths has the same keys.
    assert_eq!(digests(&env()), digests(&env()));
}
