//! Stripping ELF files for the image with GNU binutils, keeping the service's debug info beside it.
//!
//! `objcopy --only-keep-debug` and `strip --strip-unneeded` write the same bytes for the same
//! input (ELF output carries no timestamps; `-D` only matters for `ar` archives, which never go
//! into an image), and `--add-gnu-debuglink` embeds the debug file's base name and CRC32, both
//! functions of the input. The build-id note survives stripping and ties binary and debug file.

use std::path::{Path, PathBuf};

use super::ImageError;
use crate::debian::sandbox::{Sandbox, WORKSPACE};
use crate::exec::{Command, Env, Output, Runner};

/// The binutils programs to run; a seam so callers can point at a cross toolchain, or at a
/// toolchain root's own binutils run in its sandbox (then the programs are paths inside it).
#[derive(Clone, Debug)]
pub struct Binutils {
    pub objcopy: PathBuf,
    pub strip: PathBuf,
    pub sandbox: Option<Sandbox>,
}

impl Default for Binutils {
    fn default() -> Self {
        Binutils {
            objcopy: "objcopy".into(),
            strip: "strip".into(),
            sandbox: None,
        }
    }
}

/// A binutils argument: plain text, or a path (maybe after a prefix such as
/// `--add-gnu-debuglink=`) that a sandbox must be able to see.
enum Arg<'a> {
    Text(&'static str),
    Path(&'static str, &'a Path),
}

impl Binutils {
    /// Writes `debug` (debug sections only) and `out` (stripped, with a debuglink to `debug`).
    pub fn split_debug(
        &self,
        runner: &dyn Runner,
        input: &Path,
        debug: &Path,
        out: &Path,
    ) -> Result<(), ImageError> {
        self.run(
            runner,
            &self.objcopy,
            &[
                Arg::Text("--only-keep-debug"),
                Arg::Path("", input),
                Arg::Path("", debug),
            ],
        )?;
        self.strip_to(runner, input, out)?;
        self.run(
            runner,
            &self.objcopy,
            &[Arg::Path("--add-gnu-debuglink=", debug), Arg::Path("", out)],
        )
    }

    /// Writes a copy of `input` without symbols that relocation does not need.
    pub fn strip_to(
        &self,
        runner: &dyn Runner,
        input: &Path,
        out: &Path,
    ) -> Result<(), ImageError> {
        self.run(
            runner,
            &self.strip,
            &[
                Arg::Text("--strip-unneeded"),
                Arg::Text("-o"),
                Arg::Path("", out),
                Arg::Path("", input),
            ],
        )
    }

    fn run(&self, runner: &dyn Runner, tool: &Path, args: &[Arg]) -> Result<(), ImageError> {
        let Some(sandbox) = &self.sandbox else {
            let mut text = Vec::new();
            for a in args {
                text.push(match a {
                    Arg::Text(t) => t.to_string(),
                    Arg::Path(prefix, p) => format!("{prefix}{}", arg(p)?),
                });
            }
            // binutils need nothing from the environment; it is inherited as it always was.
            return run(runner, &Command::new(tool).args(text).env(Env::inherited()));
        };
        let mut binds = Vec::new();
        let mut text = Vec::new();
        for a in args {
            text.push(match a {
                Arg::Text(t) => t.to_string(),
                Arg::Path(prefix, p) => {
                    arg(p)?;
                    format!("{prefix}{}", sandbox.map_path(p, &mut binds))
                }
            });
        }
        let program = tool.to_string_lossy();
        let cmd = sandbox.command_with_binds(&program, &text, WORKSPACE, &binds);
        let shown = format!("{program} {}", text.join(" "));
        let output =
            sandbox
                .run_command(runner, &program, &cmd)
                .map_err(|e| ImageError::ToolStart {
                    tool: program.to_string(),
                    args: shown,
                    source: std::io::Error::other(crate::error::chain(&e)),
                })?;
        check(tool, &text.join(" "), &output)
    }
}

/// `path` as an argument for binutils. Commands carry text, and a lossy spelling would name a
/// different file, so a path that is not UTF-8 is refused.
fn arg(path: &Path) -> Result<String, ImageError> {
    match path.to_str() {
        Some(s) => Ok(s.to_string()),
        None => Err(ImageError::io("passing to binutils", path)(
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path is not valid UTF-8",
            ),
        )),
    }
}

fn run(runner: &dyn Runner, cmd: &Command) -> Result<(), ImageError> {
    let tool = &cmd.program;
    let output = runner.run(cmd).map_err(|source| ImageError::ToolStart {
        tool: tool.display().to_string(),
        args: cmd.args.join(" "),
        source,
    })?;
    check(tool, &cmd.args.join(" "), &output)
}

