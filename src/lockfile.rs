//! The `kiln.lock` file as data: its format, reading it and writing it atomically. What goes in
//! it and how a machine is compared with it is [`crate::lock`]'s business; this module is what
//! both the lock command and the build (which pins a Debian toolchain's packages the first
//! time it meets one) share.
//!
//! A Debian toolchain's entry holds its whole pinned package set:
//!
//! ```toml
//! [toolchain.gcc]
//! fingerprint = "sha256:..."
//!
//! [toolchain.gcc.debian]                 # what was asked of the archive ...
//! packages = ["g++", "libwxgtk3.2-dev", ...]
//! without_dependencies = ["libwxgtk3.2-dev"]
//! suites = ["bookworm", "bookworm-updates", "bookworm-security"]
//! architecture = "amd64"
//!
//! [[toolchain.gcc.debian.package]]       # ... and every package of the closure, by name
//! name = "binutils"
//! version = "2.40-2"
//! architecture = "amd64"
//! suite = "bookworm"
//! filename = "pool/main/b/binutils/binutils_2.40-2_amd64.deb"
//! size = 3068
//! sha256 = "sha256:..."
//! source = "binutils"
//! source_version = "2.40-2"
//! ```
//!
//! The request is recorded beside the closure so that an edited `toolchains/*.toml` (a package
//! added, a suite changed) is seen as a lock that no longer answers it, rather than silently
//! building with the old set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::debian::locked::LockedPackage;
use crate::digest::Digest;

pub const FILE_NAME: &str = "kiln.lock";
pub const VERSION: u32 = 1;

const HEADER: &str = "# Written by `kiln lock`; checked by `kiln build --locked`.\n\
                      # Regenerate it with `kiln lock` rather than editing it.\n";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default)]
    pub toolchain: BTreeMap<String, LockedToolchain>,
    #[serde(default)]
    pub image: BTreeMap<String, LockedImage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedToolchain {
    pub fingerprint: Digest,
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// Debian toolchains only: the pinned package set of the toolchain root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debian: Option<LockedRoot>,
}

/// What a Debian toolchain asked of the archive, and the closure it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRoot {
    pub packages: Vec<String>,
    #[serde(default)]
    pub without_dependencies: Vec<String>,
    pub suites: Vec<String>,
    pub architecture: String,
    /// Sorted by name.
    #[serde(default)]
    pub package: Vec<LockedPackage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockfileError {
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockFile {
    pub fn new() -> LockFile {
        LockFile {
            version: VERSION,
            ..LockFile::default()
        }
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("lock structs serialise");
        format!("{HEADER}\n{body}")
    }
}

/// `kiln.lock` of the workspace at `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join(FILE_NAME)
}

/// The lock at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<LockFile>, LockfileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockfileError::Io {
                action: "reading",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let lock = parse_memoised(&text).map_err(|e| LockfileError::Parse {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if lock.version != VERSION {
        return Err(LockfileError::Parse {
            path: path.to_path_buf(),
            detail: format!(
                "version {} is not understood by this kiln (it writes version {VERSION})",
                lock.version
            ),
        });
    }
    Ok(Some(lock))
}

/// The last text parsed and what it parsed to: a build reads kiln.lock once per toolchain and
/// platform, and parsing it is most of a no-op build's planning. Keyed by the whole text, so a
/// file changed in between (by this process or another) is parsed again.
static LAST_PARSED: std::sync::Mutex<Option<(String, LockFile)>> = std::sync::Mutex::new(None);

fn parse_memoised(text: &str) -> Result<LockFile, toml::de::Error> {
    let mut last = LAST_PARSED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, lock)) = last.as_ref().filter(|(t, _)| t == text) {
        return Ok(lock.clone());
    }
    let lock: LockFile = toml::from_str(text)?;
    *last = Some((text.to_string(), lock.clone()));
    Ok(lock)
}

/// Writes `lock` to `path` atomically (a reader sees the old file or the new one).
pub fn write(path: &Path, lock: &LockFile) -> Result<(), LockfileError> {
    crate::cache::atomic_write(path, lock.to_toml().as_bytes()).map_err(|source| {
        LockfileError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_toolchain_round_trips_and_an_unknown_field_is_refused() {
        let mut lock = LockFile::new();
        let p = LockedPackage {
            name: "g++-12".into(),
            version: "12.2.0-14".into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            filename: "pool/main/g/gcc-12/g++-12_12.2.0-14_amd64.deb".into(),
            size: 10,
            sha256: Digest::of(b"deb"),
            source: "gcc-12".into(),
            source_version: "12.2.0-14".into(),
        };
        lock.toolchain.insert(
            "gcc".into(),
            LockedToolchain {
                fingerprint: Digest::of(b"fp"),
                packages: BTreeMap::new(),
                debian: Some(LockedRoot {
                    packages: vec!["g++-12".into()],
                    without_dependencies: vec![],
                    suites: vec!["bookworm".into()],
                    architecture: "amd64".into(),
                    package: vec![p],
                }),
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        write(&path, &lock).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), lock);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[toolchain.gcc.debian.package]]"), "{text}");
        std::fs::write(&path, text.replace("source_version", "colour")).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(read(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn a_file_rewritten_between_reads_is_read_anew_even_at_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut lock = LockFile::new();
        let toolchain = |fp: &[u8]| LockedToolchain {
            fingerprint: Digest::of(fp),
            packages: BTreeMap::new(),
            debian: None,
        };
        lock.toolchain.insert("gcc".into(), toolchain(b"one"));
        write(&path, &lock).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), lock);
        assert_eq!(read(&path).unwrap().unwrap(), lock, "the memo changed it");
        let before = std::fs::metadata(&path).unwrap().len();
        lock.toolchain.insert("gcc".into(), toolchain(b"two"));
        write(&path, &lock).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        assert_eq!(
            read(&path).unwrap().unwrap(),
            lock,
            "an old parse was served"
        );
    }
}
