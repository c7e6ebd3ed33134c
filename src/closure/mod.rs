//! Runtime closure: every shared object the service binary needs at run time, found the way the
//! dynamic loader would find it, so the image holds exactly those and nothing else.
//!
//! Search order for a `DT_NEEDED` name, mirroring glibc's ld.so (see ld.so(8)):
//! 1. a name with a '/' is a path and is used as is;
//! 2. kiln's own rule first: a library the workspace built, matched by SONAME or file name, wins,
//!    because in the image the binary finds it in /usr/local/lib through `RUNPATH $ORIGIN/../lib`;
//! 3. `DT_RPATH` of the needing object, then of the executable — only when the needing object has
//!    no `DT_RUNPATH` (RUNPATH disables RPATH);
//! 4. the request's `library_paths` (what `LD_LIBRARY_PATH` would hold for the toolchain);
//! 5. `DT_RUNPATH` of the needing object only (RUNPATH is not inherited);
//! 6. the Debian multiarch defaults of the binary's machine (`/usr/lib/x86_64-linux-gnu` for
//!    an x86-64 binary, `/usr/lib/aarch64-linux-gnu` for an aarch64 one, as that platform's
//!    ld.so has them), whatever machine kiln runs on.
//!
//! A candidate that is not an ELF object of the binary's class and machine is skipped, as the
//! loader skips it. A name found nowhere is an error naming both the library and who needs it.
//!
//! The search can run inside a root ([`Resolver::in_root`]: a toolchain root of pinned
//! packages): every directory and the interpreter are then looked up under it, and symlinks are
//! followed as the loader inside that root would follow them (an absolute target starts again at
//! the root, `..` stops there), never out to the machine's own files. Paths in the result are
//! host paths (under the root); the image code maps them back.

pub mod elf;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

pub use elf::ElfInfo;

/// Where ld.so looks last on Debian 12 amd64 (its built-in system directories plus the
/// multiarch entries of /etc/ld.so.conf.d).
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
];

#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not an ELF object")]
    NotElf(PathBuf),
    #[error("library {library} needed by {needed_by} was not found (searched workspace libraries, RPATH/RUNPATH, toolchain library paths and {default_dirs})")]
    NotFound {
        library: String,
        needed_by: String,
        /// The default directories searched (those of the binary's machine).
        default_dirs: String,
    },
    #[error("the interpreter {interp} named by {binary} does not exist on this machine")]
    NoInterpreter { interp: String, binary: PathBuf },
}

/// One shared object of the closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// The name it was asked for by (`DT_NEEDED` or a dlopen name); usually the SONAME.
    pub name: String,
    /// The object's own `DT_SONAME`, if it has one.
    pub soname: Option<String>,
    /// The path the loader would open (may be a symlink).
    pub found_at: PathBuf,
    /// `found_at` with every symlink resolved: the bytes that get copied.
    pub real_path: PathBuf,
    /// True when it is one of the request's workspace libraries.
    pub workspace: bool,
    /// Who asked for it first (a path, for error messages and `kiln inspect`).
    pub needed_by: String,
}

/// The program interpreter as named by the binary and as found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    pub requested: String,
    pub real_path: PathBuf,
}

#[derive(Clone, Debug, Default)]
pub struct Closure {
    /// The platform of the binary, from its ELF machine (the default one for a machine kiln
    /// has no platform for).
    pub platform: crate::platform::Platform,
    pub interpreter: Option<Interpreter>,
    /// Sorted by name, each name once.
    pub libraries: Vec<Library>,
}

/// Resolves closures against one host and one workspace.
pub struct Resolver {
    workspace: BTreeMap<String, PathBuf>,
    library_paths: Vec<PathBuf>,
    default_dirs: Vec<PathBuf>,
    root: Option<PathBuf>,
}

