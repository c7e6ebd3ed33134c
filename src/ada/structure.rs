//! Where a compilation unit ends, from the nesting of Ada's `… end` constructs.
//!
//! Only a file holding a second unit needs this (GNAT's default naming scheme allows one unit per
//! file), so the rule errs on the side of not finding an end: an unbalanced or unfamiliar text
//! yields `None` and is left to the compiler, which reports it far better than kiln could.
//!
//! Constructs closed by `end` open a frame: a package, task or protected spec or body (at its
//! `is`, unless `is new` or `is separate` follows), a subprogram or entry body (at its `is`, unless
//! `new`, `separate`, `abstract`, `null`, `(`, `[` or `<>` follows: instantiations, stubs, expression
//! functions and defaults), `declare`, and `begin`, `record`, `loop`, `if`, `case`, `select` and
//! `do` (not after `end` or, for `record`, after `null`). A `begin` right inside a package,
//! subprogram or block that has not begun yet continues that frame instead of opening one.
//! Everything inside parentheses or brackets is skipped: if, case, quantified and declare
//! expressions, parameter lists and aggregates never close a frame there. Formal subprograms and
//! packages (`with procedure`, `with package`) and access-to-subprogram types open nothing.

use super::lexer::{Tok, Token};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Package,
    Subprogram,
    TaskLike,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A declarative region that a `begin` continues.
    Declarative {
        begun: bool,
    },
    Block,
}

/// Index just past the `;` that ends the unit whose first keyword is `toks[start]`, or `None`
/// when the text never closes it.
pub fn unit_end(toks: &[Token], start: usize) -> Option<usize> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut parens = 0usize;
    let mut prev: Option<&str> = None;
    for (i, t) in toks.iter().enumerate().skip(start) {
        match &t.tok {
            Tok::Punct(b'(' | b'[') => {
                parens += 1;
                continue;
            }
            Tok::Punct(b')' | b']') => {
                parens = parens.saturating_sub(1);
                continue;
            }
            _ if parens > 0 => continue,
            Tok::Punct(b';') => {
                pending = None;
                if stack.is_empty() {
                    return Some(i + 1);
                }
            }
            Tok::Word(w) => {
                let after_end = prev == Some("end");
                match w.as_str() {
                    "end" => {
                        stack.pop()?;
                    }
                    "package" if prev != Some("with") => pending = Some(Pending::Package),
                    "procedure" | "function" | "entry"
                        if !matches!(prev, Some("with" | "access")) =>
                    {
                        pending = Some(Pending::Subprogram)
                    }
                    "task" | "protected" => pending = Some(Pending::TaskLike),
                    "renames" => pending = None,
                    "is" => {
                        let next = toks.get(i + 1);
                        let next_word = next.and_then(Token::word);
                        let opens = match pending.take() {
                            None => false,
                            Some(Pending::Package) => {
                                !matches!(next_word, Some("new" | "separate"))
                            }
                            Some(Pending::TaskLike) => next_word != Some("separate"),
                            Some(Pending::Subprogram) => {
                                !matches!(next_word, Some("new" | "separate" | "abstract" | "null"))
                                    && !next.is_some_and(|n| {
                                        n.is_punct(b'(') || n.is_punct(b'[') || n.is_punct(b'<')
                                    })
                            }
                        };
                        if opens {
                            stack.push(Frame::Declarative { begun: false });
                        }
                    }
                    "declare" => stack.push(Frame::Declarative { begun: false }),
                    "begin" => match stack.last_mut() {
                        Some(Frame::Declarative { begun }) if !*begun => *begun = true,
                        _ => stack.push(Frame::Block),
                    },
                    "record" if !matches!(prev, Some("null" | "end")) => stack.push(Frame::Block),
                    "loop" | "if" | "case" | "select" if !after_end => stack.push(Frame::Block),
                    "do" => stack.push(Frame::Block),
                    _ => {}
                }
            }
            _ => {}
        }
        prev = t.word();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ada::lexer::tokens;

    /// The text after the first unit of `src`, or None if it never ends.
    fn rest(src: &str) -> Option<String> {
        let toks = tokens(src.as_bytes()).unwrap();
        let end = unit_end(&toks, 0)?;
        Some(match toks.get(end) {
            Some(t) => src[t.span.start..].to_string(),
            None => String::new(),
        })
    }

    #[test]
    fn declarations_end_at_their_semicolon() {
        assert_eq!(rest("procedure P (X : Integer); X").unwrap(), "X");
        assert_eq!(
            rest("package I is new G (T => (if A then B else C)); Y").unwrap(),
            "Y"
        );
        assert_eq!(rest("function F return Integer renames G; Z").unwrap(), "Z");
    }

    #[test]
    fn a_package_body_with_nested_bodies_ends_at_its_own_end() {
        let src = "package body P is
   type R is record A : Integer; end record;
   type N is null record;
   package I is new G (Integer);
   procedure Q is separate;
   function E return Integer is (case X is when 1 => 2, when others => 3);
   procedure N is null;
   procedure S (F : access procedure (X : Integer)) is
      T : access function return Integer;
   begin
      for J in 1 .. 3 loop
         if J = 2 then exit; elsif J = 1 then null; end if;
         case J is when others => null; end case;
      end loop;
      B : declare X : Integer; begin null; end B;
      begin null; exception when others => null; end;
      return;
   end S;
   task body T is begin accept A do null; end A; select accept B; or terminate; end select; end T;
   protected body Pr is entry E when True is begin null; end E; end Pr;
begin
   null;
end P;
package Next is end Next;";
        assert_eq!(rest(src).unwrap(), "package Next is end Next;");
    }

    #[test]
    fn generic_formals_and_specs_do_not_open_frames() {
        let src = "package G is
   generic
      with procedure Visit (X : Integer) is <>;
      with function Eq (L, R : Integer) return Boolean is Default_Eq;
      with package P is new H (<>);
   procedure Each;
   task type W is new I with entry Go; end W;
   protected type M is procedure Set; private V : Integer := 0; end M;
   type Acc is access procedure;
   function Sum return Integer is [for I in 1 .. 3 => I]'Reduce (\"+\", 0);
end G; X";
        assert_eq!(rest(src).unwrap(), "X");
    }

    #[test]
    fn an_unbalanced_text_has_no_end() {
        assert_eq!(rest("package body P is procedure Q is begin null;"), None);
        assert_eq!(rest("end; end;"), None);
    }
}
