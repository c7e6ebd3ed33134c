//! Ada sources as GNAT sees them: which files are compilation units of their own.
//!
//! GNAT compiles one unit per file and finds units by GNAT's default naming scheme: the unit's
//! full name lowercased with `.` turned into `-`, `.ads` for a spec and `.adb` for a body
//! (`Orb_Core.Http` → `orb_core-http.ads`; the subunit `P.Hello` of `separate (P)` →
//! `p-hello.adb`). Children of `Ada`, `System`, `Interfaces` and `GNAT` take a `~` after the
//! first letter (`a~foo.ads`); krunched names are not supported.
//!
//! Each file is read ([`unit`]) and the decision follows from what it declares, not from its
//! extension alone:
//!
//! 1. a body (package or subprogram, generic or not) is compiled;
//! 2. a subunit (`separate (P)`) never is: GNAT compiles it inside its parent (and refuses it on
//!    its own, "cannot generate code for file … (subunit)"); the parent's ALI file lists it, so
//!    an edit to it recompiles the parent. Its parent's body must be among the files;
//! 3. a spec is compiled when no body file sits next to it, or when that file says
//!    `pragma No_Body`; a spec with a body file is compiled as part of that body;
//! 4. a `pragma No_Body` file is never compiled (it would produce the spec's object again).
//!
//! A file whose unit does not match its name, a body in a `.ads`, two units in one file, two
//! files for one unit, or a subunit without its parent are errors pointing at the file, line and column, because GNAT would fail
//! later with a less direct message, or not at all while `with` clauses quietly miss the unit.

pub mod lexer;
pub mod structure;
pub mod unit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
pub use unit::{parse, ParseError, Unit, UnitKind};

/// Why a set of Ada files cannot be turned into compilation units.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not an Ada source: GNAT's default naming scheme reads `.ads` specs and `.adb` bodies", path.display())]
    NotAda { path: PathBuf },
    #[error("`{}` has a body, `{}`, that `sources` leaves out", spec.display(), body.display())]
    BodyLeftOut { spec: PathBuf, body: PathBuf },
    /// A problem inside an Ada file, located there.
    #[error("{0}")]
    Source(Box<Diagnostic>),
}

/// The file stem GNAT's default naming scheme gives the unit `name` (lowercase, dotted).
pub fn default_file_stem(name: &str) -> String {
    let stem = name.replace('.', "-");
    match name.split_once('.') {
        Some(("ada" | "system" | "interfaces" | "gnat", _)) => {
            format!(
                "{}~{}",
                &stem[..1],
                &stem[stem.find('-').unwrap_or(0) + 1..]
            )
        }
        _ => stem,
    }
}

/// Every `.ads` and `.adb` file directly in `dirs` (workspace-relative), sorted by name within
/// each directory, directories in the order given.
pub fn sources_in(root: &Path, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".ads") || n.ends_with(".adb"))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| dir.join(n)));
    }
    out
}

/// A source file and what it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub unit: Unit,
}

/// Reads and checks one workspace-relative Ada file.
pub fn read_source(root: &Path, rel: &Path) -> Result<SourceFile, DiscoverError> {
    let is_spec = match rel.extension().and_then(|e| e.to_str()) {
        Some("ads") => true,
        Some("adb") => false,
        _ => {
            return Err(DiscoverError::NotAda {
                path: rel.to_path_buf(),
            })
        }
    };
    let bytes = std::fs::read(root.join(rel)).map_err(|source| DiscoverError::Read {
        path: rel.to_path_buf(),
        source,
    })?;
    let at = |span: std::ops::Range<usize>, msg: String| {
        DiscoverError::Source(Box::new(diagnostic(rel, &bytes, span, msg)))
    };
    let unit = parse(&bytes).map_err(|e| at(e.span, e.message))?;
    let what = match &unit.kind {
        UnitKind::Spec => "a spec",
        UnitKind::Body => "a body",
        UnitKind::Subunit { .. } => "a subunit",
        UnitKind::NoBody => "`pragma No_Body`",
    };
    if is_spec != (unit.kind == UnitKind::Spec) {
        let (here, there) = if is_spec {
            ("ads", "adb")
        } else {
            ("adb", "ads")
        };
        return Err(at(
            unit.name_span.clone(),
            format!("a `.{here}` file holds {what}, which GNAT's default naming scheme expects in a `.{there}` file"),
        ));
    }
    if unit.kind != UnitKind::NoBody {
        let expected = default_file_stem(&unit.name);
        let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if stem != expected {
            let ext = if is_spec { "ads" } else { "adb" };
            return Err(at(
                unit.name_span.clone(),
                format!(
                    "this file holds {what} of `{}`, which GNAT's default naming scheme looks for in `{expected}.{ext}`",
                    unit.name
                ),
            ));
        }
    }
    Ok(SourceFile {
        path: rel.to_path_buf(),
        unit,
    })
}

