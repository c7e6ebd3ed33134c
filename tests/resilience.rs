//! kiln under failure and contention, with real g++ and GNAT: `-k` builds what a failure does not
//! block; a second process on one workspace waits and says so; a build killed with SIGKILL at
//! many points is finished by the next build with the same bytes as an undisturbed one; several
//! workspaces build into one cache while it is being collected.
//!
//! No assertion depends on timing: kill points are chosen by progress lines, waits are for
//! conditions with generous bounds, and every loop is bounded in count and time.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use support::kiln::{Kiln, Run};
use support::workspace::Workspace;

/// The longest any single wait here may take before the test fails (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(300);

impl Workspace {
    /// kiln with no cache limits from the developer's environment and a pinned
    /// SOURCE_DATE_EPOCH.
    fn pinned_kiln(&self) -> Kiln {
        self.kiln()
            .without_cache_limits()
            .env("SOURCE_DATE_EPOCH", "1700000000")
    }

    fn build_ok(&self, args: &[&str]) -> Run {
        let mut a = vec!["build"];
        a.extend_from_slice(args);
        self.pinned_kiln().run(&a).ok("build")
    }
}

/// Every file under the product directories of `out/`, relative to `root`, with its bytes.
fn products(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in ["out/bin", "out/lib", "out/images", "out/debug"] {
        walk(&root.join(d), root, &mut out);
    }
    out
}

/// Streams a child's stderr lines into a channel, so the test can wait for one with a bound.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `needle`; returns the lines seen up to it.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} within {PATIENCE:?}; saw {seen:?}"),
        }
    }
}

