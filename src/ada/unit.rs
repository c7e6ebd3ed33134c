//! What one Ada source file declares: the header of its compilation unit (RM 10.1.1).
//!
//! ```text
//! context   { with N {, N}; | limited [private] with …; | private with …; | use [all] [type] …;
//!           | pragma P [(…)]; }
//! then one of
//!   pragma No_Body;                                  (alone: the file is a placeholder body)
//!   separate (Parent) procedure|function|package body|task body|protected body Name …
//!   [private] [generic {formal;}] package [body] Name …
//!   [private] [generic {formal;}] procedure|function Name … (; or renames or is new → a spec)
//! ```
//!
//! The rest of the unit is only scanned for where it ends ([`super::structure`]), so that a file
//! holding a second unit is reported; pragmas may follow a unit (`pragma Inline (P);`).

use std::ops::Range;

use super::lexer::{tokens, Tok, Token};
use super::structure::unit_end;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// A package or subprogram declaration, generic declaration, instantiation or renaming.
    Spec,
    /// A package or subprogram body: compiled on its own.
    Body,
    /// `separate (Parent) …`: compiled as part of its parent, never on its own.
    Subunit {
        parent: String,
        /// Where `Parent` is written in `separate (Parent)`.
        parent_span: Range<usize>,
    },
    /// `pragma No_Body;`: a body file that holds nothing, so the spec is compiled alone.
    NoBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub kind: UnitKind,
    /// The unit's full expanded name, lowercased (`orb_core.http`; a subunit's includes its
    /// parent: `p.hello`). Empty for `pragma No_Body`.
    pub name: String,
    /// Where the name (or the pragma) is written.
    pub name_span: Range<usize>,
    pub generic: bool,
}

/// Why a file does not hold exactly one readable compilation unit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Byte offsets in the source.
    pub span: Range<usize>,
    pub message: String,
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    /// The source's length: errors at the end of the file point there.
    len: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }

    fn peek_word(&self) -> Option<&'a str> {
        self.peek().and_then(Token::word)
    }

    fn peek_word_at(&self, ahead: usize) -> Option<&'a str> {
        self.toks.get(self.pos + ahead).and_then(Token::word)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn here(&self) -> Range<usize> {
        self.peek().map_or(self.len..self.len, |t| t.span.clone())
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the file".into(),
            Some(t) => match &t.tok {
                Tok::Word(w) => format!("`{w}`"),
                Tok::Str => "a string".into(),
                Tok::Char => "a character literal".into(),
                Tok::Number => "a number".into(),
                Tok::Punct(b) => format!("`{}`", *b as char),
            },
        }
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError {
            span: self.here(),
            message: format!("expected {expected}, found {}", self.found()),
        }
    }

    fn expect_punct(&mut self, c: u8) -> Result<(), ParseError> {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("`{}`", c as char)))
        }
    }

    fn identifier(&mut self) -> Result<(String, Range<usize>), ParseError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w),
                span,
            }) if !is_reserved(w) => {
                self.pos += 1;
                Ok((w.clone(), span.clone()))
            }
            Some(Token { tok: Tok::Str, .. }) => Err(ParseError {
                span: self.here(),
                message: "an operator symbol as a library unit is not supported: GNAT's default \
                          naming scheme gives it no file name kiln can find"
                    .into(),
            }),
            _ => Err(self.error("a name")),
        }
    }

    /// `A.B.C`, lowercased, with the span from the first to the last identifier.
    fn name(&mut self) -> Result<(String, Range<usize>), ParseError> {
        let (mut name, mut span) = self.identifier()?;
        while self.peek().is_some_and(|t| t.is_punct(b'.')) {
            self.pos += 1;
            let (part, s) = self.identifier()?;
            name.push('.');
            name.push_str(&part);
            span.end = s.end;
        }
        Ok((name, span))
    }

    /// Skips to just past the next `;` outside parentheses.
    fn skip_statement(&mut self, start: Range<usize>) -> Result<(), ParseError> {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            self.pos += 1;
            match t.tok {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => depth = depth.saturating_sub(1),
                Tok::Punct(b';') if depth == 0 => return Ok(()),
                _ => {}
            }
        }
        Err(ParseError {
            span: start,
            message: "this declaration has no closing `;`".into(),
        })
    }

    /// Context items; returns the span of a `pragma No_Body` among them.
    fn context(&mut self) -> Result<Option<Range<usize>>, ParseError> {
        let mut no_body = None;
        loop {
            match (self.peek_word(), self.peek_word_at(1), self.peek_word_at(2)) {
                (Some("with"), ..)
                | (Some("limited"), Some("with"), _)
                | (Some("limited"), Some("private"), Some("with"))
                | (Some("private"), Some("with"), _) => {
                    while !self.eat_word("with") {
                        self.pos += 1;
                    }
                    self.name_list()?;
                }
                (Some("use"), ..) => {
                    self.pos += 1;
                    self.eat_word("all");
                    self.eat_word("type");
                    self.name_list()?;
                }
                (Some("pragma"), ..) => {
                    let start = self.here();
                    self.pos += 1;
                    let (name, _) = self.identifier()?;
                    self.skip_statement(start.clone())?;
                    if name == "no_body" {
                        let end = self.toks[self.pos - 1].span.end;
                        no_body = Some(start.start..end);
                    }
                }
                _ => return Ok(no_body),
            }
        }
    }

    fn name_list(&mut self) -> Result<(), ParseError> {
        loop {
            self.name()?;
            if self.peek().is_some_and(|t| t.is_punct(b',')) {
                self.pos += 1;
                continue;
            }
            return self.expect_punct(b';');
        }
    }

    /// Generic formal parameters, up to the `package`, `procedure` or `function` they belong to.
    fn generic_formals(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek_word() {
                Some("package" | "procedure" | "function") => return Ok(()),
                None => return Err(self.error("the generic unit after its formal parameters")),
                _ => self.skip_statement(self.here())?,
            }
        }
    }

    /// A subprogram after its name: a declaration ends at `;`, renames or is instantiated; a
    /// body says `is` and something else.
    fn subprogram_kind(&self) -> UnitKind {
        let mut depth = 0usize;
        for (i, t) in self.toks.iter().enumerate().skip(self.pos) {
            match &t.tok {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => depth = depth.saturating_sub(1),
                _ if depth > 0 => {}
                Tok::Punct(b';') => return UnitKind::Spec,
                Tok::Word(w) if w == "renames" => return UnitKind::Spec,
                Tok::Word(w) if w == "is" => {
                    return match self.toks.get(i + 1).and_then(Token::word) {
                        Some("new") => UnitKind::Spec,
                        _ => UnitKind::Body,
                    }
                }
                _ => {}
            }
        }
        UnitKind::Body
    }
}

