//! A resolved package as a lock records it, and the digest of a whole set, which names the
//! toolchain root built from it.
//!
//! The digest covers name, version, architecture and the .deb's sha256 of every package,
//! sorted by name, behind a format tag: the sha256 alone pins the bytes, the rest keeps the
//! digest readable as "this exact set". Filename, size, suite and source are not in it: they
//! say where to get the same bytes and what they were built from, not what they are.

use serde::{Deserialize, Serialize};

use super::index::Package;
use crate::digest::Digest;

const DIGEST_FORMAT: &str = "kiln debian root v1\n";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub suite: String,
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
    pub source: String,
    pub source_version: String,
}

impl LockedPackage {
    pub fn from_index(p: &Package) -> LockedPackage {
        LockedPackage {
            name: p.name.clone(),
            version: p.version.to_string(),
            architecture: p.architecture.clone(),
            suite: p.suite.to_string(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256,
            source: p.source.clone(),
            source_version: p.source_version.to_string(),
        }
    }
}

/// The digest of a package set, independent of the order given.
pub fn set_digest(packages: &[LockedPackage]) -> Digest {
    let mut lines: Vec<String> = packages
        .iter()
        .map(|p| format!("{} {} {} {}\n", p.name, p.version, p.architecture, p.sha256))
        .collect();
    lines.sort();
    lines.dedup();
    Digest::of((DIGEST_FORMAT.to_string() + &lines.concat()).as_bytes())
}

/// The packages as `[[debian.package]]` TOML tables (sorted by name), the section a lock file
/// gets for a toolchain root.
pub fn to_toml(packages: &[LockedPackage]) -> String {
    #[derive(Serialize)]
    struct Section<'a> {
        package: Vec<&'a LockedPackage>,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        debian: Section<'a>,
    }
    let mut sorted: Vec<&LockedPackage> = packages.iter().collect();
    sorted.sort();
    toml::to_string(&Doc {
        debian: Section { package: sorted },
    })
    .expect("locked packages serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, sha: &[u8]) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: Digest::of(sha),
            source: name.into(),
            source_version: version.into(),
        }
    }

    #[test]
    fn the_digest_follows_every_pinned_field_but_not_the_order() {
        let a = [pkg("a", "1", b"a"), pkg("b", "1", b"b")];
        let base = set_digest(&a);
        assert_eq!(base, set_digest(&[a[1].clone(), a[0].clone()]));
        assert_ne!(base, set_digest(&[pkg("a", "2", b"a"), a[1].clone()]));
        assert_ne!(base, set_digest(&[pkg("a", "1", b"x"), a[1].clone()]));
        assert_ne!(base, set_digest(&a[..1]));
        let mut moved = a.clone();
        moved[0].filename = "elsewhere.deb".into();
        assert_eq!(base, set_digest(&moved));
    }

    #[test]
    fn toml_lists_packages_sorted() {
        let text = to_toml(&[pkg("b", "1", b"b"), pkg("a", "1:2.0-1", b"a")]);
        assert!(
            text.starts_with("[[debian.package]]\nname = \"a\"\nversion = \"1:2.0-1\"\n"),
            "{text}"
        );
        assert_eq!(text.matches("[[debian.package]]").count(), 2);
    }
}
