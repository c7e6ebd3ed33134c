//! The OCI image layout on disk: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.
//!
//! A layout is replaced whole: [`write`] builds it in a temp directory beside the target and
//! renames it into place, so a reader sees the old layout or the new one, never a mix. Temp
//! directories left by a killed write (`.<name>.new-*`, `.<name>.old-*`) are removed by the next
//! write; the workspace lock guarantees nobody else is writing them.
//!
//! Reading is in two steps that callers compose: [`read_index`] and [`read_blob`], which checks a
//! manifest's bytes against its digest, since a manifest's digest is over its exact bytes.

use std::path::{Path, PathBuf};

use super::{to_json, Descriptor, Index};
use crate::digest::Digest;

/// The directory, relative to the layout, that holds sha256 blobs.
pub const BLOBS_DIR: &str = "blobs/sha256";
/// The layout's marker file and its only content.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";
pub const INDEX_FILE: &str = "index.json";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} names {count} manifests; kiln expects exactly one")]
    NotOneManifest { path: PathBuf, count: usize },
    #[error("blob {digest} is missing from the layout ({path})")]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("blob {digest} in the layout is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} in the layout does not hash to its digest")]
    BlobDigest { digest: Digest },
    #[error("manifest {digest} has unsupported media type {media_type:?}")]
    MediaType { digest: Digest, media_type: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// `blobs/sha256/<hex>`: a blob's name inside any layout (and inside a Docker archive).
pub fn blob_name(digest: &Digest) -> String {
    format!("{BLOBS_DIR}/{}", digest.hex())
}

/// Where the blob `digest` lives in the layout at `dir`.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(BLOBS_DIR).join(digest.hex())
}

