//! `kiln resolve`: rewrite `kiln://SERVICE` image references to what `kiln push` sent.
//!
//! The record of pushes is `out/pushed.json`, written by `kiln push` after every image of a run
//! went up (temp file + rename, so a reader never sees half of it):
//!
//! ```json
//! { "version": 1,
//!   "destinations": { "127.0.0.1:5000/team": { "svc": "127.0.0.1:5000/team/svc@sha256:…" } } }
//! ```
//!
//! keyed by the `--to` destination with trailing slashes removed, so resolving for one registry
//! never picks up a digest pushed to another. The rewrite is textual, token by token: comments,
//! key order, quoting and layout of the user's YAML stay as written, and only `kiln://NAME`
//! (with an optional `:TAG`, which a Kustomize `images:` entry may have added) changes. Every file
//! is checked before any is written, so an unknown or unpushed service leaves all files as they were.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SCHEME;

/// Where the record lives: `out/pushed.json`.
fn record_path(root: &Path) -> PathBuf {
    crate::workspace::OutDir::of(root).pushed()
}
const RECORD_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{file}:{line}:{column}: `{service}` is not a service of this workspace")]
    UnknownService {
        file: String,
        line: usize,
        column: usize,
        service: String,
    },
    #[error("{file}:{line}:{column}: `{service}` was not pushed to {destination} (run `kiln push {service} --to {destination}` first)")]
    NotPushed {
        file: String,
        line: usize,
        column: usize,
        service: String,
        destination: String,
    },
    #[error("{0} holds no YAML file (*.yaml, *.yml)")]
    NoFiles(String),
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a push record kiln understands: {reason}")]
    BadRecord { path: String, reason: String },
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResolveError {
    let path = path.display().to_string();
    move |source| ResolveError::Io {
        context,
        path,
        source,
    }
}

/// `REGISTRY/PREFIX` as a record key.
pub fn destination_key(to: &str) -> String {
    to.trim_end_matches('/').to_string()
}

/// Destination → service → `registry/repository@digest`.
pub type Record = BTreeMap<String, BTreeMap<String, String>>;

pub fn load_record(root: &Path) -> Result<Record, ResolveError> {
    let path = record_path(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::new()),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let bad = |reason: String| ResolveError::BadRecord {
        path: path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if v["version"].as_u64() != Some(RECORD_VERSION) {
        return Err(bad(format!("version is not {RECORD_VERSION}")));
    }
    serde_json::from_value(v["destinations"].clone()).map_err(|e| bad(e.to_string()))
}

/// Adds one run's pushes to the record.
pub fn record_pushes(
    root: &Path,
    destination: &str,
    pushed: &[(String, String)],
) -> Result<(), ResolveError> {
    let mut record = load_record(root)?;
    let entry = record.entry(destination_key(destination)).or_default();
    for (service, reference) in pushed {
        entry.insert(service.clone(), reference.clone());
    }
    let doc = serde_json::json!({ "version": RECORD_VERSION, "destinations": record });
    let path = record_path(root);
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut tmp = crate::cache::new_temp_file_in(dir).map_err(io("creating a file in", dir))?;
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io("writing", &path))?;
    tmp.persist(&path)
        .map_err(|e| io("writing", &path)(e.error))?;
    Ok(())
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn is_tag_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-".contains(&b)
}

/// A `kiln://NAME[:TAG]` token: its byte range and the service name.
fn tokens(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(SCHEME) {
        let start = from + i;
        let name_start = start + SCHEME.len();
        let mut end = name_start;
        while end < bytes.len() && is_name_char(bytes[end]) {
            end += 1;
        }
        let name_end = end;
        if end < bytes.len() && bytes[end] == b':' {
            let mut t = end + 1;
            while t < bytes.len() && is_tag_char(bytes[t]) {
                t += 1;
            }
            if t > end + 1 {
                end = t;
            }
        }
        if name_end > name_start {
            out.push((start..end, &text[name_start..name_end]));
        }
        from = end.max(start + SCHEME.len());
    }
    out
}

fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Rewrites one file's text. `display` names the file in errors.
pub fn rewrite(
    display: &str,
    text: &str,
    is_service: impl Fn(&str) -> bool,
    destination: &str,
    pushed: Option<&BTreeMap<String, String>>,
) -> Result<String, ResolveError> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (range, name) in tokens(text) {
        let (line, column) = line_column(text, range.start);
        if !is_service(name) {
            return Err(ResolveError::UnknownService {
                file: display.into(),
                line,
                column,
                service: name.into(),
            });
        }
        let Some(reference) = pushed.and_then(|p| p.get(name)) else {
            return Err(ResolveError::NotPushed {
                file: display.into(),
                line,
                column,
                service: name.into(),
                destination: destination_key(destination),
            });
        };
        out.push_str(&text[last..range.start]);
        out.push_str(reference);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// The YAML files under `path` (itself if a file), sorted.
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, ResolveError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let p = entry.map_err(io("reading", &dir))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ResolveError::NoFiles(path.display().to_string()));
    }
    Ok(out)
}

/// Resolves every file; returns (path, new text) pairs without writing anything.
pub fn resolve_files(
    files: &[PathBuf],
    is_service: impl Fn(&str) -> bool,
    destination: &str,
    record: &Record,
) -> Result<Vec<(PathBuf, String)>, ResolveError> {
    let pushed = record.get(&destination_key(destination));
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(io("reading", f))?;
            let new = rewrite(
                &f.display().to_string(),
                &text,
                &is_service,
                destination,
                pushed,
            )?;
            Ok((f.clone(), new))
        })
        .collect()
}

/// Replaces each file's contents (temp file + rename, keeping its permissions).
pub fn write_in_place(resolved: &[(PathBuf, String)]) -> Result<(), ResolveError> {
    for (path, text) in resolved {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = crate::cache::new_temp_file_in(dir).map_err(io("creating a file in", dir))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io("writing", path))?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
        }
        tmp.persist(path)
            .map_err(|e| io("writing", path)(e.error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed() -> BTreeMap<String, String> {
        [("api".to_string(), "r:5000/t/api@sha256:aaaa".to_string())]
            .into_iter()
            .collect()
    }

    #[test]
    fn rewrites_only_the_tokens_and_keeps_everything_else() {
        let text = "# api, pinned by kiln resolve\nimage: kiln://api  # keep me\n\
                    other: \"kiln://api:1.0\"\nurl: kiln:// not a token\n";
        let out = rewrite("f.yaml", text, |n| n == "api", "r:5000/t/", Some(&pushed())).unwrap();
        assert_eq!(
            out,
            "# api, pinned by kiln resolve\nimage: r:5000/t/api@sha256:aaaa  # keep me\n\
             other: \"r:5000/t/api@sha256:aaaa\"\nurl: kiln:// not a token\n"
        );
    }

    #[test]
    fn unknown_and_unpushed_services_are_named_with_their_position() {
        let e = rewrite(
            "f.yaml",
            "a: 1\nimage: kiln://nope\n",
            |n| n == "api",
            "r/t",
            Some(&pushed()),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.yaml:2:8: `nope` is not a service of this workspace"
        );
        let e = rewrite(
            "f.yaml",
            "image: kiln://web\n",
            |_| true,
            "r/t",
            Some(&pushed()),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f.yaml:1:8: `web` was not pushed to r/t"),
            "{e}"
        );
        let e = rewrite("f.yaml", "image: kiln://api\n", |_| true, "r/t", None).unwrap_err();
        assert!(matches!(e, ResolveError::NotPushed { .. }), "{e}");
    }

    #[test]
    fn the_record_accumulates_per_destination() {
        let dir = tempfile::tempdir().unwrap();
        record_pushes(
            dir.path(),
            "r:5000/a/",
            &[("x".into(), "r:5000/a/x@sha256:1".into())],
        )
        .unwrap();
        record_pushes(
            dir.path(),
            "r:5000/b",
            &[("x".into(), "r:5000/b/x@sha256:2".into())],
        )
        .unwrap();
        record_pushes(
            dir.path(),
            "r:5000/a",
            &[("y".into(), "r:5000/a/y@sha256:3".into())],
        )
        .unwrap();
        let r = load_record(dir.path()).unwrap();
        assert_eq!(r["r:5000/a"]["x"], "r:5000/a/x@sha256:1");
        assert_eq!(r["r:5000/a"]["y"], "r:5000/a/y@sha256:3");
        assert_eq!(r["r:5000/b"]["x"], "r:5000/b/x@sha256:2");
        std::fs::write(record_path(dir.path()), "{\"version\": 9}").unwrap();
        assert!(matches!(
            load_record(dir.path()),
            Err(ResolveError::BadRecord { .. })
        ));
    }
}
