//! OSV vulnerability records (https://ossf.github.io/osv-schema/) for Debian, read from a
//! directory of `*.json` files or a zip of them, as the OSV project exports an ecosystem
//! (`gs://osv-vulnerabilities/Debian/all.zip`).
//!
//! Only what the scan needs is kept: id, aliases, summary, `modified`, `withdrawn`, the CVSS v3
//! vectors and textual severities, and for each `affected` entry of the wanted ecosystem the
//! package name (Debian records name the *source* package) with its ECOSYSTEM ranges and
//! explicit versions. A file that is not an OSV record is an error naming the file (and the zip
//! entry), never silently skipped: a scanner that drops records it cannot read passes images it
//! should fail.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cvss::{self, Severity};
use crate::debian::version::Version as DebVersion;

/// The ecosystem kiln images come from (the base layer is Debian 12).
pub const ECOSYSTEM: &str = "Debian:12";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("reading the vulnerability database {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a zip archive of OSV records")]
    Zip {
        path: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{file} is not an OSV record")]
    Record {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
    #[error("the vulnerability database {0} holds no OSV record (*.json)")]
    Empty(String),
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize, Default)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: RawPackage,
    #[serde(default)]
    ranges: Vec<RawRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ecosystem_specific: serde_json::Value,
    #[serde(default)]
    database_specific: serde_json::Value,
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: serde_json::Value,
}

/// One event of a range, in the order the record lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Introduced(Option<DebVersion>), // `None` is OSV's "0": every version
    Fixed(DebVersion),
    LastAffected(DebVersion),
}

#[derive(Clone, Debug)]
pub struct Affected {
    pub package: String,
    pub ranges: Vec<Vec<Event>>,
    pub versions: Vec<DebVersion>,
    pub severity: Severity,
    pub score: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Vulnerability {
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    /// Days since the epoch of `modified`, if the record has it.
    pub modified_days: Option<i64>,
    pub affected: Vec<Affected>,
}

#[derive(Debug, Default)]
pub struct Database {
    pub vulnerabilities: Vec<Vulnerability>,
    /// Records skipped because they are withdrawn.
    pub withdrawn: usize,
}

impl Database {
    /// The newest `modified` date of any record: how fresh the export is.
    pub fn newest_days(&self) -> Option<i64> {
        self.vulnerabilities
            .iter()
            .filter_map(|v| v.modified_days)
            .max()
    }
}

/// The highest severity the record's vectors or labels give, CVSS v3 first.
fn severity_of(vectors: &[&RawSeverity], labels: &[&serde_json::Value]) -> (Severity, Option<f64>) {
    let scores: Vec<f64> = vectors
        .iter()
        .filter(|s| s.kind == "CVSS_V3")
        .filter_map(|s| cvss::base_score(&s.score).ok())
        .collect();
    if let Some(best) = scores.into_iter().reduce(f64::max) {
        return (Severity::of_score(best), Some(best));
    }
    let label = labels
        .iter()
        .filter_map(|v| {
            ["severity", "urgency"]
                .iter()
                .find_map(|k| v.get(k).and_then(|s| s.as_str()))
        })
        .filter_map(Severity::parse)
        .max()
        .unwrap_or(Severity::Unknown);
    (label, None)
}

fn version(file: &str, s: &str) -> Result<DebVersion, DbError> {
    s.parse::<DebVersion>().map_err(|_| DbError::Invalid {
        file: file.into(),
        problem: format!("`{s}` is not a Debian version"),
    })
}

/// Parses one record; `Ok(None)` for a withdrawn one.
pub fn parse_record(file: &str, text: &[u8]) -> Result<Option<Vulnerability>, DbError> {
    let raw: RawRecord = serde_json::from_slice(text).map_err(|source| DbError::Record {
        file: file.into(),
        source,
    })?;
    if raw.withdrawn.is_some() {
        return Ok(None);
    }
    let mut affected = Vec::new();
    for a in &raw.affected {
        if a.package.ecosystem != ECOSYSTEM {
            continue;
        }
        let mut ranges = Vec::new();
        for r in a.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
            let mut events = Vec::new();
            for e in &r.events {
                if let Some(i) = &e.introduced {
                    events.push(Event::Introduced(if i == "0" {
                        None
                    } else {
                        Some(version(file, i)?)
                    }));
                }
                if let Some(f) = &e.fixed {
                    events.push(Event::Fixed(version(file, f)?));
                }
                if let Some(l) = &e.last_affected {
                    events.push(Event::LastAffected(version(file, l)?));
                }
            }
            ranges.push(events);
        }
        let vectors: Vec<&RawSeverity> = a.severity.iter().chain(&raw.severity).collect();
        let (severity, score) = severity_of(
            &vectors,
            &[
                &a.database_specific,
                &a.ecosystem_specific,
                &raw.database_specific,
            ],
        );
        affected.push(Affected {
            package: a.package.name.clone(),
            ranges,
            versions: a
                .versions
                .iter()
                .filter_map(|v| v.parse::<DebVersion>().ok())
                .collect(),
            severity,
            score,
        });
    }
    let modified_days = match &raw.modified {
        Some(m) => Some(super::date::parse_days(m).ok_or_else(|| DbError::Invalid {
            file: file.into(),
            problem: format!("`modified` \"{m}\" is not an RFC 3339 time"),
        })?),
        None => None,
    };
    Ok(Some(Vulnerability {
        id: raw.id,
        aliases: raw.aliases,
        summary: raw.summary.unwrap_or_default(),
        modified_days,
        affected,
    }))
}

