//! Package licenses as SBOMs can state them.
//!
//! Recipes declare SPDX expressions. Debian packages only offer the short name of their
//! machine-readable copyright file (DEP-5), which resembles SPDX but is not it (`GPL-2+`,
//! `Expat`, `BSD-3-clause`). Names with a known SPDX equivalent are translated; the rest are kept
//! verbatim and each format marks them as not-SPDX (SPDX: a `LicenseRef-` with the name as
//! extracted text; CycloneDX: a license `name`), because passing them off as SPDX identifiers
//! would make license scanners misread them.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum License {
    /// A valid SPDX license expression.
    Spdx(String),
    /// A Debian copyright short name with no SPDX translation.
    Debian(String),
    /// Nothing known.
    Unknown,
}

/// DEP-5 short names (compared case-insensitively) and their SPDX identifiers.
const DEBIAN_TO_SPDX: &[(&str, &str)] = &[
    ("Apache-2.0", "Apache-2.0"),
    ("Artistic-2.0", "Artistic-2.0"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSL-1.0", "BSL-1.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("Expat", "MIT"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    (
        "GPL-3+ with GCC-exception-3.1",
        "GPL-3.0-or-later WITH GCC-exception-3.1",
    ),
    ("ISC", "ISC"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("MIT", "MIT"),
    ("MPL-2.0", "MPL-2.0"),
    ("OpenSSL", "OpenSSL"),
    ("Zlib", "Zlib"),
    // Debian's "wxWindows" is the wxWindows Library Licence: LGPL 2.0+ plus the exception.
    (
        "wxWindows",
        "LGPL-2.0-or-later WITH WxWindows-exception-3.1",
    ),
];

impl License {
    /// A recipe's `license` (already an SPDX expression; `NOASSERTION` means unknown).
    pub fn of_recipe(expr: &str) -> License {
        match expr.trim() {
            "" | "NOASSERTION" | "NONE" => License::Unknown,
            e => License::Spdx(e.to_string()),
        }
    }

    /// A Debian package's copyright short name, if it has one.
    pub fn of_debian(short: Option<&str>) -> License {
        let Some(short) = short.map(str::trim).filter(|s| !s.is_empty()) else {
            return License::Unknown;
        };
        DEBIAN_TO_SPDX
            .iter()
            .find(|(deb, _)| deb.eq_ignore_ascii_case(short))
            .map(|(_, spdx)| License::Spdx(spdx.to_string()))
            .unwrap_or_else(|| License::Debian(short.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::License;

    #[test]
    fn debian_names_translate_or_stay_marked() {
        assert_eq!(
            License::of_debian(Some("GPL-2+")),
            License::Spdx("GPL-2.0-or-later".into())
        );
        assert_eq!(
            License::of_debian(Some("expat")),
            License::Spdx("MIT".into())
        );
        assert_eq!(
            License::of_debian(Some(
                "BSD-3-clause-Cambridge with BINARY LIBRARY-LIKE PACKAGES exception"
            )),
            License::Debian(
                "BSD-3-clause-Cambridge with BINARY LIBRARY-LIKE PACKAGES exception".into()
            )
        );
        assert_eq!(License::of_debian(None), License::Unknown);
        assert_eq!(License::of_recipe("NOASSERTION"), License::Unknown);
        assert_eq!(
            License::of_recipe("Apache-2.0"),
            License::Spdx("Apache-2.0".into())
        );
    }
}
