//! `kiln clean`: removes `out/` but the workspace lock (held while cleaning) and never the cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::Error;
use crate::workspace::{OutDir, Workspace};

#[derive(Debug, thiserror::Error)]
#[error("removing {}", path.display())]
pub struct CleanError {
    path: PathBuf,
    source: std::io::Error,
}

pub fn run(ws: &Workspace) -> Result<ExitCode, Error> {
    let _lock = crate::workspace::lock(&ws.root).map_err(crate::driver::DriverError::from)?;
    clean(&ws.out()).map_err(|e| Error::Clean(Box::new(e)))?;
    eprintln!(
        "kiln: removed out/ (the cache in {} is kept)",
        crate::cache::default_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything under `out`, except the lock file, which the caller holds until it is done.
fn clean(out: &OutDir) -> Result<(), CleanError> {
    let kiln = out.kiln();
    for entry in read_dir(out.path())? {
        if entry == kiln {
            for inner in read_dir(&kiln)? {
                if inner.file_name().is_some_and(|n| n != OutDir::LOCK_FILE) {
                    remove(&inner)?;
                }
            }
        } else {
            remove(&entry)?;
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CleanError> {
    let err = |source| CleanError {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path()).map_err(err)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(e)),
    }
}

fn remove(path: &Path) -> Result<(), CleanError> {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let res = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match res {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CleanError {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_keeps_only_the_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutDir::of(tmp.path());
        std::fs::create_dir_all(out.image("svc")).unwrap();
        std::fs::create_dir_all(out.tmp()).unwrap();
        std::fs::write(out.lock(), "").unwrap();
        std::fs::write(out.state(), "{}").unwrap();
        std::fs::write(out.pushed(), "{}").unwrap();
        std::os::unix::fs::symlink("/nonexistent", out.path().join("dangling")).unwrap();
        clean(&out).unwrap();
        let left: Vec<_> = walkdir(out.path());
        assert_eq!(left, [out.kiln(), out.lock()]);
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            all.push(p.clone());
            if p.is_dir() {
                all.extend(walkdir(&p));
            }
        }
        all.sort();
        all
    }
}