impl Affected {
    /// Whether `v` is affected, by OSV's evaluation of ECOSYSTEM ranges (events in version
    /// order: introduced opens, fixed closes at the fix, last_affected closes after it).
    pub fn affects(&self, v: &DebVersion) -> bool {
        if self.versions.contains(v) {
            return true;
        }
        self.ranges.iter().any(|events| {
            let mut sorted: Vec<&Event> = events.iter().collect();
            let key = |e: &Event| -> Option<DebVersion> {
                match e {
                    Event::Introduced(v) => v.clone(),
                    Event::Fixed(v) | Event::LastAffected(v) => Some(v.clone()),
                }
            };
            sorted.sort_by_key(|e| key(e));
            let mut vulnerable = false;
            for e in sorted {
                match e {
                    Event::Introduced(None) => vulnerable = true,
                    Event::Introduced(Some(i)) if v >= i => vulnerable = true,
                    Event::Fixed(f) if v >= f => vulnerable = false,
                    Event::LastAffected(l) if v > l => vulnerable = false,
                    _ => {}
                }
            }
            vulnerable
        })
    }

    /// The lowest fixed version above `v`, if any range has one.
    pub fn fixed_after(&self, v: &DebVersion) -> Option<DebVersion> {
        self.ranges
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Event::Fixed(f) if f > v => Some(f.clone()),
                _ => None,
            })
            .min()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn add(db: &mut Database, file: &str, bytes: &[u8]) -> Result<(), DbError> {
    match parse_record(file, bytes)? {
        Some(v) => db.vulnerabilities.push(v),
        None => db.withdrawn += 1,
    }
    Ok(())
}

/// Loads a directory (searched recursively) or a zip of OSV JSON records.
pub fn load(path: &Path) -> Result<Database, DbError> {
    let mut db = Database::default();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = Vec::new();
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let p = e.map_err(io(&dir))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "json") {
                    files.push(p);
                }
            }
        }
        files.sort();
        for f in &files {
            let bytes = std::fs::read(f).map_err(io(f))?;
            add(&mut db, &f.display().to_string(), &bytes)?;
        }
    } else {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let zip_err = |source| DbError::Zip {
            path: path.display().to_string(),
            source,
        };
        let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
        let mut names: Vec<String> = archive
            .file_names()
            .filter(|n| n.ends_with(".json"))
            .map(String::from)
            .collect();
        names.sort();
        for name in names {
            let mut entry = archive.by_name(&name).map_err(zip_err)?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io(path))?;
            add(&mut db, &format!("{}:{name}", path.display()), &bytes)?;
        }
    }
    if db.vulnerabilities.is_empty() && db.withdrawn == 0 {
        return Err(DbError::Empty(path.display().to_string()));
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        s.parse::<DebVersion>().ok().unwrap()
    }

    fn record(events: &str) -> Vulnerability {
        let text = format!(
            r#"{{"id": "DEBIAN-CVE-1", "modified": "2026-01-02T03:04:05Z",
                "affected": [{{"package": {{"ecosystem": "Debian:12", "name": "glibc"}},
                  "ranges": [{{"type": "ECOSYSTEM", "events": {events}}}],
                  "database_specific": {{"severity": "medium"}}}},
                  {{"package": {{"ecosystem": "Debian:11", "name": "glibc"}}}}]}}"#
        );
        parse_record("r.json", text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn ranges_follow_the_osv_evaluation() {
        let r = record(r#"[{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]"#);
        assert_eq!(r.affected.len(), 1, "only Debian:12 entries");
        let a = &r.affected[0];
        assert_eq!(a.severity, Severity::Medium);
        assert!(a.affects(&v("2.36-9+deb12u3")));
        assert!(!a.affects(&v("2.36-9+deb12u4")));
        assert!(!a.affects(&v("2.36-9+deb12u10")), "u10 > u4 numerically");
        assert_eq!(a.fixed_after(&v("2.36-9")), Some(v("2.36-9+deb12u4")));
        assert_eq!(
            r.modified_days,
            super::super::date::parse_days("2026-01-02")
        );

        let r = record(r#"[{"introduced": "1:1.0"}, {"last_affected": "1:1.2~rc1"}]"#);
        let a = &r.affected[0];
        assert!(!a.affects(&v("1.5")), "no epoch is epoch 0, before 1:1.0");
        assert!(a.affects(&v("1:1.2~beta")));
        assert!(a.affects(&v("1:1.2~rc1")));
        assert!(!a.affects(&v("1:1.2")), "the release is after its ~rc");
        assert_eq!(a.fixed_after(&v("1:1.1")), None);
    }

    #[test]
    fn withdrawn_and_broken_records() {
        let w = br#"{"id": "X", "withdrawn": "2025-01-01T00:00:00Z", "affected": []}"#;
        assert!(parse_record("w.json", w).unwrap().is_none());
        let e = parse_record("bad.json", b"{\"id\": 3}").unwrap_err();
        assert_eq!(e.to_string(), "bad.json is not an OSV record");
        let bad_version = br#"{"id": "X", "affected": [{"package": {"ecosystem": "Debian:12", "name": "p"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version"}]}]}]}"#;
        let e = parse_record("v.json", bad_version).unwrap_err();
        assert_eq!(
            e.to_string(),
            "v.json: `not a version` is not a Debian version"
        );
    }

    #[test]
    fn cvss_vectors_win_over_labels() {
        let text = br#"{"id": "X", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "p"}, "versions": ["1.0-1"],
              "database_specific": {"severity": "low"}}]}"#;
        let r = parse_record("x.json", text).unwrap().unwrap();
        assert_eq!(r.affected[0].severity, Severity::Critical);
        assert_eq!(r.affected[0].score, Some(9.8));
        assert!(r.affected[0].affects(&v("1.0-1")));
        assert!(!r.affected[0].affects(&v("1.0-2")));
    }
}
