//! `kiln.lock`: what a release was built from, so another machine can prove it builds the same.
//!
//! Bit-identical images need the same compilers and the same runtime libraries. For a Debian
//! toolchain (the default) the lock pins every package of its root ([`LockedRoot`]), and `kiln
//! build --locked` builds exactly those .debs or refuses (exit 1, nothing written to `out/`),
//! naming what no longer answers. A `source = "host"` toolchain is the machine's own packages,
//! which no lock can make another machine have: `--locked` refuses it outright. `kiln lock`
//! still records a host toolchain's installed versions and its images' packages, as a record of
//! the machine a quick local build came from.
//!
//! The format (TOML; every table sorted by key, so rewriting an unchanged lock changes no byte):
//!
//! ```toml
//! version = 1
//!
//! [toolchain.gcc]                      # every toolchain a recipe uses
//! fingerprint = "sha256:..."           # toolchain::Toolchain::fingerprint
//!
//! [toolchain.gcc.packages]             # the toolchain's `packages`, with installed versions
//! "g++-12" = "12.2.0-14"               # "" = not installed
//!
//! [image.hello.packages]               # Debian packages with files in the service's image
//! libc6 = "2.36-9+deb12u4"
//! ```
//!
//! Image packages are taken from images actually built (`kiln lock` builds every service, which
//! is cheap when the cache is warm), not from a fixed list per toolchain: what an image ships
//! depends on what the binary links, `[image] libraries`, `ca_certificates` and the closure of
//! all of those, and only the built image knows it exactly. `--locked` then needs no build: it
//! asks dpkg for the versions of the packages the lock names.
//!
//! The fingerprint covers more than package versions (program bytes, `--version` text, the
//! toolchain file's flags), so it catches a hand-installed compiler or an edited
//! `toolchains/*.toml` that package versions alone would miss. Bump [`VERSION`] when the meaning
//! of a field changes; an older kiln then refuses the file instead of misreading it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::build::NoProgress;
use crate::digest::Digest;
use crate::driver::{self, BuildOptions, DriverError};
use crate::exec::ProcessRunner;
use crate::recipe::Kind;
use crate::toolchain::hermetic::PinPolicy;
use crate::toolchain::ToolchainSource;
use crate::workspace::Workspace;

pub use crate::lockfile::{
    LockFile, LockedImage, LockedRoot, LockedToolchain, LockfileError, FILE_NAME, VERSION,
};

/// One way the machine (or the workspace) differs from the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    Package {
        name: String,
        locked: Option<String>,
        installed: Option<String>,
        /// Who needs it: `toolchain gcc`, `image hello`.
        users: Vec<String>,
    },
    Fingerprint {
        toolchain: String,
        locked: Digest,
        current: Digest,
    },
    ToolchainNotLocked(String),
    ServiceNotLocked(String),
    ServiceGone(String),
}