/// Waits (bounded) for a child to exit.
fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "kiln did not finish within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn keep_going_builds_everything_a_failure_does_not_block_and_reports_every_failure() {
    let ws = Workspace::engine();
    // A third service that depends on nothing that fails.
    std::fs::create_dir_all(ws.path("solo")).unwrap();
    std::fs::write(
        ws.path("solo/main.cpp"),
        "#include <cstdio>\nint main() { std::puts(\"solo\"); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        ws.path("recipes/solo.toml"),
        "kind = \"service\"\nlanguage = \"c++\"\nsources = [\"solo/main.cpp\"]\n",
    )
    .unwrap();
    // Two independent failures: a C++ library (so hello, which needs it, cannot be built) and
    // an Ada service.
    ws.edit(
        "greet/src/greet.cpp",
        "return decorate",
        "return undeclared_function",
    );
    ws.edit(
        "geometry/geometry_main.adb",
        "Int_Stack.Push (7);",
        "Int_Stack.Push (Seven);",
    );

    // Without -k, one job: the first failure stops the build.
    let out = ws.pinned_kiln().run(["build", "-j1", "--no-images"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr_text().matches("kiln: error: target").count(),
        1,
        "{}",
        out.stderr_text()
    );

    let out = ws.pinned_kiln().run(["build", "-k", "-j1"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(
        err.contains("kiln: error: target `greet` failed: greet compile greet/src/greet.cpp"),
        "{err}"
    );
    assert!(err.contains("undeclared_function"), "{err}");
    assert!(
        err.contains(
            "kiln: error: target `geometry` failed: geometry compile geometry/geometry_main.adb"
        ),
        "{err}"
    );
    assert!(err.contains("\"Seven\" is undefined"), "{err}");
    assert!(
        err.contains("kiln: 2 action(s) failed; not built because of them: hello"),
        "{err}"
    );
    // What did not depend on a failure was built, image included.
    assert_eq!(ws.run_bin("solo"), "solo\n");
    assert!(ws.path("out/obj/shapes/shapes.o").is_file());
    assert!(ws.path("out/images/solo/index.json").is_file());
    assert!(!ws.path("out/bin/hello").exists());
    assert!(!ws.path("out/images/hello").exists());
    assert!(!ws.path("out/bin/geometry").exists());
}

#[test]
fn test_keep_going_runs_the_tests_a_build_failure_does_not_block() {
    let ws = Workspace::engine();
    ws.edit(
        "tests/shapes_test.adb",
        "(Radius => 1.0)",
        "(Radius => One)",
    );
    // Without -k nothing runs.
    let out = ws.pinned_kiln().run(["test", "-j1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());

    let out = ws.pinned_kiln().run(["test", "-k", "-j1"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("kiln: error: target `shapes-test` failed"),
        "{}",
        out.stderr_text()
    );
    assert!(out.stderr_text().contains("PASS"), "{}", out.stderr_text());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 passed, 0 failed"
    );
    assert!(ws.path("out/test-results/greet-test.xml").is_file());
}

#[test]
fn a_second_build_of_one_workspace_waits_and_says_so() {
    use fs4::fs_std::FileExt;
    let ws = Workspace::engine();
    // Hold the workspace lock as a running kiln would.
    std::fs::create_dir_all(ws.path("out/.kiln")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(ws.path("out/.kiln/lock"))
        .unwrap();
    lock.lock_exclusive().unwrap();

    let mut child = ws
        .pinned_kiln()
        .command(["build", "--no-images", "-j2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let seen = wait_for_line(&rx, "waiting for another kiln process using this workspace");
    // It said so before doing anything, and it is still waiting: nothing was built.
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(child.try_wait().unwrap().is_none());
    assert!(!ws.path("out/bin").exists());

    FileExt::unlock(&lock).unwrap();
    assert!(wait_bounded(&mut child).success());
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
}

/// A small deterministic generator, so kill points differ between iterations but not between
/// runs of the suite.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn a_build_killed_at_any_point_is_finished_by_the_next_with_the_same_bytes() {
    let reference = Workspace::engine();
    reference.build_ok(&["-j2"]);
    let want = products(reference.root());
    assert!(want
        .keys()
        .any(|k| k.starts_with("out/images/hello/blobs/")));

    let ws = Workspace::engine();
    let mut rng = Lcg(14);
    // Progress lines: one per action, then the image phase. Kill points 0..=13 progress lines
    // (13: after the last action, during image assembly); every other iteration starts from an
    // empty cache too, so kills land in compiles as well as in restores.
    for iteration in 0..5 {
        let _ = std::fs::remove_dir_all(ws.path("out"));
        if iteration % 2 == 0 {
            let _ = std::fs::remove_dir_all(ws.cache());
        }
        let kill_after = rng.below(14) as usize;
        let mut child = ws
            .pinned_kiln()
            .command(["build", "-j2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut child);
        let deadline = Instant::now() + PATIENCE;
        let mut progress = 0;
        while progress < kill_after {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with('[') => progress += 1,
                Ok(_) => {}
                Err(e) => panic!("iteration {iteration}: {e} after {progress} progress lines"),
            }
        }
        // Images come after the last action line: it cannot have finished yet.
        assert!(
            child.try_wait().unwrap().is_none(),
            "iteration {iteration}: finished early"
        );
        child.kill().unwrap(); // SIGKILL
        wait_bounded(&mut child);

        let out = ws.build_ok(&["-j2"]);
        eprintln!("iteration {iteration}: killed after {kill_after} progress lines");
        assert!(
            !out.stderr_text().contains("warning"),
            "iteration {iteration} (killed after {kill_after} actions): {}",
            out.stderr_text()
        );
        let got = products(ws.root());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "iteration {iteration} (killed after {kill_after} actions): different files"
        );
        for (path, bytes) in &want {
            assert!(
                got[path] == *bytes,
                "iteration {iteration} (killed after {kill_after} actions): {path} differs"
            );
        }
        // Nothing the killed process wrote into the cache is damaged.
        let v = ws.pinned_kiln().run(["cache", "verify"]);
        assert_eq!(
            v.status.code(),
            Some(0),
            "iteration {iteration}: {}",
            v.stderr_text()
        );
    }
}

/// Starts `kiln build` in each workspace at once, all on `cache`, while `kiln cache gc` runs
/// over and over beside them; returns the builds' outputs and how many collections ran.
fn build_all_while_collecting(
    workspaces: &[Workspace],
    cache: &Path,
    build_args: &[&str],
    gc_args: &[&str],
) -> (Vec<Output>, usize) {
    let mut children: Vec<Child> = workspaces
        .iter()
        .map(|ws| {
            let mut a = vec!["build"];
            a.extend_from_slice(build_args);
            ws.pinned_kiln()
                .command(&a)
                .env("KILN_CACHE", cache)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Drain stderr in threads so no child blocks on a full pipe.
    let errs: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let mut e = c.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut s).unwrap();
                s
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let mut collections = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        assert!(
            Instant::now() < deadline,
            "builds did not finish within {PATIENCE:?}"
        );
        assert!(collections < 10_000);
        let mut a = vec!["cache", "gc"];
        a.extend_from_slice(gc_args);
        let gc = workspaces[0].pinned_kiln().env("KILN_CACHE", cache).run(&a);
        assert!(gc.status.success(), "{}", gc.stderr_text());
        collections += 1;
    }
    let outputs = children
        .into_iter()
        .zip(errs)
        .map(|(mut c, e)| Output {
            status: c.wait().unwrap(),
            stdout: Vec::new(),
            stderr: e.join().unwrap(),
        })
        .collect();
    (outputs, collections)
}

#[test]
fn workspaces_building_into_one_cache_stay_correct_while_it_is_collected() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");

    // Binaries only, with no grace period at all: blobs vanish between lookup and restore, and
    // every such restore must turn into a run, never into a failure or a wrong file.
    let wss: Vec<Workspace> = (0..4).map(|_| Workspace::engine()).collect();
    let (outs, collections) = build_all_while_collecting(
        &wss,
        &cache,
        &["--no-images", "-j1"],
        &["--max-size", "0", "--grace", "0s"],
    );
    assert!(collections > 0);
    for (ws, out) in wss.iter().zip(&outs) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
        assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
    }
    let first = products(wss[0].root());
    for ws in &wss[1..] {
        assert_eq!(products(ws.root()), first, "same inputs, same bytes");
    }

    // With images, against a cache whose every file looks an hour old: the default grace
    // period protects exactly what the running builds touch.
    let then = SystemTime::now() - Duration::from_secs(3600);
    for ws in &wss[..3] {
        let _ = std::fs::remove_dir_all(ws.path("out"));
    }
    let warm = Workspace::engine();
    warm.pinned_kiln()
        .command(["build", "-j2"])
        .env("KILN_CACHE", &cache)
        .output()
        .unwrap();
    fn age(dir: &Path, then: SystemTime) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                age(&e.path(), then);
            } else if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = f.set_modified(then);
            }
        }
    }
    age(&cache, then);
    let (outs, _) = build_all_while_collecting(&wss[..3], &cache, &["-j1"], &["--max-size", "0"]);
    for (ws, out) in wss[..3].iter().zip(&outs) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    }
    let first = products(wss[0].root());
    assert!(first.keys().any(|k| k.starts_with("out/images/geometry/")));
    for ws in &wss[1..3] {
        assert_eq!(products(ws.root()), first, "same inputs, same bytes");
    }
}

