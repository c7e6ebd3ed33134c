//! Comparing an original OCI layout with its rebuild, and explaining the first difference at the
//! level a person can act on: the layer (index, digest, history text), the file inside it and how
//! it differs; the JSON field of the config, manifest or index.
//!
//! Differences that merely follow from another one are not repeated: a changed layer changes
//! its `rootfs.diff_ids` entry, its manifest descriptor and so the manifest and index digests;
//! only fields that differ for some other reason are reported for those documents.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::json::{self, FieldDiff};
use super::layer::diff_layers;
use super::{Mismatch, VerifyError};
use crate::image::layout::{read_layout, LoadedImage};
use crate::oci::layout;

/// How many field differences one mismatch lists before summarising the rest.
const MAX_FIELDS: usize = 4;

/// Every difference between the layouts at `original` and `rebuilt` (empty when bit-identical).
pub fn layouts(
    service: &str,
    original: &Path,
    rebuilt: &Path,
) -> Result<Vec<Mismatch>, VerifyError> {
    let raw = raw_differences(original, rebuilt)?;
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let a = read_layout(original)?;
    let b = read_layout(rebuilt)?;
    let mut out = Vec::new();
    let mismatch = |artifact: String, path: Option<String>, detail: String| Mismatch {
        service: service.to_string(),
        platform: None,
        artifact,
        path,
        detail,
    };

    let (la, lb) = (&a.manifest.layers, &b.manifest.layers);
    let differing: Vec<usize> = (0..la.len().max(lb.len()))
        .filter(|&i| la.get(i).map(|d| d.digest) != lb.get(i).map(|d| d.digest))
        .collect();
    if la.len() != lb.len() {
        out.push(mismatch(
            "manifest".into(),
            None,
            format!(
                "the original has {} layers, the rebuild {}",
                la.len(),
                lb.len()
            ),
        ));
    }
    if let Some(&i) = differing.iter().find(|&&i| i < la.len() && i < lb.len()) {
        let (da, db) = (&la[i], &lb[i]);
        let history = a
            .config
            .history
            .get(i)
            .map(|h| format!(" \"{}\"", h.created_by))
            .unwrap_or_default();
        let inside = diff_layers(&a.blob_path(&da.digest), &b.blob_path(&db.digest))?;
        let (path, mut detail) = match inside {
            Some(d) => (d.path, d.detail),
            None => (
                None,
                "the tar entries are identical; the archive or gzip encoding differs".into(),
            ),
        };
        detail.push_str(&format!(" (rebuilt layer is {})", db.digest));
        let others: Vec<String> = differing
            .iter()
            .filter(|&&j| j != i)
            .map(|j| j.to_string())
            .collect();
        if !others.is_empty() {
            detail.push_str(&format!("; layer(s) {} differ too", others.join(", ")));
        }
        out.push(mismatch(
            format!("layer {i} of {} {}{history}", la.len(), da.digest),
            path,
            detail,
        ));
    }

    let config_differs = a.manifest.config.digest != b.manifest.config.digest;
    if config_differs {
        let fields = blob_fields(&a, &b, &a.manifest.config.digest, &b.manifest.config.digest)?;
        let fields = without(fields, |p| {
            differing
                .iter()
                .any(|i| p == format!("rootfs.diff_ids[{i}]"))
        });
        if !fields.is_empty() {
            out.push(mismatch(
                format!("config {}", a.manifest.config.digest),
                None,
                summarise(&fields),
            ));
        }
    }
    let manifest_differs = a.manifest_descriptor.digest != b.manifest_descriptor.digest;
    if manifest_differs {
        let fields = blob_fields(
            &a,
            &b,
            &a.manifest_descriptor.digest,
            &b.manifest_descriptor.digest,
        )?;
        let fields = without(fields, |p| {
            (config_differs && p.starts_with("config."))
                || differing
                    .iter()
                    .any(|i| p.starts_with(&format!("layers[{i}]")))
        });
        if !fields.is_empty() {
            out.push(mismatch(
                format!("manifest {}", a.manifest_descriptor.digest),
                None,
                summarise(&fields),
            ));
        }
    }
    let index = |dir: &Path| -> Result<Value, VerifyError> {
        let p = dir.join(layout::INDEX_FILE);
        let bytes = std::fs::read(&p).map_err(VerifyError::io("reading", &p))?;
        serde_json::from_slice(&bytes).map_err(|e| VerifyError::BadJson {
            path: p,
            detail: e.to_string(),
        })
    };
    let fields = without(json::diff(&index(original)?, &index(rebuilt)?), |p| {
        manifest_differs && (p == "manifests[0].digest" || p == "manifests[0].size")
    });
    if !fields.is_empty() {
        out.push(mismatch(
            layout::INDEX_FILE.into(),
            None,
            summarise(&fields),
        ));
    }

    // Whatever the structure does not explain (a stray blob, a different oci-layout file).
    if out.is_empty() {
        for r in raw {
            out.push(mismatch(r.0, None, r.1));
        }
    }
    Ok(out)
}