fn version_text(v: &Option<String>) -> String {
    match v.as_deref() {
        None => "(not in kiln.lock)".into(),
        Some("") => "(not installed)".into(),
        Some(v) => v.into(),
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Package {
                name,
                locked,
                installed,
                users,
            } => write!(
                f,
                "package {name}: locked {}, installed {} ({})",
                version_text(locked),
                version_text(installed),
                users.join(", ")
            ),
            Difference::Fingerprint {
                toolchain,
                locked,
                current,
            } => write!(
                f,
                "toolchain {toolchain}: fingerprint {current} differs from {locked} in kiln.lock \
                 (its programs, their versions or toolchains/{toolchain}.toml changed)"
            ),
            Difference::ToolchainNotLocked(t) => {
                write!(f, "toolchain {t} is used by a recipe but not in kiln.lock")
            }
            Difference::ServiceNotLocked(s) => write!(f, "service {s} is not in kiln.lock"),
            Difference::ServiceGone(s) => {
                write!(
                    f,
                    "kiln.lock names service {s}, which the workspace no longer has"
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} does not exist; run `kiln lock` to write it", .0.display())]
    Missing(PathBuf),
    #[error(transparent)]
    File(#[from] LockfileError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("building the services to learn their packages failed:\n{0}")]
    Build(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--locked builds only from pinned packages, and {} `source = \"host\"` (the machine's installed compilers and libraries, which no other machine has); in {} list its `packages` in place of that line, or delete the file to use kiln's built-in pinned toolchain",
        host_subject(.0), .0.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>().join(", "))]
    HostToolchains(Vec<(String, String)>),
    #[error("this machine does not match kiln.lock:\n{}\nrun `kiln lock` to accept this machine's versions, or install the locked ones",
        .0.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Differs(Vec<Difference>),
}

fn host_subject(host: &[(String, String)]) -> String {
    let names: Vec<&str> = host.iter().map(|(n, _)| n.as_str()).collect();
    match names.as_slice() {
        [one] => format!("toolchain {one} is"),
        many => format!("toolchains {} are", many.join(", ")),
    }
}

/// The toolchains the workspace's recipes use that are `source = "host"`, with their files.
fn host_toolchains(ws: &Workspace) -> Vec<(String, String)> {
    let used: std::collections::BTreeSet<&String> =
        ws.recipes.iter().map(|r| &r.toolchain.value).collect();
    used.into_iter()
        .filter_map(|name| {
            let spec = ws.toolchains.get(name)?;
            (spec.source == ToolchainSource::Host).then(|| (name.clone(), spec.file.clone()))
        })
        .collect()
}

pub fn path(ws: &Workspace) -> PathBuf {
    crate::lockfile::path(&ws.root)
}

/// The workspace as built for each of its other platforms (`platforms` in kiln.toml), with the
/// recipes each has a toolchain for: their toolchains (`gcc-arm64`) are locked too.
fn other_platforms(ws: &Workspace) -> Vec<(Workspace, Vec<usize>)> {
    ws.platforms
        .iter()
        .filter(|p| **p != ws.target_platform())
        .map(|p| {
            let view = ws.for_platform(*p);
            let used = (0..view.recipes.len())
                .filter(|&i| !view.no_toolchain.contains_key(&view.recipes[i].name))
                .collect();
            (view, used)
        })
        .collect()
}

/// Builds every service (through the cache) and writes `kiln.lock`; returns its path.
pub fn write(ws: &Workspace) -> Result<PathBuf, LockError> {
    let cache_dir = crate::cache::default_dir();
    let all: Vec<usize> = (0..ws.recipes.len()).collect();
    let mut lock = LockFile {
        version: VERSION,
        ..LockFile::default()
    };
    let mut resolved =
        driver::resolve_toolchains(&ProcessRunner, ws, &all, &cache_dir, PinPolicy::Refresh)?;
    for (view, used) in other_platforms(ws) {
        resolved.extend(driver::resolve_toolchains(
            &ProcessRunner,
            &view,
            &used,
            &cache_dir,
            PinPolicy::Refresh,
        )?);
    }
    for (name, tc) in resolved {
        lock.toolchain.insert(
            name,
            LockedToolchain {
                fingerprint: tc.fingerprint,
                packages: tc.package_versions.clone(),
                debian: tc.root.as_ref().map(|r| r.locked.clone()),
            },
        );
    }
    let services = service_names(ws);
    if !services.is_empty() {
        eprintln!(
            "kiln: lock: building {} to learn which packages the images ship",
            services.join(", ")
        );
        let opts = BuildOptions {
            targets: services,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            images: true,
            cache_dir,
            keep_going: false,
        };
        let outcome = driver::build(ws, &opts, &ProcessRunner, &NoProgress)?;
        let mut problems: Vec<String> = outcome
            .targets
            .iter()
            .flat_map(|t| t.failures.iter())
            .map(|(id, rep)| format!("{id}:\n{}", rep.stderr.trim_end()))
            .collect();
        problems.extend(
            outcome
                .image_errors
                .iter()
                .map(|(s, e)| format!("image for `{s}`: {}", crate::error::chain(e))),
        );
        if outcome.failed || !problems.is_empty() {
            return Err(LockError::Build(problems.join("\n")));
        }
        for (name, img) in outcome.images {
            let packages = img
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect();
            lock.image.insert(name, LockedImage { packages });
        }
    }
    let path = path(ws);
    crate::lockfile::write(&path, &lock)?;
    Ok(path)
}

/// Reads and parses `kiln.lock`.
pub fn read(ws: &Workspace) -> Result<LockFile, LockError> {
    let path = path(ws);
    crate::lockfile::read(&path)?.ok_or(LockError::Missing(path))
}

/// Fails, naming every difference, when this machine does not match `kiln.lock`. Writes nothing
/// but toolchain probe memos in the cache.
pub fn check(ws: &Workspace) -> Result<(), LockError> {
    check_with(ws, None)
}

/// [`check`], with the .debs of a root to materialise asked of `cas` (the remote cache) first.
pub fn check_with(
    ws: &Workspace,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<(), LockError> {
    let host = host_toolchains(ws);
    if !host.is_empty() {
        return Err(LockError::HostToolchains(host));
    }
    let mut lock = read(ws)?;
    let all: Vec<usize> = (0..ws.recipes.len()).collect();
    let mut resolved = driver::resolve_toolchains_with(
        &ProcessRunner,
        ws,
        &all,
        &crate::cache::default_dir(),
        PinPolicy::Locked,
        cas,
    )?;
    for (view, used) in other_platforms(ws) {
        resolved.extend(driver::resolve_toolchains_with(
            &ProcessRunner,
            &view,
            &used,
            &crate::cache::default_dir(),
            PinPolicy::Locked,
            cas,
        )?);
    }
    let current: BTreeMap<String, Current> = resolved
        .into_iter()
        .map(|(name, tc)| {
            (
                name,
                Current {
                    fingerprint: tc.fingerprint,
                    packages: tc.package_versions,
                },
            )
        })
        .collect();
    // Every toolchain is a Debian one (host ones were refused above), and an image built on one
    // takes its packages from the pinned root, which the toolchain's fingerprint (its set digest)
    // already checks: the machine's own packages do not matter. Nor does a build have to have
    // recorded the image: its pins are the record.
    for service in service_names(ws) {
        lock.image.entry(service).or_default().packages.clear();
    }
    let diffs = differences(&lock, &current, &service_names(ws), &BTreeMap::new());
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(LockError::Differs(diffs))
    }
}

/// What this machine has for one toolchain.
#[derive(Clone, Debug)]
pub struct Current {
    pub fingerprint: Digest,
    pub packages: BTreeMap<String, String>,
}

/// Compares the lock with the machine: toolchains in use, the workspace's services and the
/// installed versions of the image packages (`installed`; "" = not installed).
pub fn differences(
    lock: &LockFile,
    toolchains: &BTreeMap<String, Current>,
    services: &[String],
    installed: &BTreeMap<String, String>,
) -> Vec<Difference> {
    // (package, locked, installed) -> users, so a package shared by several images is named once.
    type Key = (String, Option<String>, Option<String>);
    let mut packages: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, cur) in toolchains {
        let Some(locked) = lock.toolchain.get(name) else {
            out.push(Difference::ToolchainNotLocked(name.clone()));
            continue;
        };
        let mut names: Vec<&String> = locked.packages.keys().chain(cur.packages.keys()).collect();
        names.sort();
        names.dedup();
        for p in names {
            let (l, c) = (locked.packages.get(p), cur.packages.get(p));
            if l != c {
                packages
                    .entry((p.clone(), l.cloned(), c.cloned()))
                    .or_default()
                    .push(format!("toolchain {name}"));
            }
        }
        if locked.fingerprint != cur.fingerprint {
            out.push(Difference::Fingerprint {
                toolchain: name.clone(),
                locked: locked.fingerprint,
                current: cur.fingerprint,
            });
        }
    }
    for (service, img) in &lock.image {
        if !services.contains(service) {
            out.push(Difference::ServiceGone(service.clone()));
            continue;
        }
        for (p, v) in &img.packages {
            let have = installed.get(p).cloned().unwrap_or_default();
            if *v != have {
                packages
                    .entry((p.clone(), Some(v.clone()), Some(have)))
                    .or_default()
                    .push(format!("image {service}"));
            }
        }
    }
    for s in services {
        if !lock.image.contains_key(s) {
            out.push(Difference::ServiceNotLocked(s.clone()));
        }
    }
    let mut pkg_diffs: Vec<Difference> = packages
        .into_iter()
        .map(|((name, locked, installed), users)| Difference::Package {
            name,
            locked,
            installed,
            users,
        })
        .collect();
    // Packages first: they are what a person fixes.
    pkg_diffs.extend(out);
    pkg_diffs
}

fn service_names(ws: &Workspace) -> Vec<String> {
    ws.recipes
        .iter()
        .filter(|r| r.kind == Kind::Service)
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> LockFile {
        let mut l = LockFile {
            version: VERSION,
            ..Default::default()
        };
        l.toolchain.insert(
            "gcc".into(),
            LockedToolchain {
                fingerprint: Digest::of(b"gcc"),
                packages: [("g++-12".to_string(), "12.2.0-14".to_string())].into(),
                debian: None,
            },
        );
        for s in ["hello", "world"] {
            l.image.insert(
                s.into(),
                LockedImage {
                    packages: [("libc6".to_string(), "2.36-9".to_string())].into(),
                },
            );
        }
        l
    }

    fn current(gpp: &str, fp: &[u8]) -> BTreeMap<String, Current> {
        [(
            "gcc".to_string(),
            Current {
                fingerprint: Digest::of(fp),
                packages: [("g++-12".to_string(), gpp.to_string())].into(),
            },
        )]
        .into()
    }

    fn services() -> Vec<String> {
        vec!["hello".into(), "world".into()]
    }

    #[test]
    fn the_format_round_trips_in_sorted_order() {
        let text = lock().to_toml();
        assert!(text.starts_with("# Written by `kiln lock`"));
        assert!(text.contains("[toolchain.gcc.packages]\n\"g++-12\" = \"12.2.0-14\"\n"));
        assert!(text.find("[image.hello.packages]") < text.find("[image.world.packages]"));
        assert_eq!(toml::from_str::<LockFile>(&text).unwrap(), lock());
    }

    #[test]
    fn a_matching_machine_has_no_differences() {
        let installed = [("libc6".to_string(), "2.36-9".to_string())].into();
        assert!(differences(
            &lock(),
            &current("12.2.0-14", b"gcc"),
            &services(),
            &installed
        )
        .is_empty());
    }

    #[test]
    fn each_differing_package_is_named_once_with_both_versions_and_its_users() {
        let installed = [("libc6".to_string(), "2.36-10".to_string())].into();
        let d = differences(
            &lock(),
            &current("12.3.0-1", b"new"),
            &services(),
            &installed,
        );
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text[0],
            "package g++-12: locked 12.2.0-14, installed 12.3.0-1 (toolchain gcc)"
        );
        assert_eq!(
            text[1],
            "package libc6: locked 2.36-9, installed 2.36-10 (image hello, image world)"
        );
        assert!(
            text[2].starts_with("toolchain gcc: fingerprint sha256:"),
            "{text:?}"
        );
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_missing_package_and_a_changed_service_set_are_differences() {
        let d = differences(
            &lock(),
            &current("12.2.0-14", b"gcc"),
            &["hello".into(), "new".into()],
            &BTreeMap::new(),
        );
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "package libc6: locked 2.36-9, installed (not installed) (image hello)",
                "kiln.lock names service world, which the workspace no longer has",
                "service new is not in kiln.lock",
            ]
        );
    }
}
