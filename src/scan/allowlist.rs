//! The scan allowlist: findings a team has looked at and accepted, each with a reason and an
//! expiry date, so an exception is a decision with an end rather than a permanent hole.
//!
//! ```toml
//! [[allow]]
//! id = "CVE-2025-0001"      # the record's id or any of its aliases
//! package = "glibc"         # optional: only for this source (or binary) package
//! expires = "2027-06-30"    # the entry stops applying on this day
//! reason = "iconv is never called with untrusted charsets"
//! ```
//!
//! Read with the recipe reader, so a mistake points at `FILE:LINE:COLUMN`.

use std::path::Path;

use crate::diag::Diagnostic;
use crate::recipe::reader::{Source, TableReader};

const TOP_KEYS: &[&str] = &["allow"];
const ENTRY_KEYS: &[&str] = &["id", "package", "expires", "reason"];

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: String,
    pub package: Option<String>,
    pub expires: String,
    #[serde(skip)]
    pub expires_days: i64,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    pub entries: Vec<Entry>,
}

impl Allowlist {
    pub fn load(path: &Path) -> Result<Allowlist, Diagnostic> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostic::at(
                &display,
                "",
                None,
                format!("cannot read the allowlist: {e}"),
            )
        })?;
        Self::parse(&display, text)
    }

    pub fn parse(file: &str, text: String) -> Result<Allowlist, Diagnostic> {
        let src = Source {
            file: file.into(),
            text,
        };
        let doc = src.parse()?;
        let top = TableReader::new(&src, doc.as_table(), "", TOP_KEYS);
        top.finish()?;
        let mut entries = Vec::new();
        for (i, t) in top.tables("allow", ENTRY_KEYS)?.iter().enumerate() {
            let r = t.reader(&src, &format!("allow[{i}]"));
            r.finish()?;
            let required = |key: &str| {
                r.string(key)?.ok_or_else(|| {
                    src.error(
                        r.table_span().or(top.key_span("allow")),
                        format!("an allowlist entry needs `{key}`"),
                    )
                })
            };
            let id = required("id")?;
            let reason = required("reason")?;
            if reason.value.trim().is_empty() {
                return Err(src.error(reason.span, "`reason` must say why the finding is accepted"));
            }
            let expires = required("expires")?;
            let expires_days = super::date::parse_days(&expires.value)
                .filter(|_| expires.value.len() == 10)
                .ok_or_else(|| {
                    src.error(
                        expires.span.clone(),
                        format!(
                            "`expires` \"{}\" is not a date such as \"2027-06-30\"",
                            expires.value
                        ),
                    )
                })?;
            entries.push(Entry {
                id: id.value,
                package: r.string("package")?.map(|p| p.value),
                expires: expires.value,
                expires_days,
                reason: reason.value,
            });
        }
        Ok(Allowlist { entries })
    }

    /// The first entry that covers a finding, live or expired.
    pub fn find(&self, ids: &[&str], packages: &[&str]) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            ids.contains(&e.id.as_str())
                && e.package.as_deref().map_or(true, |p| packages.contains(&p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_matching() {
        let a = Allowlist::parse(
            "allow.toml",
            "[[allow]]\nid = \"CVE-1\"\npackage = \"glibc\"\nexpires = \"2027-06-30\"\nreason = \"not reachable\"\n\
             [[allow]]\nid = \"CVE-2\"\nexpires = \"2001-01-01\"\nreason = \"old\"\n"
                .into(),
        )
        .unwrap();
        assert_eq!(a.entries.len(), 2);
        assert!(a
            .find(&["DEBIAN-CVE-1", "CVE-1"], &["glibc", "libc6"])
            .is_some());
        assert!(
            a.find(&["CVE-1"], &["zlib"]).is_none(),
            "package must match"
        );
        assert_eq!(a.find(&["CVE-2"], &["zlib"]).unwrap().expires, "2001-01-01");
    }

    #[test]
    fn mistakes_point_at_the_line() {
        let e = Allowlist::parse(
            "allow.toml",
            "[[allow]]\nid = \"CVE-1\"\nexpires = \"30/06/2027\"\nreason = \"x\"\n".into(),
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("allow.toml", 3, 11),
            "{e}"
        );
        let e = Allowlist::parse(
            "allow.toml",
            "[[allow]]\nid = \"CVE-1\"\nexpires = \"2027-01-01\"\n".into(),
        )
        .unwrap_err();
        assert!(e.message.contains("needs `reason`"), "{e}");
        let e = Allowlist::parse(
            "allow.toml",
            "[[allow]]\nid = \"CVE-1\"\nexpire = \"2027-01-01\"\nreason = \"x\"\n".into(),
        )
        .unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `expires`?"));
    }
}
