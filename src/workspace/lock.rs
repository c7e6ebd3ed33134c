//! The workspace lock: `out/.kiln/lock`, held for the lifetime of a command that writes `out/`, so
//! two kiln processes on one workspace take turns instead of interleaving writes.

use std::path::{Path, PathBuf};

use super::OutDir;

/// Held while it lives; the OS releases the lock when the process dies, so a killed kiln never
/// leaves a workspace locked.
pub struct WorkspaceLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
#[error("{action} the workspace lock {}", path.display())]
pub struct LockError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Takes the lock of the workspace at `root`, saying so on stderr when it has to wait.
pub fn lock(root: &Path) -> Result<WorkspaceLock, LockError> {
    use fs4::fs_std::FileExt;
    let out = OutDir::of(root);
    let path = out.lock();
    let err = |action| {
        let path = path.clone();
        move |source| LockError {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(out.kiln()).map_err(err("creating the directory of"))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err("opening"))?;
    if !file.try_lock_exclusive().unwrap_or(false) {
        eprintln!("kiln: waiting for another kiln process using this workspace");
        file.lock_exclusive().map_err(err("taking"))?;
    }
    Ok(WorkspaceLock { _file: file })
}
