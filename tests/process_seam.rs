//! The house rule "every process kiln starts goes through `exec::Runner`", checked over src/:
//! outside src/exec/ no code but test code may name `std::process::Command`, so a sandbox or
//! remote executor that takes over `exec` takes over every process. Test code is an item under
//! `#[cfg(test)]` (a `mod tests { … }` block, or a whole file declared `#[cfg(test)] mod x;`).
//! Comments, strings and character literals are skipped, so prose about the rule is no breach.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `src` with comments, string and character literals blanked (same length, newlines kept), so
/// brace matching and searching see only code.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let start = i;
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (rest.starts_with(b"r\"") || rest.starts_with(b"r#"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat(b'#').take(hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i = (i + close.len()).min(b.len());
        } else if rest[0] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{7f}'), not a lifetime ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(2).position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = std::str::from_utf8(&rest[1..rest.len().min(5)])
                    .ok()
                    .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(2)]).ok())
                    .and_then(|s| s.chars().next());
                ch.map(char::len_utf8)
                    .filter(|&n| rest.get(1 + n) == Some(&b'\''))
                    .map(|n| n + 2)
            };
            i += len.unwrap_or(1);
        } else {
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Byte ranges of `code` that are test code, and the names of file modules declared
/// `#[cfg(test)] mod name;` (whose whole file is test code).
fn test_regions(code: &str) -> (Vec<(usize, usize)>, Vec<String>) {
    let b = code.as_bytes();
    let (mut regions, mut files) = (Vec::new(), Vec::new());
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]") {
        let start = from + at;
        let body = start + "#[cfg(test)]".len();
        from = body;
        let Some(open) = code[body..].find(['{', ';']).map(|p| body + p) else {
            break;
        };
        if b[open] == b';' {
            let item = code[body..open].trim();
            if let Some(name) = item.rsplit(' ').next().filter(|_| item.contains("mod ")) {
                files.push(name.to_string());
            }
            continue;
        }
        let mut depth = 0;
        let mut end = b.len();
        for (j, &c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        regions.push((start, end));
        from = end;
    }
    (regions, files)
}

/// Lines (1-based) of non-test code in `src` that name `std::process::Command`, directly or
/// through a `use std::process::{…, Command, …}` group.
fn breaches(src: &str) -> Vec<usize> {
    let code = code_only(src);
    let (tests, _) = test_regions(&code);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("process::") {
        let hit = from + at;
        from = hit + "process::".len();
        let after = &code[from..];
        let names_command = if after.starts_with('{') {
            let group = &after[..after.find('}').unwrap_or(after.len())];
            group
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == "Command")
        } else {
            after.starts_with("Command")
                && !after["Command".len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        };
        if names_command && !tests.iter().any(|&(s, e)| s <= hit && hit < e) {
            found.push(code[..hit].matches('\n').count() + 1);
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files `#[cfg(test)] mod name;` in `file` refers to.
fn test_module_files(file: &Path, names: &[String]) -> Vec<PathBuf> {
    let stem = file.file_stem().unwrap();
    let dir = if stem == "mod" || stem == "lib" || stem == "main" {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    names
        .iter()
        .flat_map(|n| [dir.join(format!("{n}.rs")), dir.join(n).join("mod.rs")])
        .collect()
}

#[test]
fn no_process_is_started_outside_the_exec_seam() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "expected kiln's sources, found {}",
        files.len()
    );
    let mut test_only = BTreeSet::new();
    for f in &files {
        let (_, names) = test_regions(&code_only(&std::fs::read_to_string(f).unwrap()));
        test_only.extend(test_module_files(f, &names));
    }
    let exec = src.join("exec");
    let mut problems = Vec::new();
    for f in files
        .iter()
        .filter(|f| !f.starts_with(&exec) && !test_only.contains(*f))
    {
        for line in breaches(&std::fs::read_to_string(f).unwrap()) {
            problems.push(format!(
                "{}:{line}",
                f.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "std::process::Command outside src/exec/ (start processes with an exec::Command and the \
         caller's &dyn exec::Runner instead):\n  {}",
        problems.join("\n  ")
    );
    // The test modules the sources declare were found, so skipping them skipped something real.
    assert!(
        test_only.contains(&src.join("build/tests.rs")),
        "{test_only:?}"
    );
}

#[test]
fn the_check_sees_each_spelling_and_spares_tests_comments_and_strings() {
    let src = r##"use std::process::Command;
use std::process::{ExitCode, Stdio};
use std::process::{self, Command as Cmd, Stdio};
fn f() { let _ = std::process::Command::new("x"); }
fn g() -> std::process::ExitCode { todo!() }
// std::process::Command in a comment
/* and std::process::Command in a block */
const S: &str = "std::process::Command { '}' }";
const R: &str = r#"process::Command"#;
fn h<'a>(x: &'a str) -> char { let _ = '}'; 'x' }
#[cfg(test)]
mod tests {
    fn t() { let s = "}"; std::process::Command::new("true"); }
}
fn after() { let _ = process::Command::new("y"); }
"##;
    assert_eq!(breaches(src), vec![1, 3, 4, 15]);
    let (_, files) = test_regions(&code_only(
        "#[cfg(test)]\nmod tests;\n#[cfg(test)]\npub mod scripted;\n",
    ));
    assert_eq!(files, ["tests", "scripted"]);
}
