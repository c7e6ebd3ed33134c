//! kiln under failure and contention, with real g++ and GNAT: `-k` builds what a failure does not
//! block; a second process on one workspace waits and says so; a build killed with SIGKILL at
//! many points is finished by the next build with the same bytes as an undisturbed one; several
//! workspaces build into one cache while it is being collected.
//!
//! No assertion depends on timing: kill points are chosen by progress lines, waits are for
//! conditions with generous bounds, and every loop is bounded in count and time.

#[path = "support/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// The longest any single wait here may take before the test fails (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(300);

struct Ws {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
}

fn fixture() -> Ws {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture::engine_workspace(tmp.path());
    let cache = tmp.path().join("cache");
    Ws {
        _tmp: tmp,
        root,
        cache,
    }
}

impl Ws {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(args)
            .current_dir(&self.root)
            .env("KILN_CACHE", &self.cache)
            .env_remove("KILN_CACHE_MAX_SIZE")
            .env_remove("KILN_CACHE_MAX_AGE")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("CI", "1");
        cmd
    }

    fn kiln(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn build_ok(&self, args: &[&str]) -> Output {
        let mut a = vec!["build"];
        a.extend_from_slice(args);
        let out = self.kiln(&a);
        assert!(out.status.success(), "build failed: {}", stderr(&out));
        out
    }

    fn run_bin(&self, name: &str) -> String {
        let out = Command::new(self.root.join("out/bin").join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.root.join(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    let ws = fixture();
    // A third service that depends on nothing that fails.
    std::fs::create_dir_all(ws.root.join("solo")).unwrap();
    std::fs::write(
        ws.root.join("solo/main.cpp"),
        "#include <cstdio>\nint main() { std::puts(\"solo\"); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        ws.root.join("recipes/solo.toml"),
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
    let out = ws.kiln(&["build", "-j1", "--no-images"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).matches("kiln: error: target").count(),
        1,
        "{}",
        stderr(&out)
    );

    let out = ws.kiln(&["build", "-k", "-j1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
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
    assert!(ws.root.join("out/obj/shapes/shapes.o").is_file());
    assert!(ws.root.join("out/images/solo/index.json").is_file());
    assert!(!ws.root.join("out/bin/hello").exists());
    assert!(!ws.root.join("out/images/hello").exists());
    assert!(!ws.root.join("out/bin/geometry").exists());
}

#[test]
fn test_keep_going_runs_the_tests_a_build_failure_does_not_block() {
    let ws = fixture();
    ws.edit(
        "tests/shapes_test.adb",
        "(Radius => 1.0)",
        "(Radius => One)",
    );
    // Without -k nothing runs.
    let out = ws.kiln(&["test", "-j1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());

    let out = ws.kiln(&["test", "-k", "-j1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kiln: error: target `shapes-test` failed"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("PASS"), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 passed, 0 failed"
    );
    assert!(ws.root.join("out/test-results/greet-test.xml").is_file());
}

#[test]
fn a_second_build_of_one_workspace_waits_and_says_so() {
    use fs4::fs_std::FileExt;
    let ws = fixture();
    // Hold the workspace lock as a running kiln would.
    std::fs::create_dir_all(ws.root.join("out/.kiln")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(ws.root.join("out/.kiln/lock"))
        .unwrap();
    lock.lock_exclusive().unwrap();

    let mut child = ws
        .command(&["build", "--no-images", "-j2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let seen = wait_for_line(&rx, "waiting for another kiln process using this workspace");
    // It said so before doing anything, and it is still waiting: nothing was built.
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(child.try_wait().unwrap().is_none());
    assert!(!ws.root.join("out/bin").exists());

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
    let reference = fixture();
    reference.build_ok(&["-j2"]);
    let want = products(&reference.root);
    assert!(want
        .keys()
        .any(|k| k.starts_with("out/images/hello/blobs/")));

    let ws = fixture();
    let mut rng = Lcg(14);
    // Progress lines: one per action, then the image phase. Kill points 0..=13 progress lines
    // (13: after the last action, during image assembly); every other iteration starts from an
    // empty cache too, so kills land in compiles as well as in restores.
    for iteration in 0..5 {
        let _ = std::fs::remove_dir_all(ws.root.join("out"));
        if iteration % 2 == 0 {
            let _ = std::fs::remove_dir_all(&ws.cache);
        }
        let kill_after = rng.below(14) as usize;
        let mut child = ws
            .command(&["build", "-j2"])
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
            !stderr(&out).contains("warning"),
            "iteration {iteration} (killed after {kill_after} actions): {}",
            stderr(&out)
        );
        let got = products(&ws.root);
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
        let v = ws.kiln(&["cache", "verify"]);
        assert_eq!(
            v.status.code(),
            Some(0),
            "iteration {iteration}: {}",
            stderr(&v)
        );
    }
}

/// Starts `kiln build` in each workspace at once, all on `cache`, while `kiln cache gc` runs
/// over and over beside them; returns the builds' outputs and how many collections ran.
fn build_all_while_collecting(
    workspaces: &[Ws],
    cache: &Path,
    build_args: &[&str],
    gc_args: &[&str],
) -> (Vec<Output>, usize) {
    let mut children: Vec<Child> = workspaces
        .iter()
        .map(|ws| {
            let mut a = vec!["build"];
            a.extend_from_slice(build_args);
            ws.command(&a)
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
        let gc = workspaces[0]
            .command(&a)
            .env("KILN_CACHE", cache)
            .output()
            .unwrap();
        assert!(gc.status.success(), "{}", stderr(&gc));
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
    let wss: Vec<Ws> = (0..4).map(|_| fixture()).collect();
    let (outs, collections) = build_all_while_collecting(
        &wss,
        &cache,
        &["--no-images", "-j1"],
        &["--max-size", "0", "--grace", "0s"],
    );
    assert!(collections > 0);
    for (ws, out) in wss.iter().zip(&outs) {
        assert!(out.status.success(), "{}", stderr(out));
        assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
        assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
    }
    let first = products(&wss[0].root);
    for ws in &wss[1..] {
        assert_eq!(products(&ws.root), first, "same inputs, same bytes");
    }

    // With images, against a cache whose every file looks an hour old: the default grace
    // period protects exactly what the running builds touch.
    let then = SystemTime::now() - Duration::from_secs(3600);
    for ws in &wss[..3] {
        let _ = std::fs::remove_dir_all(ws.root.join("out"));
    }
    let warm = fixture();
    warm.command(&["build", "-j2"])
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
        assert!(out.status.success(), "{}", stderr(out));
        assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    }
    let first = products(&wss[0].root);
    assert!(first.keys().any(|k| k.starts_with("out/images/geometry/")));
    for ws in &wss[1..3] {
        assert_eq!(products(&ws.root), first, "same inputs, same bytes");
    }
}
