//! Package relationship fields (Debian Policy §7.1): `Depends`, `Pre-Depends` and `Provides`.
//!
//! `a (>= 1.2) | b:any [amd64 !i386] <!nocheck>, c` is a list of dependencies separated by
//! commas, each a list of alternatives separated by `|`. An alternative names a package, an
//! optional architecture qualifier (`:any`, `:native`, `:amd64`), an optional version constraint
//! and, in source packages only, architecture and build-profile restrictions. The obsolete `<`
//! and `>` mean `<=` and `>=`, as in dpkg.

use std::fmt;

use super::version::{Version, VersionError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Earlier,
    EarlierOrEqual,
    Exactly,
    LaterOrEqual,
    Later,
}

impl Op {
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let o = have.cmp(want);
        match self {
            Op::Earlier => o == Less,
            Op::EarlierOrEqual => o != Greater,
            Op::Exactly => o == Equal,
            Op::LaterOrEqual => o != Less,
            Op::Later => o == Greater,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierOrEqual => "<=",
            Op::Exactly => "=",
            Op::LaterOrEqual => ">=",
            Op::Later => ">>",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture name, from `name:qualifier`.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Op, Version)>,
    /// `[amd64 !i386]`: (negated, architecture).
    pub architectures: Vec<(bool, String)>,
}

impl Relation {
    /// Whether this alternative applies on `arch` (its `[...]` restriction list, if any).
    pub fn applies_on(&self, arch: &str) -> bool {
        if self.architectures.is_empty() {
            return true;
        }
        let negated = self.architectures.iter().all(|(neg, _)| *neg);
        if negated {
            !self.architectures.iter().any(|(_, a)| a == arch)
        } else {
            self.architectures.iter().any(|(_, a)| a == arch)
        }
    }

    /// Whether a package (or a provided name) at `version` satisfies the constraint.
    /// An unversioned provide (`None`) satisfies only unversioned relations.
    pub fn accepts(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some((op, want)), Some(have)) => op.holds(have, want),
            (Some(_), None) => false,
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.symbol())?;
        }
        Ok(())
    }
}

/// One comma-separated entry: alternatives in order of preference.
pub type Dependency = Vec<Relation>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("{text:?}: {problem}")]
    Syntax { text: String, problem: String },
    #[error("{text:?}: bad version")]
    Version {
        text: String,
        #[source]
        source: VersionError,
    },
}

/// Parses a whole field value. Empty entries (`a, , b`, a trailing comma) are skipped, as dpkg
/// tolerates them.
pub fn parse_field(value: &str) -> Result<Vec<Dependency>, RelationError> {
    let mut out = Vec::new();
    for entry in value.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in entry.split('|') {
            alternatives.push(parse_relation(alt)?);
        }
        out.push(alternatives);
    }
    Ok(out)
}

fn syntax(text: &str, problem: &str) -> RelationError {
    RelationError::Syntax {
        text: text.trim().to_string(),
        problem: problem.to_string(),
    }
}

