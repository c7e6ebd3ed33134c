//! One layer while it is being planned: its files, and the Debian packages whose `status.d`
//! records must travel with them. `plan` fills one per layer; `base` and `extra` add to them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::digest::Digest;
use crate::dpkg::{Database, DebPackage, Origin};
use crate::layer::{Content, LayerSpec};

use super::ImageError;

/// One layer being planned: its entries, where each regular file came from, and the Debian
/// packages it holds files of.
pub struct PlannedLayer<'a> {
    pub name: &'static str,
    pub spec: LayerSpec,
    pub origins: BTreeMap<String, Origin>,
    pub packages: BTreeMap<String, DebPackage>,
    db: &'a Database,
    host_digests: &'a crate::cache::stat::StatCache,
}

impl<'a> PlannedLayer<'a> {
    /// `host_digests` memoises the digests of system files (see `ImageContext::host_digests`).
    pub(super) fn new(
        name: &'static str,
        db: &'a Database,
        mtime: i64,
        host_digests: &'a crate::cache::stat::StatCache,
    ) -> Self {
        PlannedLayer {
            name,
            spec: LayerSpec::new(mtime),
            origins: BTreeMap::new(),
            packages: BTreeMap::new(),
            db,
            host_digests,
        }
    }

    fn lerr(&self) -> impl FnOnce(crate::layer::LayerError) -> ImageError {
        let layer = self.name.to_string();
        move |source| ImageError::Layer { layer, source }
    }

    pub fn generated(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), ImageError> {
        self.spec.bytes(path, bytes, 0o644).map_err(self.lerr())?;
        self.origins.insert(path.to_string(), Origin::Generated);
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32, owner: u32) -> Result<(), ImageError> {
        self.spec.dir(path, mode, owner).map_err(self.lerr())
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), ImageError> {
        self.spec.symlink(path, target).map_err(self.lerr())
    }

    /// A host file whose origin is its dpkg owner, or the host itself when no package owns it.
    pub fn host_file(
        &mut self,
        path: &str,
        host: &Path,
        mode: Option<u32>,
    ) -> Result<(), ImageError> {
        let origin = match self.db.owner_of_host_file(host) {
            Some(pkg) => {
                if !self.packages.contains_key(&pkg.name) {
                    self.packages
                        .insert(pkg.name.clone(), self.db.with_license(pkg));
                }
                Origin::of_package(pkg)
            }
            None => Origin::Host {
                path: host.to_path_buf(),
            },
        };
        self.file_with_origin(path, host, mode, origin)
    }

    pub fn file_with_origin(
        &mut self,
        path: &str,
        host: &Path,
        mode: Option<u32>,
        origin: Origin,
    ) -> Result<(), ImageError> {
        let meta = std::fs::metadata(host).map_err(ImageError::io("reading", host))?;
        // Only "executable or not" is taken from the host, so umask and checkout modes never
        // reach the layer bytes.
        let mode = mode.unwrap_or(if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        });
        // A toolchain root's files never change under their path (roots are named by digest).
        let in_root = self.db.root() != Path::new("/") && host.starts_with(self.db.root());
        let (digest, size) = if in_root || super::is_system_file(host) {
            let digest =
                (self.host_digests.digest(host)).map_err(ImageError::io("hashing", host))?;
            (digest, meta.len())
        } else {
            Digest::of_file(host).map_err(ImageError::io("hashing", host))?
        };
        self.spec
            .file(path, Content::Host(host.to_path_buf()), size, digest, mode)
            .map_err(self.lerr())?;
        self.origins.insert(path.to_string(), origin);
        Ok(())
    }

    /// Adds the status.d record of every package this layer holds files of.
    pub(super) fn finish(mut self) -> Result<Self, ImageError> {
        let records: Vec<(String, String)> = self
            .packages
            .values()
            .map(|p| (p.name.clone(), p.status_d_record()))
            .collect();
        for (name, record) in records {
            self.generated(
                &format!("/var/lib/dpkg/status.d/{name}"),
                record.into_bytes(),
            )?;
        }
        Ok(self)
    }
}
