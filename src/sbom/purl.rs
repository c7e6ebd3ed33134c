//! Package URLs (purl) for Debian packages and OCI images.
//!
//! `pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-12[&upstream=<source>]`. Scanners
//! match vulnerabilities on these strings, so the spelling follows the purl spec exactly:
//! qualifiers sorted by key, and every character outside `A-Za-z0-9.-_~` (and `:`, which the spec
//! leaves as is so Debian epochs stay readable) percent-encoded in names, versions and values.

use crate::digest::Digest;
use crate::dpkg::DebPackage;

/// The Debian release kiln images are built from (the base layer is Debian 12).
pub const DISTRO: &str = "debian-12";

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_qualifiers(mut base: String, qualifiers: &mut [(&str, String)]) -> String {
    qualifiers.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in qualifiers.iter().enumerate() {
        base.push(if i == 0 { '?' } else { '&' });
        base.push_str(k);
        base.push('=');
        base.push_str(&encode(v));
    }
    base
}

/// The purl of a binary package; `upstream` names the source package when it differs (with its
/// version when that differs too, as binNMUs and split sources do).
pub fn deb_purl(p: &DebPackage) -> String {
    let mut q = vec![
        ("arch", p.architecture.clone()),
        ("distro", DISTRO.to_string()),
    ];
    if p.source != p.name || p.source_version != p.version {
        let upstream = if p.source_version != p.version {
            format!("{}@{}", p.source, p.source_version)
        } else {
            p.source.clone()
        };
        q.push(("upstream", upstream));
    }
    with_qualifiers(
        format!("pkg:deb/debian/{}@{}", encode(&p.name), encode(&p.version)),
        &mut q,
    )
}

/// The purl of a service image by manifest digest, with the version tag as a qualifier. The
/// digest's colon is encoded, as in the purl spec's own `oci` examples.
pub fn oci_purl(name: &str, digest: &Digest, tag: &str) -> String {
    with_qualifiers(
        format!("pkg:oci/{}@sha256%3A{}", encode(name), digest.hex()),
        &mut [("tag", tag.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, source: &str, source_version: &str) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: source_version.into(),
            license: None,
            maintainer: None,
            multi_arch: None,
            source_field: None,
        }
    }

    #[test]
    fn debian_purls() {
        assert_eq!(
            deb_purl(&pkg("zlib1g", "1:1.2.13.dfsg-1", "zlib", "1:1.2.13.dfsg-1")),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        assert_eq!(
            deb_purl(&pkg(
                "libstdc++6",
                "12.2.0-14+deb12u1",
                "gcc-12",
                "12.2.0-14"
            )),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12\
             &upstream=gcc-12%4012.2.0-14"
        );
        assert_eq!(
            deb_purl(&pkg("base-files", "12.4", "base-files", "12.4")),
            "pkg:deb/debian/base-files@12.4?arch=amd64&distro=debian-12"
        );
    }
}
