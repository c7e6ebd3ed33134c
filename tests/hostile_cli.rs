//! `kiln push` as a user runs it against a hostile or interrupted registry: a canary password
//! never shows up in output, `--json`, errors or any file kiln writes, and a push killed with
//! SIGKILL and run again uploads no blob twice. The real registry sits behind `hostile_front`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::hostile_front::{self, basic, reply, Action, Config};
use support::kiln::{Kiln, Run};
use support::registry_server::{start, Mode, USER};
use support::workspace::Workspace;

fn workspace() -> Workspace {
    let ws = Workspace::engine();
    std::fs::create_dir_all(ws.home()).unwrap();
    ws
}

impl Workspace {
    /// A home directory of the test's own: no docker config, auth file or certs.d but what
    /// the test puts there.
    fn home(&self) -> PathBuf {
        self.scratch().join("home")
    }

    /// kiln with `USER` and `password` as its registry credentials, and no others.
    fn kiln_as(&self, password: &str) -> Kiln {
        let home = self.home();
        self.kiln()
            .env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("REGISTRY_AUTH_FILE", home.join("auth.json"))
            .env("KILN_CERTS_D", home.join("certs.d"))
            .env("KILN_REGISTRY_USERNAME", USER)
            .env("KILN_REGISTRY_PASSWORD", password)
    }

    fn run_as(&self, args: &[&str], password: &str) -> Run {
        self.kiln_as(password).run(args)
    }

    fn command_as(&self, args: &[&str], password: &str) -> Command {
        self.kiln_as(password).command(args)
    }
}

/// Every file under `dir` whose bytes contain one of `needles`.
fn files_containing(dir: &Path, needles: &[Vec<u8>]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
                {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

#[test]
fn a_canary_password_appears_in_no_output_error_or_file() {
    const CANARY: &str = "canary-7Qx9-k1ln-pass";
    const WRONG: &str = "canary-WRONG-4471-pass";
    let reg = start(Mode::Plain);
    let storage = hostile_front::start(Config::forward("127.0.0.2", &reg.addr));
    let storage_base = format!("http://{}", storage.addr);
    let expected = basic(USER, CANARY);
    // A Basic-auth registry whose uploads go to object storage on another address.
    let front = hostile_front::start(Config {
        decide: Box::new(move |seen| {
            if seen.authorization.as_deref() == Some(expected.as_str()) {
                Action::Forward
            } else {
                Action::Reply(reply(
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"kiln-test\"\r\n",
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ))
            }
        }),
        edit: Box::new(move |_, resp| {
            if let Some(loc) = resp.header("Location").map(str::to_string) {
                if let Some(i) = loc.find("/v2/") {
                    resp.set_header("Location", &format!("{storage_base}{}", &loc[i..]));
                }
            }
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let ws = workspace();
    let to = format!("{}/team", front.addr);
    let ok = ws.run_as(&["push", "hello", "--to", &to, "--json"], CANARY);
    assert!(ok.status.success(), "{}", ok.stderr_text());
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(
        doc["images"][0]["uploaded_blobs"].as_u64().unwrap() >= 4,
        "{doc}"
    );
    assert!(storage.seen().iter().any(|s| s.method == "PUT"));
    assert!(storage.seen().iter().all(|s| s.authorization.is_none()));
    let plain = ws.run_as(&["push", "hello", "--to", &to, "--tag", "again"], CANARY);
    assert!(plain.status.success());
    let failed = ws.run_as(
        &["push", "hello", "--to", &to, "--tag", "nope", "--json"],
        WRONG,
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("authentication failed"), "{err}");

    let mut needles = Vec::new();
    for secret in [CANARY, WRONG] {
        needles.push(secret.as_bytes().to_vec());
        needles.push(basic(USER, secret).into_bytes());
        needles.push(
            base64::engine::general_purpose::STANDARD
                .encode(secret)
                .into_bytes(),
        );
    }
    for (what, bytes) in [
        ("push --json stdout", &ok.stdout),
        ("push --json stderr", &ok.stderr),
        ("push stdout", &plain.stdout),
        ("push stderr", &plain.stderr),
        ("failed push stdout", &failed.stdout),
        ("failed push stderr", &failed.stderr),
    ] {
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{what} carries a secret: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    assert!(ws.path("out").exists() && ws.cache().exists());
    for dir in [ws.root(), ws.cache(), &ws.home()] {
        let hits = files_containing(dir, &needles);
        assert!(hits.is_empty(), "secrets written to {hits:?}");
    }
}

#[test]
fn a_push_killed_with_sigkill_and_run_again_uploads_no_blob_twice() {
    let reg = start(Mode::Plain);
    // Completed blob uploads (a PUT that closed a session with 201), per digest.
    let completed: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();
    let held = Arc::new(AtomicBool::new(false));
    let released = Arc::new(AtomicBool::new(false));
    let (c1, c2, h, r) = (
        completed.clone(),
        completed.clone(),
        held.clone(),
        released.clone(),
    );
    let front = hostile_front::start(Config {
        // Once one blob is complete, the next upload session waits: that is where kiln dies.
        decide: Box::new(move |seen| {
            let starting = seen.method == "POST" && seen.target.contains("/blobs/uploads/");
            if starting && !c1.lock().unwrap().is_empty() && !r.load(Ordering::SeqCst) {
                h.store(true, Ordering::SeqCst);
                let end = Instant::now() + Duration::from_secs(120);
                while !r.load(Ordering::SeqCst) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Action::Reply(reply("503 Service Unavailable", "", "{}"));
            }
            Action::Forward
        }),
        edit: Box::new(move |seen, resp| {
            let closing = seen.method == "PUT" && seen.target.contains("/blobs/uploads/");
            if closing && resp.status_line.contains(" 201 ") {
                let digest = url::Url::parse(&format!("http://x{}", seen.target))
                    .unwrap()
                    .query_pairs()
                    .find(|(k, _)| k == "digest")
                    .map(|(_, v)| v.into_owned())
                    .unwrap();
                *c2.lock().unwrap().entry(digest).or_default() += 1;
            }
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let ws = workspace();
    let to = format!("{}/kill", front.addr);
    let args = [
        "push",
        "hello",
        "--to",
        to.as_str(),
        "--jobs",
        "1",
        "--json",
    ];
    let mut child = ws
        .command_as(&args, "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Generous: the push builds the workspace first.
    let end = Instant::now() + Duration::from_secs(300);
    while !held.load(Ordering::SeqCst) && Instant::now() < end {
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        held.load(Ordering::SeqCst),
        "the push never reached its second blob"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    released.store(true, Ordering::SeqCst);
    let before = completed.lock().unwrap().clone();
    assert!(!before.is_empty());

    let out = ws.run_as(&args, "unused");
    assert!(out.status.success(), "{}", out.stderr_text());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = &doc["images"][0];
    assert!(
        image["skipped_blobs"].as_u64().unwrap() >= before.len() as u64,
        "blobs finished before the kill are skipped: {image}"
    );
    let after = completed.lock().unwrap().clone();
    assert!(after.len() > before.len(), "the re-run finished the push");
    for (digest, n) in &after {
        assert_eq!(*n, 1, "{digest} was uploaded {n} times");
    }
}
