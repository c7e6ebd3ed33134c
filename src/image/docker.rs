//! `docker save`-style archives, for `podman load` / `docker load` where no registry is at hand.
//!
//! Contents: `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`, paths relative to the archive)
//! and the blobs under `blobs/sha256/<hex>`, the paths `docker save` itself uses since Docker 25.
//! Layers stay gzip-compressed; loaders detect compression, and the bytes (so the diff_ids) are the
//! layout's own. Entries carry mtime 0 and root ownership, so the archive is reproducible too.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::layout::read_layout;
use super::ImageError;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes the image at `layout_dir` to `out_path` (atomically), tagged `repo_tag` (`name:tag`).
pub fn write_docker_archive(
    layout_dir: &Path,
    repo_tag: &str,
    out_path: &Path,
) -> Result<(), ImageError> {
    write_docker_archive_many(
        &[(layout_dir.to_path_buf(), repo_tag.to_string())],
        out_path,
    )
}

/// One archive holding several images (as `docker save a b` writes): each image gets its entry
/// in `manifest.json`, and a blob shared by several images is stored once.
pub fn write_docker_archive_many(
    images: &[(std::path::PathBuf, String)],
    out_path: &Path,
) -> Result<(), ImageError> {
    let blob_name = crate::oci::layout::blob_name;
    let mut manifest = Vec::new();
    let mut blobs = std::collections::BTreeMap::new();
    for (layout_dir, repo_tag) in images {
        let image = read_layout(layout_dir)?;
        manifest.push(ArchiveManifest {
            config: blob_name(&image.manifest.config.digest),
            repo_tags: vec![repo_tag.to_string()],
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| blob_name(&l.digest))
                .collect(),
        });
        let mut digests = vec![image.manifest.config.digest];
        digests.extend(image.manifest.layers.iter().map(|l| l.digest));
        for d in digests {
            blobs.entry(d).or_insert_with(|| image.blob_path(&d));
        }
    }
    let mut manifest_json = serde_json::to_vec(&manifest).expect("archive manifest serialises");
    manifest_json.push(b'\n');

    let dir = out_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ImageError::io("creating", dir))?;
    let tmp = crate::cache::new_temp_file_in(dir)
        .map_err(ImageError::io("creating a temp file in", dir))?;
    let werr = ImageError::io("writing", out_path);
    let write = || -> io::Result<File> {
        let mut builder = tar::Builder::new(io::BufWriter::new(tmp.reopen()?));
        let blobs_dir = crate::oci::layout::BLOBS_DIR;
        let top = blobs_dir.split('/').next().unwrap_or(blobs_dir);
        for d in [format!("{top}/"), format!("{blobs_dir}/")] {
            builder.append(
                &header(&d, 0, tar::EntryType::Directory, 0o755)?,
                io::empty(),
            )?;
        }
        for (digest, path) in &blobs {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            builder.append(
                &header(&blob_name(digest), size, tar::EntryType::Regular, 0o644)?,
                file,
            )?;
        }
        let h = header(
            "manifest.json",
            manifest_json.len() as u64,
            tar::EntryType::Regular,
            0o644,
        )?;
        builder.append(&h, manifest_json.as_slice())?;
        let mut out = builder.into_inner()?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())
    };
    let file = write().map_err(werr)?;
    file.sync_all()
        .map_err(ImageError::io("writing", out_path))?;
    tmp.persist(out_path)
        .map_err(|e| ImageError::io("renaming to", out_path)(e.error))?;
    Ok(())
}

fn header(path: &str, size: u64, kind: tar::EntryType, mode: u32) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}
