//! The tar half of a layer: ustar headers written by hand from [`Entry`] values so nothing of the
//! host (owner names, umask, timestamps) can leak into the bytes.
//!
//! Names are relative (`usr/lib/...`), directories end in '/'. A name or link target too long for
//! ustar gets a PAX extended header (`x`) carrying `path`/`linkpath` just before the entry; the
//! ustar fields then hold a truncated name, as POSIX prescribes. The archive ends with two zero
//! blocks (written by `tar::Builder::finish`).

use std::fs::File;
use std::io::{self, Read, Write};

use tar::{Builder, EntryType, Header};

use super::{Content, Entry, EntryKind, LayerError};

/// Writes every entry of `entries` (already sorted) as one tar stream into `out`.
pub fn write_tar<'a, W: Write>(
    entries: impl Iterator<Item = &'a Entry>,
    mtime: i64,
    out: W,
) -> Result<W, LayerError> {
    let mut builder = Builder::new(out);
    let werr = |source: io::Error| LayerError::Write {
        path: "<tar stream>".into(),
        source,
    };
    for entry in entries {
        let mut name = entry.path.trim_start_matches('/').to_string();
        if matches!(entry.kind, EntryKind::Dir) {
            name.push('/');
        }
        let mut header = Header::new_ustar();
        header.set_mode(entry.mode & 0o7777);
        header.set_uid(entry.uid as u64);
        header.set_gid(entry.gid as u64);
        header.set_mtime(mtime.max(0) as u64);
        let mut pax: Vec<(&str, &str)> = Vec::new();
        if header.set_path(&name).is_err() {
            pax.push(("path", &name));
            header.as_old_mut().name[..].fill(0);
            let short = truncated(&name, 100);
            header.as_old_mut().name[..short.len()].copy_from_slice(short.as_bytes());
        }
        match &entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                if header.set_link_name(target).is_err() {
                    pax.push(("linkpath", target));
                    let short = truncated(target, 100);
                    header.as_old_mut().linkname[..].fill(0);
                    header.as_old_mut().linkname[..short.len()].copy_from_slice(short.as_bytes());
                }
            }
            EntryKind::File { size, .. } => {
                header.set_entry_type(EntryType::Regular);
                header.set_size(*size);
            }
        }
        header.set_cksum();
        if !pax.is_empty() {
            write_pax(&mut builder, &name, &pax, mtime).map_err(werr)?;
        }
        match &entry.kind {
            EntryKind::File {
                content: Content::Host(path),
                size,
                ..
            } => {
                let file = File::open(path).map_err(|source| LayerError::Read {
                    path: path.clone(),
                    source,
                })?;
                // Exactly `size` bytes: a file that grew is caught below instead of corrupting
                // the archive, one that shrank fails inside `append`.
                let mut limited = file.take(*size);
                builder
                    .append(&header, &mut limited)
                    .map_err(|source| LayerError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let rest = io::copy(&mut limited.into_inner(), &mut io::sink()).unwrap_or(0);
                if rest != 0 {
                    return Err(LayerError::Changed {
                        path: path.clone(),
                        expected: *size,
                        actual: size + rest,
                    });
                }
            }
            EntryKind::File {
                content: Content::Bytes(bytes),
                ..
            } => {
                builder.append(&header, bytes.as_slice()).map_err(werr)?;
            }
            _ => builder.append(&header, io::empty()).map_err(werr)?,
        }
    }
    builder.into_inner().map_err(werr)
}

fn write_pax<W: Write>(
    builder: &mut Builder<W>,
    name: &str,
    records: &[(&str, &str)],
    mtime: i64,
) -> io::Result<()> {
    let mut body = Vec::new();
    for (key, value) in records {
        // Each record is "<len> <key>=<value>\n" where <len> counts itself.
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 1;
        while len.to_string().len() + rest.len() != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len}{rest}").as_bytes());
    }
    let mut header = Header::new_ustar();
    let pax_name = format!(
        "PaxHeaders/{}",
        truncated(name.rsplit('/').find(|c| !c.is_empty()).unwrap_or(name), 80)
    );
    header.set_path(&pax_name)?;
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_mtime(mtime.max(0) as u64);
    header.set_size(body.len() as u64);
    header.set_cksum();
    builder.append(&header, body.as_slice())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::super::LayerSpec;
    use super::*;

    #[test]
    fn long_names_round_trip_through_pax_and_headers_carry_no_host_facts() {
        let long = format!("/opt/{}/file", "d".repeat(300));
        let mut spec = LayerSpec::new(1700000000);
        spec.bytes(&long, b"hi".to_vec(), 0o644).unwrap();
        spec.dir("/home/nonroot", 0o755, 65532).unwrap();
        let bytes = write_tar(spec.entries(), spec.mtime, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 1700000000);
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            seen.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.uid().unwrap(),
            ));
        }
        assert!(
            seen.contains(&(long.trim_start_matches('/').to_string(), 0)),
            "{seen:?}"
        );
        assert!(seen
            .iter()
            .any(|(p, uid)| p.trim_end_matches('/') == "home/nonroot" && *uid == 65532));
    }
}
