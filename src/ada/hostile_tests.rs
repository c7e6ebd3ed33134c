//! The Ada reader on hostile input: every prefix of real sources, random byte damage, random
//! token soup and pathological nesting. Nothing may panic, every span must lie inside the input
//! and be renderable as a diagnostic. The generator is a fixed-seed xorshift, so a failure reproduces exactly.

use super::lexer::tokens;
use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Reads `src` every way kiln does and checks the invariants callers rely on.
fn check(src: &[u8]) {
    if let Ok(toks) = tokens(src) {
        let mut last_end = 0;
        for t in &toks {
            assert!(
                t.span.start >= last_end && t.span.start < t.span.end && t.span.end <= src.len(),
                "token span {:?} out of order or bounds in {:?}",
                t.span,
                String::from_utf8_lossy(src)
            );
            last_end = t.span.end;
        }
    }
    match parse(src) {
        Ok(u) => {
            assert!(u.name_span.start <= u.name_span.end && u.name_span.end <= src.len());
            if u.kind != UnitKind::NoBody {
                assert!(!u.name.is_empty());
                // The file name derived from any accepted name is a plain file name.
                let stem = default_file_stem(&u.name);
                assert!(!stem.contains('/') && !stem.is_empty(), "{stem:?}");
            }
        }
        Err(e) => {
            assert!(
                e.span.start <= e.span.end && e.span.end <= src.len(),
                "error span {:?} outside {} bytes: {}",
                e.span,
                src.len(),
                e.message
            );
            let d = diagnostic(Path::new("x.adb"), src, e.span, e.message);
            assert!(d.line >= 1 && d.column >= 1);
            let _ = d.to_string();
        }
    }
}

const SOURCES: &[&str] = &[
    include_str!("../../fixtures/ada-units/ledger/src/ledger-accounts.adb"),
    include_str!("../../fixtures/ada-units/ledger/src/ledger-accounts-report.adb"),
    include_str!("../../fixtures/ada-units/ledger/src/ledger-generic_max.ads"),
    include_str!("../../fixtures/ada-units/ledger/src/ledger-fees.adb"),
    include_str!("../../fixtures/ada-units/ledger/src/ledger-amount_queue.ads"),
    include_str!("../../fixtures/engine/shapes/generic_stack.ads"),
];

#[test]
fn every_prefix_of_real_sources_reads_without_panicking() {
    for src in SOURCES {
        for end in 0..=src.len() {
            check(&src.as_bytes()[..end]);
        }
    }
}

#[test]
fn damaged_sources_read_without_panicking() {
    let mut rng = Rng(0x5eed_ada0_1234_5678);
    let specials: &[u8] = b"\"'-;()[]#.\n\0\xff\xc3\xa9";
    for round in 0..3000 {
        let mut src = SOURCES[round % SOURCES.len()].as_bytes().to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(src.len());
            match rng.below(4) {
                0 => src[at] = specials[rng.below(specials.len())],
                1 => src[at] = rng.next() as u8,
                2 => src.insert(at, specials[rng.below(specials.len())]),
                _ => {
                    let len = rng.below(16).min(src.len() - at);
                    src.drain(at..at + len);
                }
            }
            if src.is_empty() {
                src.push(b';');
            }
        }
        check(&src);
    }
}

#[test]
fn token_soup_reads_without_panicking() {
    const WORDS: &[&str] = &[
        "package",
        "body",
        "is",
        "end",
        "begin",
        "separate",
        "generic",
        "with",
        "use",
        "limited",
        "private",
        "procedure",
        "function",
        "return",
        "new",
        "renames",
        "pragma",
        "No_Body",
        "record",
        "null",
        "loop",
        "if",
        "case",
        "select",
        "do",
        "declare",
        "task",
        "protected",
        "entry",
        "access",
        "type",
        "all",
        "P",
        "Q.R",
        "(",
        ")",
        "[",
        "]",
        ";",
        ",",
        ".",
        "'",
        "<>",
        "\"s\"",
        "'c'",
        "42",
        "--c\n",
        "\"",
        "\n",
    ];
    let mut rng = Rng(0xada_f00d);
    for _ in 0..5000 {
        let n = rng.below(40);
        let src: Vec<String> = (0..n)
            .map(|_| WORDS[rng.below(WORDS.len())].to_string())
            .collect();
        check(src.join(" ").as_bytes());
    }
}

#[test]
fn pathological_nesting_and_lengths_read_without_panicking() {
    let deep_parens = format!(
        "package P is X : T := {}0{};",
        "(".repeat(100_000),
        ")".repeat(99_999)
    );
    let deep_blocks = format!(
        "procedure P is begin {} null; {} end P;",
        "begin ".repeat(50_000),
        "end; ".repeat(50_000)
    );
    let many_withs = format!("{} package P is end P;", "with A.B.C;".repeat(50_000));
    let long_name = format!("package {} is end;", vec!["A"; 50_000].join("."));
    let unclosed = format!(
        "package body P is{}",
        " procedure Q is begin".repeat(50_000)
    );
    // No recursion anywhere: nesting costs a Vec entry, not a stack frame.
    for src in [deep_parens, deep_blocks, many_withs, long_name, unclosed] {
        check(src.as_bytes());
    }
    assert_eq!(
        parse(
            format!(
                "procedure P is begin {}null;{} end P;",
                "begin ".repeat(10),
                "end;".repeat(10)
            )
            .as_bytes()
        )
        .unwrap()
        .kind,
        UnitKind::Body
    );
}

#[test]
fn nul_bytes_and_invalid_utf8_are_ordinary_bytes() {
    check(b"\0\0\0");
    check(b"package \xff\xfe is end \xff\xfe;");
    check(b"with \xc3; package P is end P;");
    let e = parse(b"\x80\x80 \"\xc3").unwrap_err();
    let d = diagnostic(Path::new("x.adb"), b"\x80\x80 \"\xc3", e.span, e.message);
    assert_eq!((d.line, d.column), (1, 4));
}