/// Byte-level differences between the two layout directories: every blob and the top-level
/// files, as (artifact, detail).
/// The differences between two image-index layouts whose platforms' images are identical: the
/// index blob or `index.json` itself, or a blob only one of them holds.
pub fn index_layouts(
    service: &str,
    original: &Path,
    rebuilt: &Path,
) -> Result<Vec<Mismatch>, VerifyError> {
    Ok(raw_differences(original, rebuilt)?
        .into_iter()
        .map(|(what, detail)| Mismatch {
            service: service.to_string(),
            platform: None,
            artifact: format!("image index layout: {what}"),
            path: None,
            detail,
        })
        .collect())
}

fn raw_differences(a: &Path, b: &Path) -> Result<Vec<(String, String)>, VerifyError> {
    let names = |dir: &Path| -> Result<BTreeSet<String>, VerifyError> {
        let blobs = dir.join(layout::BLOBS_DIR);
        let mut set = BTreeSet::new();
        for e in std::fs::read_dir(&blobs).map_err(VerifyError::io("listing", &blobs))? {
            let e = e.map_err(VerifyError::io("listing", &blobs))?;
            set.insert(format!(
                "{}/{}",
                layout::BLOBS_DIR,
                e.file_name().to_string_lossy()
            ));
        }
        set.insert(layout::INDEX_FILE.into());
        set.insert(layout::OCI_LAYOUT_FILE.into());
        Ok(set)
    };
    let (na, nb) = (names(a)?, names(b)?);
    let mut out = Vec::new();
    for n in na.union(&nb) {
        let what = n.replace(&format!("{}/", layout::BLOBS_DIR), "blob sha256:");
        match (na.contains(n), nb.contains(n)) {
            (true, false) => out.push((what, "present in the original layout only".into())),
            (false, true) => out.push((what, "present in the rebuilt layout only".into())),
            _ => {
                let read = |p: &Path| std::fs::read(p).map_err(VerifyError::io("reading", p));
                let (x, y) = (read(&a.join(n))?, read(&b.join(n))?);
                if let Some(d) = super::bytes::describe(&x, &y) {
                    out.push((what, d));
                }
            }
        }
    }
    Ok(out)
}

fn blob_fields(
    a: &LoadedImage,
    b: &LoadedImage,
    da: &crate::digest::Digest,
    db: &crate::digest::Digest,
) -> Result<Vec<FieldDiff>, VerifyError> {
    let read = |img: &LoadedImage, d: &crate::digest::Digest| -> Result<Value, VerifyError> {
        let p = img.blob_path(d);
        let bytes = std::fs::read(&p).map_err(VerifyError::io("reading", &p))?;
        serde_json::from_slice(&bytes).map_err(|e| VerifyError::BadJson {
            path: p,
            detail: e.to_string(),
        })
    };
    Ok(json::diff(&read(a, da)?, &read(b, db)?))
}

fn without(fields: Vec<FieldDiff>, explained: impl Fn(&str) -> bool) -> Vec<FieldDiff> {
    fields.into_iter().filter(|f| !explained(&f.path)).collect()
}

fn summarise(fields: &[FieldDiff]) -> String {
    let mut parts: Vec<String> = fields
        .iter()
        .take(MAX_FIELDS)
        .map(|f| f.to_string())
        .collect();
    if fields.len() > MAX_FIELDS {
        parts.push(format!("and {} more field(s)", fields.len() - MAX_FIELDS));
    }
    parts.join("; ")
}
