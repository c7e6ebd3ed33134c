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
//! - Several architectures (a cross root): a root `name:arch` is that architecture's package,
//!   and every package's dependencies are resolved for its own architecture (`all` counts as
//!   the requested, native one), as dpkg's multiarch does. A native `Multi-Arch: foreign`
//!   package satisfies a dependency of any architecture, and native packages are preferred
//!   when both would do, since a root's tools run on this machine. A package name may then
//!   be chosen once per architecture (`libc6:amd64` and `libc6:arm64`).
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
    /// `name` is the root as written, `name:arch` for another architecture's package.
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

/// A root as written: `name`, or `name:arch` for a package of another architecture (the
/// target's libraries in a cross root, `libc6-dev:arm64`), as apt spells it.
pub fn split_root(root: &str) -> (&str, Option<&str>) {
    match root.rsplit_once(':') {
        Some((name, arch)) if !name.is_empty() && !arch.is_empty() => (name, Some(arch)),
        _ => (root, None),
    }
}

/// The architectures whose indexes `request` needs: its own, then every other one a root
/// names (sorted).
pub fn architectures(request: &Request) -> Vec<String> {
    let mut foreign: Vec<String> = request
        .roots
        .iter()
        .filter_map(|r| split_root(r).1)
        .filter(|a| *a != request.architecture)
        .map(str::to_string)
        .collect();
    foreign.sort();
    foreign.dedup();
    let mut all = vec![request.architecture.clone()];
    all.extend(foreign);
    all
}

/// Chosen packages by (name, architecture): a cross root has `libc6` twice.
type Key = (String, String);

fn key(p: &Package) -> Key {
    (p.name.clone(), p.architecture.clone())
}

struct Resolver<'a> {
    index: &'a Index,
    /// The native architecture: the one the root's programs run on, and that of `all`
    /// packages' dependencies.
    native: String,
    chosen: BTreeMap<Key, Chosen<'a>>,
    queue: VecDeque<Key>,
    alone: Vec<String>,
}

impl<'a> Resolver<'a> {
    /// Whether `p` can satisfy `r` for a package of architecture `arch` (Debian's multiarch
    /// rules: the same architecture or `all`; a native `Multi-Arch: foreign` package for any
    /// architecture; `:any` a `Multi-Arch: allowed` one).
    fn arch_fits(&self, p: &Package, r: &Relation, arch: &str) -> bool {
        let same = p.architecture == arch || p.architecture == "all";
        let native = p.architecture == self.native || p.architecture == "all";
        match r.arch_qualifier.as_deref() {
            None => same || (native && p.multi_arch == MultiArch::Foreign),
            Some("any") => (same || native) && p.multi_arch == MultiArch::Allowed,
            Some("native") => native,
            Some(q) => p.architecture == q || p.architecture == "all",
        }
    }

    /// A chosen package satisfying `r`, if any.
    fn satisfied(&self, r: &Relation, arch: &str) -> bool {
        let real = self
            .chosen
            .range((r.name.clone(), String::new())..)
            .take_while(|((name, _), _)| name == &r.name)
            .any(|(_, c)| {
                self.arch_fits(c.package, r, arch) && r.accepts(Some(&c.package.version))
            });
        real || self
            .index
            .providers(&r.name)
            .any(|(p, v)| self.is_chosen(p) && self.arch_fits(p, r, arch) && r.accepts(v))
    }

    fn is_chosen(&self, p: &Package) -> bool {
        self.chosen
            .get(&key(p))
            .is_some_and(|c| std::ptr::eq(c.package, p))
    }

