//! Explaining why two layer blobs differ: decompress both, walk the tar entries in order and name
//! the first entry whose header or content differs.
//!
//! Entries are compared in archive order because kiln writes them sorted by path; an entry
//! present in one archive only therefore shows up as the first pair whose paths disagree.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{bytes, VerifyError};

/// The first difference inside two layers, as (image path, how it differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryDiff {
    pub path: Option<String>,
    pub detail: String,
}

/// Compares two tar+gzip layer blobs; None when their tar streams are entry-for-entry equal.
pub fn diff_layers(original: &Path, rebuilt: &Path) -> Result<Option<EntryDiff>, VerifyError> {
    let open = |p: &Path| -> Result<tar::Archive<GzDecoder<std::fs::File>>, VerifyError> {
        let f = std::fs::File::open(p).map_err(VerifyError::io("opening", p))?;
        Ok(tar::Archive::new(GzDecoder::new(f)))
    };
    let mut a = open(original)?;
    let mut b = open(rebuilt)?;
    diff_archives(&mut a, &mut b).map_err(|e| VerifyError::Io {
        context: format!(
            "reading the layers {} and {}",
            original.display(),
            rebuilt.display()
        ),
        source: e,
    })
}

/// [`diff_layers`] over any two tar streams (a seam for tests).
pub fn diff_archives<R1: Read, R2: Read>(
    a: &mut tar::Archive<R1>,
    b: &mut tar::Archive<R2>,
) -> std::io::Result<Option<EntryDiff>> {
    let mut ia = a.entries()?;
    let mut ib = b.entries()?;
    loop {
        match (ia.next().transpose()?, ib.next().transpose()?) {
            (None, None) => return Ok(None),
            (Some(ea), None) => {
                let p = image_path(&ea)?;
                return Ok(Some(EntryDiff {
                    detail: "present in the original layer only".into(),
                    path: Some(p),
                }));
            }
            (None, Some(eb)) => {
                let p = image_path(&eb)?;
                return Ok(Some(EntryDiff {
                    detail: "present in the rebuilt layer only".into(),
                    path: Some(p),
                }));
            }
            (Some(mut ea), Some(mut eb)) => {
                let (pa, pb) = (image_path(&ea)?, image_path(&eb)?);
                if pa != pb {
                    // Sorted order: the smaller path is the one the other archive lacks.
                    let (path, side) = if pa < pb {
                        (pa, "original")
                    } else {
                        (pb, "rebuilt")
                    };
                    return Ok(Some(EntryDiff {
                        detail: format!("present in the {side} layer only"),
                        path: Some(path),
                    }));
                }
                if let Some(detail) = header_difference(&ea, &eb)? {
                    let detail = if ea.header().entry_type().is_file() {
                        // A size change alone says little; where the bytes part ways says more.
                        let (ca, cb) = (content(&mut ea)?, content(&mut eb)?);
                        match bytes::describe(&ca, &cb) {
                            Some(d) if ca.len() != cb.len() => d,
                            Some(d) => format!("{detail}; {d}"),
                            None => detail,
                        }
                    } else {
                        detail
                    };
                    return Ok(Some(EntryDiff {
                        path: Some(pa),
                        detail,
                    }));
                }
                if ea.header().entry_type().is_file() {
                    let (ca, cb) = (content(&mut ea)?, content(&mut eb)?);
                    if let Some(d) = bytes::describe(&ca, &cb) {
                        return Ok(Some(EntryDiff {
                            path: Some(pa),
                            detail: d,
                        }));
                    }
                }
            }
        }
    }
}

/// The entry's path as it appears in the image (`/usr/local/bin/x`).
fn image_path<R: Read>(e: &tar::Entry<R>) -> std::io::Result<String> {
    let p = e.path()?;
    Ok(format!("/{}", p.to_string_lossy().trim_end_matches('/')))
}

fn content<R: Read>(e: &mut tar::Entry<R>) -> std::io::Result<Vec<u8>> {
    // The header's size is a claim, not a fact: reserve at most 1 MiB up front, or a header
    // saying "2^62 bytes" aborts the process before the short read could report an error.
    let mut v = Vec::with_capacity(e.size().min(1 << 20) as usize);
    e.read_to_end(&mut v)?;
    Ok(v)
}

