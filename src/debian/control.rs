//! deb822 control data: the format of `Packages`, `Release`, a .deb's `control` file and apt's
//! `.sources` files. A file is a list of paragraphs separated by blank lines; a paragraph is a
//! list of `Field: value` lines, and a line starting with a space or tab continues the previous
//! field (a continuation line of only ` .` is an empty line). Field names are case-insensitive.
//! Lines starting with `#` are comments (allowed in apt's files, absent from the archive's).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paragraph {
    /// 1-based line of the paragraph's first field, for messages.
    pub line: usize,
    fields: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}:{line}: {problem}")]
pub struct ControlError {
    /// What was being read: a URL, a file name, `control of FILE.deb`.
    pub origin: String,
    pub line: usize,
    pub problem: String,
}

impl Paragraph {
    /// The value of a field (case-insensitive name), continuation lines joined with `\n`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Display for Paragraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.fields {
            let mut lines = v.split('\n');
            writeln!(f, "{k}: {}", lines.next().unwrap_or(""))?;
            for l in lines {
                writeln!(f, " {}", if l.is_empty() { "." } else { l })?;
            }
        }
        Ok(())
    }
}

/// Parses every paragraph of `text`; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Paragraph>, ControlError> {
    parse_with(text, origin, false)
}

/// Like [`parse`], passing over lines that are not `Field: value` or a continuation instead of
/// failing: for files kiln only reads for information and did not fetch itself (the host's
/// dpkg status, packages' copyright files), where a malformed line must not hide the rest.
pub fn parse_lenient(text: &str) -> Vec<Paragraph> {
    parse_with(text, "", true).unwrap_or_default()
}

fn parse_with(text: &str, origin: &str, lenient: bool) -> Result<Vec<Paragraph>, ControlError> {
    let mut out = Vec::new();
    let mut current: Option<Paragraph> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            out.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.as_mut().and_then(|p| p.fields.last_mut()) else {
                if lenient {
                    continue;
                }
                return Err(ControlError {
                    origin: origin.to_string(),
                    line: line_no,
                    problem: "continuation line without a field before it".into(),
                });
            };
            let cont = line.trim();
            value.push('\n');
            if cont != "." {
                value.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            if lenient {
                continue;
            }
            return Err(ControlError {
                origin: origin.to_string(),
                line: line_no,
                problem: format!("expected `Field: value`, found {line:?}"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            if lenient {
                continue;
            }
            return Err(ControlError {
                origin: origin.to_string(),
                line: line_no,
                problem: format!("{name:?} is not a field name"),
            });
        }
        let p = current.get_or_insert_with(|| Paragraph {
            line: line_no,
            fields: Vec::new(),
        });
        p.fields.push((name.to_string(), value.trim().to_string()));
    }
    out.extend(current);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lenient_reader_passes_over_what_the_strict_one_refuses() {
        let text = " orphan continuation\nPackage: a\nnot a field\nBad name: x\nVersion: 1\n\nPackage: b\n";
        assert!(parse(text, "status").is_err());
        let paras = parse_lenient(text);
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("package"), Some("a"));
        assert_eq!(paras[0].get("Version"), Some("1"));
        assert_eq!(paras[0].get("Bad name"), None);
        assert_eq!(paras[1].get("Package"), Some("b"));
    }

    #[test]
    fn reads_paragraphs_continuations_and_comments() {
        let text =
            "# comment\nPackage: a\nDescription: short\n long\n .\n more\n\n\nPACKAGE: b\r\n";
        let ps = parse(text, "Packages").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].line, 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].get("Description"), Some("short\nlong\n\nmore"));
        assert_eq!(ps[1].get("Package"), Some("b"));
        assert_eq!(ps[1].line, 9);
    }

    #[test]
    fn empty_first_line_keeps_its_list_lines() {
        let ps = parse("SHA256:\n abc 1 main/x\n def 2 main/y\n", "Release").unwrap();
        assert_eq!(ps[0].get("SHA256"), Some("\nabc 1 main/x\ndef 2 main/y"));
    }

    #[test]
    fn bad_lines_are_positioned() {
        let e = parse("Package: a\nno colon here\n", "http://m/Packages").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://m/Packages:2: expected `Field: value`, found \"no colon here\""
        );
        let e = parse(" leading\n", "f").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn display_round_trips() {
        let ps = parse("Package: a\nDescription: x\n y\n .\n", "f").unwrap();
        assert_eq!(parse(&ps[0].to_string(), "f").unwrap(), ps);
    }
}
