//! The built kiln binary, run as a person would run it: in a workspace (`-C root`, started from
//! inside it too, so relative arguments mean what they say), with the environment the test
//! gives and, when asked, under a umask. A [`Run`] keeps the command, exit status, stdout and
//! stderr, and every expectation on it that fails prints all four.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Where kiln keeps Debian toolchain downloads (`toolchain::hermetic::STORE_ENV`).
pub const DEBIAN_STORE_ENV: &str = "KILN_DEBIAN_CACHE";

/// The directory holding the machine's shared store (its `debian/`) of Debian downloads for tests: `$KILN_TEST_DEB_CACHE`,
/// else `/var/cache/kiln-test-debs` when writable, else `~/.cache/kiln-test-debs`.
pub fn shared_debian_store() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_TEST_DEB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let system = PathBuf::from("/var/cache/kiln-test-debs");
    if std::fs::create_dir_all(&system).is_ok() && tempfile::tempdir_in(&system).is_ok() {
        return system;
    }
    dirs::cache_dir()
        .expect("a home directory")
        .join("kiln-test-debs")
}

#[derive(Clone, Debug)]
pub struct Kiln {
    root: Option<PathBuf>,
    /// In order; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    umask: Option<String>,
}

impl Kiln {
    /// kiln in the workspace at `root`.
    pub fn at(root: impl AsRef<Path>) -> Kiln {
        Kiln {
            root: Some(root.as_ref().to_path_buf()),
            env: Vec::new(),
            umask: None,
        }
    }

    /// kiln outside any workspace, from the test's own directory (for commands that take none,
    /// or tests that pass their own `-C`).
    pub fn outside() -> Kiln {
        Kiln {
            root: None,
            env: Vec::new(),
            umask: None,
        }
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Kiln {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs(mut self, pairs: &[(&str, &str)]) -> Kiln {
        for (k, v) in pairs {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Kiln {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Without the cache limits a developer may have set (`KILN_CACHE_MAX_SIZE`,
    /// `KILN_CACHE_MAX_AGE`), for tests that count what the cache holds.
    pub fn without_cache_limits(self) -> Kiln {
        self.env_remove("KILN_CACHE_MAX_SIZE")
            .env_remove("KILN_CACHE_MAX_AGE")
    }

    /// Runs kiln under this umask (octal, e.g. "077"), through `sh` the way a shell would.
    pub fn umask(mut self, mask: &str) -> Kiln {
        self.umask = Some(mask.to_string());
        self
    }

    /// The command, not yet started, for tests that spawn kiln and watch or kill it. Its stdin
    /// is empty, as it is for [`Kiln::run`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = match &self.umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_kiln"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_kiln")),
        };
        if let Some(root) = &self.root {
            c.arg("-C").arg(root).current_dir(root);
        }
        c.args(args).stdin(Stdio::null());
        // Debian toolchains' packages, trees and roots: one download per machine, shared by
        // every test (a test that needs its own store sets the variable itself).
        if std::env::var_os(DEBIAN_STORE_ENV).is_none() {
            c.env(DEBIAN_STORE_ENV, shared_debian_store().join("debian"));
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs kiln with `args` to the end and captures what it printed.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        let out = c.output().unwrap_or_else(|e| panic!("starting {c:?}: {e}"));
        Run {
            command: describe(&c),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

/// `kiln ARGS` (the binary's path and the `sh` wrapper left out), for messages.
fn describe(c: &Command) -> String {
    let mut words: Vec<String> = c
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if c.get_program() == "sh" {
        words.drain(..3);
    }
    format!("kiln {}", words.join(" "))
}

/// One finished kiln run.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics unless kiln succeeded; `what` says what the test was doing.
    pub fn assert_ok(&self, what: &str) {
        assert!(self.status.success(), "{what} failed: {self}");
    }

    /// [`Run::assert_ok`], then the run, for chaining.
    pub fn ok(self, what: &str) -> Run {
        self.assert_ok(what);
        self
    }

    /// Panics unless kiln exited with `code`.
    pub fn assert_code(&self, code: i32, what: &str) {
        assert_eq!(self.code(), Some(code), "{what}: {self}");
    }

    /// stdout as JSON, panicking with the whole run when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
