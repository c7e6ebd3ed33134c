//! Toolchains: `toolchains/*.toml` describe a compiler family; this module finds its programs,
//! fingerprints them and resolves system-library flags.
//!
//! The fingerprint is part of every action-cache key, so it must change whenever the compiler
//! could produce different bytes: the programs' contents, their `--version` text, the Debian
//! package versions they come from and the toolchain's default flags all feed it. Computing it
//! means hashing large binaries, so the result is memoised in the cache directory under the
//! programs' file metadata and dpkg's database timestamp (see [`probe`]).

pub mod gcc;
pub mod gnat;
pub mod hermetic;
pub mod image;
pub mod probe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::Digest;
use crate::exec::Runner;
use crate::platform::Platform;
use crate::recipe::reader::{Source, TableReader};
use crate::recipe::{Diagnostic, Language, SystemLib};

/// A toolchain as declared in `toolchains/<name>.toml`.
#[derive(Clone, Debug)]
pub struct ToolchainSpec {
    pub name: String,
    pub file: String,
    pub language: Language,
    /// Compiler driver (`g++`, or `gcc` with the GNAT front end).
    pub compiler: String,
    /// `ar` for C++ archives.
    pub archiver: String,
    /// `gnatbind` for Ada.
    pub binder: String,
    pub cflags: Vec<String>,
    pub ldflags: Vec<String>,
    pub bindflags: Vec<String>,
    /// Debian packages whose versions enter the fingerprint and the lock file.
    pub packages: Vec<String>,
    /// Debian package to suggest when a program is missing.
    pub install: String,
    /// Tool for `wx:` system libraries.
    pub wx_config: String,
    /// Where the programs and runtime libraries come from.
    pub source: ToolchainSource,
    /// Debian only: packages taken without their dependencies (see
    /// [`crate::debian::resolve::Request::without_dependencies`]).
    pub without_dependencies: Vec<String>,
    /// Debian only: `REGISTRY[:PORT]/PREFIX` holding the toolchain's image (see [`image`]), pulled
    /// from before the archive when the root is missing.
    pub image: Option<String>,
    /// The platform its outputs run on (`platform = "linux/arm64"` for a cross toolchain;
    /// default `linux/amd64`).
    pub platform: Platform,
}

/// `source = "host"` (the machine's installed packages) or `source = "debian"` (the closure of
/// `packages`, pinned in kiln.lock and materialised as a root the actions run in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolchainSource {
    Host,
    Debian {
        /// Suites the closure is resolved from, in order.
        suites: Vec<String>,
        architecture: String,
    },
}

/// The suites a Debian toolchain reads unless it names its own: Debian 12 with its updates.
pub const DEFAULT_SUITES: [&str; 3] = ["bookworm", "bookworm-updates", "bookworm-security"];

const KEYS: &[&str] = &[
    "language",
    "compiler",
    "archiver",
    "binder",
    "cflags",
    "ldflags",
    "bindflags",
    "packages",
    "install",
    "wx_config",
    "source",
    "suites",
    "architecture",
    "without_dependencies",
    "image",
    "platform",
];

