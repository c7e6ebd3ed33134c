//! Files fetched from the archive, kept in `$KILN_CACHE/debian/` by their sha256:
//!
//! ```text
//! debian/blobs/<2 hex>/<64 hex>   Packages.xz files and .debs, exactly as signed
//! debian/trees/v1/<64 hex>/       one extracted package per .deb digest (see super::extract)
//! debian/roots/v2/<64 hex>/       one toolchain root per lock digest (see super::root)
//! debian/tmp/                     staging for every write above
//! ```
//!
//! A blob is only ever trusted after its size and digest matched what the signed index says:
//! one found corrupt or truncated in the cache is deleted and fetched again, and a fetch that
//! does not match is refused (after one retry, since a mirror may be mid-update).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::http::{Http, HttpError};
use crate::digest::{Digest, Hasher};

/// Attempts per blob: a mirror mid-sync can serve one stale file; twice in a row is an error.
const ATTEMPTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: got {got_size} bytes with {got}, expected {want_size} bytes with {want}")]
    Mismatch {
        url: String,
        want: Digest,
        want_size: u64,
        got: Digest,
        got_size: u64,
    },
    #[error("writing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Downloads {
    root: PathBuf,
}

/// A sink that hashes what it writes to a file.
struct HashingFile<'a> {
    file: &'a mut fs::File,
    hasher: Hasher,
}

impl Write for HashingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Downloads {
    /// `cache_dir` is `$KILN_CACHE`; everything goes under its `debian/`.
    pub fn new(cache_dir: &Path) -> Downloads {
        Downloads {
            root: cache_dir.join("debian"),
        }
    }

