//! Debian toolchains (`source = "debian"`): the toolchain's packages pinned in kiln.lock,
//! materialised once as a root in the cache, and every program of the toolchain run inside
//! that root by bubblewrap.
//!
//! The pins come from the lock when it answers the toolchain's current request (the same
//! packages, suites and architecture); otherwise the closure is resolved from the archive's
//! signed index and written into the lock, as a first build or an edited toolchain file does.
//! `--locked` forbids that: a lock that does not answer is an error naming the toolchain.
//!
//! The root is found by the set digest of its pins, so a build whose root is already
//! materialised reads no index, fetches nothing and makes no network connection. The same
//! digest is the toolchain's identity in every action key: two machines with the same lock
//! compile with the same bytes whatever they have installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{SystemFlags, Toolchain, ToolchainError, ToolchainSource, ToolchainSpec};
use crate::cache::atomic_write;
use crate::debian::http::ReqwestHttp;
use crate::debian::locked::{self, LockedPackage};
use crate::debian::resolve::Request;
use crate::debian::root::root_dir;
use crate::debian::sandbox::{Sandbox, WORKSPACE};
use crate::debian::signature::DEBIAN_KEYRING;
use crate::debian::sources::{self, MIRROR_ENV};
use crate::debian::store::Downloads;
use crate::debian::Archive;
use crate::digest::{Digest, Hasher};
use crate::exec::Runner;
use crate::lockfile::{self, LockFile, LockedRoot, LockedToolchain};
use crate::recipe::SystemLib;

/// Bumped whenever what goes into a Debian toolchain's fingerprint changes.
const FINGERPRINT_VERSION: &str = "kiln-debian-toolchain-fingerprint-v1";

/// Overrides the keyring InRelease files must be signed by (a private mirror, a test archive).
pub const KEYRING_ENV: &str = "KILN_DEBIAN_KEYRING";
/// Where .debs, trees and roots are kept when not under `$KILN_CACHE/debian` (several caches
/// on one machine can share one download this way).
pub const STORE_ENV: &str = "KILN_DEBIAN_CACHE";

/// What a build may do with kiln.lock's pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinPolicy {
    /// Use the lock's pins when they answer the toolchain; else resolve and write them.
    Update,
    /// Resolve again from the archive and write the result (`kiln lock`).
    Refresh,
    /// Use the lock's pins; a lock that does not answer is an error (`--locked`).
    Locked,
}

/// A toolchain root as a build uses it.
#[derive(Clone, Debug)]
pub struct HermeticRoot {
    /// The root on this machine (read-only; shared by every build).
    pub dir: PathBuf,
    /// The set digest of the pinned packages: the root's name and the toolchain's identity.
    pub set: Digest,
    /// What kiln.lock records for the toolchain.
    pub locked: LockedRoot,
    /// Runs the toolchain's programs over `dir` with the workspace at [`WORKSPACE`].
    pub sandbox: Sandbox,
}

impl HermeticRoot {
    pub fn packages(&self) -> &[LockedPackage] {
        &self.locked.package
    }

    /// `path` (absolute, inside the root) on this machine.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.dir.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// Where Debian downloads, trees and roots live for the cache at `cache_dir`.
pub fn downloads(cache_dir: &Path) -> Downloads {
    match std::env::var_os(STORE_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => Downloads::at(PathBuf::from(dir)),
        None => Downloads::new(cache_dir),
    }
}

fn request_of(spec: &ToolchainSpec) -> Option<LockedRoot> {
    let ToolchainSource::Debian {
        suites,
        architecture,
    } = &spec.source
    else {
        return None;
    };
    let mut packages = spec.packages.clone();
    packages.sort();
    packages.dedup();
    let mut alone = spec.without_dependencies.clone();
    alone.sort();
    alone.dedup();
    Some(LockedRoot {
        packages,
        without_dependencies: alone,
        suites: suites.clone(),
        architecture: architecture.clone(),
        package: Vec::new(),
    })
}

/// Whether `locked` answers `request` (everything but the closure itself is equal).
fn answers(locked: &LockedRoot, request: &LockedRoot) -> bool {
    locked.packages == request.packages
        && locked.without_dependencies == request.without_dependencies
        && locked.suites == request.suites
        && locked.architecture == request.architecture
        && !locked.package.is_empty()
}

/// The archive a toolchain's packages come from: mirrors from `KILN_DEBIAN_MIRROR` or apt's
/// sources, the keyring from `KILN_DEBIAN_KEYRING` or Debian's.
pub(crate) fn with_archive<T>(
    runner: &dyn Runner,
    spec: &ToolchainSpec,
    request: &LockedRoot,
    downloads: Downloads,
    cas: Option<&dyn crate::debian::DebSource>,
    f: impl FnOnce(&Archive) -> Result<T, ToolchainError>,
) -> Result<T, ToolchainError> {
    let fail = |detail: String| ToolchainError::Debian {
        toolchain: spec.name.clone(),
        detail,
    };
    let env_mirror = std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty());
    let mut mirrors = BTreeMap::new();
    for s in &request.suites {
        let m = sources::mirror_for(s, env_mirror.as_deref(), Path::new("/etc/apt"))
            .map_err(|e| fail(crate::error::chain(&e)))?;
        mirrors.insert(s.clone(), m);
    }
    let http = ReqwestHttp::new().map_err(|e| fail(crate::error::chain(&e)))?;
    let keyring = std::env::var_os(KEYRING_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEBIAN_KEYRING), PathBuf::from);
    let archive = Archive {
        http: &http,
        cas,
        runner,
        keyring,
        downloads,
        mirrors,
        component: "main".into(),
        architecture: request.architecture.clone(),
        now: unix_now(),
    };
    f(&archive)
}

