//! [`ProcessRunner`]: the real [`Runner`], starting each [`Command`] as a child process of kiln.
//!
//! A command with neither stdin bytes nor a time limit (every compiler action) is started and
//! collected by `std::process::Command::output`. Otherwise stdin is fed and stdout and stderr
//! are drained on their own threads, so a child blocked writing a full pipe never stalls the
//! wait, and a time limit is enforced by polling: the child is killed once it has run too long,
//! and what it printed until then is kept.
//!
//! A command marked [`Command::die_with_kiln`] is asked to die with kiln (`PR_SET_PDEATHSIG`): a
//! compiler that outlived a killed kiln would go on writing into a staging directory the next
//! build is already using. Only those: the hook makes std fork instead of `posix_spawn`, which
//! costs milliseconds per process in a kiln holding the dpkg index.

use std::io::{self, Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Command, Env, Output, Runner};
use crate::cache::key::ENV_ALLOWLIST;

/// How often a time-limited child is checked on.
const POLL: Duration = Duration::from_millis(10);

pub struct ProcessRunner;

/// Has the kernel kill the child when the thread that started it (and so kiln) dies; it also
/// covers the window before exec by checking that the parent is still the one that forked.
fn die_with_parent(c: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
}

impl Runner for ProcessRunner {
    fn run(&self, cmd: &Command) -> io::Result<Output> {
        let mut c = std::process::Command::new(&cmd.program);
        c.args(&cmd.args);
        if cmd.die_with_kiln {
            die_with_parent(&mut c);
        }
        if let Some(dir) = &cmd.cwd {
            c.current_dir(dir);
        }
        match &cmd.env {
            Env::Scrubbed => {
                c.env_clear();
                if let Some(path) = std::env::var_os("PATH") {
                    c.env("PATH", path);
                }
                for k in ENV_ALLOWLIST {
                    if let Some(v) = std::env::var_os(k) {
                        c.env(k, v);
                    }
                }
                c.env("LC_ALL", "C").env("SOURCE_DATE_EPOCH", "0");
            }
            Env::Exactly(set) => {
                c.env_clear();
                for (k, v) in set {
                    c.env(k, v);
                }
            }
            Env::Inherited(set) => {
                for (k, v) in set {
                    c.env(k, v);
                }
            }
        }
        if cmd.stdin.is_none() && cmd.timeout.is_none() {
            let out = c.stdin(Stdio::null()).output()?;
            return Ok(output(out.status, out.stdout, out.stderr, false));
        }
        c.stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let feeder = cmd.stdin.clone().map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || pipe.write_all(&bytes))
        });
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let status = wait(&mut child, cmd.timeout);
        if status.is_err() {
            // The readers finish only when the child's pipes close.
            let _ = child.kill();
            let _ = child.wait();
        }
        let stdout = stdout.join().expect("stdout reader panicked");
        let stderr = stderr.join().expect("stderr reader panicked");
        let status = status?;
        if let Some(feeder) = feeder {
            feeder.join().expect("stdin writer panicked")?;
        }
        Ok(match status {
            Some(st) => output(st, stdout, stderr, false),
            None => Output {
                success: false,
                code: None,
                stdout,
                stderr,
                timed_out: true,
            },
        })
    }
}

fn output(status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>, timed_out: bool) -> Output {
    Output {
        success: status.success(),
        code: status.code(),
        stdout,
        stderr,
        timed_out,
    }
}

/// Reads `pipe` to its end on a thread of its own; a read error ends the capture early.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The child's exit status, or `None` when it ran past `limit` and was killed.
fn wait(child: &mut Child, limit: Option<Duration>) -> io::Result<Option<ExitStatus>> {
    let Some(limit) = limit else {
        return child.wait().map(Some);
    };
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        Command::new("/bin/sh").args(["-c", script])
    }

    fn stdout(out: &Output) -> String {
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The environment `env` printed, as `NAME=value` lines.
    fn environment(env: Env) -> Vec<String> {
        let out = ProcessRunner
            .run(&Command::new("/usr/bin/env").env(env))
            .unwrap();
        assert!(out.success);
        stdout(&out).lines().map(str::to_string).collect()
    }

    #[test]
    fn compilers_get_only_the_scrubbed_environment() {
        let vars = environment(Env::Scrubbed);
        for v in &vars {
            let name = v.split('=').next().unwrap();
            assert!(
                ["PATH", "LC_ALL", "SOURCE_DATE_EPOCH"].contains(&name)
                    || ENV_ALLOWLIST.contains(&name),
                "{name} reached a compiler: {vars:?}"
            );
        }
        assert!(vars.contains(&"LC_ALL=C".to_string()), "{vars:?}");
        assert!(
            vars.contains(&"SOURCE_DATE_EPOCH=0".to_string()),
            "{vars:?}"
        );
    }

    #[test]
    fn inherited_keeps_kiln_environment_and_sets_the_given_variables() {
        let vars = environment(Env::Inherited(vec![("KILN_TEST".into(), "unit".into())]));
        assert!(vars.contains(&"KILN_TEST=unit".to_string()), "{vars:?}");
        // Everything kiln has (that is printable) is passed on.
        for (k, v) in std::env::vars() {
            if !v.contains('\n') && k != "KILN_TEST" {
                assert!(vars.contains(&format!("{k}={v}")), "{k} was dropped");
            }
        }
    }

    #[test]
    fn the_working_directory_is_the_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let out = ProcessRunner.run(&sh("pwd -P").cwd(dir.path())).unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(stdout(&out).trim_end(), real.to_str().unwrap());
    }

    #[test]
    fn stdin_bytes_reach_the_process_and_large_output_does_not_stall() {
        // Far more output than a pipe holds, while stdin is fed: both ends must be serviced.
        let cmd = sh("cat; head -c 1000000 /dev/zero; echo err >&2").stdin(b"hello\n".to_vec());
        let out = ProcessRunner.run(&cmd).unwrap();
        assert!(out.success);
        assert!(out.stdout.starts_with(b"hello\n"));
        assert_eq!(out.stdout.len(), 6 + 1_000_000);
        assert_eq!(out.stderr, b"err\n");
        // Without stdin bytes the process reads an empty stdin rather than kiln's.
        let out = ProcessRunner.run(&sh("cat; echo done")).unwrap();
        assert_eq!(stdout(&out), "done\n");
    }

    #[test]
    fn exit_codes_and_start_failures_are_told_apart() {
        let out = ProcessRunner.run(&sh("echo no >&2; exit 3")).unwrap();
        assert!(!out.success);
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stderr, b"no\n");
        assert!(!out.timed_out);
        let e = ProcessRunner
            .run(&Command::new("/nonexistent/kiln-no-such-program"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_process_past_its_time_limit_is_killed() {
        let cmd = Command::new("sleep")
            .arg("600")
            .env(Env::inherited())
            .timeout(Duration::from_millis(50));
        let out = ProcessRunner.run(&cmd).unwrap();
        assert!(out.timed_out);
        assert!(!out.success);
        assert_eq!(out.code, None);
        // A process that ends in time is not marked.
        let out = ProcessRunner
            .run(&sh("exit 0").timeout(Duration::from_secs(600)))
            .unwrap();
        assert!(out.success && !out.timed_out);
    }
}
