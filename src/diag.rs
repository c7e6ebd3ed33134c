//! Positioned diagnostics for recipe and toolchain files.
//!
//! Every error in a user-written file names `FILE:LINE:COLUMN`, shows the offending line with a
//! caret under the culprit and, where a name was misspelt, suggests the nearest valid one.

use std::fmt;
use std::ops::Range;

/// An error located in a workspace file (path relative to the workspace root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub source_line: String,
    pub width: usize,
    pub help: Option<String>,
}

impl Diagnostic {
    /// Locates `span` (byte offsets) in `text`.
    pub fn at(
        file: &str,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let span = span.unwrap_or(0..0);
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let source_line = text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = span.end.clamp(start, line_end);
        let width = text[start..end].chars().count().max(1);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            source_line,
            width,
            help: None,
        }
    }

    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{:gutter$} | {}{}", "", pad, "^".repeat(self.width))?;
        if let Some(help) = &self.help {
            write!(f, "\n{:gutter$} = help: {}", "", help)?;
        }
        Ok(())
    }
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 2) && *d < c.len() && *d < word.len())
        .min_by_key(|(d, c)| (*d, c.to_string()))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_and_caret() {
        let text = "kind = \"service\"\nsrcs = [\"a.cpp\"]\n";
        let d = Diagnostic::at("recipes/a.toml", text, Some(17..21), "unknown key `srcs`")
            .with_help(did_you_mean("srcs", ["sources", "deps"]));
        let shown = d.to_string();
        assert!(
            shown.starts_with("recipes/a.toml:2:1: unknown key `srcs`\n"),
            "{shown}"
        );
        assert!(
            shown.contains("2 | srcs = [\"a.cpp\"]\n  | ^^^^"),
            "{shown}"
        );
        assert!(
            shown.ends_with("= help: did you mean `sources`?"),
            "{shown}"
        );
    }

    #[test]
    fn suggests_only_plausible_names() {
        assert_eq!(
            did_you_mean("widget-cor", ["widget-core", "orb-core"]).unwrap(),
            "did you mean `widget-core`?"
        );
        assert_eq!(did_you_mean("zzzzzz", ["sources", "deps"]), None);
    }
}