/// The clock, read at the edge: only `Valid-Until` checks use it, never an output.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The pins of `spec` under `policy`, resolving (and writing kiln.lock) when allowed.
pub fn pins(
    runner: &dyn Runner,
    ws_root: &Path,
    spec: &ToolchainSpec,
    cache_dir: &Path,
    policy: PinPolicy,
) -> Result<LockedRoot, ToolchainError> {
    let request = request_of(spec).expect("a Debian toolchain");
    let lock_path = lockfile::path(ws_root);
    let lock_err = |e: lockfile::LockfileError| ToolchainError::Debian {
        toolchain: spec.name.clone(),
        detail: crate::error::chain(&e),
    };
    let lock = lockfile::read(&lock_path).map_err(lock_err)?;
    let current = lock
        .as_ref()
        .and_then(|l| l.toolchain.get(&spec.name))
        .and_then(|t| t.debian.as_ref());
    if policy != PinPolicy::Refresh {
        if let Some(c) = current.filter(|c| answers(c, &request)) {
            return Ok(c.clone());
        }
        if policy == PinPolicy::Locked {
            return Err(ToolchainError::NotLocked {
                toolchain: spec.name.clone(),
                reason: match current {
                    None => "kiln.lock pins no packages for it".into(),
                    Some(_) => format!(
                        "its packages, suites or architecture changed since kiln.lock pinned them (now {})",
                        request.packages.join(", ")
                    ),
                },
            });
        }
    }
    let packages = with_archive(
        runner,
        spec,
        &request,
        downloads(cache_dir),
        None,
        |archive| {
            archive
                .resolve_request(
                    &request.suites,
                    &Request {
                        roots: request.packages.clone(),
                        architecture: request.architecture.clone(),
                        with_essential: false,
                        without_dependencies: request.without_dependencies.clone(),
                    },
                )
                .map_err(|e| ToolchainError::Debian {
                    toolchain: spec.name.clone(),
                    detail: crate::error::chain(&e),
                })
        },
    )?;
    let pinned = LockedRoot {
        package: packages,
        ..request
    };
    // Only the toolchain's own entry changes; the fingerprint is written with it below.
    let mut lock = lock.unwrap_or_else(LockFile::new);
    let entry = lock
        .toolchain
        .entry(spec.name.clone())
        .or_insert_with(|| LockedToolchain {
            fingerprint: Digest::of(b""),
            packages: BTreeMap::new(),
            debian: None,
        });
    entry.debian = Some(pinned.clone());
    entry.fingerprint = fingerprint(spec, &locked::set_digest(&pinned.package));
    entry.packages = package_versions(spec, &pinned.package);
    lockfile::write(&lock_path, &lock).map_err(lock_err)?;
    eprintln!(
        "kiln: pinned toolchain {} in {}: {} package(s) from {}",
        spec.name,
        lockfile::FILE_NAME,
        pinned.package.len(),
        pinned.suites.join(", ")
    );
    Ok(pinned)
}

/// The toolchain's identity in every action key: the pinned set and the toolchain file.
pub fn fingerprint(spec: &ToolchainSpec, set: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.update(FINGERPRINT_VERSION.as_bytes());
    h.update(format!("\nset {set}\n").as_bytes());
    for (role, name) in spec.programs() {
        h.update(format!("program {role} {name}\n").as_bytes());
    }
    h.update(format!("wx_config {}\n", spec.wx_config).as_bytes());
    for flag in spec
        .cflags
        .iter()
        .chain(&spec.ldflags)
        .chain(&spec.bindflags)
    {
        h.update(format!("flag {flag}\n").as_bytes());
    }
    h.finish()
}