/// Ada reserved words (RM 2.9) that can start or shape a unit header; none can name a unit.
fn is_reserved(w: &str) -> bool {
    matches!(
        w,
        "abort"
            | "abs"
            | "abstract"
            | "accept"
            | "access"
            | "aliased"
            | "all"
            | "and"
            | "array"
            | "at"
            | "begin"
            | "body"
            | "case"
            | "constant"
            | "declare"
            | "delay"
            | "delta"
            | "digits"
            | "do"
            | "else"
            | "elsif"
            | "end"
            | "entry"
            | "exception"
            | "exit"
            | "for"
            | "function"
            | "generic"
            | "goto"
            | "if"
            | "in"
            | "interface"
            | "is"
            | "limited"
            | "loop"
            | "mod"
            | "new"
            | "not"
            | "null"
            | "of"
            | "or"
            | "others"
            | "out"
            | "overriding"
            | "package"
            | "pragma"
            | "private"
            | "procedure"
            | "protected"
            | "raise"
            | "range"
            | "record"
            | "rem"
            | "renames"
            | "requeue"
            | "return"
            | "reverse"
            | "select"
            | "separate"
            | "some"
            | "subtype"
            | "synchronized"
            | "tagged"
            | "task"
            | "terminate"
            | "then"
            | "type"
            | "until"
            | "use"
            | "when"
            | "while"
            | "with"
            | "xor"
    )
}

/// Reads the compilation unit `src` holds.
pub fn parse(src: &[u8]) -> Result<Unit, ParseError> {
    let toks = tokens(src).map_err(|e| ParseError {
        span: e.span,
        message: e.message,
    })?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        len: src.len(),
    };
    let no_body = p.context()?;
    if let Some(span) = no_body {
        if p.peek().is_some() {
            return Err(ParseError {
                span: p.here(),
                message: "a file with `pragma No_Body` may hold nothing else but comments and \
                          pragmas"
                    .into(),
            });
        }
        return Ok(Unit {
            kind: UnitKind::NoBody,
            name: String::new(),
            name_span: span,
            generic: false,
        });
    }
    if p.peek().is_none() {
        return Err(p.error("a compilation unit"));
    }

    let unit = if p.eat_word("separate") {
        p.expect_punct(b'(')?;
        let (parent, parent_span) = p.name()?;
        p.expect_punct(b')')?;
        let start = p.pos;
        match p.peek_word() {
            Some("procedure" | "function") => p.pos += 1,
            Some("package" | "task" | "protected") if p.peek_word_at(1) == Some("body") => {
                p.pos += 2
            }
            _ => return Err(p.error("the subunit's body (`procedure`, `function`, `package body`, `task body` or `protected body`)")),
        }
        let (simple, span) = p.identifier()?;
        p.pos = start;
        Unit {
            name: format!("{parent}.{simple}"),
            kind: UnitKind::Subunit {
                parent,
                parent_span,
            },
            name_span: span,
            generic: false,
        }
    } else {
        p.eat_word("private");
        let generic = p.eat_word("generic");
        if generic {
            p.generic_formals()?;
        }
        let start = p.pos;
        let kind = match p.peek_word() {
            Some("package") => {
                p.pos += 1;
                if p.eat_word("body") {
                    UnitKind::Body
                } else {
                    UnitKind::Spec
                }
            }
            Some("procedure" | "function") => {
                p.pos += 1;
                UnitKind::Spec
            }
            _ => return Err(p.error(
                "a compilation unit (`package`, `procedure`, `function`, `generic` or `separate`)",
            )),
        };
        let (name, name_span) = p.name()?;
        let kind = if matches!(p.toks[start].word(), Some("procedure" | "function")) {
            p.subprogram_kind()
        } else {
            kind
        };
        p.pos = start;
        Unit {
            kind,
            name,
            name_span,
            generic,
        }
    };
    if let Some(end) = unit_end(&toks, p.pos) {
        p.pos = end;
        while p.peek_word() == Some("pragma") {
            let start = p.here();
            p.pos += 1;
            p.skip_statement(start)?;
        }
        if p.peek().is_some() {
            let second = matches!(
                p.peek_word(),
                Some(
                    "with"
                        | "use"
                        | "limited"
                        | "private"
                        | "separate"
                        | "generic"
                        | "package"
                        | "procedure"
                        | "function"
                )
            );
            let message = if second {
                format!(
                    "a second compilation unit after `{}`: GNAT's default naming scheme needs \
                     one unit per file (gnatchop splits such files)",
                    unit.name
                )
            } else {
                format!("{} after the end of `{}`", p.found(), unit.name)
            };
            return Err(ParseError {
                span: p.here(),
                message,
            });
        }
    }
    Ok(unit)
}
