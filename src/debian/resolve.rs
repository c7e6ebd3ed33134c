//! The dependency closure of a set of root packages, chosen the way apt would on an empty
//! system, and deterministically (the same index and roots give the same list, sorted by name).
//!
//! The rules:
//! - `Pre-Depends` and `Depends` are followed; `Recommends` and `Suggests` are not (a toolchain
//!   root holds what the compiler needs to run, nothing it merely likes).
//! - In `a | b`, alternatives are tried in order: the first one that the packages chosen so far
//!   already satisfy, or that some package in the index can satisfy, is taken.
//! - A name is satisfied by a real package of that name (the highest version meeting the
//!   constraint), else by a package that `Provides` it; a versioned dependency needs a versioned
//!   provide (Policy §7.5). Among several providers the first by name wins, so the choice never
//!   depends on index order.
//! - Architecture: a package of the requested architecture or `all`. `name:any` needs a
//!   `Multi-Arch: allowed` package; `name:native` and `name:<arch>` need that architecture.
//! - One version per package: once chosen, a package is never swapped for another version (no
//!   backtracking). A later dependency it cannot meet is an error naming both chains.
//! - `Essential: yes` packages are not implied (dpkg assumes them on a full system, but a
//!   toolchain root is not one) unless asked with [`Request::with_essential`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::index::{Index, MultiArch, Package};
use super::relation::Relation;
use super::version::Version;

#[derive(Clone, Debug)]
pub struct Request {
    pub roots: Vec<String>,
    pub architecture: String,
    pub with_essential: bool,
    /// Packages taken alone: chosen as usual, their own dependencies not followed. For a
    /// package whose files a toolchain needs only part of, such as `libwxgtk3.2-dev`, which
    /// holds wx-config and `setup.h` for wxBase but depends on all of GTK.
    pub without_dependencies: Vec<String>,
}

/// How a package came to be chosen: root first, each step the package that depends on the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain(pub Vec<String>);

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("no package named {name:?} in the index{}", suggest(suggestions))]
    Unknown {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("{chain} needs {dependency}, which nothing satisfies ({available})")]
    Unsatisfiable {
        chain: Chain,
        dependency: String,
        available: String,
    },
    #[error("{chain} needs {dependency}, but {chosen} was already chosen for {chosen_by}")]
    Conflict {
        chain: Chain,
        dependency: String,
        chosen: String,
        chosen_by: Chain,
    },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("; nearest: {}", names.join(", "))
    }
}

/// Up to three names of the index closest to `name`, nearest first, ties by name.
pub fn nearest_names(index: &Index, name: &str) -> Vec<String> {
    let limit = 2.max(name.len() / 3);
    let mut scored: Vec<(usize, &str)> = index
        .names()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

struct Chosen<'a> {
    package: &'a Package,
    chain: Chain,
}

struct Resolver<'a> {
    index: &'a Index,
    arch: String,
    chosen: BTreeMap<String, Chosen<'a>>,
    queue: VecDeque<String>,
    alone: Vec<String>,
}

impl<'a> Resolver<'a> {
    fn arch_fits(&self, p: &Package, r: &Relation) -> bool {
        if p.architecture != self.arch && p.architecture != "all" {
            return false;
        }
        match r.arch_qualifier.as_deref() {
            None => true,
            Some("any") => p.multi_arch == MultiArch::Allowed,
            Some("native") => true,
            Some(q) => p.architecture == q || p.architecture == "all",
        }
    }

    /// A chosen package satisfying `r`, if any.
    fn satisfied(&self, r: &Relation) -> bool {
        if let Some(c) = self.chosen.get(&r.name) {
            if self.arch_fits(c.package, r) && r.accepts(Some(&c.package.version)) {
                return true;
            }
        }
        self.index
            .providers(&r.name)
            .any(|(p, v)| self.is_chosen(p) && self.arch_fits(p, r) && r.accepts(v))
    }

    fn is_chosen(&self, p: &Package) -> bool {
        self.chosen
            .get(&p.name)
            .is_some_and(|c| std::ptr::eq(c.package, p))
    }