/// The first header field that differs, phrased for a person.
fn header_difference<R1: Read, R2: Read>(
    a: &tar::Entry<R1>,
    b: &tar::Entry<R2>,
) -> std::io::Result<Option<String>> {
    let (ha, hb) = (a.header(), b.header());
    let field = |name: &str, x: String, y: String| {
        (x != y).then(|| format!("{name} {x} in the original, {y} in the rebuild"))
    };
    let checks = [
        field(
            "type",
            format!("{:?}", ha.entry_type()),
            format!("{:?}", hb.entry_type()),
        ),
        field("size", a.size().to_string(), b.size().to_string()),
        field(
            "mode",
            format!("{:o}", ha.mode()?),
            format!("{:o}", hb.mode()?),
        ),
        field(
            "owner",
            format!("{}:{}", ha.uid()?, ha.gid()?),
            format!("{}:{}", hb.uid()?, hb.gid()?),
        ),
        field("mtime", ha.mtime()?.to_string(), hb.mtime()?.to_string()),
        field("link target", link_text(a)?, link_text(b)?),
    ];
    Ok(checks.into_iter().flatten().next())
}

fn link_text<R: Read>(e: &tar::Entry<R>) -> std::io::Result<String> {
    Ok(e.link_name()?
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerSpec;

    fn tar_of(spec: &LayerSpec) -> Vec<u8> {
        crate::layer::tar::write_tar(spec.entries(), spec.mtime, Vec::new()).unwrap()
    }

    fn diff(a: &LayerSpec, b: &LayerSpec) -> Option<EntryDiff> {
        let (ta, tb) = (tar_of(a), tar_of(b));
        diff_archives(
            &mut tar::Archive::new(ta.as_slice()),
            &mut tar::Archive::new(tb.as_slice()),
        )
        .unwrap()
    }

    /// One entry whose header claims `size` bytes (base-256, as GNU tar writes huge sizes)
    /// followed by only 512 bytes of data.
    fn lying_tar(size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("big").unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        let field = &mut h.as_old_mut().size;
        field.fill(0);
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(&[0u8; 512]);
        v
    }

    #[test]
    fn a_header_claiming_a_huge_size_is_an_error_not_a_huge_allocation() {
        for size in [u64::MAX, 1 << 62, 8 << 30] {
            let t = lying_tar(size);
            let r = diff_archives(
                &mut tar::Archive::new(t.as_slice()),
                &mut tar::Archive::new(t.as_slice()),
            );
            assert!(r.is_err(), "size {size}: {r:?}");
        }
    }

    fn spec(files: &[(&str, &[u8], u32)]) -> LayerSpec {
        let mut s = LayerSpec::new(1_700_000_000);
        for (p, b, m) in files {
            s.bytes(p, b.to_vec(), *m).unwrap();
        }
        s
    }

    #[test]
    fn names_the_file_and_the_first_differing_byte() {
        let a = spec(&[
            ("/etc/a", b"same", 0o644),
            ("/usr/bin/x", b"hello world", 0o755),
        ]);
        let b = spec(&[
            ("/etc/a", b"same", 0o644),
            ("/usr/bin/x", b"hello there", 0o755),
        ]);
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.path.as_deref(), Some("/usr/bin/x"));
        assert_eq!(
            d.detail,
            "content differs from byte 6 (0x6) of 11: \"hello world\" became \"hello there\""
        );
        assert_eq!(diff(&a, &a), None);
    }

    #[test]
    fn names_mode_size_and_missing_entries() {
        let a = spec(&[("/etc/a", b"x", 0o644)]);
        let b = spec(&[("/etc/a", b"x", 0o600)]);
        assert_eq!(
            diff(&a, &b).unwrap().detail,
            "mode 644 in the original, 600 in the rebuild"
        );
        let b = spec(&[("/etc/a", b"xy", 0o644)]);
        assert_eq!(
            diff(&a, &b).unwrap().detail,
            "size 1 in the original, 2 in the rebuild; content differs from byte 1 (0x1)"
        );
        let b = spec(&[("/etc/a", b"x", 0o644), ("/etc/b", b"x", 0o644)]);
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.path.as_deref(), Some("/etc/b"));
        assert_eq!(d.detail, "present in the rebuilt layer only");
        let mut b = LayerSpec::new(1_700_000_000);
        b.symlink("/etc/a", "elsewhere").unwrap();
        let mut a2 = LayerSpec::new(1_700_000_000);
        a2.symlink("/etc/a", "here").unwrap();
        assert_eq!(
            diff(&a2, &b).unwrap().detail,
            "link target here in the original, elsewhere in the rebuild"
        );
    }
}
