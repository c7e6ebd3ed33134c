//! Which platforms a workspace builds for: `platforms = ["linux/amd64", "linux/arm64"]` at the
//! top of its `kiln.toml` (the file `[remote]` lives in), default `linux/amd64` alone. `kiln
//! build --platform` picks from them or names one of its own.

use std::path::Path;

use crate::platform::Platform;
use crate::recipe::reader::{Source, TableReader};
use crate::recipe::Diagnostic;

/// The file the workspace's settings live in.
pub const FILE: &str = "kiln.toml";

/// The platforms of the workspace at `root`, sorted with the default first, each once.
pub fn read(root: &Path) -> Result<Vec<Platform>, Diagnostic> {
    let text = match std::fs::read_to_string(root.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![Platform::default()]),
        Err(e) => return Err(Diagnostic::at(FILE, "", None, format!("cannot read: {e}"))),
    };
    parse(Source {
        file: FILE.to_string(),
        text,
    })
}

fn parse(src: Source) -> Result<Vec<Platform>, Diagnostic> {
    let doc = src.parse()?;
    // Only `platforms` is read here; the other keys are `remote::settings`' to check.
    let r = TableReader::new(&src, doc.as_table(), "", &["platforms", "remote"]);
    let given = r.strings("platforms")?;
    if given.is_empty() {
        if let Some(span) = r.key_span("platforms") {
            return Err(src.error(Some(span), "`platforms` must name at least one platform"));
        }
        return Ok(vec![Platform::default()]);
    }
    let mut out = Vec::new();
    for p in given {
        let platform = Platform::parse(&p.value).map_err(|e| src.error(p.span, e.to_string()))?;
        out.push(platform);
    }
    out.sort_by_key(|p| (!p.is_default(), *p));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Platform>, Diagnostic> {
        parse(Source {
            file: FILE.into(),
            text: text.into(),
        })
    }

    #[test]
    fn default_first_each_once_and_a_typo_points_at_its_value() {
        assert_eq!(parse_text("").unwrap(), [Platform::LINUX_AMD64]);
        assert_eq!(
            parse_text("platforms = [\"linux/arm64\", \"linux/amd64\", \"linux/arm64\"]\n")
                .unwrap(),
            [Platform::LINUX_AMD64, Platform::LINUX_ARM64]
        );
        let e = parse_text("platforms = [\"linux/arm46\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kiln.toml:1:14"), "{e}");
        assert!(e.contains("unknown platform \"linux/arm46\""), "{e}");
        let e = parse_text("platforms = []\n").unwrap_err().to_string();
        assert!(e.contains("at least one"), "{e}");
    }
}
