//! Action-cache keys.
//!
//! A wrong key silently hands a user someone else's object file, so keys are assembled only
//! through [`KeyBuilder`], whose methods name each input, and every input class has a test that
//! fails if it were ignored (tests/engine). Nothing machine- or workspace-specific may enter a
//! key: paths are workspace-relative, the workspace's absolute path is written as `$WS`.

use crate::digest::{Digest, Hasher};

/// Bump when the meaning of a key changes; old entries then simply stop matching.
pub const KEY_VERSION: &str = "kiln-action-key-v2";

/// Environment variables that reach compilers and therefore the key. Everything else is removed
/// from the compiler's environment (PATH is passed for the driver to find `as` and `ld`; which
/// ones it finds is covered by the toolchain fingerprint's package versions).
pub const ENV_ALLOWLIST: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "LIBRARY_PATH",
    "COMPILER_PATH",
    "GCC_EXEC_PREFIX",
    "ADA_INCLUDE_PATH",
    "ADA_OBJECTS_PATH",
];

pub struct KeyBuilder {
    h: Hasher,
}

impl KeyBuilder {
    pub fn new(action_kind: &str) -> Self {
        let mut h = Hasher::new();
        h.update(format!("{KEY_VERSION}\nkind {action_kind}\n").as_bytes());
        KeyBuilder { h }
    }

    fn field(&mut self, tag: &str, value: &str) {
        // Length-prefixed so that no two different field lists hash alike.
        self.h
            .update(format!("{tag} {} {value}\n", value.len()).as_bytes());
    }

    pub fn toolchain(&mut self, fingerprint: &Digest) -> &mut Self {
        self.field("toolchain", &fingerprint.to_string());
        self
    }

    pub fn argv(&mut self, argv: &[String]) -> &mut Self {
        for a in argv {
            self.field("arg", a);
        }
        self
    }

    /// Values of [`ENV_ALLOWLIST`] in `env` (unset variables count too).
    pub fn env(&mut self, env: &[(String, Option<String>)]) -> &mut Self {
        for (k, v) in env {
            self.field("env", &format!("{k}={}", v.as_deref().unwrap_or("<unset>")));
        }
        self
    }

    pub fn input(&mut self, path: &str, digest: &Digest) -> &mut Self {
        self.field("input", &format!("{path} {digest}"));
        self
    }

    pub fn finish(&self) -> Digest {
        self.h.clone().finish()
    }
}

/// The current values of the allow-listed variables.
pub fn allowed_env() -> Vec<(String, Option<String>)> {
    ENV_ALLOWLIST
        .iter()
        .map(|k| (k.to_string(), std::env::var(k).ok()))
        .collect()
}

/// The full key: the base key plus the discovered dependencies and their digests.
pub fn full_key(base: &Digest, deps: &[(String, Digest)]) -> Digest {
    let mut h = Hasher::new();
    h.update(format!("{KEY_VERSION}\nbase {base}\n").as_bytes());
    for (p, d) in deps {
        h.update(format!("dep {} {p} {d}\n", p.len()).as_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyBuilder {
        let mut k = KeyBuilder::new("compile");
        k.toolchain(&Digest::of(b"tc"))
            .argv(&["g++".into(), "-c".into()])
            .input("a.cpp", &Digest::of(b"a"));
        k
    }

    #[test]
    fn every_input_class_changes_the_key() {
        let reference = base().finish();
        let mut k = KeyBuilder::new("compile");
        k.toolchain(&Digest::of(b"other"))
            .argv(&["g++".into(), "-c".into()])
            .input("a.cpp", &Digest::of(b"a"));
        assert_ne!(k.finish(), reference, "toolchain fingerprint ignored");
        let mut k = KeyBuilder::new("compile");
        k.toolchain(&Digest::of(b"tc"))
            .argv(&["g++".into(), "-O2".into()])
            .input("a.cpp", &Digest::of(b"a"));
        assert_ne!(k.finish(), reference, "command line ignored");
        let mut k = KeyBuilder::new("compile");
        k.toolchain(&Digest::of(b"tc"))
            .argv(&["g++".into(), "-c".into()])
            .input("a.cpp", &Digest::of(b"b"));
        assert_ne!(k.finish(), reference, "input contents ignored");
        let mut k = base();
        k.env(&[("CPATH".into(), Some("/x".into()))]);
        assert_ne!(k.finish(), reference, "environment ignored");
        let mut k = KeyBuilder::new("link");
        k.toolchain(&Digest::of(b"tc"))
            .argv(&["g++".into(), "-c".into()])
            .input("a.cpp", &Digest::of(b"a"));
        assert_ne!(k.finish(), reference, "action kind ignored");
    }

    #[test]
    fn argument_boundaries_matter() {
        let mut a = KeyBuilder::new("c");
        a.argv(&["-DA".into(), "B".into()]);
        let mut b = KeyBuilder::new("c");
        b.argv(&["-DAB".into()]);
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn discovered_dependency_digests_enter_the_full_key() {
        let b = Digest::of(b"base");
        let one = full_key(&b, &[("x.h".into(), Digest::of(b"1"))]);
        let two = full_key(&b, &[("x.h".into(), Digest::of(b"2"))]);
        assert_ne!(one, two);
    }
}
