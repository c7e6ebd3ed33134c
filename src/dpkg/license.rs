//! License short names from machine-readable (DEP-5) copyright files. Free-form copyright files
//! say nothing parseable, so they yield `None` rather than a guess.

use std::path::Path;

use crate::debian::control::parse_lenient as parse_paragraphs;

/// The `License:` short name of the `Files: *` paragraph, else of the first `Files` paragraph.
pub fn short_name(root: &Path, package: &str) -> Option<String> {
    let text =
        std::fs::read_to_string(root.join("usr/share/doc").join(package).join("copyright")).ok()?;
    if !text.starts_with("Format:") {
        return None;
    }
    let paras = parse_paragraphs(&text);
    let files: Vec<_> = paras.iter().filter(|p| p.get("Files").is_some()).collect();
    let pick = files
        .iter()
        .find(|p| {
            p.get("Files")
                .is_some_and(|f| f.split_whitespace().any(|w| w == "*"))
        })
        .or(files.first())?;
    let first_line = pick.get("License")?.lines().next()?.trim();
    (!first_line.is_empty()).then(|| first_line.to_string())
}
