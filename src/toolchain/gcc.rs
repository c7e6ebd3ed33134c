//! g++: dependency discovery from make-style depfiles (`-MD -MF`).

/// The prerequisites listed in a depfile written by `gcc -MD -MF x.d -MT x.o`.
///
/// Handles line continuations, escaped spaces (`\ `), `$$` and several rules in one file.
pub fn parse_depfile(text: &str) -> Vec<String> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let Some(colon) = find_rule_colon(line) else {
            continue;
        };
        let mut cur = String::new();
        let mut chars = line[colon + 1..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    cur.push(' ');
                    chars.next();
                }
                '$' if chars.peek() == Some(&'$') => {
                    cur.push('$');
                    chars.next();
                }
                ' ' | '\t' => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                _ => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The colon that ends the targets: the first `:` followed by whitespace or end of line.
fn find_rule_colon(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    (0..b.len())
        .find(|&i| b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depfile_with_continuations_and_escapes() {
        let text = "obj.o: src/a.cpp include/a.h \\\n /usr/include/wx-3.2/wx/string.h \\\n dir\\ with\\ space/b.h\n\ninclude/a.h:\n";
        assert_eq!(
            parse_depfile(text),
            vec![
                "src/a.cpp",
                "include/a.h",
                "/usr/include/wx-3.2/wx/string.h",
                "dir with space/b.h"
            ]
        );
    }
}