    /// The package to choose for `r`: a real one first, else a provider; never a second version
    /// of a package already chosen.
    fn candidate(&self, r: &Relation) -> Option<&'a Package> {
        let allowed = |p: &Package| match self.chosen.get(&p.name) {
            Some(c) => std::ptr::eq(c.package, p),
            None => true,
        };
        let index = self.index;
        if let Some(p) = index
            .versions(&r.name)
            .iter()
            .find(|p| allowed(p) && self.arch_fits(p, r) && r.accepts(Some(&p.version)))
        {
            return Some(p);
        }
        index
            .providers(&r.name)
            .find(|(p, v)| allowed(p) && self.arch_fits(p, r) && r.accepts(*v))
            .map(|(p, _)| p)
    }

    fn choose(&mut self, p: &'a Package, chain: Chain) {
        if !self.chosen.contains_key(&p.name) {
            self.chosen
                .insert(p.name.clone(), Chosen { package: p, chain });
            self.queue.push_back(p.name.clone());
        }
    }

    fn label(p: &Package) -> String {
        format!("{} {}", p.name, p.version)
    }

    fn visit(&mut self, name: &str) -> Result<(), ResolveError> {
        if self.alone.iter().any(|a| a == name) {
            return Ok(());
        }
        let chosen = &self.chosen[name];
        let (package, chain) = (chosen.package, chosen.chain.clone());
        for dep in package.pre_depends.iter().chain(&package.depends) {
            let alternatives: Vec<&Relation> =
                dep.iter().filter(|r| r.applies_on(&self.arch)).collect();
            if alternatives.is_empty() || alternatives.iter().any(|r| self.satisfied(r)) {
                continue;
            }
            let mut next = chain.clone();
            if let Some(p) = alternatives.iter().find_map(|r| self.candidate(r)) {
                next.0.push(Self::label(p));
                self.choose(p, next);
                continue;
            }
            let dependency = alternatives
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            if let Some(c) = alternatives.iter().find_map(|r| self.chosen.get(&r.name)) {
                return Err(ResolveError::Conflict {
                    chain,
                    dependency,
                    chosen: Self::label(c.package),
                    chosen_by: c.chain.clone(),
                });
            }
            return Err(ResolveError::Unsatisfiable {
                chain,
                dependency,
                available: self.available(&alternatives),
            });
        }
        Ok(())
    }

    /// What the index has under the names asked for, for the error message.
    fn available(&self, alternatives: &[&Relation]) -> String {
        let mut seen = Vec::new();
        for r in alternatives {
            for p in self.index.versions(&r.name) {
                seen.push(format!("{} {} ({})", p.name, p.version, p.architecture));
            }
            for (p, v) in self.index.providers(&r.name) {
                let v = v.map_or(String::new(), |v: &Version| format!(" = {v}"));
                seen.push(format!("{} provided by {}{v}", r.name, p.name));
            }
        }
        if seen.is_empty() {
            "the index has no package or provider of that name".to_string()
        } else {
            format!("the index has {}", seen.join(", "))
        }
    }
}

