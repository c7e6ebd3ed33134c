//! Finding toolchain programs and memoising everything learnt by running them.
//!
//! Running `g++ --version` or `wx-config` costs milliseconds each, hashing cc1plus tens of them; a
//! no-op build must not pay that. Results are stored in `$KILN_CACHE/probes/` under a key made of
//! the programs' metadata (path, size, mtime, inode), dpkg's status file metadata and the question
//! asked. Any upgrade of a package touches both, so a stale answer cannot survive it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{which, SystemFlags, Toolchain, ToolchainError, ToolchainSpec};
use crate::cache::atomic_write;
use crate::digest::{Digest, Hasher};
use crate::exec::{Command, Env, Runner};
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

/// What `program args` printed on stdout; a probe that cannot start or fails names the toolchain,
/// the command and what went wrong.
pub(super) fn run(
    runner: &dyn Runner,
    toolchain: &str,
    program: &Path,
    args: &[&str],
) -> Result<String, ToolchainError> {
    // The user's environment, with messages and `--version` text in the C locale.
    let cmd = Command::new(program)
        .args(args.iter().copied())
        .env(Env::Inherited(vec![("LC_ALL".into(), "C".into())]));
    let out = runner.run(&cmd).map_err(|source| ToolchainError::ProbeIo {
        toolchain: toolchain.to_string(),
        action: "starting",
        what: format!("{} {}", program.display(), args.join(" ")),
        source,
    })?;
    if !out.success {
        return Err(ToolchainError::Probe {
            toolchain: toolchain.to_string(),
            command: format!("{} {}", program.display(), args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn resolve(
    runner: &dyn Runner,
    spec: &ToolchainSpec,
    cache_dir: &Path,
) -> Result<Toolchain, ToolchainError> {
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
            let m = fingerprint(runner, spec, &programs)?;
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
        root: None,
    })
}

fn fingerprint(
    runner: &dyn Runner,
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
            runner,
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
            let p = PathBuf::from(
                run(
                    runner,
                    &spec.name,
                    compiler,
                    &["-print-file-name=adainclude"],
                )?
                .trim(),
            );
            p.is_dir().then_some(p)
        }
        Language::Cxx => None,
    };

    let mut h = Hasher::new();
    h.update(FINGERPRINT_VERSION.as_bytes());
    for (role, path) in programs.iter().chain(internal.iter()) {
        let real = std::fs::canonicalize(path).unwrap_or(path.clone());
        let (d, _) = Digest::of_file(&real).map_err(|source| ToolchainError::ProbeIo {
            toolchain: spec.name.clone(),
            action: "reading",
            what: real.display().to_string(),
            source,
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
            let version = run(runner, &spec.name, path, &["--version"]).unwrap_or_default();
            h.update(format!("version {role}\n{version}\n").as_bytes());
        }
    }
    let package_versions = dpkg_versions(runner, &spec.packages);
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

/// Versions of installed Debian packages, asked of `dpkg-query` through `runner`; a package that
/// is not installed (or a machine without dpkg) maps to "".
pub fn dpkg_versions(runner: &dyn Runner, packages: &[String]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = packages
        .iter()
        .map(|p| (p.clone(), String::new()))
        .collect();
    if packages.is_empty() {
        return out;
    }
    let cmd = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${Version} ${db:Status-Status}\n")
        .args(packages.iter().cloned())
        .env(Env::inherited());
    // dpkg-query exits 1 when a package is unknown and still lists the others.
    let Ok(o) = runner.run(&cmd) else {
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
    runner: &dyn Runner,
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
                flags.cflags.extend(split(run(
                    runner,
                    &tc.spec.name,
                    &wx,
                    &["--cxxflags", &list],
                )?));
                flags
                    .libs
                    .extend(split(run(runner, &tc.spec.name, &wx, &["--libs", &list])?));
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
                    .extend(split(run(runner, &tc.spec.name, &pc, &["--cflags", name])?));
                flags
                    .libs
                    .extend(split(run(runner, &tc.spec.name, &pc, &["--libs", name])?));
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

pub(super) fn dedup_keep_first(v: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|f| seen.insert(f.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scripted::{self, Scripted};
    use crate::exec::Output;

    fn spec(packages: &[&str]) -> ToolchainSpec {
        ToolchainSpec {
            name: "gcc".into(),
            file: "toolchains/gcc.toml".into(),
            language: Language::Cxx,
            compiler: "g++".into(),
            archiver: "ar".into(),
            binder: "gnatbind".into(),
            cflags: vec!["-O2".into()],
            ldflags: Vec::new(),
            bindflags: Vec::new(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            install: "g++".into(),
            wx_config: "wx-config".into(),
            source: crate::toolchain::ToolchainSource::Host,
            without_dependencies: Vec::new(),
            image: None,
            platform: crate::platform::Platform::default(),
        }
    }

    #[test]
    fn a_probe_runs_in_the_c_locale_and_returns_stdout() {
        let runner = scripted::replying(scripted::ok("g++ (Debian 12.2.0-14) 12.2.0\n"));
        let out = run(&runner, "gcc", Path::new("/usr/bin/g++"), &["--version"]).unwrap();
        assert_eq!(out, "g++ (Debian 12.2.0-14) 12.2.0\n");
        let calls = runner.calls();
        assert_eq!(calls[0].program, Path::new("/usr/bin/g++"));
        assert_eq!(calls[0].args, ["--version"]);
        assert_eq!(
            calls[0].env,
            Env::Inherited(vec![("LC_ALL".into(), "C".into())])
        );
    }

    #[test]
    fn a_failing_or_missing_probe_names_toolchain_command_and_reason() {
        let runner = scripted::replying(scripted::failed(
            1,
            "g++: error: unrecognized command-line option '--bogus'\n",
        ));
        let e = run(&runner, "gcc", Path::new("/usr/bin/g++"), &["--bogus"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "toolchain `gcc`: running `/usr/bin/g++ --bogus` failed: \
             g++: error: unrecognized command-line option '--bogus'"
        );
        let e = run(
            &Scripted::new(scripted::not_found),
            "gcc",
            Path::new("wx-config"),
            &["--libs", "core"],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "toolchain `gcc`: starting `wx-config --libs core`"
        );
        // The OS error travels as the cause, printed once by the CLI.
        let msg = crate::error::chain(&e);
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn dpkg_versions_keep_only_installed_packages() {
        // dpkg-query fails for an unknown package but still lists the ones it knows.
        let runner = scripted::replying(Output {
            stdout: b"libc6 2.36-9 installed\nlibfoo 1.0-1 config-files\n".to_vec(),
            ..scripted::failed(1, "dpkg-query: no packages found matching libbar\n")
        });
        let names = ["libc6", "libfoo", "libbar"].map(String::from);
        let v = dpkg_versions(&runner, &names);
        let want: BTreeMap<String, String> = [("libc6", "2.36-9"), ("libfoo", ""), ("libbar", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(v, want);
        let calls = runner.calls();
        assert_eq!(calls[0].program, Path::new("dpkg-query"));
        assert_eq!(
            calls[0].args,
            [
                "-W",
                "-f=${Package} ${Version} ${db:Status-Status}\n",
                "libc6",
                "libfoo",
                "libbar"
            ]
        );
        // No packages, no process; no dpkg, nothing installed.
        let none = Scripted::new(scripted::not_found);
        assert!(dpkg_versions(&none, &[]).is_empty());
        assert!(none.calls().is_empty());
        assert_eq!(dpkg_versions(&none, &names[..1])["libc6"], "");
    }

    #[test]
    fn the_fingerprint_follows_what_the_probes_report() {
        let dir = tempfile::tempdir().unwrap();
        let programs: BTreeMap<String, PathBuf> = ["compiler", "archiver"]
            .iter()
            .map(|role| {
                let p = dir.path().join(role);
                std::fs::write(&p, format!("binary of {role}")).unwrap();
                (role.to_string(), p)
            })
            .collect();
        // A compiler that reports `version` and, for cc1plus, no absolute path.
        let compiler = |version: &'static str| {
            Scripted::new(move |c: &Command| {
                Ok(match c.args[0].as_str() {
                    "--version" => scripted::ok(version),
                    "-W" => scripted::ok("libstdc++6 12.2.0-14 installed\n"),
                    _ => scripted::ok("cc1plus\n"),
                })
            })
        };
        let print = |r: &dyn Runner| {
            fingerprint(r, &spec(&["libstdc++6"]), &programs)
                .unwrap()
                .fingerprint
        };
        let a = compiler("g++ 12.2.0\n");
        let first = print(&a);
        assert_eq!(first, print(&compiler("g++ 12.2.0\n")));
        assert_ne!(
            first,
            print(&compiler("g++ 12.3.0\n")),
            "--version was ignored"
        );
        let memo = fingerprint(&a, &spec(&["libstdc++6"]), &programs).unwrap();
        assert_eq!(memo.package_versions["libstdc++6"], "12.2.0-14");
        let asked: Vec<String> = a.calls().iter().map(|c| c.args.join(" ")).collect();
        assert!(
            asked.contains(&"-print-prog-name=cc1plus".to_string()),
            "{asked:?}"
        );
        // A failing compiler probe stops resolution with its error.
        let broken = scripted::replying(scripted::failed(127, "g++: not usable"));
        let Err(e) = fingerprint(&broken, &spec(&[]), &programs) else {
            panic!("a broken compiler was fingerprinted");
        };
        assert!(e.to_string().contains("g++: not usable"), "{e}");
    }
}