impl Resolver {
    pub fn new(
        workspace_libs: &[PathBuf],
        library_paths: &[PathBuf],
    ) -> Result<Self, ClosureError> {
        let mut workspace = BTreeMap::new();
        for lib in workspace_libs {
            let info = elf::read(lib)?;
            if let Some(name) = lib.file_name() {
                workspace.insert(name.to_string_lossy().into_owned(), lib.clone());
            }
            if let Some(soname) = info.soname {
                workspace.insert(soname, lib.clone());
            }
        }
        Ok(Resolver {
            workspace,
            library_paths: library_paths.to_vec(),
            default_dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
            root: None,
        })
    }

    /// Searches inside `root` instead of this machine's `/` (see the module comment); "/" is the
    /// machine itself. `library_paths` are then paths inside the root too.
    pub fn in_root(mut self, root: &Path) -> Self {
        self.root = (root != Path::new("/")).then(|| root.to_path_buf());
        self
    }

    /// Where an absolute path of the searched system is on this machine.
    /// The loader's default directories for a binary of ELF `machine`: this resolver's own for
    /// x86-64 (or a machine kiln has no platform for), the platform's multiarch ones otherwise.
    fn default_dirs_for(&self, machine: u16) -> Vec<PathBuf> {
        match crate::platform::Platform::of_elf_machine(machine) {
            Some(p) if !p.is_default() => p
                .default_library_dirs()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            _ => self.default_dirs.clone(),
        }
    }

