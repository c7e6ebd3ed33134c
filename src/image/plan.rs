//! Deciding what goes into which layer, most shared first:
//!
//! 0. **base** — the loader, glibc's libraries that the closure needs, users, nsswitch, /tmp,
//!    os-release, the merged-/usr links, the CA bundle when asked for;
//! 1. **runtime** — every other closure library not built by the workspace: libstdc++, libgcc_s,
//!    libwx_baseu* and their dependencies for C++, libgnat and libgcc_s for Ada;
//! 2. **workspace** — the workspace's shared libraries (omitted when there are none);
//! 3. **service** — the binary and its data files.
//!
//! A layer depends only on its own inputs, so changing a higher layer never changes a lower one.
//! There is no family-wide union: each service's own closure decides its runtime layer, so two
//! services with the same library set get byte-identical runtime layers and share the blob, and a
//! service that needs one more library (say libwx_baseu_net) gets its own runtime layer rather
//! than making every sibling carry that library.
//!
//! Each Debian package owning a file in a layer gets its `/var/lib/dpkg/status.d/<package>`
//! record in that same layer, so a scanner looking at any layer sees the package with its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::stat::StatCache;
use crate::closure::{Closure, Library};
use crate::dpkg::{self, Database, Origin};
use crate::platform::Platform;

use super::planned::PlannedLayer;
use super::{base, ImageError, ImageRequest};

/// Directories ld.so searches by default on `platform`, in merged-/usr spelling; a system
/// library found elsewhere (a toolchain's private directory) is placed in the first one so the
/// loader finds it.
fn loader_dirs(platform: &Platform) -> Vec<String> {
    let mut dirs = vec![format!("/usr/lib/{}", platform.triplet)];
    if platform.is_default() {
        dirs.push("/usr/lib64".into());
    }
    dirs.push("/usr/lib".into());
    dirs
}
/// glibc's sonames, used when the dpkg database cannot say whether a library is glibc's.
const GLIBC_SONAMES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libmvec.so.1",
    "libBrokenLocale.so.1",
    "libc_malloc_debug.so.0",
];

/// Host files that replace originals in the image (stripped copies).
pub struct Stripped {
    /// The stripped service binary.
    pub binary: PathBuf,
    /// Real path of a workspace library -> its stripped copy.
    pub workspace_libs: BTreeMap<PathBuf, PathBuf>,
}

/// Plans the layers of `req` (see the module comment); empty optional layers are left out.
pub fn plan<'a>(
    req: &ImageRequest,
    closure: &Closure,
    db: &'a Database,
    host_digests: &'a StatCache,
    stripped: &Stripped,
) -> Result<Vec<PlannedLayer<'a>>, ImageError> {
    let mtime = req.source_date_epoch;
    let layer = |name| PlannedLayer::new(name, db, mtime, host_digests);
    let mut base_layer = layer("base");
    let mut runtime = layer("runtime");
    let mut workspace = layer("workspace");
    let mut service = layer("service");

    base::add_generated(&mut base_layer, db, req.ca_certificates)?;
    if let Some(interp) = &closure.interpreter {
        let real = system_image_path(&system_path(db, &interp.real_path), &closure.platform);
        base_layer.host_file(&real, &interp.real_path, None)?;
        let asked = dpkg::canonical(&interp.requested);
        if asked != real {
            base_layer.symlink(&asked, &relative_target(&asked, &real))?;
        }
    }
    for lib in &closure.libraries {
        if lib.workspace {
            let host = stripped
                .workspace_libs
                .get(&lib.real_path)
                .unwrap_or(&lib.real_path);
            let file = file_name(&lib.real_path);
            let path = format!("/usr/local/lib/{file}");
            let origin = Origin::Workspace {
                target: lib.soname.clone().unwrap_or_else(|| file.clone()),
            };
            workspace.file_with_origin(&path, host, None, origin)?;
            add_name_link(&mut workspace, "/usr/local/lib", &lib.name, &file)?;
            continue;
        }
        let layer = if is_glibc(lib, db) {
            &mut base_layer
        } else {
            &mut runtime
        };
        let path = system_image_path(&system_path(db, &lib.real_path), &closure.platform);
        layer.host_file(&path, &lib.real_path, None)?;
        let (dir, file) = path.rsplit_once('/').expect("absolute path");
        add_name_link(layer, dir, &lib.name, file)?;
    }

    let bin_path = format!("/usr/local/bin/{}", req.binary_name);
    let origin = Origin::Workspace {
        target: req.service.clone(),
    };
    service.file_with_origin(&bin_path, &stripped.binary, Some(0o755), origin)?;
    super::extra::add_extra_files(&mut service, req)?;

    let mut layers = vec![base_layer.finish()?];
    for layer in [runtime, workspace] {
        if !layer.spec.is_empty() {
            layers.push(layer.finish()?);
        }
    }
    layers.push(service.finish()?);
    Ok(layers)
}

