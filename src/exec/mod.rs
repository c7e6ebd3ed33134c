//! Running processes, behind a small trait so tests can script a runner where the compiler is not
//! the point. The real [`ProcessRunner`] gives compilers a scrubbed environment: only PATH, the
//! key's allow-list, `LC_ALL=C` (stable diagnostics) and `SOURCE_DATE_EPOCH=0` (GNAT clamps ALI
//! timestamps to it and GCC uses it for `__DATE__`, so neither can leak the time into an output).

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use crate::cache::key::ENV_ALLOWLIST;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

impl Command {
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

#[derive(Clone, Debug, Default)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub trait Runner: Sync {
    fn run(&self, cmd: &Command) -> io::Result<Output>;
}

pub struct ProcessRunner;

impl Runner for ProcessRunner {
    fn run(&self, cmd: &Command) -> io::Result<Output> {
        let mut c = std::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .current_dir(&cmd.cwd)
            .env_clear()
            .stdin(Stdio::null());
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        for k in ENV_ALLOWLIST {
            if let Some(v) = std::env::var_os(k) {
                c.env(k, v);
            }
        }
        c.env("LC_ALL", "C").env("SOURCE_DATE_EPOCH", "0");
        let out = c.output()?;
        Ok(Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
