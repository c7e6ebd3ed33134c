//! Stripping ELF files for the image with GNU binutils, keeping the service's debug info beside it.
//!
//! `objcopy --only-keep-debug` and `strip --strip-unneeded` write the same bytes for the same
//! input (ELF output carries no timestamps; `-D` only matters for `ar` archives, which never go
//! into an image), and `--add-gnu-debuglink` embeds the debug file's base name and CRC32, both
//! functions of the input. The build-id note survives stripping and ties binary and debug file.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

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
    pub fn split_debug(&self, input: &Path, debug: &Path, out: &Path) -> Result<(), ImageError> {
        run(
            &self.objcopy,
            &[
                "--only-keep-debug".as_ref(),
                input.as_os_str(),
                debug.as_os_str(),
            ],
        )?;
        self.strip_to(input, out)?;
        let link = format!("--add-gnu-debuglink={}", debug.display());
        run(&self.objcopy, &[link.as_ref(), out.as_os_str()])
    }

    /// Writes a copy of `input` without symbols that relocation does not need.
    pub fn strip_to(&self, input: &Path, out: &Path) -> Result<(), ImageError> {
        run(
            &self.strip,
            &[
                "--strip-unneeded".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
                input.as_os_str(),
            ],
        )
    }
}

fn run(tool: &Path, args: &[&std::ffi::OsStr]) -> Result<(), ImageError> {
    let shown = || {
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let output = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| ImageError::Tool {
            tool: tool.display().to_string(),
            args: shown(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ImageError::Tool {
        tool: tool.display().to_string(),
        args: shown(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