fn check(tool: &Path, shown: &str, output: &Output) -> Result<(), ImageError> {
    if output.success {
        return Ok(());
    }
    Err(ImageError::Tool {
        tool: tool.display().to_string(),
        args: shown.to_string(),
        status: match output.code {
            Some(code) => format!("exit status: {code}"),
            None => "killed by a signal".into(),
        },
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scripted::{self, Scripted};

    #[test]
    fn split_debug_keeps_debug_strips_then_links_in_that_order() {
        let runner = scripted::replying(scripted::ok(Vec::new()));
        Binutils::default()
            .split_debug(
                &runner,
                Path::new("/o/bin/svc"),
                Path::new("/t/svc.debug"),
                Path::new("/t/svc"),
            )
            .unwrap();
        let calls: Vec<(PathBuf, Vec<String>)> = runner
            .calls()
            .into_iter()
            .map(|c| (c.program, c.args))
            .collect();
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            calls,
            [
                (
                    "objcopy".into(),
                    s(&["--only-keep-debug", "/o/bin/svc", "/t/svc.debug"])
                ),
                (
                    "strip".into(),
                    s(&["--strip-unneeded", "-o", "/t/svc", "/o/bin/svc"])
                ),
                (
                    "objcopy".into(),
                    s(&["--add-gnu-debuglink=/t/svc.debug", "/t/svc"])
                ),
            ]
        );
    }

    #[test]
    fn a_failing_tool_is_named_with_its_arguments_status_and_stderr() {
        let runner = scripted::replying(scripted::failed(
            1,
            "strip: /o/lib.so: file format not recognized\n",
        ));
        let e = Binutils::default()
            .strip_to(&runner, Path::new("/o/lib.so"), Path::new("/t/lib.so"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "strip --strip-unneeded -o /t/lib.so /o/lib.so failed (exit status: 1): \
             strip: /o/lib.so: file format not recognized"
        );
        // The first failure stops the split: no stripping after a failed objcopy.
        let runner = scripted::replying(scripted::failed(1, "objcopy: bad"));
        let cross = Binutils {
            objcopy: "/opt/cross/bin/objcopy".into(),
            strip: "/opt/cross/bin/strip".into(),
            sandbox: None,
        };
        let e = cross
            .split_debug(
                &runner,
                Path::new("a"),
                Path::new("a.debug"),
                Path::new("b"),
            )
            .unwrap_err();
        assert!(e.to_string().starts_with("/opt/cross/bin/objcopy "), "{e}");
        assert_eq!(runner.calls().len(), 1);
    }

    #[test]
    fn a_missing_tool_could_not_start() {
        let runner = Scripted::new(scripted::not_found);
        let e = Binutils::default()
            .strip_to(&runner, Path::new("in"), Path::new("out"))
            .unwrap_err();
        assert!(e.to_string().ends_with("could not start"), "{e}");
        // The OS error is the cause, said once, not part of the message.
        let cause = std::error::Error::source(&e).expect("the start failure is the cause");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused_rather_than_misspelt() {
        use std::os::unix::ffi::OsStrExt;
        let runner = scripted::replying(scripted::ok(Vec::new()));
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/o/\xffsvc"));
        let e = Binutils::default()
            .strip_to(&runner, odd, Path::new("out"))
            .unwrap_err();
        assert!(matches!(e, ImageError::Io { .. }), "{e}");
        assert!(runner.calls().is_empty());
    }

    #[test]
    fn in_a_sandbox_the_root_binutils_see_the_workspace_at_ws_and_other_files_bound() {
        let runner = scripted::replying(scripted::ok(""));
        let sandboxed = Binutils {
            objcopy: "/usr/bin/objcopy".into(),
            strip: "/usr/bin/strip".into(),
            sandbox: Some(Sandbox::with_bwrap(
                "/usr/bin/bwrap".into(),
                Path::new("/roots/r1"),
                Path::new("/w"),
                0,
            )),
        };
        sandboxed
            .split_debug(
                &runner,
                Path::new("/w/out/bin/hello"),
                Path::new("/cache/work/hello.debug"),
                Path::new("/cache/work/hello"),
            )
            .unwrap();
        let calls = runner.calls();
        assert_eq!(calls.len(), 3);
        for c in &calls {
            assert_eq!(c.program, Path::new("/usr/bin/bwrap"));
            let line = c.args.join(" ");
            assert!(
                line.starts_with("--ro-bind /roots/r1 / --bind /w /ws"),
                "{line}"
            );
            assert!(
                line.contains("--tmpfs /tmp --bind /cache/work /tmp/kiln-0 "),
                "{line}"
            );
        }
        let tail = |c: &Command| {
            let dash = c.args.iter().position(|a| a == "--").unwrap();
            c.args[dash + 1..].join(" ")
        };
        assert_eq!(
            tail(&calls[0]),
            "/usr/bin/objcopy --only-keep-debug /ws/out/bin/hello /tmp/kiln-0/hello.debug"
        );
        assert_eq!(
            tail(&calls[1]),
            "/usr/bin/strip --strip-unneeded -o /tmp/kiln-0/hello /ws/out/bin/hello"
        );
        assert_eq!(
            tail(&calls[2]),
            "/usr/bin/objcopy --add-gnu-debuglink=/tmp/kiln-0/hello.debug /tmp/kiln-0/hello"
        );
    }
}
