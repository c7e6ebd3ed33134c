//! Stripping ELF files for the image with GNU binutils, keeping the service's debug info beside it.
//!
//! `objcopy --only-keep-debug` and `strip --strip-unneeded` write the same bytes for the same
//! input (ELF output carries no timestamps; `-D` only matters for `ar` archives, which never go
//! into an image), and `--add-gnu-debuglink` embeds the debug file's base name and CRC32, both
//! functions of the input. The build-id note survives stripping and ties binary and debug file.

use std::path::{Path, PathBuf};

use super::ImageError;
use crate::exec::{Command, Env, Runner};

/// The binutils programs to run; a seam so callers can point at a cross toolchain.
#[derive(Clone, Debug)]
pub struct Binutils {
    pub objcopy: PathBuf,
    pub strip: PathBuf,
}

impl Default for Binutils {
    fn default() -> Self {
        Binutils {
            objcopy: "objcopy".into(),
            strip: "strip".into(),
        }
    }
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
        let (input_arg, debug_arg) = (arg(input)?, arg(debug)?);
        run(
            runner,
            &self.objcopy,
            vec!["--only-keep-debug".into(), input_arg, debug_arg],
        )?;
        self.strip_to(runner, input, out)?;
        let link = format!("--add-gnu-debuglink={}", debug.display());
        run(runner, &self.objcopy, vec![link, arg(out)?])
    }

    /// Writes a copy of `input` without symbols that relocation does not need.
    pub fn strip_to(
        &self,
        runner: &dyn Runner,
        input: &Path,
        out: &Path,
    ) -> Result<(), ImageError> {
        let args = vec![
            "--strip-unneeded".into(),
            "-o".into(),
            arg(out)?,
            arg(input)?,
        ];
        run(runner, &self.strip, args)
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

fn run(runner: &dyn Runner, tool: &Path, args: Vec<String>) -> Result<(), ImageError> {
    // binutils need nothing from the environment; it is inherited as it always was.
    let cmd = Command::new(tool).args(args).env(Env::inherited());
    let shown = || cmd.args.join(" ");
    let output = runner.run(&cmd).map_err(|source| ImageError::ToolStart {
        tool: tool.display().to_string(),
        args: shown(),
        source,
    })?;
    if output.success {
        return Ok(());
    }
    Err(ImageError::Tool {
        tool: tool.display().to_string(),
        args: shown(),
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
}