/// Resolves the closure of `request.roots`; the result is sorted by package name.
pub fn resolve<'a>(index: &'a Index, request: &Request) -> Result<Vec<&'a Package>, ResolveError> {
    let mut r = Resolver {
        index,
        arch: request.architecture.clone(),
        chosen: BTreeMap::new(),
        queue: VecDeque::new(),
        alone: request.without_dependencies.clone(),
    };
    let mut roots: Vec<&str> = request.roots.iter().map(String::as_str).collect();
    if request.with_essential {
        roots.extend(index.essential().map(|p| p.name.as_str()));
    }
    // Sorted, so the closure depends on the set of roots, not the order they were written in.
    roots.sort_unstable();
    roots.dedup();
    for name in roots {
        let rel = Relation {
            name: name.to_string(),
            arch_qualifier: None,
            constraint: None,
            architectures: Vec::new(),
        };
        if r.satisfied(&rel) {
            continue;
        }
        let Some(p) = r.candidate(&rel) else {
            return Err(ResolveError::Unknown {
                name: name.to_string(),
                suggestions: nearest_names(index, name),
            });
        };
        r.choose(p, Chain(vec![Resolver::label(p)]));
        // Each root's closure is completed before the next root is looked at, so a root's
        // choices depend only on the roots sorted before it.
        while let Some(next) = r.queue.pop_front() {
            r.visit(&next)?;
        }
    }
    Ok(r.chosen.into_values().map(|c| c.package).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::index::parse_packages;
    use std::sync::Arc;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}Filename: pool/{name}_{version}.deb\nSize: 1\n\
             SHA256: {}\n\n",
            "0".repeat(64)
        )
    }

    fn index(stanzas: &[String]) -> Index {
        let text: String = stanzas.concat();
        Index::new(
            parse_packages(&text, "Packages", &Arc::from("http://m"), &Arc::from("s")).unwrap(),
        )
    }

    fn names(index: &Index, roots: &[&str]) -> Result<Vec<String>, ResolveError> {
        let req = Request {
            roots: roots.iter().map(|s| s.to_string()).collect(),
            architecture: "amd64".into(),
            with_essential: false,
            without_dependencies: Vec::new(),
        };
        Ok(resolve(index, &req)?
            .into_iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect())
    }

    #[test]
    fn follows_depends_and_pre_depends_and_picks_the_highest_version() {
        let i = index(&[
            stanza(
                "app",
                "1",
                "Pre-Depends: libz\nDepends: libc (>= 2)\nRecommends: docs\n",
            ),
            stanza("libc", "2.1", ""),
            stanza("libc", "3", ""),
            stanza("libz", "1", "Depends: libc\n"),
            stanza("docs", "1", ""),
        ]);
        assert_eq!(names(&i, &["app"]).unwrap(), ["app=1", "libc=3", "libz=1"]);
    }

    #[test]
    fn an_upper_bound_picks_an_older_version() {
        let i = index(&[
            stanza("app", "1", "Depends: libc (<< 3~)\n"),
            stanza("libc", "2.1", ""),
            stanza("libc", "3~rc1", ""),
            stanza("libc", "3", ""),
        ]);
        assert_eq!(names(&i, &["app"]).unwrap(), ["app=1", "libc=2.1"]);
    }

    #[test]
    fn alternatives_take_the_first_satisfiable_unless_one_is_already_chosen() {
        let i = index(&[
            stanza("app", "1", "Depends: missing | second | third\n"),
            stanza("second", "1", ""),
            stanza("third", "1", ""),
            stanza("other", "1", "Depends: third\n"),
        ]);
        assert_eq!(names(&i, &["app"]).unwrap(), ["app=1", "second=1"]);
        // Roots are taken in sorted order: `app` has chosen `second` before `other` needs `third`.
        assert_eq!(
            names(&i, &["other", "app"]).unwrap(),
            ["app=1", "other=1", "second=1", "third=1"]
        );
        let j = index(&[
            stanza("aaa", "1", "Depends: third\n"),
            stanza("app", "1", "Depends: second | third\n"),
            stanza("second", "1", ""),
            stanza("third", "1", ""),
        ]);
        assert_eq!(
            names(&j, &["app", "aaa"]).unwrap(),
            ["aaa=1", "app=1", "third=1"]
        );
    }

    #[test]
    fn virtual_packages_resolve_through_provides() {
        let i = index(&[
            stanza("app", "1", "Depends: c-compiler, libfoo-abi (>= 2)\n"),
            stanza("zcc", "1", "Provides: c-compiler\n"),
            stanza("gcc", "1", "Provides: c-compiler\n"),
            stanza("foo-old", "1", "Provides: libfoo-abi\n"),
            stanza("foo-new", "1", "Provides: libfoo-abi (= 2)\n"),
        ]);
        assert_eq!(
            names(&i, &["app"]).unwrap(),
            ["app=1", "foo-new=1", "gcc=1"]
        );
    }

    #[test]
    fn architecture_qualifiers_and_restrictions() {
        let i = index(&[
            stanza(
                "app",
                "1",
                "Depends: perl:any, tool:any | tool2, only-i386 [i386]\n",
            ),
            stanza("perl", "5", "Multi-Arch: allowed\n"),
            stanza("tool", "1", "Multi-Arch: foreign\n"),
            stanza("tool2", "1", ""),
            "Package: arm\nVersion: 1\nArchitecture: arm64\nFilename: f\nSize: 1\nSHA256: "
                .to_string()
                + &"0".repeat(64)
                + "\n\n",
        ]);
        assert_eq!(names(&i, &["app"]).unwrap(), ["app=1", "perl=5", "tool2=1"]);
        assert!(matches!(
            names(&i, &["arm"]),
            Err(ResolveError::Unknown { .. })
        ));
    }

    #[test]
    fn essential_packages_only_when_asked() {
        let i = index(&[
            stanza("app", "1", ""),
            stanza("base-files", "12", "Essential: yes\n"),
        ]);
        assert_eq!(names(&i, &["app"]).unwrap(), ["app=1"]);
        let req = Request {
            roots: vec!["app".into()],
            architecture: "amd64".into(),
            with_essential: true,
            without_dependencies: Vec::new(),
        };
        assert_eq!(resolve(&i, &req).unwrap().len(), 2);
    }

    #[test]
    fn a_package_taken_alone_brings_none_of_its_dependencies() {
        let i = index(&[
            stanza("wx-dev", "3", "Depends: gtk (>= 3), base\n"),
            stanza("gtk", "3", "Depends: x11\n"),
            stanza("x11", "1", ""),
            stanza("base", "3", ""),
            stanza("app", "1", "Depends: wx-dev, base\n"),
        ]);
        let req = |alone: &[&str]| Request {
            roots: vec!["app".into()],
            architecture: "amd64".into(),
            with_essential: false,
            without_dependencies: alone.iter().map(|s| s.to_string()).collect(),
        };
        let names = |r: Request| -> Vec<String> {
            resolve(&i, &r)
                .unwrap()
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(names(req(&[])), ["app", "base", "gtk", "wx-dev", "x11"]);
        // base stays: app needs it for itself.
        assert_eq!(names(req(&["wx-dev"])), ["app", "base", "wx-dev"]);
    }

    #[test]
    fn unknown_roots_get_the_nearest_names() {
        let i = index(&[
            stanza("g++-12", "1", ""),
            stanza("gcc-12", "1", ""),
            stanza("gnat-12", "1", ""),
        ]);
        let e = names(&i, &["g++12"]).unwrap_err();
        assert_eq!(
            e,
            ResolveError::Unknown {
                name: "g++12".into(),
                suggestions: vec!["g++-12".into()]
            }
        );
        assert_eq!(
            e.to_string(),
            "no package named \"g++12\" in the index; nearest: g++-12"
        );
    }

    #[test]
    fn an_unsatisfiable_dependency_names_the_chain() {
        let i = index(&[
            stanza("app", "1", "Depends: mid\n"),
            stanza("mid", "2", "Depends: libfoo (>= 3)\n"),
            stanza("libfoo", "2.9", ""),
        ]);
        let e = names(&i, &["app"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app 1 -> mid 2 needs libfoo (>= 3), which nothing satisfies (the index has libfoo 2.9 (amd64))"
        );
    }

    #[test]
    fn a_conflicting_second_constraint_names_both_chains() {
        let i = index(&[
            stanza("a", "1", "Depends: lib (= 1)\n"),
            stanza("b", "1", "Depends: lib (>= 2)\n"),
            stanza("lib", "1", ""),
            stanza("lib", "2", ""),
        ]);
        let e = names(&i, &["a", "b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "b 1 needs lib (>= 2), but lib 1 was already chosen for a 1 -> lib 1"
        );
    }

    #[test]
    fn output_does_not_depend_on_root_order() {
        let i = index(&[
            stanza("x", "1", "Depends: z | y\n"),
            stanza("y", "1", ""),
            stanza("z", "1", ""),
            stanza("w", "1", "Depends: y\n"),
        ]);
        assert_eq!(
            names(&i, &["x", "w"]).unwrap(),
            names(&i, &["w", "x"]).unwrap()
        );
    }
}