/// A blob to place in the layout: either bytes kiln holds or a file (a cached layer).
pub enum Blob<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Writes a complete layout at `dir`, replacing any previous one (see the module comment).
pub fn write(dir: &Path, index: &Index, blobs: &[(Digest, Blob)]) -> Result<(), LayoutError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    remove_leftovers(parent, &name);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .map_err(io("creating a temp directory in", parent))?;
    let blob_dir = tmp.path().join(BLOBS_DIR);
    std::fs::create_dir_all(&blob_dir).map_err(io("creating", &blob_dir))?;
    for (digest, blob) in blobs {
        let dst = blob_dir.join(digest.hex());
        match blob {
            Blob::Bytes(bytes) => std::fs::write(&dst, bytes).map_err(io("writing", &dst))?,
            // A hard link shares the cache's bytes when both live on one filesystem.
            Blob::File(src) => {
                if std::fs::hard_link(src, &dst).is_err() {
                    std::fs::copy(src, &dst).map_err(io("copying", src))?;
                }
            }
        }
    }
    let oci_layout = tmp.path().join(OCI_LAYOUT_FILE);
    std::fs::write(&oci_layout, OCI_LAYOUT_CONTENT).map_err(io("writing", &oci_layout))?;
    let index_path = tmp.path().join(INDEX_FILE);
    std::fs::write(&index_path, to_json(index)).map_err(io("writing", &index_path))?;

    let staged = tmp.keep();
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(io("moving aside", dir))?;
    }
    if let Err(e) = std::fs::rename(&staged, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(io("renaming the new layout to", dir)(e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Removes what a killed write of layout `name` left in `parent`.
fn remove_leftovers(parent: &Path, name: &str) {
    let (new, old) = (format!(".{name}.new-"), format!(".{name}.old-"));
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&new) || n.starts_with(&old) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn parse_err(path: &Path, e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The single manifest descriptor in the layout's `index.json` (kiln writes and pushes layouts
/// of one image, or one image index).
pub fn read_index(dir: &Path) -> Result<Descriptor, LayoutError> {
    let path = dir.join(INDEX_FILE);
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| parse_err(&path, e))?;
    match <[Descriptor; 1]>::try_from(index.manifests) {
        Ok([only]) => Ok(only),
        Err(all) => Err(LayoutError::NotOneManifest {
            path,
            count: all.len(),
        }),
    }
}

/// The bytes of the blob `desc` names, checked against its digest.
pub fn read_blob(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>, LayoutError> {
    let path = blob_path(dir, &desc.digest);
    let bytes = std::fs::read(&path).map_err(|source| missing_or(source, &desc.digest, &path))?;
    if Digest::of(&bytes) != desc.digest {
        return Err(LayoutError::BlobDigest {
            digest: desc.digest,
        });
    }
    Ok(bytes)
}

/// Parses the JSON blob `desc` names (after [`read_blob`]'s digest check).
pub fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    desc: &Descriptor,
) -> Result<(T, Vec<u8>), LayoutError> {
    let bytes = read_blob(dir, desc)?;
    let value =
        serde_json::from_slice(&bytes).map_err(|e| parse_err(&blob_path(dir, &desc.digest), e))?;
    Ok((value, bytes))
}

/// The path of the blob `desc` names, checked to exist with the descriptor's size (for blobs
/// that are streamed rather than read).
pub fn sized_blob(dir: &Path, desc: &Descriptor) -> Result<PathBuf, LayoutError> {
    let path = blob_path(dir, &desc.digest);
    let meta =
        std::fs::metadata(&path).map_err(|source| missing_or(source, &desc.digest, &path))?;
    if meta.len() != desc.size {
        return Err(LayoutError::SizeMismatch {
            digest: desc.digest,
            expected: desc.size,
            actual: meta.len(),
        });
    }
    Ok(path)
}

fn missing_or(source: std::io::Error, digest: &Digest, path: &Path) -> LayoutError {
    match source.kind() {
        std::io::ErrorKind::NotFound => LayoutError::MissingBlob {
            digest: *digest,
            path: path.to_path_buf(),
        },
        _ => LayoutError::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media_type;

    fn one_blob_layout(dir: &Path, bytes: &[u8]) -> Descriptor {
        let digest = Digest::of(bytes);
        let desc = Descriptor::new(media_type::IMAGE_MANIFEST, digest, bytes.len() as u64);
        let index = Index {
            schema_version: 2,
            media_type: media_type::IMAGE_INDEX.into(),
            manifests: vec![desc.clone()],
        };
        write(dir, &index, &[(digest, Blob::Bytes(bytes))]).unwrap();
        desc
    }

    #[test]
    fn a_written_layout_reads_back_and_a_changed_blob_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let desc = one_blob_layout(&dir, b"{\"layers\":[]}");
        assert_eq!(read_index(&dir).unwrap(), desc);
        assert_eq!(read_blob(&dir, &desc).unwrap(), b"{\"layers\":[]}");
        assert_eq!(
            std::fs::read(dir.join(OCI_LAYOUT_FILE)).unwrap(),
            OCI_LAYOUT_CONTENT
        );

        std::fs::write(blob_path(&dir, &desc.digest), b"{\"layers\":[1]}").unwrap();
        let err = read_blob(&dir, &desc).unwrap_err();
        assert!(matches!(err, LayoutError::BlobDigest { digest } if digest == desc.digest));
        let err = sized_blob(&dir, &desc).unwrap_err();
        assert!(matches!(
            err,
            LayoutError::SizeMismatch {
                expected: 13,
                actual: 14,
                ..
            }
        ));
    }

    #[test]
    fn a_rewrite_replaces_the_whole_layout_and_sweeps_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let first = one_blob_layout(&dir, b"first");
        std::fs::create_dir(tmp.path().join(".img.new-killed")).unwrap();
        let second = one_blob_layout(&dir, b"second");
        assert!(!blob_path(&dir, &first.digest).exists());
        assert!(blob_path(&dir, &second.digest).is_file());
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["img"]);
    }

    #[test]
    fn an_index_of_two_manifests_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let desc = Descriptor::new(media_type::IMAGE_MANIFEST, Digest::of(b"x"), 1);
        let index = Index {
            schema_version: 2,
            media_type: media_type::IMAGE_INDEX.into(),
            manifests: vec![desc.clone(), desc],
        };
        std::fs::write(tmp.path().join(INDEX_FILE), to_json(&index)).unwrap();
        let err = read_index(tmp.path()).unwrap_err();
        assert!(matches!(err, LayoutError::NotOneManifest { count: 2, .. }));
    }
}