impl ToolchainSpec {
    pub fn load(root: &Path, rel_file: &str) -> Result<ToolchainSpec, Diagnostic> {
        let text = std::fs::read_to_string(root.join(rel_file)).map_err(|e| {
            Diagnostic::at(rel_file, "", None, format!("cannot read toolchain: {e}"))
        })?;
        let name = Path::new(rel_file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        ToolchainSpec::parse(rel_file, &name, text)
    }

    /// Reads a toolchain from its text; `rel_file` is only used in diagnostics.
    pub fn parse(rel_file: &str, name: &str, text: String) -> Result<ToolchainSpec, Diagnostic> {
        let src = Source {
            file: rel_file.to_string(),
            text,
        };
        let doc = src.parse()?;
        let r = TableReader::new(&src, doc.as_table(), "", KEYS);
        r.finish()?;
        let language = match r.string("language")? {
            Some(s) if s.value == "c++" => Language::Cxx,
            Some(s) if s.value == "ada" => Language::Ada,
            Some(s) => return Err(src.error(s.span, "`language` must be \"c++\" or \"ada\"")),
            None => return Err(src.error(Some(0..0), "missing required key `language`")),
        };
        let s = |key: &str, default: &str| -> Result<String, Diagnostic> {
            Ok(r.string(key)?
                .map(|s| s.value)
                .unwrap_or_else(|| default.to_string()))
        };
        let v = |key: &str| -> Result<Vec<String>, Diagnostic> {
            Ok(r.strings(key)?.into_iter().map(|s| s.value).collect())
        };
        // Debian unless the file opts into the host's compilers.
        let source = match r.string("source")? {
            None => Some(()),
            Some(s) if s.value == "host" => None,
            Some(s) if s.value == "debian" => Some(()),
            Some(s) => return Err(src.error(
                s.span,
                "`source` must be \"host\" (installed packages) or \"debian\" (pinned packages)",
            )),
        };
        let suites = r.strings("suites")?;
        let architecture = r.string("architecture")?;
        let alone = r.strings("without_dependencies")?;
        let image = r.string("image")?;
        let platform = match r.string("platform")? {
            None => Platform::default(),
            Some(p) => Platform::parse(&p.value).map_err(|e| src.error(p.span, e.to_string()))?,
        };
        if let Some(i) = &image {
            if source.is_none() {
                return Err(src.error(
                    i.span.clone(),
                    "`image` only applies to `source = \"debian\"`",
                ));
            }
            if image::parse_location(&i.value).is_none() {
                return Err(src.error(
                    i.span.clone(),
                    "`image` must be REGISTRY[:PORT]/PREFIX, for example \"registry.example.com/toolchains\"",
                ));
            }
        }
        if let (None, Some(a)) = (&source, alone.first()) {
            return Err(src.error(
                a.span.clone(),
                "`without_dependencies` only applies to `source = \"debian\"`",
            ));
        }
        let source = match source {
            Some(_) => {
                let suites: Vec<String> = suites.into_iter().map(|s| s.value).collect();
                ToolchainSource::Debian {
                    suites: if suites.is_empty() {
                        DEFAULT_SUITES.iter().map(|s| s.to_string()).collect()
                    } else {
                        suites
                    },
                    architecture: architecture.map_or_else(|| "amd64".into(), |a| a.value),
                }
            }
            None => {
                if let Some(s) = suites
                    .first()
                    .map(|s| s.span.clone())
                    .or(architecture.map(|a| a.span))
                {
                    return Err(src.error(
                        s,
                        "`suites` and `architecture` only apply to `source = \"debian\"`",
                    ));
                }
                ToolchainSource::Host
            }
        };
        let (compiler, install) = match language {
            Language::Cxx => ("g++", "g++"),
            Language::Ada => ("gcc", "gnat"),
        };
        Ok(ToolchainSpec {
            name: name.to_string(),
            file: rel_file.to_string(),
            language,
            compiler: s("compiler", compiler)?,
            archiver: s("archiver", "ar")?,
            binder: s("binder", "gnatbind")?,
            cflags: v("cflags")?,
            ldflags: v("ldflags")?,
            bindflags: v("bindflags")?,
            packages: v("packages")?,
            install: s("install", install)?,
            wx_config: s("wx_config", "wx-config")?,
            source,
            without_dependencies: alone.into_iter().map(|s| s.value).collect(),
            image: image.map(|i| i.value),
            platform,
        })
    }

    /// The programs this toolchain runs, by role.
    pub fn programs(&self) -> Vec<(&'static str, &str)> {
        match self.language {
            Language::Cxx => vec![("compiler", &self.compiler), ("archiver", &self.archiver)],
            Language::Ada => vec![("compiler", &self.compiler), ("binder", &self.binder)],
        }
    }
}

/// kiln's own toolchains, by name, for workspaces whose `toolchains/` does not define them:
/// Debian 12's g++ 12 with wxBase, GNAT 12, and for linux/arm64 the cross g++ 12 (with the
/// arm64 runtime and wxBase) and cross GNAT 12 (with the arm64 libgnat), all from pinned
/// packages.
pub const BUILTIN: [(&str, &str); 4] = [
    ("gcc", include_str!("builtin/gcc.toml")),
    ("gnat", include_str!("builtin/gnat.toml")),
    ("gcc-arm64", include_str!("builtin/gcc-arm64.toml")),
    ("gnat-arm64", include_str!("builtin/gnat-arm64.toml")),
];

/// The name of the toolchain that builds for `platform` what toolchain `name` builds for the
/// default one: `name` itself for the default platform, else `name-<arch>` (`gcc-arm64`).
pub fn name_for_platform(name: &str, platform: &Platform) -> String {
    if platform.is_default() {
        name.to_string()
    } else {
        format!("{name}-{}", platform.architecture)
    }
}

/// The `file` a built-in toolchain reports, in messages and `kiln toolchain list`.
pub fn builtin_file(name: &str) -> String {
    format!("(built-in {name})")
}

impl ToolchainSpec {
    /// The built-in toolchain `name`, if kiln has one.
    pub fn builtin(name: &str) -> Option<ToolchainSpec> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        let spec = ToolchainSpec::parse(&builtin_file(name), name, text.to_string())
            .expect("built-in toolchains parse");
        Some(spec)
    }

    pub fn language_name(&self) -> &'static str {
        match self.language {
            Language::Cxx => "c++",
            Language::Ada => "ada",
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.file == builtin_file(&self.name)
    }
}

