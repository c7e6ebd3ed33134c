//! A real BuildGrid (`bgd server start`) on a free loopback port, with an in-memory CAS and
//! action cache, stopped when dropped. scripts/setup installs it into a venv; `KILN_BUILDGRID_VENV`
//! names another venv.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln::remote::{RemoteCache, RemoteConfig};

pub struct BuildGrid {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

fn bgd() -> PathBuf {
    let venv = std::env::var_os("KILN_BUILDGRID_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-buildgrid/venv"));
    let bgd = venv.join("bin/bgd");
    assert!(
        bgd.exists(),
        "BuildGrid is not installed at {}: run scripts/setup",
        bgd.display()
    );
    bgd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Minimal configuration: one unnamed instance serving CAS, ByteStream and the action cache
/// from memory, updates allowed, no execution.
fn config(port: u16) -> String {
    format!(
        r#"server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
storages:
  - !lru-storage &cas
    size: 256MB
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 1024
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: ""
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"#
    )
}

impl BuildGrid {
    pub fn start() -> BuildGrid {
        let bgd = bgd();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("buildgrid.yml");
        std::fs::write(&cfg, config(port)).unwrap();
        let log = File::create(dir.path().join("bgd.log")).unwrap();
        let child = Command::new(bgd)
            .args(["server", "start"])
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so Drop stops whatever it spawned and nothing else.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut bg = BuildGrid {
            child,
            url: format!("grpc://127.0.0.1:{port}"),
            dir,
        };
        bg.wait_ready();
        bg
    }

    /// Waits until GetCapabilities answers: a bounded number of tries within a generous
    /// deadline (Python's start-up on a busy machine takes seconds).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut cfg = RemoteConfig::new(self.url.clone());
        cfg.timeout = Duration::from_secs(10);
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("bgd exited with {status} before serving:\n{}", self.log());
            }
            if RemoteCache::connect(&cfg).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "bgd never answered GetCapabilities on {}:\n{}",
            self.url,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    pub fn config(&self) -> RemoteConfig {
        RemoteConfig::new(self.url.clone())
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this harness created; no memory is touched.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
