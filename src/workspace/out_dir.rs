//! `out/`: every path kiln writes under a workspace, named in one place.
//!
//! Most paths are absolute (the workspace root joined in). Build products are also named
//! workspace-relative ([`OutDir::relative`]), because actions and cache keys must not depend on
//! where the checkout lives.

use std::path::{Path, PathBuf};

use crate::platform::Platform;

/// The output directory of one workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutDir {
    dir: PathBuf,
}

impl OutDir {
    /// `<root>/out`.
    pub fn of(root: &Path) -> OutDir {
        OutDir {
            dir: root.join("out"),
        }
    }

    /// `out` relative to the workspace root, for paths that go into actions and keys.
    pub fn relative() -> OutDir {
        OutDir {
            dir: PathBuf::from("out"),
        }
    }

    /// The outputs of one platform of a multi-platform build: `<root>/out/<os>-<arch>`
    /// (`out/linux-arm64`), so two platforms' objects, binaries, images, SBOMs and build state
    /// never mix; `None` (a workspace built for the default platform alone) is `<root>/out`.
    /// The workspace lock stays `out/.kiln/lock` either way.
    pub fn of_platform(root: &Path, platform: Option<&Platform>) -> OutDir {
        let out = OutDir::of(root);
        match platform {
            None => out,
            Some(p) => OutDir {
                dir: out.dir.join(p.out_subdir()),
            },
        }
    }

    /// [`OutDir::relative`] for `platform` (see [`OutDir::of_platform`]).
    pub fn relative_for(platform: Option<&Platform>) -> OutDir {
        OutDir::of_platform(Path::new(""), platform)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `out/.kiln`: kiln's own bookkeeping (never a user-facing output).
    pub fn kiln(&self) -> PathBuf {
        self.dir.join(".kiln")
    }
    /// The name, inside [`OutDir::kiln`], of the workspace lock file (kept by `kiln clean`).
    pub const LOCK_FILE: &'static str = "lock";
    pub fn lock(&self) -> PathBuf {
        self.kiln().join(Self::LOCK_FILE)
    }
    /// The file-digest memo (path, size, mtime -> digest).
    pub fn stat_memo(&self) -> PathBuf {
        self.kiln().join("stat.json")
    }
    /// What the last build produced, for freshness checks.
    pub fn state(&self) -> PathBuf {
        self.kiln().join("state.json")
    }
    /// Scratch space for actions in flight.
    pub fn tmp(&self) -> PathBuf {
        self.kiln().join("tmp")
    }
    /// Generated IDE files (compile_commands.json and friends).
    pub fn ide(&self) -> PathBuf {
        self.kiln().join("ide")
    }

    /// Object files of a target.
    pub fn objects(&self, target: &str) -> PathBuf {
        self.dir.join("obj").join(target)
    }
    pub fn libraries(&self) -> PathBuf {
        self.dir.join("lib")
    }
    pub fn binaries(&self) -> PathBuf {
        self.dir.join("bin")
    }
    pub fn tests(&self) -> PathBuf {
        self.dir.join("tests")
    }

    /// The OCI layout of a service's image.
    pub fn image(&self, service: &str) -> PathBuf {
        self.dir.join("images").join(service)
    }
    /// Removes the temporary files a killed kiln left beside outputs it was about to rename
    /// into place (`.tmp*` in the output directories). Call it holding the workspace lock: then
    /// no live kiln owns any of them. Returns how many went.
    pub fn sweep_stale_temporaries(&self) -> usize {
        let mut removed = 0;
        for dir in [
            self.binaries(),
            self.libraries(),
            self.debug(),
            self.path().join("images"),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp") {
                    let p = e.path();
                    let gone = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    removed += usize::from(gone.is_ok());
                }
            }
        }
        removed
    }

    /// Split debug info of the images' binaries.
    pub fn debug(&self) -> PathBuf {
        self.dir.join("debug")
    }
    pub fn spdx(&self, service: &str) -> PathBuf {
        self.dir.join("sbom").join(format!("{service}.spdx.json"))
    }
    pub fn cyclonedx(&self, service: &str) -> PathBuf {
        self.dir.join("sbom").join(format!("{service}.cdx.json"))
    }
    pub fn provenance(&self, service: &str) -> PathBuf {
        self.dir
            .join("provenance")
            .join(format!("{service}.intoto.json"))
    }
    /// Vulnerability scan reports.
    pub fn scan(&self) -> PathBuf {
        self.dir.join("scan")
    }
    /// `kiln test` results (JUnit XML and logs).
    pub fn test_results(&self) -> PathBuf {
        self.dir.join("test-results")
    }
    /// What `kiln push` pushed, by digest, for `kiln deploy` to resolve.
    pub fn pushed(&self) -> PathBuf {
        self.dir.join("pushed.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_relative_and_absolute_ones_sit_under_the_root() {
        assert_eq!(OutDir::relative().objects("svc"), Path::new("out/obj/svc"));
        let out = OutDir::of(Path::new("/ws"));
        assert_eq!(out.image("a"), Path::new("/ws/out/images/a"));
        assert_eq!(out.lock(), Path::new("/ws/out/.kiln/lock"));
        assert_eq!(out.spdx("a"), Path::new("/ws/out/sbom/a.spdx.json"));
        let arm = OutDir::of_platform(Path::new("/ws"), Some(&Platform::LINUX_ARM64));
        assert_eq!(arm.image("a"), Path::new("/ws/out/linux-arm64/images/a"));
        assert_eq!(
            OutDir::relative_for(Some(&Platform::LINUX_ARM64)).binaries(),
            Path::new("out/linux-arm64/bin")
        );
        assert_eq!(OutDir::of_platform(Path::new("/ws"), None), out);
    }
}