/// The files of `files` that GNAT compiles on their own, in the order given (see the rules at
/// the top of this module).
pub fn compilation_units(root: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    let sources = files
        .iter()
        .map(|f| read_source(root, f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: BTreeMap<(bool, &str), &Path> = BTreeMap::new();
    for s in &sources {
        if s.unit.kind == UnitKind::NoBody {
            continue;
        }
        let key = (s.unit.kind == UnitKind::Spec, s.unit.name.as_str());
        if let Some(first) = seen.insert(key, &s.path) {
            let bytes = std::fs::read(root.join(&s.path)).unwrap_or_default();
            return Err(DiscoverError::Source(Box::new(diagnostic(
                &s.path,
                &bytes,
                s.unit.name_span.clone(),
                format!(
                    "`{}` is also declared in `{}`: GNAT would compile both to one object",
                    s.unit.name,
                    first.display()
                ),
            ))));
        }
    }
    // A subunit is compiled only inside its parent's body, so one whose parent is not here
    // would silently never be built: usually a misspelt `separate (…)`.
    for s in &sources {
        if let UnitKind::Subunit {
            parent,
            parent_span,
        } = &s.unit.kind
        {
            if !seen.contains_key(&(false, parent.as_str())) {
                let bodies = seen.keys().filter(|(spec, _)| !spec).map(|(_, name)| *name);
                let help = crate::diag::did_you_mean(parent, bodies);
                let bytes = std::fs::read(root.join(&s.path)).unwrap_or_default();
                let d = diagnostic(
                    &s.path,
                    &bytes,
                    parent_span.clone(),
                    format!(
                        "no body of `{parent}` is among this recipe's sources, and a subunit \
                         is compiled only inside its parent's body"
                    ),
                )
                .with_help(help);
                return Err(DiscoverError::Source(Box::new(d)));
            }
        }
    }
    let mut out = Vec::new();
    for s in &sources {
        match s.unit.kind {
            UnitKind::Body => out.push(s.path.clone()),
            UnitKind::Subunit { .. } | UnitKind::NoBody => {}
            UnitKind::Spec => {
                let body = s.path.with_extension("adb");
                if !root.join(&body).is_file() {
                    out.push(s.path.clone());
                    continue;
                }
                let listed = sources.iter().find(|o| o.path == body);
                let body_unit = match listed {
                    Some(o) => o.unit.clone(),
                    None => read_source(root, &body)?.unit,
                };
                match body_unit.kind {
                    UnitKind::NoBody => out.push(s.path.clone()),
                    _ if listed.is_none() => {
                        return Err(DiscoverError::BodyLeftOut {
                            spec: s.path.clone(),
                            body,
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// A diagnostic at `span` of an Ada file. GNAT reads Latin-1 unless told otherwise, so a file
/// that is not UTF-8 is shown decoded as Latin-1 (offsets move by one per byte above 0x7F).
fn diagnostic(rel: &Path, bytes: &[u8], span: std::ops::Range<usize>, msg: String) -> Diagnostic {
    let file = rel.to_string_lossy();
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let fix = |mut o: usize| {
                o = o.min(text.len());
                while !text.is_char_boundary(o) {
                    o -= 1;
                }
                o
            };
            Diagnostic::at(&file, text, Some(fix(span.start)..fix(span.end)), msg)
        }
        Err(_) => {
            let text: String = bytes.iter().map(|&b| b as char).collect();
            let map = |o: usize| {
                let o = o.min(bytes.len());
                o + bytes[..o].iter().filter(|&&b| b >= 0x80).count()
            };
            Diagnostic::at(&file, &text, Some(map(span.start)..map(span.end)), msg)
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