/// Whether process `pid` is gone (or a zombie, which runs nothing).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn what_kiln_started_dies_with_kiln() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("pid");
    let ws = Workspace::with_files(&[
        (
            "toolchains/gcc.toml",
            "language = \"c++\"\nsource = \"host\"\ncompiler = \"g++\"\narchiver = \"ar\"\n",
        ),
        (
            "recipes/sleeper.toml",
            "kind = \"test\"\nlanguage = \"c++\"\nsources = [\"t.cpp\"]\n",
        ),
        (
            "t.cpp",
            &format!(
                "#include <fstream>\n#include <unistd.h>\nint main() {{\n  \
                 std::ofstream(\"{}\") << getpid();\n  for (int i = 0; i < 600; i++) sleep(1);\n}}\n",
                pid_file.display()
            ),
        ),
    ]);
    let mut kiln = ws
        .pinned_kiln()
        .command(["test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(&pid_file) {
            if !p.is_empty() {
                break p;
            }
        }
        assert!(start.elapsed() < PATIENCE, "the test binary never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    kiln.kill().unwrap();
    kiln.wait().unwrap();
    let start = Instant::now();
    while !gone(&pid) && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = !gone(&pid);
    if survived {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    }
    assert!(
        !survived,
        "the test binary outlived the kiln that started it"
    );
}

#[test]
fn a_kiln_whose_binary_is_replaced_during_the_build_still_builds_its_images() {
    let ws = Workspace::engine();
    // This kiln runs from a copy that is removed as soon as it has started, as an upgrade
    // (apt, cargo install) replaces the file under a running build.
    let copy = ws.scratch().join("kiln-old");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &copy).unwrap();
    let template = ws.kiln().command(["build"]);
    let mut cmd = std::process::Command::new(&copy);
    cmd.args(template.get_args()).current_dir(ws.root());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::remove_file(&copy).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(ws.path("out/images/hello/index.json").is_file(), "{stderr}");
}