    fn host(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    /// `host` with every symlink resolved, staying inside the root when there is one.
    fn canonical(&self, host: &Path) -> std::io::Result<PathBuf> {
        match &self.root {
            // Workspace libraries are files of this machine, outside the root.
            Some(root) if host.starts_with(root) => canonical_in(root, host),
            _ => std::fs::canonicalize(host),
        }
    }

    /// The closure of `binary` plus `extra` (dlopen names or absolute paths, resolved as if the
    /// binary asked for them, with their own dependencies).
    pub fn resolve(&self, binary: &Path, extra: &[String]) -> Result<Closure, ClosureError> {
        let exe = elf::read(binary)?;
        let interpreter = match &exe.interp {
            Some(interp) => {
                let real_path = self.canonical(&self.host(Path::new(interp))).map_err(|_| {
                    ClosureError::NoInterpreter {
                        interp: interp.clone(),
                        binary: binary.to_path_buf(),
                    }
                })?;
                Some(Interpreter {
                    requested: interp.clone(),
                    real_path,
                })
            }
            None => None,
        };
        let interp_real = interpreter.as_ref().map(|i| i.real_path.clone());
        let mut found: BTreeMap<String, Library> = BTreeMap::new();
        // (name, needing object path, its info)
        let mut queue: VecDeque<(String, PathBuf, ElfInfo)> = VecDeque::new();
        for name in exe.needed.iter().chain(extra) {
            queue.push_back((name.clone(), binary.to_path_buf(), exe.clone()));
        }
        while let Some((name, needer, needer_info)) = queue.pop_front() {
            if found.contains_key(&name) {
                continue;
            }
            let (found_at, workspace) = self
                .find(&name, &needer, &needer_info, binary, &exe)
                .ok_or_else(|| ClosureError::NotFound {
                    library: name.clone(),
                    needed_by: needer.display().to_string(),
                    default_dirs: self
                        .default_dirs_for(exe.kind.1)
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let real_path = self
                .canonical(&found_at)
                .map_err(|source| ClosureError::Read {
                    path: found_at.clone(),
                    source,
                })?;
            // The loader is mapped by the kernel, not through DT_NEEDED; listing it twice would
            // only duplicate it in the image.
            if Some(&real_path) == interp_real.as_ref() {
                continue;
            }
            let info = elf::read(&found_at)?;
            for dep in &info.needed {
                queue.push_back((dep.clone(), found_at.clone(), info.clone()));
            }
            found.insert(
                name.clone(),
                Library {
                    name,
                    soname: info.soname.clone(),
                    found_at,
                    real_path,
                    workspace,
                    needed_by: needer.display().to_string(),
                },
            );
        }
        Ok(Closure {
            platform: crate::platform::Platform::of_elf_machine(exe.kind.1).unwrap_or_default(),
            interpreter,
            libraries: found.into_values().collect(),
        })
    }

    fn find(
        &self,
        name: &str,
        needer: &Path,
        info: &ElfInfo,
        exe_path: &Path,
        exe: &ElfInfo,
    ) -> Option<(PathBuf, bool)> {
        if name.contains('/') {
            let p = if self.workspace.values().any(|w| w.as_os_str() == name) {
                PathBuf::from(name)
            } else {
                self.host(Path::new(name))
            };
            let ws = self.workspace.values().any(|w| w == &p);
            return compatible(&p, exe.kind).then_some((p, ws));
        }
        if let Some(p) = self.workspace.get(name) {
            return Some((p.clone(), true));
        }
        // `$ORIGIN` expands against the needing object's host path (already in the root, or
        // in the workspace); any other entry is a path of the searched system.
        let expand = |entry: &String, object: &Path| {
            if entry.contains("$ORIGIN") || entry.contains("${ORIGIN}") {
                elf::expand_origin(entry, object)
            } else {
                self.host(Path::new(entry))
            }
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        if info.runpath.is_empty() {
            dirs.extend(info.rpath.iter().map(|e| expand(e, needer)));
            if exe.runpath.is_empty() {
                dirs.extend(exe.rpath.iter().map(|e| expand(e, exe_path)));
            }
        }
        dirs.extend(self.library_paths.iter().map(|d| self.host(d)));
        dirs.extend(info.runpath.iter().map(|e| expand(e, needer)));
        dirs.extend(
            self.default_dirs_for(exe.kind.1)
                .iter()
                .map(|d| self.host(d)),
        );
        dirs.into_iter()
            .map(|d| d.join(name))
            .find(|p| compatible(p, exe.kind))
            .map(|p| (p, false))
    }
}

/// `path` (under `root`) with every symlink resolved as inside `root`: absolute targets start
/// again at `root`, `..` never climbs above it. At most 40 links, as the kernel allows.
pub fn canonical_in(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let rel = path.strip_prefix(root).unwrap_or(path);
    // Names and `..`, in order; `/` and `.` say nothing once the start is known.
    let steps = |p: &Path| -> Vec<std::ffi::OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut pending: VecDeque<std::ffi::OsString> = steps(rel).into();
    let mut out = root.to_path_buf();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            if out != root {
                out.pop();
            }
            continue;
        }
        let next = out.join(&part);
        let meta = std::fs::symlink_metadata(&next)?;
        if !meta.file_type().is_symlink() {
            out = next;
            continue;
        }
        links += 1;
        if links > 40 {
            return Err(std::io::Error::other(format!(
                "too many levels of symbolic links at {}",
                next.display()
            )));
        }
        let target = std::fs::read_link(&next)?;
        if target.is_absolute() {
            out = root.to_path_buf();
        }
        let mut parts = steps(&target);
        parts.extend(pending.drain(..));
        pending = parts.into();
    }
    Ok(out)
}

fn compatible(path: &Path, kind: (bool, u16)) -> bool {
    // Only the ELF identification and e_machine matter, and candidates are whole libraries:
    // read the first 20 bytes, not megabytes.
    use std::io::Read;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    if read.is_err() || &header[..4] != b"\x7fELF" {
        return false;
    }
    let is_64 = header[4] == 2;
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => return false,
    };
    (is_64, machine) == kind
}

#[cfg(test)]
mod root_tests {
    use super::canonical_in;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_root_never_out_of_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/real"), "x").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        // Absolute: starts again at the root. Climbing: stops at the root.
        symlink("/lib/real", root.join("usr/lib/abs")).unwrap();
        symlink("../../../../../usr/lib/real", root.join("usr/lib/climb")).unwrap();
        for link in ["lib/abs", "usr/lib/abs", "usr/lib/climb", "lib/real"] {
            assert_eq!(
                canonical_in(&root, &root.join(link)).unwrap(),
                root.join("usr/lib/real"),
                "{link}"
            );
        }
        symlink("loop", root.join("loop")).unwrap();
        assert!(canonical_in(&root, &root.join("loop")).is_err());
        assert!(canonical_in(&root, &root.join("usr/lib/missing")).is_err());
    }
}