    /// A store at `root` itself (see `toolchain::hermetic::STORE_ENV`).
    pub fn at(root: PathBuf) -> Downloads {
        Downloads { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh private directory under `debian/tmp`, removed when dropped. Its name carries
    /// this process's id, so [`Downloads::sweep_stale`] can tell a dead process's leftovers
    /// (kill -9, power loss) from a live one's work.
    pub fn staging_dir(&self, kind: &str) -> io::Result<tempfile::TempDir> {
        fs::create_dir_all(self.tmp_dir())?;
        tempfile::Builder::new()
            .prefix(&format!("{kind}-{}-", std::process::id()))
            .tempdir_in(self.tmp_dir())
    }

    pub fn scratch_dir(&self) -> io::Result<tempfile::TempDir> {
        self.staging_dir("scratch")
    }

    /// Removes staging directories whose process is gone. Nothing there is ever used: a tree
    /// or root becomes visible only by its final rename.
    pub fn sweep_stale(&self) -> io::Result<usize> {
        let Ok(dir) = fs::read_dir(self.tmp_dir()) else {
            return Ok(0);
        };
        let mut removed = 0;
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                make_writable(&e.path());
                fs::remove_dir_all(e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    /// The blob with `digest` and `size`, fetched from `url` unless the cache holds it intact.
    pub fn get(
        &self,
        http: &dyn Http,
        url: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<PathBuf, DownloadError> {
        let path = self.blob_path(digest);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DownloadError::Io { path, source }
        };
        if path.exists() {
            let (have, have_size) = Digest::of_file(&path).map_err(io_err(&path))?;
            if have == *digest && have_size == size {
                return Ok(path);
            }
            // Corrupt or truncated (a disk error, a hand edit): never use it, fetch it again.
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let dir = path.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Downloads land in a pid-named staging directory, not next to the blob: a process
        // killed mid-transfer then leaves nothing that the next run's sweep does not remove.
        let staging = self.staging_dir("fetch").map_err(io_err(&self.tmp_dir()))?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut tmp =
                crate::cache::new_temp_file_in(staging.path()).map_err(io_err(staging.path()))?;
            let mut sink = HashingFile {
                file: tmp.as_file_mut(),
                hasher: Hasher::new(),
            };
            http.get(url, &mut sink)?;
            let (got, got_size) = (sink.hasher.clone().finish(), sink.hasher.len());
            if got == *digest && got_size == size {
                tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
                tmp.persist(&path).map_err(|e| DownloadError::Io {
                    path: path.clone(),
                    source: e.error,
                })?;
                return Ok(path);
            }
            last = Some(DownloadError::Mismatch {
                url: url.to_string(),
                want: *digest,
                want_size: size,
                got,
                got_size,
            });
        }
        Err(last.expect("at least one attempt"))
    }

    /// Whether the blob `digest` of `size` bytes is in the store (its size only: [`get`]
    /// hashes it before use).
    ///
    /// [`get`]: Downloads::get
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// Stores `bytes` as the blob `digest` of `size` bytes when they are exactly that (from
    /// another source than a mirror: the remote cache's CAS); None when they are not.
    pub fn put(&self, digest: &Digest, size: u64, bytes: &[u8]) -> Option<PathBuf> {
        if bytes.len() as u64 != size || Digest::of(bytes) != *digest {
            return None;
        }
        let path = self.blob_path(digest);
        fs::create_dir_all(path.parent()?).ok()?;
        let staging = self.staging_dir("fetch").ok()?;
        let mut tmp = crate::cache::new_temp_file_in(staging.path()).ok()?;
        tmp.write_all(bytes).ok()?;
        tmp.as_file().sync_all().ok()?;
        tmp.persist(&path).ok()?;
        Some(path)
    }
}

/// Directories in a staging tree may have been left without write permission; removing their
/// entries needs it back.
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(
            path,
            fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        );
        if let Ok(dir) = fs::read_dir(path) {
            for e in dir.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Serves scripted bodies in order; `None` fails half-way through the body, like a
    /// connection reset.
    struct Scripted(Mutex<Vec<Option<Vec<u8>>>>);

    impl Http for Scripted {
        fn get(&self, url: &str, sink: &mut dyn Write) -> Result<u64, HttpError> {
            match self.0.lock().unwrap().remove(0) {
                Some(body) => {
                    sink.write_all(&body).unwrap();
                    Ok(body.len() as u64)
                }
                None => {
                    sink.write_all(b"partial").unwrap();
                    Err(HttpError::Body {
                        url: url.to_string(),
                        source: io::Error::from(io::ErrorKind::ConnectionReset),
                    })
                }
            }
        }
    }

    fn staged_files(d: &Downloads) -> usize {
        let blobs = d.root().join("blobs");
        fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| fs::read_dir(e.path()).unwrap().count())
            .sum()
    }

    #[test]
    fn a_broken_transfer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let d = Downloads::new(dir.path());
        let http = Scripted(Mutex::new(vec![None]));
        let want = Digest::of(b"the deb");
        let e = d.get(&http, "http://m/a.deb", &want, 7).unwrap_err();
        assert!(
            matches!(e, DownloadError::Http(HttpError::Body { .. })),
            "{e}"
        );
        assert_eq!(staged_files(&d), 0);
    }

    #[test]
    fn one_bad_copy_is_retried_and_two_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = Downloads::new(dir.path());
        let want = Digest::of(b"the deb");
        let http = Scripted(Mutex::new(vec![
            Some(b"the deX".to_vec()),
            Some(b"the deb".to_vec()),
        ]));
        let path = d.get(&http, "http://m/a.deb", &want, 7).unwrap();
        assert_eq!(fs::read(path).unwrap(), b"the deb");
        let other = Digest::of(b"other");
        let http = Scripted(Mutex::new(vec![
            Some(b"stale".to_vec()),
            Some(b"stale".to_vec()),
        ]));
        let e = d.get(&http, "http://m/b.deb", &other, 5).unwrap_err();
        assert!(
            matches!(e, DownloadError::Mismatch { got_size: 5, .. }),
            "{e}"
        );
        assert_eq!(staged_files(&d), 1);
    }

    #[test]
    fn only_dead_processes_staging_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let d = Downloads::new(dir.path());
        let mine = d.staging_dir("tree").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = d.tmp_dir().join(format!("tree-{dead}-x"));
        fs::create_dir_all(stale.join("root/usr")).unwrap();
        assert_eq!(d.sweep_stale().unwrap(), 1);
        assert!(!stale.exists());
        assert!(mine.path().exists());
    }
}
