//! Checking a clear-signed `InRelease` with gpgv against a keyring (Debian's is
//! `/usr/share/keyrings/debian-archive-keyring.gpg`), through the `exec::Runner` seam.
//!
//! Only what gpgv writes out as the signed text is used afterwards, never the file as fetched:
//! a clear-signed file can carry unsigned text around the signed block, and reading that would
//! let a mirror slip in a different Packages digest. Success needs gpgv's exit status 0 *and* a
//! `VALIDSIG` status line, so a gpgv that merely ran is not taken for a good signature.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::exec::{Command, Runner};

pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot run gpgv (install it: apt-get install gpgv, or run scripts/setup)")]
    Gpgv(#[source] io::Error),
    #[error("keyring {} does not exist (install debian-archive-keyring, or name another keyring)", .0.display())]
    Keyring(PathBuf),
    #[error("{what} is not signed by a key in {}: {detail}", keyring.display())]
    Bad {
        what: String,
        keyring: PathBuf,
        detail: String,
    },
    #[error("staging {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Verifies `signed` (clear-signed bytes, named `what` in messages) and returns the signed text.
/// `scratch` is an empty directory the caller owns.
pub fn verify_clearsigned(
    runner: &dyn Runner,
    keyring: &Path,
    signed: &[u8],
    what: &str,
    scratch: &Path,
) -> Result<Vec<u8>, SignatureError> {
    if !keyring.is_file() {
        return Err(SignatureError::Keyring(keyring.to_path_buf()));
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SignatureError::Io { path, source }
    };
    let input = scratch.join("InRelease");
    let output = scratch.join("Release");
    fs::write(&input, signed).map_err(io_err(&input))?;
    let keyring = std::path::absolute(keyring).map_err(io_err(keyring))?;
    let cmd = Command {
        program: "gpgv".into(),
        args: vec![
            "--status-fd".into(),
            "1".into(),
            "--keyring".into(),
            keyring.display().to_string(),
            "--output".into(),
            output.display().to_string(),
            input.display().to_string(),
        ],
        cwd: Some(scratch.to_path_buf()),
        ..Command::default()
    };
    let out = runner.run(&cmd).map_err(SignatureError::Gpgv)?;
    let status = String::from_utf8_lossy(&out.stdout);
    let valid = status.lines().any(|l| l.starts_with("[GNUPG:] VALIDSIG "));
    if !out.success || !valid {
        return Err(SignatureError::Bad {
            what: what.to_string(),
            keyring,
            detail: failure_detail(&status, &String::from_utf8_lossy(&out.stderr)),
        });
    }
    fs::read(&output).map_err(io_err(&output))
}

/// The most telling status line (BADSIG before NO_PUBKEY before ERRSIG, which gpgv also
/// prints for a missing key), else gpgv's last stderr line.
fn failure_detail(status: &str, stderr: &str) -> String {
    const KEYWORDS: [&str; 7] = [
        "BADSIG",
        "NO_PUBKEY",
        "EXPKEYSIG",
        "REVKEYSIG",
        "EXPSIG",
        "NODATA",
        "ERRSIG",
    ];
    let lines: Vec<&str> = status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .collect();
    for k in KEYWORDS {
        if let Some(l) = lines.iter().find(|l| l.starts_with(k)) {
            return l.to_string();
        }
    }
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("gpgv failed without saying why")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Output;

    struct Scripted(Output);
    impl Runner for Scripted {
        fn run(&self, cmd: &Command) -> io::Result<Output> {
            // What gpgv would have written as the signed text.
            let i = cmd.args.iter().position(|a| a == "--output").unwrap();
            fs::write(&cmd.args[i + 1], b"Suite: x\n")?;
            Ok(self.0.clone())
        }
    }

    fn keyring(dir: &Path) -> PathBuf {
        let k = dir.join("k.gpg");
        fs::write(&k, b"").unwrap();
        k
    }

    #[test]
    fn exit_status_zero_without_validsig_is_not_a_good_signature() {
        let d = tempfile::tempdir().unwrap();
        let r = Scripted(Output {
            success: true,
            code: Some(0),
            stdout: b"[GNUPG:] NEWSIG\n".to_vec(),
            stderr: vec![],
            ..Output::default()
        });
        let e =
            verify_clearsigned(&r, &keyring(d.path()), b"x", "InRelease", d.path()).unwrap_err();
        assert!(matches!(e, SignatureError::Bad { .. }), "{e}");
    }

    #[test]
    fn names_the_reason_gpgv_gives() {
        let d = tempfile::tempdir().unwrap();
        let r = Scripted(Output {
            success: false,
            code: Some(1),
            stdout: b"[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 0123 test key\n".to_vec(),
            stderr: b"gpgv: BAD signature\n".to_vec(),
            ..Output::default()
        });
        let e = verify_clearsigned(&r, &keyring(d.path()), b"x", "http://m/InRelease", d.path())
            .unwrap_err();
        assert!(e.to_string().contains("BADSIG 0123"), "{e}");
        assert!(
            e.to_string()
                .starts_with("http://m/InRelease is not signed"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_keyring_names_the_package() {
        let d = tempfile::tempdir().unwrap();
        let r = Scripted(Output::default());
        let e =
            verify_clearsigned(&r, &d.path().join("none.gpg"), b"x", "x", d.path()).unwrap_err();
        assert!(e.to_string().contains("debian-archive-keyring"), "{e}");
    }
}