    /// The package to choose for `r` (needed by a package of `arch`): a real one first, else a
    /// provider; native ones before others (a cross root's tools must run); never a second
    /// version of a package already chosen.
    fn candidate(&self, r: &Relation, arch: &str) -> Option<&'a Package> {
        let allowed = |p: &Package| match self.chosen.get(&key(p)) {
            Some(c) => std::ptr::eq(c.package, p),
            None => true,
        };
        let index = self.index;
        let native_first = [true, false];
        for native_only in native_first {
            let pass = |p: &Package| {
                !native_only || p.architecture == self.native || p.architecture == "all"
            };
            if let Some(p) = index.versions(&r.name).iter().find(|p| {
                pass(p) && allowed(p) && self.arch_fits(p, r, arch) && r.accepts(Some(&p.version))
            }) {
                return Some(p);
            }
        }
        for native_only in native_first {
            let pass = |p: &Package| {
                !native_only || p.architecture == self.native || p.architecture == "all"
            };
            if let Some((p, _)) = index
                .providers(&r.name)
                .find(|(p, v)| pass(p) && allowed(p) && self.arch_fits(p, r, arch) && r.accepts(*v))
            {
                return Some(p);
            }
        }
        None
    }

    fn choose(&mut self, p: &'a Package, chain: Chain) {
        let k = key(p);
        if !self.chosen.contains_key(&k) {
            self.chosen.insert(k.clone(), Chosen { package: p, chain });
            self.queue.push_back(k);
        }
    }

    /// `name version`, with `:arch` when the package is of neither the native architecture
    /// nor `all`.
    fn label(&self, p: &Package) -> String {
        if p.architecture == self.native || p.architecture == "all" {
            format!("{} {}", p.name, p.version)
        } else {
            format!("{}:{} {}", p.name, p.architecture, p.version)
        }
    }

    /// The architecture a package's dependencies are resolved for (`all` counts as native).
    fn dependency_arch(&self, p: &Package) -> String {
        if p.architecture == "all" {
            self.native.clone()
        } else {
            p.architecture.clone()
        }
    }

    fn visit(&mut self, k: &Key) -> Result<(), ResolveError> {
        let chosen = &self.chosen[k];
        let (package, chain) = (chosen.package, chosen.chain.clone());
        let taken_alone = self.alone.iter().any(|a| match split_root(a) {
            (name, Some(q)) => name == package.name && q == package.architecture,
            (name, None) => name == package.name && self.dependency_arch(package) == self.native,
        });
        if taken_alone {
            return Ok(());
        }
        let arch = self.dependency_arch(package);
        for dep in package.pre_depends.iter().chain(&package.depends) {
            let alternatives: Vec<&Relation> = dep.iter().filter(|r| r.applies_on(&arch)).collect();
            if alternatives.is_empty() || alternatives.iter().any(|r| self.satisfied(r, &arch)) {
                continue;
            }
            let mut next = chain.clone();
            if let Some(p) = alternatives.iter().find_map(|r| self.candidate(r, &arch)) {
                next.0.push(self.label(p));
                self.choose(p, next);
                continue;
            }
            let dependency = alternatives
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            let dependency = if arch == self.native {
                dependency
            } else {
                format!("{dependency} for {arch}")
            };
            if let Some(c) = alternatives.iter().find_map(|r| {
                self.chosen
                    .range((r.name.clone(), String::new())..)
                    .take_while(|((name, _), _)| name == &r.name)
                    .map(|(_, c)| c)
                    .next()
            }) {
                return Err(ResolveError::Conflict {
                    chain,
                    dependency,
                    chosen: self.label(c.package),
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

/// Resolves the closure of `request.roots`; the result is sorted by package name, then
/// architecture. A root `name:arch` is a package of that architecture, and its dependencies
/// resolve against that architecture's packages (or native `Multi-Arch: foreign` ones).
pub fn resolve<'a>(index: &'a Index, request: &Request) -> Result<Vec<&'a Package>, ResolveError> {
    let mut r = Resolver {
        index,
        native: request.architecture.clone(),
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
    for root in roots {
        let (name, qualifier) = split_root(root);
        let arch = qualifier.unwrap_or(&request.architecture).to_string();
        let rel = Relation {
            name: name.to_string(),
            arch_qualifier: qualifier.map(str::to_string),
            constraint: None,
            architectures: Vec::new(),
        };
        if r.satisfied(&rel, &arch) {
            continue;
        }
        let Some(p) = r.candidate(&rel, &arch) else {
            return Err(ResolveError::Unknown {
                name: root.to_string(),
                suggestions: nearest_names(index, name),
            });
        };
        let label = r.label(p);
        r.choose(p, Chain(vec![label]));
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

    fn arch_stanza(name: &str, arch: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: 1\nArchitecture: {arch}\n{extra}Filename: pool/{name}_{arch}.deb\nSize: 1\n\
             SHA256: {}\n\n",
            "0".repeat(64)
        )
    }

    fn cross_index() -> Index {
        index(&[
            arch_stanza("cross-g++", "amd64", "Depends: libc6, binutils-cross\n"),
            arch_stanza("binutils-cross", "amd64", ""),
            arch_stanza("libc6", "amd64", "Multi-Arch: same\n"),
            arch_stanza("libc6", "arm64", "Multi-Arch: same\n"),
            arch_stanza(
                "libc6-dev",
                "amd64",
                "Multi-Arch: same\nDepends: libc6, libc-dev-bin\n",
            ),
            arch_stanza(
                "libc6-dev",
                "arm64",
                "Multi-Arch: same\nDepends: libc6, libc-dev-bin, headers\n",
            ),
            arch_stanza("libc-dev-bin", "amd64", "Multi-Arch: foreign\n"),
            arch_stanza("libc-dev-bin", "arm64", "Multi-Arch: foreign\n"),
            arch_stanza("headers", "all", "Depends: libc6\n"),
            arch_stanza("libonly-amd64", "amd64", ""),
            arch_stanza(
                "libwx",
                "arm64",
                "Multi-Arch: same\nDepends: libonly-amd64\n",
            ),
        ])
    }

    fn cross(roots: &[&str]) -> Result<Vec<String>, ResolveError> {
        let req = Request {
            roots: roots.iter().map(|s| s.to_string()).collect(),
            architecture: "amd64".into(),
            with_essential: false,
            without_dependencies: Vec::new(),
        };
        Ok(resolve(&cross_index(), &req)?
            .into_iter()
            .map(|p| format!("{}:{}", p.name, p.architecture))
            .collect())
    }

    #[test]
    fn a_target_architecture_root_resolves_against_its_own_packages_and_native_foreign_ones() {
        assert_eq!(
            cross(&["cross-g++", "libc6-dev:arm64"]).unwrap(),
            [
                "binutils-cross:amd64",
                "cross-g++:amd64",
                // `all` packages' dependencies are native ones.
                "headers:all",
                // A Multi-Arch: foreign tool is taken native: it must run on this machine.
                "libc-dev-bin:amd64",
                "libc6:amd64",
                "libc6:arm64",
                "libc6-dev:arm64",
            ]
        );
        assert_eq!(
            architectures(&Request {
                roots: vec!["a:arm64".into(), "b".into(), "c:arm64".into()],
                architecture: "amd64".into(),
                with_essential: false,
                without_dependencies: vec![],
            }),
            ["amd64", "arm64"]
        );
    }

    #[test]
    fn a_target_package_without_its_dependency_for_that_architecture_names_both() {
        let e = cross(&["libwx:arm64"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "libwx:arm64 1 needs libonly-amd64 for arm64, which nothing satisfies (the index has libonly-amd64 1 (amd64))"
        );
        let e = cross(&["libnone:arm64"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no package named \"libnone:arm64\""),
            "{e}"
        );
        // A root of another architecture taken alone brings nothing else.
        let req = Request {
            roots: vec!["libc6-dev:arm64".into()],
            architecture: "amd64".into(),
            with_essential: false,
            without_dependencies: vec!["libc6-dev:arm64".into()],
        };
        assert_eq!(resolve(&cross_index(), &req).unwrap().len(), 1);
    }
}
