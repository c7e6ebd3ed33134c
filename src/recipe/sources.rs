//! Finding a recipe's files: paths checked to stay inside the workspace, directories that must
//! exist, `sources` globs expanded (sorted, de-duplicated, each glob matching something), and
//! for Ada the compilation units among them.

use std::path::{Component, Path, PathBuf};

use super::diag::Diagnostic;
use super::reader::{Source, Spanned, TableReader};

/// Checks that a recipe path is relative and stays inside the workspace.
pub(super) fn workspace_path(src: &Source, s: &Spanned<String>) -> Result<PathBuf, Diagnostic> {
    let p = Path::new(&s.value);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(src.error(
            s.span.clone(),
            format!(
                "path \"{}\" must be relative to the workspace and stay inside it",
                s.value
            ),
        ));
    }
    Ok(p.components().collect())
}

pub(super) fn dirs(r: &TableReader, root: &Path, key: &str) -> Result<Vec<PathBuf>, Diagnostic> {
    r.strings(key)?
        .into_iter()
        .map(|s| {
            let p = workspace_path(r.source(), &s)?;
            if !root.join(&p).is_dir() {
                return Err(r.source().error(
                    s.span.clone(),
                    format!("directory \"{}\" does not exist", s.value),
                ));
            }
            Ok(p)
        })
        .collect()
}

pub(super) fn expand_globs(
    r: &TableReader,
    root: &Path,
    key: &str,
) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out = Vec::new();
    for pat in r.strings(key)? {
        workspace_path(r.source(), &pat)?;
        let full = root.join(&pat.value);
        let entries = glob::glob(&full.to_string_lossy()).map_err(|e| {
            r.source().error(
                pat.span.clone(),
                format!("invalid glob \"{}\": {}", pat.value, e.msg),
            )
        })?;
        let mut matched = 0;
        for entry in entries.flatten() {
            if entry.is_file() {
                if let Ok(rel) = entry.strip_prefix(root) {
                    out.push(rel.to_path_buf());
                    matched += 1;
                }
            }
        }
        if matched == 0 {
            return Err(r.source().error(
                pat.span.clone(),
                format!("glob \"{}\" matches no file", pat.value),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The Ada files among `files` that are compilation units of their own ([`crate::ada`]);
/// errors inside an Ada file point there, the others at the recipe's `sources` or
/// `source_dirs`.
pub(super) fn ada_units(
    src: &Source,
    r: &TableReader,
    root: &Path,
    files: &[PathBuf],
) -> Result<Vec<PathBuf>, Diagnostic> {
    use crate::ada::DiscoverError;
    crate::ada::compilation_units(root, files).map_err(|e| {
        let at = r.key_span("sources").or(r.key_span("source_dirs"));
        match e {
            DiscoverError::Source(d) => *d,
            DiscoverError::Read { path, source } => src.error(
                at,
                format!("cannot read Ada source `{}`: {source}", path.display()),
            ),
            other => src.error(at, other.to_string()),
        }
    })
}