/// A toolchain found on this machine.
#[derive(Clone, Debug)]
pub struct Toolchain {
    pub spec: ToolchainSpec,
    /// Absolute paths of the programs, by role.
    pub programs: BTreeMap<String, PathBuf>,
    pub fingerprint: Digest,
    /// Debian package versions (`name` -> `version`), for the lock file.
    pub package_versions: BTreeMap<String, String>,
    /// Directories the toolchain's runtime libraries live in (for image closures).
    pub library_paths: Vec<PathBuf>,
    /// Ada only: the runtime's source directory (adainclude), to resolve ALI dependencies.
    pub ada_include: Option<PathBuf>,
    /// Debian toolchains: the root the programs run in (paths in `programs` are inside it).
    pub root: Option<Arc<hermetic::HermeticRoot>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("toolchain `{toolchain}` ({file}): `{program}` is not installed; install it with `apt-get install {package}` (or run scripts/setup)")]
    Missing {
        toolchain: String,
        file: String,
        program: String,
        package: String,
    },
    #[error("toolchain `{toolchain}`: {action} `{what}`")]
    ProbeIo {
        toolchain: String,
        action: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("toolchain `{toolchain}`: running `{command}` failed: {detail}")]
    Probe {
        toolchain: String,
        command: String,
        detail: String,
    },
    #[error("toolchain `{toolchain}`: {detail}")]
    Debian { toolchain: String, detail: String },
    #[error("toolchain `{toolchain}` is not locked: {reason}; run `kiln lock` (or build without --locked) to pin it")]
    NotLocked { toolchain: String, reason: String },
    #[error("toolchain `{toolchain}`: `{program}` is not in its root (packages: {packages}); add the package that ships it to `packages`")]
    NotInRoot {
        toolchain: String,
        program: String,
        packages: String,
    },
    #[error("toolchain `{toolchain}`: {source}")]
    Sandbox {
        toolchain: String,
        source: crate::debian::sandbox::SandboxError,
    },
}

impl Toolchain {
    /// Finds and fingerprints the toolchain `spec` describes, probing its programs through
    /// `runner` (memoised under `cache_dir`).
    pub fn resolve(
        runner: &dyn Runner,
        spec: &ToolchainSpec,
        cache_dir: &Path,
    ) -> Result<Toolchain, ToolchainError> {
        probe::resolve(runner, spec, cache_dir)
    }

    pub fn program(&self, role: &str) -> &Path {
        &self.programs[role]
    }

    /// Compile and link flags for system libraries, e.g. from `wx-config`.
    pub fn system_lib_flags(
        &self,
        runner: &dyn Runner,
        libs: &[SystemLib],
        cache_dir: &Path,
    ) -> Result<SystemFlags, ToolchainError> {
        match &self.root {
            Some(root) => hermetic::system_lib_flags(runner, self, root, libs, cache_dir),
            None => probe::system_lib_flags(runner, self, libs, cache_dir),
        }
    }
}

/// Flags contributed by system libraries.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemFlags {
    pub cflags: Vec<String>,
    pub libs: Vec<String>,
}

/// Finds `program` on PATH (or takes it as a path if it contains a slash).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod source_tests {
    use super::*;

    fn parse(text: &str) -> Result<ToolchainSpec, Diagnostic> {
        ToolchainSpec::parse("toolchains/t.toml", "t", text.to_string())
    }

    #[test]
    fn a_debian_toolchain_names_its_suites_and_architecture_or_gets_debian_12() {
        let t = parse("language = \"c++\"\npackages = [\"g++-12\"]\n").unwrap();
        let want: Vec<String> = DEFAULT_SUITES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            t.source,
            ToolchainSource::Debian {
                suites: want,
                architecture: "amd64".into()
            }
        );
        let t = parse("language = \"ada\"\nsource = \"debian\"\nsuites = [\"trixie\"]\narchitecture = \"arm64\"\n").unwrap();
        assert_eq!(
            t.source,
            ToolchainSource::Debian {
                suites: vec!["trixie".into()],
                architecture: "arm64".into()
            }
        );
        assert_eq!(
            parse("language = \"ada\"\nsource = \"host\"\n")
                .unwrap()
                .source,
            ToolchainSource::Host
        );
    }

    #[test]
    fn a_bad_source_or_a_stray_suite_points_at_the_value() {
        let e = parse("language = \"c++\"\nsource = \"docker\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("toolchains/t.toml:2:10"), "{text}");
        assert!(text.contains("\"host\""), "{text}");
        let e =
            parse("language = \"c++\"\nsource = \"host\"\nsuites = [\"bookworm\"]\n").unwrap_err();
        assert!(e.to_string().contains("toolchains/t.toml:3:"), "{e}");
    }
}
