//! `[image] files`: data files and whole directories copied from the workspace into the service
//! layer. A directory is copied with its sub-directories and relative symlinks (checked by
//! [`safety`](super::safety)); an explicit `mode` applies to every regular file copied.

use std::path::Path;

use super::planned::PlannedLayer;
use super::safety::{check_destination, check_symlink};
use super::{ImageError, ImageRequest};
use crate::dpkg::Origin;

pub fn add_extra_files(layer: &mut PlannedLayer, req: &ImageRequest) -> Result<(), ImageError> {
    let origin = Origin::Workspace {
        target: req.service.clone(),
    };
    for extra in &req.extra_files {
        check_destination(&extra.dst)?;
        let dst = extra.dst.trim_end_matches('/');
        let meta = std::fs::metadata(&extra.src).map_err(|_| ImageError::MissingExtraFile {
            src: extra.src.clone(),
            dst: extra.dst.clone(),
        })?;
        if meta.is_dir() {
            layer.dir(dst, 0o755, 0)?;
            copy_tree(layer, &extra.src, &extra.src, dst, extra.mode, &origin)?;
        } else {
            layer.file_with_origin(dst, &extra.src, extra.mode, origin.clone())?;
        }
    }
    Ok(())
}

fn copy_tree(
    layer: &mut PlannedLayer,
    root: &Path,
    dir: &Path,
    dst: &str,
    mode: Option<u32>,
    origin: &Origin,
) -> Result<(), ImageError> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(ImageError::io("listing", dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(ImageError::io("listing", dir))?;
    children.sort();
    for child in children {
        let name = child
            .file_name()
            .expect("read_dir yields names")
            .to_string_lossy()
            .into_owned();
        let path = format!("{dst}/{name}");
        let meta = std::fs::symlink_metadata(&child).map_err(ImageError::io("reading", &child))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&child).map_err(ImageError::io("reading", &child))?;
            check_symlink(root, &child, &target)?;
            layer.symlink(&path, &target.to_string_lossy())?;
        } else if meta.is_dir() {
            layer.dir(&path, 0o755, 0)?;
            copy_tree(layer, root, &child, &path, mode, origin)?;
        } else if meta.is_file() {
            layer.file_with_origin(&path, &child, mode, origin.clone())?;
        }
        // Sockets, fifos and devices have no place in an image and are skipped.
    }
    Ok(())
}
