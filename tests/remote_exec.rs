//! Remote execution against a real BuildGrid (`--remote-exec`, `kiln worker`): PostgreSQL
//! started with initdb in a temporary directory on a free loopback port, BuildGrid with its SQL
//! scheduler and an in-memory CAS and action cache, and `kiln worker` processes on this machine.
//! fixtures/engine's own toolchains are host toolchains, which the workers share; without its
//! `toolchains/` it builds with kiln's built-in Debian ones, whose roots the workers
//! materialise from the pins each action names and run in bubblewrap.
//!
//! Every wait is bounded in tries and time; nothing depends on how fast anything is.

// Shared with tests/remote_cache.rs, which uses more of it.
#[allow(dead_code)]
#[path = "remote_cache/fake.rs"]
mod fake;
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::engine::{pinned as hermetic_engine, pinned_ada as ada_engine};
use support::kiln::Run;
use support::workspace::Workspace;

const PRODUCTS: &[&str] = &["out/bin/hello", "out/bin/geometry", "out/lib/libgreet.a"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("KILN_BUILDGRID_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-buildgrid/venv"));
    let p = venv.join("bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

fn pg_bin(name: &str) -> PathBuf {
    for dir in ["/usr/local/bin", "/usr/lib/postgresql/15/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("PostgreSQL's {name} is not installed");
}

/// A child in its own process group, killed with its group when dropped.
struct Group(Child);

impl Group {
    fn spawn(mut c: Command, log: &Path) -> Group {
        let out = File::create(log).unwrap();
        c.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        Group(c.spawn().unwrap())
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on the process group this test created; no memory is touched.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `c` as the `postgres` user when the test runs as root (PostgreSQL refuses root).
fn as_pg_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.path().join("data");
        let out = as_pg_user(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "kiln", "--auth=trust", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        let port = free_port();
        let opts = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let out = as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-w", "-t", "120", "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
        Postgres { dir, port }
    }

    fn url(&self) -> String {
        format!("postgresql://kiln@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// BuildGrid with execution (SQL scheduler), CAS, ByteStream and action cache.
struct Grid {
    _pg: Postgres,
    dir: tempfile::TempDir,
    server: Group,
    url: String,
}

/// BuildGrid's configuration for execution (tests/buildgrid/exec.yml, which the bench shares).
fn config(port: u16, sql: &str) -> String {
    include_str!("buildgrid/exec.yml")
        .replace("{port}", &port.to_string())
        .replace("{sql}", sql)
        .replace("{cas_size}", "512MB")
        .replace("{max_refs}", "4096")
}

impl Grid {
    fn start() -> Grid {
        let pg = Postgres::start();
        let out = Command::new(venv_bin("bgd"))
            .args(["migrate", "apply", &pg.url()])
            .output()
            .unwrap();
        assert!(out.status.success(), "bgd migrate: {out:?}");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("buildgrid.yml");
        std::fs::write(&cfg, config(port, &pg.url())).unwrap();
        let mut c = Command::new(venv_bin("bgd"));
        c.args(["server", "start"])
            .arg(&cfg)
            .current_dir(dir.path());
        let server = Group::spawn(c, &dir.path().join("bgd.log"));
        let grid = Grid {
            _pg: pg,
            dir,
            server,
            url: format!("grpc://127.0.0.1:{port}"),
        };
        grid.wait_ready();
        grid
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut cfg = kiln::remote::RemoteConfig::new(self.url.clone());
        cfg.timeout = Duration::from_secs(10);
        for _ in 0..600 {
            if kiln::remote::RemoteCache::connect(&cfg).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("bgd never answered:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    /// BuildGrid killed and started again on the same port and PostgreSQL: its scheduler's
    /// jobs survive in the database, its in-memory CAS and action cache do not.
    fn restart(&mut self) {
        self.server.kill();
        let mut c = Command::new(venv_bin("bgd"));
        c.args(["server", "start"])
            .arg(self.dir.path().join("buildgrid.yml"))
            .current_dir(self.dir.path());
        self.server = Group::spawn(c, &self.dir.path().join("bgd-restarted.log"));
        self.wait_ready();
    }

    /// Jobs the scheduler has in PostgreSQL (queued, running or done).
    fn jobs(&self) -> usize {
        let out = as_pg_user(&pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &self._pg.port.to_string()])
            .args([
                "-U",
                "kiln",
                "-d",
                "postgres",
                "-tAc",
                "select count(*) from jobs",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// A `kiln worker` run in `ws` (for its toolchains), logging to `log`.
    fn worker(&self, ws: &Workspace, id: &str, log: &Path) -> Group {
        let mut c = ws
            .kiln()
            .command(["worker", "--server", &self.url, "--id", id]);
        c.arg("--work-dir").arg(ws.scratch().join(id));
        Group::spawn(c, log)
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.server.kill();
    }
}

fn sources(run: &Run) -> BTreeMap<String, String> {
    let doc = run.json();
    let mut out = BTreeMap::new();
    for t in doc["targets"].as_array().unwrap() {
        for a in t["actions"].as_array().unwrap() {
            out.insert(
                a["id"].as_str().unwrap().to_string(),
                a["source"].as_str().unwrap().to_string(),
            );
        }
    }
    out
}

fn images(run: &Run) -> BTreeMap<String, String> {
    let doc = run.json();
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let digest = t["image"]["digest"].as_str()?;
            Some((t["name"].as_str()?.to_string(), digest.to_string()))
        })
        .collect()
}

fn local_reference() -> (Workspace, Run) {
    let ws = Workspace::fixture_at("engine", "local");
    let run = ws.kiln().run(["build", "--json", "-j2"]).ok("local build");
    (ws, run)
}

fn assert_same(local: &Workspace, local_run: &Run, remote: &Workspace, remote_run: &Run) {
    for p in PRODUCTS {
        assert!(
            std::fs::read(local.path(p)).unwrap() == std::fs::read(remote.path(p)).unwrap(),
            "{p} differs between the local and the remotely executed build"
        );
    }
    let imgs = images(remote_run);
    assert_eq!(imgs.len(), 2, "{remote_run}");
    assert_eq!(images(local_run), imgs, "image digests differ");
}

#[test]
fn two_workers_build_everything_and_the_results_equal_a_local_build() {
    let grid = Grid::start();
    let ws = Workspace::fixture_at("engine", "remote");
    let _w1 = grid.worker(&ws, "w1", &ws.scratch().join("w1.log"));
    let _w2 = grid.worker(&ws, "w2", &ws.scratch().join("w2.log"));
    let run = ws
        .kiln()
        .run(["build", "--json", "-j2", "--remote-exec", &grid.url])
        .ok("remotely executed build");
    let src = sources(&run);
    assert!(
        !src.is_empty() && src.values().all(|s| s == "remote-exec"),
        "{run}\n{}",
        grid.log()
    );
    assert!(run.json()["remote"]["error"].is_null(), "{run}");
    assert!(!run.stderr_text().contains("warning"), "{run}");
    // Both workers are real bots: each took at least one lease (logged per lease).
    let leases = |id: &str| {
        std::fs::read_to_string(ws.scratch().join(format!("{id}.log")))
            .unwrap_or_default()
            .matches("running lease")
            .count()
    };
    assert!(leases("w1") + leases("w2") > 0);

    let (local, local_run) = local_reference();
    assert_same(&local, &local_run, &ws, &run);

    // Outputs are downloaded only when needed: the C++ objects, which only the links (on
    // the workers) read, stayed in the CAS; the products, depfiles and Ada objects came here.
    let objects = |ws: &Workspace| -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![ws.path("out/obj")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "o") {
                    found.push(p.strip_prefix(ws.path("")).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    };
    let left = run.json()["remote"]["outputs_left"].as_u64().unwrap();
    assert!(left >= 3, "hello's and greet's objects: {run}");
    let here = objects(&ws);
    assert!(
        here.iter()
            .all(|o| !o.starts_with("out/obj/hello") && !o.starts_with("out/obj/greet")),
        "C++ objects were downloaded: {here:?}"
    );
    assert!(!objects(&local).is_empty(), "a local build has them");

    // A no-op rebuild needs no remote at all, left objects included.
    let again = ws
        .kiln()
        .run(["build", "--json", "--remote-exec", &grid.url])
        .ok("no-op");
    assert!(
        sources(&again).values().all(|s| s == "up-to-date"),
        "{again}"
    );

    // A link that runs here (the remote cache only, no execution) fetches the objects it
    // reads from the CAS, each checked against its digest.
    ws.edit(
        "hello/src/main.cpp",
        "int main",
        "int kiln_edited = 1;\nint main",
    );
    let local_link = ws
        .kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "--remote-cache",
            &grid.url,
        ])
        .ok("a build that links here");
    let src = sources(&local_link);
    assert_eq!(
        src.get("hello link").map(String::as_str),
        Some("local"),
        "{local_link}"
    );
    let fetched = local_link.json()["remote"]["outputs_fetched_later"]
        .as_u64()
        .unwrap();
    assert!(
        fetched >= 1,
        "hello's other object came from the CAS: {local_link}"
    );
    assert_eq!(ws.run_bin("hello"), local.run_bin("hello"));
}

/// A `kiln build` running in the background, its stdout and stderr in files.
struct BackgroundBuild {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl BackgroundBuild {
    fn start(ws: &Workspace, args: &[&str]) -> BackgroundBuild {
        let out = ws.scratch().join("build.json");
        let err = ws.scratch().join("build.err");
        let mut c = ws.kiln().command(args);
        c.stdout(File::create(&out).unwrap());
        c.stderr(File::create(&err).unwrap());
        BackgroundBuild {
            child: c.spawn().unwrap(),
            out,
            err,
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits at most `limit` for the build to end (killing it after that); its status, its
    /// `--json` document and its stderr.
    fn finish(
        mut self,
        limit: Duration,
        context: &str,
    ) -> (std::process::ExitStatus, serde_json::Value, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the build never finished:\n{}\n{context}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let doc = if status.success() {
            serde_json::from_str(&std::fs::read_to_string(&self.out).unwrap()).unwrap()
        } else {
            serde_json::Value::Null
        };
        (status, doc, self.stderr())
    }
}

#[test]
fn a_worker_killed_after_taking_a_lease_still_ends_in_a_correct_build() {
    let grid = Grid::start();
    let ws = Workspace::fixture_at("engine", "remote");
    let victim_log = ws.scratch().join("victim.log");
    let mut victim = grid.worker(&ws, "victim", &victim_log);
    // The build starts with only the victim serving, so the first lease is the victim's.
    let mut build =
        BackgroundBuild::start(&ws, &["build", "--json", "-j2", "--remote-exec", &grid.url]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut taken = false;
    for _ in 0..1800 {
        if std::fs::read_to_string(&victim_log)
            .unwrap_or_default()
            .contains("running lease")
        {
            taken = true;
            break;
        }
        if Instant::now() > deadline || !build.running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(taken, "the victim never took a lease:\n{}", grid.log());
    victim.kill();
    // Another worker joins; BuildGrid requeues the dead bot's lease once its session expires.
    let _w2 = grid.worker(&ws, "w2", &ws.scratch().join("w2.log"));
    let (status, doc, stderr) = build.finish(Duration::from_secs(600), &grid.log());
    assert!(status.success(), "{stderr}\n{}", grid.log());
    // Whatever ran where, every action finished with outputs that equal a local build's.
    let (local, local_run) = local_reference();
    for p in PRODUCTS {
        assert!(
            std::fs::read(local.path(p)).unwrap() == std::fs::read(ws.path(p)).unwrap(),
            "{p} differs after a worker was killed"
        );
    }
    let imgs: BTreeMap<String, String> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            Some((
                t["name"].as_str()?.to_string(),
                t["image"]["digest"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(images(&local_run), imgs);
}

fn is_compile(id: &str) -> bool {
    id.contains(" compile ")
}

const HERMETIC_PRODUCTS: &[&str] = &[
    "out/bin/hello",
    "out/bin/geometry",
    "out/lib/libgreet.a",
    "out/debug/hello.debug",
    "out/debug/geometry.debug",
];

#[test]
fn debian_toolchain_actions_run_on_two_workers_in_their_roots_and_equal_a_local_build() {
    let local = hermetic_engine("local");
    let local_run = local
        .kiln()
        .run(["build", "--locked", "--json", "-j2"])
        .ok("local hermetic build");
    let grid = Grid::start();
    let ws = hermetic_engine("remote");
    let _w1 = grid.worker(&ws, "w1", &ws.scratch().join("w1.log"));
    let _w2 = grid.worker(&ws, "w2", &ws.scratch().join("w2.log"));
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &grid.url,
        ])
        .ok("remotely executed hermetic build");
    let src = sources(&run);
    let compiles: Vec<_> = src.iter().filter(|(id, _)| is_compile(id)).collect();
    assert!(
        compiles.len() >= 6 && compiles.iter().all(|(_, s)| *s == "remote-exec"),
        "every compile of the C++ and Ada services ran remotely: {compiles:?}\n{run}\n{}",
        grid.log()
    );
    // Not only compiles: a link, the Ada binder (run in its staging directory), an archive.
    for id in ["hello link", "geometry bind", "greet archive"] {
        assert_eq!(
            src.get(id).map(String::as_str),
            Some("remote-exec"),
            "{id}: {run}"
        );
    }
    assert!(run.json()["remote"]["error"].is_null(), "{run}");
    assert!(!run.stderr_text().contains("warning"), "{run}");
    let leases = |id: &str| {
        std::fs::read_to_string(ws.scratch().join(format!("{id}.log")))
            .unwrap_or_default()
            .matches("running lease")
            .count()
    };
    // At least one lease per remotely executed action (more if BuildGrid gave one again to
    // a bot it thought gone): the workers, not something else, ran them.
    assert!(
        leases("w1") + leases("w2") >= src.values().filter(|s| *s == "remote-exec").count(),
        "fewer leases than remotely executed actions"
    );
    same_products(&local, &ws);
    let imgs = images(&run);
    assert_eq!(imgs.len(), 2, "{run}");
    assert_eq!(images(&local_run), imgs, "image digests differ");
}

#[test]
fn a_worker_without_a_debian_store_or_a_mirror_materialises_the_root_from_the_cas() {
    let local = built_locally(hermetic_engine("local"));
    let grid = Grid::start();
    let ws = hermetic_engine("remote");
    // A worker with an empty Debian store of its own and no reachable mirror: the building
    // machine puts its .debs in the CAS, where a pin's sha256 and size name them.
    let empty = ws.scratch().join("empty-debian-store");
    std::fs::create_dir_all(&empty).unwrap();
    let closed = format!("http://127.0.0.1:{}/debian", free_port());
    let mut c = ws
        .kiln()
        .env("KILN_DEBIAN_CACHE", &empty)
        .env("KILN_DEBIAN_MIRROR", &closed)
        .command(["worker", "--server", &grid.url, "--id", "storeless"]);
    c.arg("--work-dir").arg(ws.scratch().join("storeless"));
    let _w = Group::spawn(c, &ws.scratch().join("storeless.log"));
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &grid.url,
        ])
        .ok("build whose worker has no store and no mirror");
    assert!(run.json()["remote"]["error"].is_null(), "{run}");
    assert!(!run.stderr_text().contains("warning"), "{run}");
    let src = sources(&run);
    let compiles: Vec<_> = src.iter().filter(|(id, _)| is_compile(id)).collect();
    assert!(
        !compiles.is_empty() && compiles.iter().all(|(_, s)| *s == "remote-exec"),
        "{compiles:?}\n{run}"
    );
    same_products(&local, &ws);
    // Both roots (gcc's and gnat's) were made in the worker's own store, from .debs it could
    // only have had from the CAS.
    let lock: toml::Value = toml::from_str(&ws.read("kiln.lock")).unwrap();
    for toolchain in ["gcc", "gnat"] {
        let packages = lock["toolchain"][toolchain]["debian"]["package"]
            .as_array()
            .unwrap();
        for p in packages {
            let sha = p["sha256"].as_str().unwrap().trim_start_matches("sha256:");
            let deb = empty.join("blobs").join(&sha[..2]).join(sha);
            assert!(deb.is_file(), "{toolchain}: {} not fetched", p["name"]);
        }
    }
}

#[test]
fn restarting_buildgrid_mid_build_still_ends_in_a_correct_build() {
    let local = built_locally(hermetic_engine("local"));
    let mut grid = Grid::start();
    let ws = hermetic_engine("remote");
    // No worker yet: the build's first actions wait in BuildGrid's queue, so it is certainly
    // mid-build when the server goes.
    let args = [
        "build",
        "--locked",
        "--json",
        "-j2",
        "--remote-exec",
        &grid.url,
    ];
    let mut build = BackgroundBuild::start(&ws, &args);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut queued = false;
    for _ in 0..3000 {
        if grid.jobs() > 0 {
            queued = true;
            break;
        }
        if Instant::now() > deadline || !build.running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        queued,
        "no job reached BuildGrid:\n{}\n{}",
        build.stderr(),
        grid.log()
    );
    assert!(build.running(), "the build cannot end without workers");
    grid.restart();
    let _w1 = grid.worker(&ws, "w1", &ws.scratch().join("w1.log"));
    let _w2 = grid.worker(&ws, "w2", &ws.scratch().join("w2.log"));
    let (status, doc, stderr) = build.finish(Duration::from_secs(900), &grid.log());
    assert!(status.success(), "{stderr}\n{}", grid.log());
    // Whether it reconnected or fell back, at most the build's one warning.
    eprintln!("after the restart the build said:\n{stderr}");
    assert!(stderr.matches("warning").count() <= 1, "{stderr}");
    same_products(&local, &ws);
    let actions: Vec<&serde_json::Value> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap())
        .collect();
    assert!(
        actions
            .iter()
            .all(|a| ["remote-exec", "local", "remote-cache"]
                .contains(&a["source"].as_str().unwrap())),
        "{doc}"
    );
}

// The same builds against the in-process fake, which runs each action with kiln's own worker
// code (the root materialised from the pins, the command in bubblewrap) and injects faults.

/// A fake REAPI server whose Execute runs actions as `kiln worker` does.
fn worker_fake(scratch: &Path) -> fake::FakeServer {
    worker_fake_with(scratch, std::sync::Arc::new(kiln::exec::ProcessRunner))
}

/// The same, starting processes with `runner`.
fn worker_fake_with(
    scratch: &Path,
    runner: std::sync::Arc<dyn kiln::exec::Runner>,
) -> fake::FakeServer {
    use kiln::worker::{run, Roots};
    let server = fake::FakeServer::start(4 << 20);
    let url = server.url.clone();
    let work = scratch.join("fake-worker");
    let store = support::kiln::shared_debian_store().join("debian");
    let bwrap = kiln::debian::sandbox::find_bwrap(std::env::var_os("PATH").as_deref())
        .expect("bubblewrap is installed");
    let roots = Roots {
        bwrap,
        store: kiln::debian::store::Downloads::at(store),
    };
    server.execute_with(std::sync::Arc::new(move |action| {
        let remote =
            kiln::remote::RemoteCache::connect(&kiln::remote::RemoteConfig::new(url.clone()))
                .map_err(|e| bazel_remote_apis::google::rpc::Status {
                    code: tonic::Code::Unavailable as i32,
                    message: kiln::error::chain(&e),
                    details: vec![],
                })?;
        // Completed as the worker completes a lease.
        run::execute(&remote, runner.as_ref(), &[], Some(&roots), &work, action)
            .map_err(|e| e.status("fake"))
    }));
    server
}

/// `ws` built here (`--locked -j2`), the reference a remote build must equal.
fn built_locally(ws: Workspace) -> Workspace {
    ws.kiln()
        .run(["build", "--locked", "-j2"])
        .ok("local hermetic build");
    ws
}

fn same_products(local: &Workspace, ws: &Workspace) {
    for p in HERMETIC_PRODUCTS {
        assert!(
            std::fs::read(local.path(p)).unwrap() == std::fs::read(ws.path(p)).unwrap(),
            "{p} differs from the local build"
        );
    }
}

#[test]
fn broken_operation_streams_and_lost_blobs_still_end_in_a_remote_build_equal_to_a_local_one() {
    let local = built_locally(hermetic_engine("local"));
    let ws = hermetic_engine("remote");
    let server = worker_fake(ws.scratch());
    server.state.drop_streams.store(4, Ordering::SeqCst);
    server.state.evict_inputs.store(2, Ordering::SeqCst);
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &server.url,
        ])
        .ok("build through a faulty server");
    let src = sources(&run);
    assert!(
        src.values().all(|s| s == "remote-exec"),
        "every action ran remotely despite the faults: {run}"
    );
    assert!(run.json()["remote"]["error"].is_null(), "{run}");
    assert!(!run.stderr_text().contains("warning"), "{run}");
    let log = server.log();
    assert_eq!(
        log.wait_executions, 4,
        "one WaitExecution per broken stream: {log:?}"
    );
    assert_eq!(log.preconditions, 2, "{log:?}");
    assert_eq!(
        log.executed.len(),
        src.len(),
        "each action ran once: {log:?}"
    );
    same_products(&local, &ws);
}

#[test]
fn a_remote_result_whose_output_does_not_verify_is_refused_and_the_build_runs_locally() {
    let local = built_locally(hermetic_engine("local"));
    let ws = hermetic_engine("remote");
    let server = worker_fake(ws.scratch());
    server.state.corrupt_results.store(true, Ordering::SeqCst);
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &server.url,
        ])
        .ok("build through a server whose results lie");
    let warnings: Vec<String> = run
        .stderr_text()
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(warnings[0].contains("remote execution not used"), "{run}");
    assert_eq!(run.json()["remote"]["error"]["during"], "execute", "{run}");
    assert!(sources(&run).values().all(|s| s == "local"), "{run}");
    same_products(&local, &ws);
}

#[test]
fn a_pushed_toolchain_image_is_named_as_container_image_and_a_worker_without_a_mirror_pulls_the_root_from_it(
) {
    let local = built_locally(ada_engine("local"));
    let reg = support::registry_server::start(support::registry_server::Mode::Plain);
    let to = format!("{}/tc", reg.addr);
    local
        .kiln()
        .run(["toolchain", "push", "gnat", "--to", &to])
        .ok("toolchain push");
    // The built-in gnat, taken over by the workspace to name the image.
    let ws = ada_engine("remote");
    let builtin = kiln::toolchain::BUILTIN
        .iter()
        .find(|(name, _)| *name == "gnat")
        .unwrap()
        .1;
    ws.write(
        "toolchains/gnat.toml",
        &format!("{builtin}\nimage = \"{to}\"\n"),
    );
    let grid = Grid::start();
    // The worker's store is empty and no mirror answers: the image is its only way to the root.
    let empty = ws.scratch().join("empty-debian-store");
    std::fs::create_dir_all(&empty).unwrap();
    let closed = format!("http://127.0.0.1:{}/debian", free_port());
    let log = ws.scratch().join("imaged.log");
    let mut c = ws
        .kiln()
        .env("KILN_DEBIAN_CACHE", &empty)
        .env("KILN_DEBIAN_MIRROR", &closed)
        .command(["worker", "--server", &grid.url, "--id", "imaged"]);
    c.arg("--work-dir").arg(ws.scratch().join("imaged"));
    let _w = Group::spawn(c, &log);
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &grid.url,
        ])
        .ok("build whose worker pulls its root");
    let src = sources(&run);
    assert!(
        !src.is_empty() && src.values().all(|s| s == "remote-exec"),
        "{run}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!run.stderr_text().contains("warning"), "{run}");
    let worker = std::fs::read_to_string(&log).unwrap_or_default();
    let pulled = format!("from {}/tc/toolchain-gnat@sha256:", reg.addr);
    assert_eq!(
        worker.matches(&pulled).count(),
        1,
        "the worker pulled the root's trees once, from the image the action named:\n{worker}"
    );
    for p in ["out/bin/geometry", "out/debug/geometry.debug"] {
        assert!(
            std::fs::read(local.path(p)).unwrap() == std::fs::read(ws.path(p)).unwrap(),
            "{p} differs from the local build"
        );
    }
}

/// A machine whose kernel refuses bubblewrap its namespaces.
struct NoNamespaces;

impl kiln::exec::Runner for NoNamespaces {
    fn run(&self, _: &kiln::exec::Command) -> std::io::Result<kiln::exec::Output> {
        Ok(kiln::exec::Output {
            success: false,
            code: Some(1),
            stderr: b"bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.\n".to_vec(),
            ..Default::default()
        })
    }
}

#[test]
fn a_worker_whose_sandbox_cannot_run_fails_its_lease_and_the_build_runs_locally() {
    let local = built_locally(hermetic_engine("local"));
    let ws = hermetic_engine("remote");
    let server = worker_fake_with(ws.scratch(), std::sync::Arc::new(NoNamespaces));
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-exec",
            &server.url,
        ])
        .ok("build whose worker cannot sandbox");
    let warnings: Vec<String> = run
        .stderr_text()
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].contains("remote execution not used")
            && warnings[0].contains("kiln worker fake: cannot run the sandbox")
            && warnings[0].contains("namespaces"),
        "{run}"
    );
    assert!(sources(&run).values().all(|s| s == "local"), "{run}");
    // Not retried: the first refusal turned execution off (the -j2 sibling may have been sent
    // before it did).
    let log = server.log();
    assert!(log.executes <= 2, "{log:?}");
    same_products(&local, &ws);
}

#[test]
fn objects_left_in_the_cas_and_lost_there_are_made_again_here_never_a_failed_or_wrong_build() {
    let local = built_locally(hermetic_engine("local"));
    let ws = hermetic_engine("remote");
    let server = worker_fake(ws.scratch());
    let exec = |what: &str| {
        ws.kiln()
            .run([
                "build",
                "--locked",
                "--json",
                "-j2",
                "--remote-exec",
                &server.url,
            ])
            .ok(what)
    };
    let first = exec("first build");
    assert!(first.json()["remote"]["outputs_left"].as_u64().unwrap() >= 3);
    same_products(&local, &ws);
    let lose_objects = || {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.path("out/.kiln/state.json")).unwrap())
                .unwrap();
        let left = state["left"].as_object().unwrap().clone();
        assert!(!left.is_empty(), "{state}");
        let mut blobs = server.state.blobs.lock().unwrap();
        let mut lost = 0;
        for record in left.values() {
            let hex = record["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            lost += usize::from(blobs.remove(hex).is_some());
        }
        assert!(lost > 0, "{state}");
    };

    // The server loses every object it made; the next link it is asked to run lacks one, so
    // that object's compile runs here and the object is sent.
    lose_objects();
    ws.edit(
        "hello/src/main.cpp",
        "int main",
        "int kiln_edited = 1;\nint main",
    );
    let second = exec("build after the server lost the objects");
    let err = second.stderr_text();
    assert!(
        err.contains("the remote no longer has out/obj/hello/")
            && err.contains("running `hello compile hello/src/extra.cpp` here"),
        "{second}"
    );
    assert!(!err.contains("warning"), "{second}");
    let src = sources(&second);
    assert_eq!(
        src.get("hello link").map(String::as_str),
        Some("remote-exec")
    );
    assert_eq!(ws.run_bin("hello"), local.run_bin("hello"));

    // Lost again (main.cpp's object, which the last build's worker made), and the link runs
    // here (no execution this time): same story, locally.
    lose_objects();
    ws.edit(
        "hello/src/extra.cpp",
        "int hello_extra",
        "int kiln_extra = 0;\nint hello_extra",
    );
    let third = ws
        .kiln()
        .run(["build", "--locked", "--json", "--remote-cache", &server.url])
        .ok("local link after the server lost the objects");
    let err = third.stderr_text();
    assert!(
        err.contains("running `hello compile hello/src/main.cpp` here"),
        "{third}"
    );
    assert_eq!(
        sources(&third).get("hello link").map(String::as_str),
        Some("local")
    );
    assert_eq!(ws.run_bin("hello"), local.run_bin("hello"));
    assert_eq!(images(&third).len(), 2, "{third}");
}

/// The repository's 16-service workspace: its recipes, sources and kiln.lock.
fn sixteen_services() -> Workspace {
    use support::workspace::{copy_dir, fixture_dir};
    let ws = Workspace::with_files(&[]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("recipes"), &ws.path("recipes"));
    copy_dir(&fixture_dir("services"), &ws.path("fixtures/services"));
    copy_dir(&fixture_dir("libs"), &ws.path("fixtures/libs"));
    std::fs::copy(repo.join("kiln.lock"), ws.path("kiln.lock")).unwrap();
    ws
}

#[test]
fn the_sixteen_services_built_on_two_workers_equal_a_local_build_image_for_image() {
    let local = sixteen_services();
    let local_run = local
        .kiln()
        .run(["build", "--locked", "--json", "-j2"])
        .ok("local build of the 16 services");
    let grid = Grid::start();
    let ws = sixteen_services();
    let _w1 = grid.worker(&ws, "w1", &ws.scratch().join("w1.log"));
    let _w2 = grid.worker(&ws, "w2", &ws.scratch().join("w2.log"));
    let run = ws
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j4",
            "--remote-exec",
            &grid.url,
        ])
        .ok("the 16 services on two workers");
    assert!(run.json()["remote"]["error"].is_null(), "{run}");
    let src = sources(&run);
    let remote = src.values().filter(|s| *s == "remote-exec").count();
    assert!(
        remote * 10 >= src.len() * 9,
        "nearly every action ran on a worker ({remote} of {}): {run}",
        src.len()
    );
    let imgs = images(&run);
    assert_eq!(imgs.len(), 16, "{run}");
    assert_eq!(images(&local_run), imgs, "image digests differ");
    for e in std::fs::read_dir(local.path("out/bin")).unwrap() {
        let name = e.unwrap().file_name();
        let p = Path::new("out/bin").join(&name);
        assert!(
            std::fs::read(local.path(p.to_str().unwrap())).unwrap()
                == std::fs::read(ws.path(p.to_str().unwrap())).unwrap(),
            "{} differs",
            p.display()
        );
    }
}