fn add_name_link(
    layer: &mut PlannedLayer,
    dir: &str,
    name: &str,
    file: &str,
) -> Result<(), ImageError> {
    if name != file && !name.contains('/') {
        layer.symlink(&format!("{dir}/{name}"), file)?;
    }
    Ok(())
}

fn is_glibc(lib: &Library, db: &Database) -> bool {
    match db.owner_of_host_file(&lib.real_path) {
        Some(pkg) => pkg.source == "glibc",
        None => GLIBC_SONAMES.contains(&lib.name.as_str()) || lib.name.starts_with("libnss_"),
    }
}

/// A host path of the system the database describes, as that system spells it (the machine's
/// own paths are unchanged; a toolchain root's lose the root).
fn system_path(db: &Database, host: &Path) -> PathBuf {
    match host.strip_prefix(db.root()) {
        Ok(rel) if db.root() != Path::new("/") => Path::new("/").join(rel),
        _ => host.to_path_buf(),
    }
}

/// Where a system library's real file goes: its merged-/usr path when that is a loader
/// directory, else the first loader directory.
fn system_image_path(real: &Path, platform: &Platform) -> String {
    let canonical = dpkg::canonical(&real.to_string_lossy());
    let (dir, _) = canonical
        .rsplit_once('/')
        .expect("canonical paths are absolute");
    let dirs = loader_dirs(platform);
    if dirs.iter().any(|d| d == dir) {
        canonical
    } else {
        format!("{}/{}", dirs[0], file_name(real))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A relative symlink target from `link` to `target` (both absolute image paths), so the link
/// works wherever the root filesystem is mounted (`umoci unpack`, a debugger's sysroot).
pub fn relative_target(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.trim_start_matches('/').split('/').collect();
    let from = &from[..from.len() - 1];
    let to: Vec<&str> = target.trim_start_matches('/').split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_link_is_relative() {
        assert_eq!(
            relative_target(
                "/usr/lib64/ld-linux-x86-64.so.2",
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            ),
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            relative_target("/etc/os-release", "/usr/lib/os-release"),
            "../usr/lib/os-release"
        );
    }

    #[test]
    fn toolchain_private_libraries_move_to_a_loader_directory() {
        assert_eq!(
            system_image_path(
                Path::new("/lib/x86_64-linux-gnu/libz.so.1.2.13"),
                &Platform::LINUX_AMD64
            ),
            "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
        );
        assert_eq!(
            system_image_path(
                Path::new("/usr/lib/gcc/x86_64-linux-gnu/12/adalib/libgnat-12.so"),
                &Platform::LINUX_AMD64
            ),
            "/usr/lib/x86_64-linux-gnu/libgnat-12.so"
        );
        // An aarch64 binary's loader: its merged-/usr path is a loader directory of arm64.
        assert_eq!(
            system_image_path(
                Path::new("/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"),
                &Platform::LINUX_ARM64
            ),
            "/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"
        );
        assert_eq!(
            system_image_path(
                Path::new("/usr/lib/gcc-cross/aarch64-linux-gnu/12/libgnat-12.so"),
                &Platform::LINUX_ARM64
            ),
            "/usr/lib/aarch64-linux-gnu/libgnat-12.so"
        );
    }
}