fn package_versions(spec: &ToolchainSpec, packages: &[LockedPackage]) -> BTreeMap<String, String> {
    spec.packages
        .iter()
        .map(|name| {
            // `libc6-dev:arm64` is the arm64 package of that name; a bare name any other.
            let (bare, arch) = crate::debian::resolve::split_root(name);
            let v = packages
                .iter()
                .find(|p| p.name == bare && arch.map_or(true, |a| p.architecture == a))
                .map_or(String::new(), |p| p.version.clone());
            (name.clone(), v)
        })
        .collect()
}

/// The toolchain `spec` describes, from its pinned packages: the root materialised (at once
/// when it already is; .debs the store lacks from `cas`, the remote cache, before the
/// mirrors), its programs found inside it, and a sandbox over it and `workspace`.
pub fn resolve(
    runner: &dyn Runner,
    spec: &ToolchainSpec,
    pinned: LockedRoot,
    cache_dir: &Path,
    workspace: &Path,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<Toolchain, ToolchainError> {
    let set = locked::set_digest(&pinned.package);
    let store = downloads(cache_dir);
    let dir = root_dir(&store, &set);
    let dir = if dir.is_dir() {
        dir
    } else {
        if let Some(location) = &spec.image {
            pull_before_archive(spec, location, &pinned, &store);
        }
        with_archive(runner, spec, &pinned, store, cas, |archive| {
            archive
                .root(&pinned.package)
                .map(|(_, dir)| dir)
                .map_err(|e| ToolchainError::Debian {
                    toolchain: spec.name.clone(),
                    detail: crate::error::chain(&e),
                })
        })?
    };
    let mut programs = BTreeMap::new();
    for (role, name) in spec.programs() {
        let inside = find_in_root(&dir, name).ok_or_else(|| ToolchainError::NotInRoot {
            toolchain: spec.name.clone(),
            program: name.to_string(),
            packages: pinned.packages.join(", "),
        })?;
        programs.insert(role.to_string(), inside);
    }
    let sandbox = Sandbox::new(&dir, workspace, 0).map_err(|e| ToolchainError::Sandbox {
        toolchain: spec.name.clone(),
        source: e,
    })?;
    Ok(Toolchain {
        spec: spec.clone(),
        programs,
        fingerprint: fingerprint(spec, &set),
        package_versions: package_versions(spec, &pinned.package),
        library_paths: Vec::new(),
        // Runtime units live in the root, which the fingerprint covers: they are not tracked.
        ada_include: None,
        root: Some(Arc::new(HermeticRoot {
            dir,
            set,
            locked: pinned,
            sandbox,
        })),
    })
}

/// `name` as a path inside `root`: taken as is when it has a slash, else looked up in the
/// root's `PATH`.
fn find_in_root(root: &Path, name: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    candidates.into_iter().find(|inside| {
        crate::closure::canonical_in(root, &root.join(inside.strip_prefix("/").unwrap_or(inside)))
            .is_ok_and(|p| p.is_file())
    })
}

/// Compile and link flags of system libraries, asked of wx-config and pkg-config inside the
/// root, memoised under the root's set digest (the root never changes under a digest).
pub fn system_lib_flags(
    runner: &dyn Runner,
    tc: &Toolchain,
    root: &HermeticRoot,
    libs: &[SystemLib],
    cache_dir: &Path,
) -> Result<SystemFlags, ToolchainError> {
    if libs.is_empty() {
        return Ok(SystemFlags::default());
    }
    let mut key = Hasher::new();
    key.update(
        format!(
            "debian-system-libs-v1 {libs:?} {} {}\n",
            tc.spec.wx_config, root.set
        )
        .as_bytes(),
    );
    let memo_path = cache_dir
        .join("probes")
        .join(format!("syslibs-{}.json", key.finish().hex()));
    if let Some(f) = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SystemFlags>(&b).ok())
    {
        return Ok(f);
    }
    // A cross toolchain's pkg-config reads the target's .pc files (the native pkg-config
    // program, which runs here, over `/usr/lib/<triplet>/pkgconfig`).
    let platform = tc.spec.platform;
    let sandbox = if platform.is_default() {
        root.sandbox.clone()
    } else {
        let dirs = format!(
            "/usr/lib/{}/pkgconfig:/usr/share/pkgconfig",
            platform.triplet
        );
        root.sandbox.with_env(&[("PKG_CONFIG_LIBDIR", &dirs)])
    };
    let ask =
        |program: &str, package: &str, args: &[&str]| -> Result<Vec<String>, ToolchainError> {
            let inside =
                find_in_root(&root.dir, program).ok_or_else(|| ToolchainError::NotInRoot {
                    toolchain: tc.spec.name.clone(),
                    program: program.to_string(),
                    packages: format!("{} (add {package})", root.locked.packages.join(", ")),
                })?;
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let shown = format!("{} {}", inside.display(), args.join(" "));
            let out = sandbox
                .run(runner, &inside.to_string_lossy(), &args, WORKSPACE)
                .map_err(|e| ToolchainError::Probe {
                    toolchain: tc.spec.name.clone(),
                    command: shown.clone(),
                    detail: crate::error::chain(&e),
                })?;
            if !out.success {
                return Err(ToolchainError::Probe {
                    toolchain: tc.spec.name.clone(),
                    command: shown,
                    detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect())
        };
    let mut flags = SystemFlags::default();
    for lib in libs {
        match lib {
            SystemLib::Wx(names) => {
                let list = names.join(",");
                let wx = tc.spec.wx_config.as_str();
                flags
                    .cflags
                    .extend(ask(wx, "libwxgtk3.2-dev", &["--cxxflags", &list])?);
                flags
                    .libs
                    .extend(ask(wx, "libwxgtk3.2-dev", &["--libs", &list])?);
            }
            SystemLib::Pkg(name) => {
                flags
                    .cflags
                    .extend(ask("pkg-config", "pkg-config", &["--cflags", name])?);
                flags
                    .libs
                    .extend(ask("pkg-config", "pkg-config", &["--libs", name])?);
            }
            SystemLib::Lib(name) => flags.libs.push(format!("-l{name}")),
        }
    }
    super::probe::dedup_keep_first(&mut flags.cflags);
    if let Ok(bytes) = serde_json::to_vec(&flags) {
        let _ = atomic_write(&memo_path, &bytes);
    }
    Ok(flags)
}

/// The trees of a missing root from the toolchain file's `image`, before the archive is asked.
/// A failed pull is a warning: the archive then serves whatever is still missing (and names
/// the package when it cannot).
fn pull_before_archive(
    spec: &ToolchainSpec,
    location: &str,
    pinned: &LockedRoot,
    store: &Downloads,
) {
    match super::image::pull_location(location, &spec.name, &pinned.package, store) {
        Ok(r) if r.pulled > 0 => eprintln!(
            "kiln: toolchain {}: pulled {} package tree(s) from {}",
            spec.name, r.pulled, r.reference
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "kiln: warning: toolchain {}: pulling from {location} failed, using the Debian archive: {}",
            spec.name,
            crate::error::chain(&e)
        ),
    }
}

/// The root of `packages`, pins that arrived without a toolchain file (a remote worker's, from
/// the pins blob of [`crate::remote::toolchain_root`]): at once when `store` has it, else from
/// the trees in the store and, for the rest, `cas` (the remote cache's CAS, where the
/// building machine put its .debs) and the mirrors of the packages' suites
/// (`KILN_DEBIAN_MIRROR` or apt's sources), every .deb checked against its pinned size and
/// sha256 and its control data against the pin, as a build's root is. `name` says whose root
/// it is in errors.
pub fn materialise_pins(
    runner: &dyn Runner,
    name: &str,
    packages: &[LockedPackage],
    store: Downloads,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<(Digest, PathBuf), ToolchainError> {
    let set = locked::set_digest(packages);
    let dir = root_dir(&store, &set);
    if dir.is_dir() {
        return Ok((set, dir));
    }
    let fail = |detail: String| ToolchainError::Debian {
        toolchain: name.to_string(),
        detail,
    };
    let env_mirror = std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty());
    let mut mirrors = BTreeMap::new();
    for p in packages {
        if !mirrors.contains_key(&p.suite) {
            let m = sources::mirror_for(&p.suite, env_mirror.as_deref(), Path::new("/etc/apt"))
                .map_err(|e| fail(crate::error::chain(&e)))?;
            mirrors.insert(p.suite.clone(), m);
        }
    }
    let http = ReqwestHttp::new().map_err(|e| fail(crate::error::chain(&e)))?;
    let archive = Archive {
        http: &http,
        cas,
        runner,
        keyring: PathBuf::from(DEBIAN_KEYRING),
        downloads: store,
        mirrors,
        component: "main".into(),
        architecture: packages
            .first()
            .map_or_else(String::new, |p| p.architecture.clone()),
        now: unix_now(),
    };
    archive
        .root(packages)
        .map_err(|e| fail(crate::error::chain(&e)))
}