fn parse_relation(text: &str) -> Result<Relation, RelationError> {
    let mut rest = text.trim();
    // Build profiles (`<!nocheck>`) only matter to source packages; they never restrict what
    // a binary package needs at run time, so they are dropped.
    // They come last, so only a `<` after every `)` and `]` starts one (`(<< 1)` does not).
    let tail = rest.rfind([')', ']']).map_or(0, |i| i + 1);
    if let Some(i) = rest[tail..].find('<') {
        rest = rest[..tail + i].trim_end();
    }
    let mut architectures = Vec::new();
    if let Some(i) = rest.find('[') {
        let Some(j) = rest[i..].find(']') else {
            return Err(syntax(text, "`[` without `]`"));
        };
        for a in rest[i + 1..i + j].split_whitespace() {
            match a.strip_prefix('!') {
                Some(a) => architectures.push((true, a.to_string())),
                None => architectures.push((false, a.to_string())),
            }
        }
        rest = rest[..i].trim_end();
    }
    let mut constraint = None;
    if let Some(i) = rest.find('(') {
        let Some(inner) = rest[i + 1..].strip_suffix(')') else {
            return Err(syntax(text, "`(` without `)` at the end"));
        };
        let inner = inner.trim();
        let (op, version) = [
            ("<<", Op::Earlier),
            ("<=", Op::EarlierOrEqual),
            (">=", Op::LaterOrEqual),
            (">>", Op::Later),
            ("=", Op::Exactly),
            ("<", Op::EarlierOrEqual),
            (">", Op::LaterOrEqual),
        ]
        .iter()
        .find_map(|(s, op)| inner.strip_prefix(s).map(|v| (*op, v.trim())))
        .ok_or_else(|| syntax(text, "expected one of << <= = >= >> before the version"))?;
        let version = version.parse().map_err(|source| RelationError::Version {
            text: text.trim().to_string(),
            source,
        })?;
        constraint = Some((op, version));
        rest = rest[..i].trim_end();
    }
    let (name, arch_qualifier) = match rest.split_once(':') {
        Some((n, q)) => (n, Some(q.to_string())),
        None => (rest, None),
    };
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c);
    if name.is_empty() || !name.chars().all(valid) {
        return Err(syntax(text, "expected a package name"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch_qualifier,
        constraint,
        architectures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alternatives_constraints_and_qualifiers() {
        let deps =
            parse_field("libc6 (>= 2.34), gcc-12-base (= 12.2.0-14) | foo:any, perl:any,").unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[0][0].name, "libc6");
        assert_eq!(
            deps[0][0].constraint,
            Some((Op::LaterOrEqual, "2.34".parse().unwrap()))
        );
        assert_eq!(deps[1].len(), 2);
        assert_eq!(deps[1][0].constraint.as_ref().unwrap().0, Op::Exactly);
        assert_eq!(deps[1][1].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(deps[2][0].to_string(), "perl:any");
    }

    #[test]
    fn all_operators_hold_by_debian_ordering() {
        let r = |s: &str| parse_field(s).unwrap().remove(0).remove(0);
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(r("a (<< 1.0)").accepts(Some(&v("1.0~rc1"))));
        assert!(!r("a (<< 1.0)").accepts(Some(&v("1.0"))));
        assert!(r("a (<= 1.0)").accepts(Some(&v("1.0-0"))));
        assert!(r("a (= 1:1.0)").accepts(Some(&v("1:1.0"))));
        assert!(!r("a (= 1:1.0)").accepts(Some(&v("1.0"))));
        assert!(r("a (>= 2.36)").accepts(Some(&v("2.36-9"))));
        assert!(!r("a (>> 2.36-9)").accepts(Some(&v("2.36-9"))));
        assert!(r("a (>> 2.36-9)").accepts(Some(&v("2.36-9+deb12u1"))));
        // dpkg's obsolete spellings.
        assert!(r("a (< 1.0)").accepts(Some(&v("1.0"))));
        assert!(r("a (> 1.0)").accepts(Some(&v("1.0"))));
        // An unversioned provide never satisfies a versioned dependency.
        assert!(!r("a (>= 1)").accepts(None));
        assert!(r("a").accepts(None));
    }

    #[test]
    fn architecture_lists_and_profiles() {
        let deps =
            parse_field("a [amd64 arm64] <!nocheck>, b [!amd64], c <cross>, d (< 1) <!x>").unwrap();
        assert!(deps[0][0].applies_on("amd64"));
        assert!(!deps[0][0].applies_on("i386"));
        assert!(!deps[1][0].applies_on("amd64"));
        assert!(deps[1][0].applies_on("i386"));
        assert_eq!(deps[2][0].name, "c");
        assert_eq!(
            deps[3][0].constraint.as_ref().unwrap().0,
            Op::EarlierOrEqual
        );
    }

    #[test]
    fn bad_syntax_is_named() {
        assert!(matches!(
            parse_field("a (>= 1"),
            Err(RelationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_field("a (~ 1)"),
            Err(RelationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_field("Big"),
            Err(RelationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_field("a (>= x)"),
            Err(RelationError::Version { .. })
        ));
    }
}
