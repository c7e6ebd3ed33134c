//! Finding toolchain programs and memoising everything learnt by running them.
//!
//! Running `g++ --version` or `wx-config` costs milliseconds each, hashing cc1plus tens of them; a
//! no-op build must not pay that. Results are stored in `$KILN_CACHE/probes/` under a key made of
//! the programs' metadata (path, size, mtime, inode), dpkg's status file metadata and the question
//! asked. Any upgrade of a package touches both, so a stale answer cannot survive it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{which, SystemFlags, Toolchain, ToolchainError, ToolchainSpec};
use crate::cache::atomic_write;
use crate::digest::{Digest, Hasher};
use crate::recipe::{Language, SystemLib};

/// Bumped whenever what goes into a fingerprint changes.
const FINGERPRINT_VERSION: &str = "kiln-toolchain-fingerprint-v1";
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

fn stat_line(h: &mut Hasher, path: &Path) {
    match std::fs::metadata(path) {
        Ok(m) => h.update(
            format!(
                "{}|{}|{}|{}\n",
                path.display(),
                m.len(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
                m.ino()
            )
            .as_bytes(),
        ),
        Err(_) => h.update(format!("{}|missing\n", path.display()).as_bytes()),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    fingerprint: Digest,
    package_versions: BTreeMap<String, String>,
    internal: BTreeMap<String, PathBuf>,
    ada_include: Option<PathBuf>,
}

pub(super) fn run(
    toolchain: &str,
    program: &Path,
    args: &[&str],
) -> Result<String, ToolchainError> {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| ToolchainError::Probe {
            toolchain: toolchain.to_string(),
            command: format!("{} {}", program.display(), args.join(" ")),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ToolchainError::Probe {
            toolchain: toolchain.to_string(),
            command: format!("{} {}", program.display(), args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn resolve(spec: &ToolchainSpec, cache_dir: &Path) -> Result<Toolchain, ToolchainError> {
    let mut programs = BTreeMap::new();
    for (role, name) in spec.programs() {
        let path = which(name).ok_or_else(|| ToolchainError::Missing {
            toolchain: spec.name.clone(),
            file: spec.file.clone(),
            program: name.to_string(),
            package: spec.install.clone(),
        })?;
        programs.insert(role.to_string(), path);
    }

    let mut key = Hasher::new();
    key.update(FINGERPRINT_VERSION.as_bytes());
    key.update(format!("{spec:?}").as_bytes());
    for path in programs.values() {
        stat_line(
            &mut key,
            &std::fs::canonicalize(path).unwrap_or(path.clone()),
        );
    }
    stat_line(&mut key, Path::new(DPKG_STATUS));
    let memo_path = cache_dir
        .join("probes")
        .join(format!("toolchain-{}.json", key.finish().hex()));

    let memo = match std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
    {
        Some(m) => m,
        None => {
            let m = fingerprint(spec, &programs)?;
            if let Ok(bytes) = serde_json::to_vec(&m) {
                let _ = atomic_write(&memo_path, &bytes);
            }
            m
        }
    };
    Ok(Toolchain {
        spec: spec.clone(),
        programs,
        fingerprint: memo.fingerprint,
        package_versions: memo.package_versions,
        library_paths: Vec::new(),
        ada_include: memo.ada_include,
    })
}

fn fingerprint(
    spec: &ToolchainSpec,
    programs: &BTreeMap<String, PathBuf>,
) -> Result<Memo, ToolchainError> {
    let compiler = &programs["compiler"];
    // The driver only dispatches; the bytes come from the compiler proper.
    let internal_name = match spec.language {
        Language::Cxx => "cc1plus",
        Language::Ada => "gnat1",
    };
    let internal_path = PathBuf::from(
        run(
            &spec.name,
            compiler,
            &[&format!("-print-prog-name={internal_name}")],
        )?
        .trim(),
    );
    let mut internal = BTreeMap::new();
    if internal_path.is_absolute() && internal_path.exists() {
        internal.insert(internal_name.to_string(), internal_path);
    }
    let ada_include = match spec.language {
        Language::Ada => {
            let p =
                PathBuf::from(run(&spec.name, compiler, &["-print-file-name=adainclude"])?.trim());
            p.is_dir().then_some(p)
        }
        Language::Cxx => None,
    };

    let mut h = Hasher::new();
    h.update(FINGERPRINT_VERSION.as_bytes());
    for (role, path) in programs.iter().chain(internal.iter()) {
        let real = std::fs::canonicalize(path).unwrap_or(path.clone());
        let (d, _) = Digest::of_file(&real).map_err(|e| ToolchainError::Probe {
            toolchain: spec.name.clone(),
            command: format!("reading {}", real.display()),
            detail: e.to_string(),
        })?;
        // Only the file name: the same compiler installed elsewhere is the same compiler.
        h.update(
            format!(
                "program {role} {} {d}\n",
                real.file_name().unwrap_or_default().to_string_lossy()
            )
            .as_bytes(),
        );
    }
    for (role, path) in programs {
        if role == "archiver" || role == "compiler" {
            let version = run(&spec.name, path, &["--version"]).unwrap_or_default();
            h.update(format!("version {role}\n{version}\n").as_bytes());
        }
    }
    let package_versions = dpkg_versions(&spec.packages);
    for (name, version) in &package_versions {
        h.update(format!("package {name} {version}\n").as_bytes());
    }
    for flag in spec
        .cflags
        .iter()
        .chain(&spec.ldflags)
        .chain(&spec.bindflags)
    {
        h.update(format!("flag {flag}\n").as_bytes());
    }
    Ok(Memo {
        fingerprint: h.finish(),
        package_versions,
        internal,
        ada_include,
    })
}

/// Versions of installed Debian packages; a package that is not installed maps to "".
pub fn dpkg_versions(packages: &[String]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = packages
        .iter()
        .map(|p| (p.clone(), String::new()))
        .collect();
    if packages.is_empty() {
        return out;
    }
    let Ok(o) = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${Version} ${db:Status-Status}\n")
        .args(packages)
        .output()
    else {
        return out;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut parts = line.split(' ');
        if let (Some(name), Some(version), Some("installed")) =
            (parts.next(), parts.next(), parts.next())
        {
            out.insert(name.to_string(), version.to_string());
        }
    }
    out
}

pub(super) fn system_lib_flags(
    tc: &Toolchain,
    libs: &[SystemLib],
    cache_dir: &Path,
) -> Result<SystemFlags, ToolchainError> {
    if libs.is_empty() {
        return Ok(SystemFlags::default());
    }
    let mut key = Hasher::new();
    key.update(format!("system-libs-v1 {libs:?} {}\n", tc.spec.wx_config).as_bytes());
    stat_line(&mut key, Path::new(DPKG_STATUS));
    for tool in [tc.spec.wx_config.as_str(), "pkg-config"] {
        if let Some(p) = which(tool) {
            stat_line(&mut key, &p);
        }
    }
    let memo_path = cache_dir
        .join("probes")
        .join(format!("syslibs-{}.json", key.finish().hex()));
    if let Some(f) = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SystemFlags>(&b).ok())
    {
        return Ok(f);
    }
    let mut flags = SystemFlags::default();
    let split = |s: String| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    for lib in libs {
        match lib {
            SystemLib::Wx(names) => {
                let wx = which(&tc.spec.wx_config).ok_or_else(|| ToolchainError::Missing {
                    toolchain: tc.spec.name.clone(),
                    file: tc.spec.file.clone(),
                    program: tc.spec.wx_config.clone(),
                    package: "libwxgtk3.2-dev".into(),
                })?;
                let list = names.join(",");
                flags
                    .cflags
                    .extend(split(run(&tc.spec.name, &wx, &["--cxxflags", &list])?));
                flags
                    .libs
                    .extend(split(run(&tc.spec.name, &wx, &["--libs", &list])?));
            }
            SystemLib::Pkg(name) => {
                let pc = which("pkg-config").ok_or_else(|| ToolchainError::Missing {
                    toolchain: tc.spec.name.clone(),
                    file: tc.spec.file.clone(),
                    program: "pkg-config".into(),
                    package: "pkg-config".into(),
                })?;
                flags
                    .cflags
                    .extend(split(run(&tc.spec.name, &pc, &["--cflags", name])?));
                flags
                    .libs
                    .extend(split(run(&tc.spec.name, &pc, &["--libs", name])?));
            }
            SystemLib::Lib(name) => flags.libs.push(format!("-l{name}")),
        }
    }
    // Keep the first occurrence of each flag: wx-config repeats -pthread and -L for every set.
    dedup_keep_first(&mut flags.cflags);
    if let Ok(bytes) = serde_json::to_vec(&flags) {
        let _ = atomic_write(&memo_path, &bytes);
    }
    Ok(flags)
}

fn dedup_keep_first(v: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|f| seen.insert(f.clone()));
}
