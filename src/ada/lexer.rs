//! Ada tokens, as far as reading a compilation unit's structure needs them.
//!
//! The lexer works on bytes: GNAT reads Latin-1 by default, so a source need not be UTF-8, and
//! every byte at or above 0x80 is taken as part of an identifier (Latin-1 letters and UTF-8
//! sequences alike). Comments (`--` to the end of the line) are dropped; string literals (with
//! `""` for a quote) and character literals are kept whole, so a keyword inside one is never
//! mistaken for structure. An apostrophe after a name, `)` or `all` is an attribute tick
//! (`X'Length`, `T'(…)`), anywhere else it opens a character literal (`'a'`, `'''`). Numbers are
//! consumed loosely (`16#FF#`, `1_000.0E+3`): their value never matters here.

use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A reserved word or identifier, lowercased (ASCII only: Ada is case-insensitive).
    Word(String),
    /// A string literal; operator symbols (`"+"`) are strings too.
    Str,
    Char,
    Number,
    /// Any other delimiter: `(`, `)`, `;`, `.`, `,`, `'`, `=>` as two tokens, and so on.
    Punct(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offsets in the source.
    pub span: Range<usize>,
}

impl Token {
    pub fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Word(x) if x == w)
    }

    pub fn is_punct(&self, c: u8) -> bool {
        self.tok == Tok::Punct(c)
    }

    pub fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// A lexical error: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub span: Range<usize>,
    pub message: String,
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Every token of `src`, or the first lexical error.
pub fn tokens(src: &[u8]) -> Result<Vec<Token>, LexError> {
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        let start = i;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b'-' && src.get(i + 1) == Some(&b'-') {
            while i < src.len() && src[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = if b.is_ascii_alphabetic() || b >= 0x80 {
            while i < src.len() && ident_byte(src[i]) {
                i += 1;
            }
            Tok::Word(String::from_utf8_lossy(&src[start..i]).to_ascii_lowercase())
        } else if b.is_ascii_digit() {
            i = number_end(src, i);
            Tok::Number
        } else if b == b'"' {
            i = string_end(src, i)?;
            Tok::Str
        } else if b == b'\'' && !after_name(out.last()) && src.get(i + 2) == Some(&b'\'') {
            i += 3;
            Tok::Char
        } else {
            i += 1;
            Tok::Punct(b)
        };
        out.push(Token {
            tok,
            span: start..i,
        });
    }
    Ok(out)
}

/// After these an apostrophe is an attribute tick, not a character literal.
fn after_name(prev: Option<&Token>) -> bool {
    match prev.map(|t| &t.tok) {
        Some(Tok::Word(w)) => !is_reserved_before_char(w) || w == "all",
        Some(Tok::Punct(b')')) | Some(Tok::Str) => true,
        _ => false,
    }
}

/// Reserved words after which a character literal may follow (`when 'a' =>`, `return 'x'`):
/// an apostrophe there cannot be an attribute tick.
fn is_reserved_before_char(w: &str) -> bool {
    matches!(
        w,
        "when"
            | "return"
            | "and"
            | "or"
            | "xor"
            | "not"
            | "in"
            | "then"
            | "else"
            | "elsif"
            | "mod"
            | "rem"
            | "abs"
            | "is"
            | "of"
            | "range"
            | "loop"
            | "if"
            | "case"
            | "while"
            | "until"
            | "delay"
            | "do"
            | "begin"
            | "exit"
            | "raise"
            | "with"
            | "use"
            | "others"
            | "at"
            | "digits"
            | "delta"
            | "new"
            | "all"
    )
}

fn number_end(src: &[u8], mut i: usize) -> usize {
    while i < src.len() {
        let b = src[i];
        let exponent_sign = (b == b'+' || b == b'-')
            && matches!(src.get(i.wrapping_sub(1)), Some(b'e' | b'E'))
            && src.get(i + 1).is_some_and(u8::is_ascii_digit);
        let point = b == b'.' && src.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'#' || point || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// The end of the string literal opening at `start`; strings cannot span lines.
fn string_end(src: &[u8], start: usize) -> Result<usize, LexError> {
    let mut i = start + 1;
    loop {
        match src.get(i) {
            Some(b'"') if src.get(i + 1) == Some(&b'"') => i += 2,
            Some(b'"') => return Ok(i + 1),
            Some(b'\n') | None => {
                return Err(LexError {
                    span: start..i,
                    message: "string literal is not closed on this line".into(),
                })
            }
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<String> {
        tokens(src.as_bytes())
            .unwrap()
            .into_iter()
            .map(|t| match t.tok {
                Tok::Word(w) => w,
                Tok::Str => "<str>".into(),
                Tok::Char => "<char>".into(),
                Tok::Number => "<num>".into(),
                Tok::Punct(b) => (b as char).to_string(),
            })
            .collect()
    }

    #[test]
    fn comments_strings_and_characters_hide_their_contents() {
        assert_eq!(
            words("X := \"package body \"\"Y\"\" is\"; -- separate (P)\nC := ';';"),
            ["x", ":", "=", "<str>", ";", "c", ":", "=", "<char>", ";"]
        );
    }

    #[test]
    fn apostrophe_after_a_name_is_an_attribute() {
        assert_eq!(
            words("A'Length T'('x') F (X)'Img"),
            ["a", "'", "length", "t", "'", "(", "<char>", ")", "f", "(", "x", ")", "'", "img"]
        );
        assert_eq!(words("when ''' =>"), ["when", "<char>", "=", ">"]);
    }

    #[test]
    fn numbers_are_single_tokens() {
        assert_eq!(
            words("16#FF#  1_000.5E-3 1..10"),
            ["<num>", "<num>", "<num>", ".", ".", "<num>"]
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_latin1_is_accepted() {
        let mut src = b"PACKAGE Body Caf".to_vec();
        src.push(0xE9); // é in Latin-1, not valid UTF-8
        assert_eq!(tokens(&src).unwrap().len(), 3);
        assert!(tokens(&src).unwrap()[1].is_word("body"));
    }

    #[test]
    fn an_unclosed_string_is_an_error_at_its_quote() {
        let e = tokens(b"X : String := \"abc\n").unwrap_err();
        assert_eq!(e.span.start, 14);
    }
}
