//! The one seam through which kiln starts processes: compiler actions, `git` for revision
//! metadata and `kiln verify`'s copy, `strip`/`objcopy` for images, toolchain probes and
//! `dpkg-query`, `docker-credential-*` helpers, `gpgv`, bubblewrap and `kiln test`'s test
//! binaries. Callers describe a process as a plain [`Command`] value and hand it to a
//! [`Runner`]; the real one is [`ProcessRunner`], supplied where the CLI sets a command up, and
//! tests hand in a scripted runner (`exec::scripted`) that matches on the `Command` instead. A
//! sandbox or remote executor replaces process starting here, in one place, by being a `Runner`.
//!
//! What a command sees is part of the value, so that a runner can honour it and a test can check
//! it: the working directory, the environment policy ([`Env`]), bytes for stdin and a time limit.
//! [`Env::Scrubbed`], the default, is what compiler actions get and what their cache keys assume:
//! only PATH, the key's allow-list, `LC_ALL=C` (stable diagnostics) and `SOURCE_DATE_EPOCH=0`
//! (GNAT clamps ALI timestamps to it and GCC uses it for `__DATE__`, so neither can leak the time
//! into an output). Tools that need the user's setup (git's config, a credential helper's
//! keyring) inherit kiln's environment with [`Env::Inherited`] instead.

mod process;
#[cfg(test)]
pub mod scripted;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use process::ProcessRunner;

/// A process to start, as data: what a [`Runner`] needs and a scripted runner can match on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Working directory; `None` is kiln's own.
    pub cwd: Option<PathBuf>,
    pub env: Env,
    /// Written to the process's stdin, which is then closed; `None` gives it an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// The process is killed once it has run this long and [`Output::timed_out`] is set.
    pub timeout: Option<Duration>,
    /// The process must not outlive kiln: set for what writes into directories a later build
    /// reuses (actions in their staging directories, test binaries). It costs a plain fork
    /// instead of `posix_spawn`, so short helper tools (binutils, git) go without it.
    pub die_with_kiln: bool,
}

/// The environment a process starts with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Env {
    /// Only PATH, the cache key's allow-list, `LC_ALL=C` and `SOURCE_DATE_EPOCH=0`: what compiler
    /// actions get, so their outputs depend on nothing their cache key does not cover.
    #[default]
    Scrubbed,
    /// kiln's own environment with these variables set over it, in order.
    Inherited(Vec<(String, OsString)>),
    /// Exactly these variables and no others: a remote action's environment as its REAPI
    /// Command lists it (`kiln worker`).
    Exactly(Vec<(String, String)>),
}

impl Env {
    /// kiln's own environment, unchanged.
    pub fn inherited() -> Env {
        Env::Inherited(Vec::new())
    }
}

impl Command {
    /// `program` with kiln's working directory, the scrubbed environment, an empty stdin and no
    /// time limit; the builder methods below change one of those at a time.
    pub fn new(program: impl Into<PathBuf>) -> Command {
        Command {
            program: program.into(),
            ..Command::default()
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Command {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Command {
        self.cwd = Some(dir.into());
        self
    }

    pub fn env(mut self, env: Env) -> Command {
        self.env = env;
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Command {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Command {
        self.timeout = Some(limit);
        self
    }

    /// See [`Command::die_with_kiln`].
    pub fn die_with_kiln(mut self) -> Command {
        self.die_with_kiln = true;
        self
    }

    /// The command as a shell-like line, for messages.
    pub fn display(&self) -> String {
        let mut s = self
            .program
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for a in &self.args {
            s.push(' ');
            if a.contains(' ') {
                s.push_str(&format!("'{a}'"));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// What a finished (or killed) process left: its status and everything it printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub success: bool,
    /// `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Killed for running past [`Command::timeout`].
    pub timed_out: bool,
}

/// Starts processes. `Send + Sync` so that one runner serves every thread of a build and can be
/// shared (`Arc<dyn Runner>`) by values that outlive a call, such as credential sources.
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion. `Err` means the process could not be started (or its stdin
    /// written); a process that ran and failed is an `Ok` with `success == false`.
    fn run(&self, cmd: &Command) -> io::Result<Output>;
}

impl fmt::Debug for dyn Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Runner")
    }
}
