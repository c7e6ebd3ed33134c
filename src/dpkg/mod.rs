//! Which Debian package a file in the image came from, so scanners (Trivy, Grype) and kiln's SBOM
//! can name it.
//!
//! Sources, both under a root directory (`/` in production, a fixture tree in tests):
//! - `var/lib/dpkg/info/<pkg>[:<arch>].list`: one installed path per line. Multi-Arch: same
//!   packages carry the `:<arch>` suffix in the file name but not in their status record.
//! - `var/lib/dpkg/status`: RFC 822-style paragraphs; only those whose `Status` is
//!   `install ok installed` count.
//!
//! Debian 12 has a merged /usr (`/lib -> usr/lib`), but packages still list some files under the
//! old names, so the same file may be asked for as `/usr/lib/x86_64-linux-gnu/libc.so.6` and listed
//! as `/lib/x86_64-linux-gnu/libc.so.6`. Both sides go through [`canonical`] before comparing.
//!
//! Images carry one `/var/lib/dpkg/status.d/<package>` file per package (the distroless
//! convention scanners read); [`DebPackage::status_d_record`] writes it.

mod license;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::debian::control::parse_lenient as parse_paragraphs;

#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One installed Debian package, as far as an image's SBOM needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Source package; the binary package's own name when the record has no `Source` field.
    pub source: String,
    pub source_version: String,
    /// Short license name(s) from a machine-readable /usr/share/doc/<pkg>/copyright, if any.
    pub license: Option<String>,
    #[serde(skip)]
    pub maintainer: Option<String>,
    #[serde(skip)]
    pub multi_arch: Option<String>,
    /// The `Source` field exactly as dpkg wrote it (may carry a version in parentheses).
    #[serde(skip)]
    pub source_field: Option<String>,
}

impl DebPackage {
    /// The `/var/lib/dpkg/status.d/<name>` body. Field order follows dpkg's own status file so a
    /// human diffing the two sees the same shape.
    pub fn status_d_record(&self) -> String {
        let mut out = format!("Package: {}\nStatus: install ok installed\n", self.name);
        if let Some(m) = &self.maintainer {
            out.push_str(&format!("Maintainer: {m}\n"));
        }
        out.push_str(&format!("Architecture: {}\n", self.architecture));
        if let Some(m) = &self.multi_arch {
            out.push_str(&format!("Multi-Arch: {m}\n"));
        }
        if let Some(s) = &self.source_field {
            out.push_str(&format!("Source: {s}\n"));
        }
        out.push_str(&format!("Version: {}\n", self.version));
        out
    }
}

/// Where a file in an image came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// Installed by a Debian package.
    Package {
        name: String,
        version: String,
        architecture: String,
        source: String,
    },
    /// Built by the workspace (the service binary, a workspace library) or taken from it (an
    /// `[image] files` entry).
    Workspace { target: String },
    /// Written by kiln itself (`/etc/passwd`, status.d records, ...).
    Generated,
    /// Copied from the host but owned by no package (for example the CA bundle, which
    /// `update-ca-certificates` generates).
    Host { path: PathBuf },
}

impl Origin {
    pub fn of_package(p: &DebPackage) -> Origin {
        Origin::Package {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
        }
    }
}

/// The merged-/usr spelling of an absolute path: `/lib/x` and `/usr/lib/x` name one file.
pub fn canonical(path: &str) -> String {
    for old in ["/lib/", "/lib32/", "/lib64/", "/libx32/", "/bin/", "/sbin/"] {
        if let Some(rest) = path.strip_prefix(old) {
            return format!("/usr{old}{rest}");
        }
    }
    path.to_string()
}

/// Only files an image can take from the host are indexed: libraries (closures, dlopen'd
/// libraries, the loader), and `/etc` and os-release files of the base layer. Indexing all of a
/// system's ~100k paths cost tens of MB and milliseconds per image for nothing; a path outside
/// these prefixes simply has no owner.
const INDEXED: &[&str] = &["/usr/lib", "/etc/", "/usr/local/lib"];

/// The dpkg database of one root, indexed by canonical path.
#[derive(Debug, Default)]
pub struct Database {
    root: PathBuf,
    packages: Vec<DebPackage>,
    owners: BTreeMap<String, usize>,
}

impl Database {
    /// Loads `root/var/lib/dpkg`. A root without a dpkg database yields an empty one: the image
    /// is still correct, only without package attribution.
    pub fn load(root: &Path) -> Result<Database, DpkgError> {
        let dpkg = root.join("var/lib/dpkg");
        let status_path = dpkg.join("status");
        let status = match std::fs::read_to_string(&status_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Database::default()),
            Err(source) => {
                return Err(DpkgError::Read {
                    path: status_path,
                    source,
                })
            }
        };
        let mut by_key: BTreeMap<(String, String), DebPackage> = BTreeMap::new();
        for para in parse_paragraphs(&status) {
            if para.get("Status") != Some("install ok installed") {
                continue;
            }
            let (Some(name), Some(version), Some(arch)) = (
                para.get("Package"),
                para.get("Version"),
                para.get("Architecture"),
            ) else {
                continue;
            };
            let source_field = para.get("Source").map(str::to_string);
            let (source, source_version) = match &source_field {
                Some(s) => match s.split_once(" (") {
                    Some((n, v)) => (n.to_string(), v.trim_end_matches(')').to_string()),
                    None => (s.clone(), version.to_string()),
                },
                None => (name.to_string(), version.to_string()),
            };
            by_key.insert(
                (name.to_string(), arch.to_string()),
                DebPackage {
                    name: name.to_string(),
                    version: version.to_string(),
                    architecture: arch.to_string(),
                    source,
                    source_version,
                    license: None,
                    maintainer: para.get("Maintainer").map(str::to_string),
                    multi_arch: para.get("Multi-Arch").map(str::to_string),
                    source_field,
                },
            );
        }
        let mut db = Database {
            root: root.to_path_buf(),
            ..Database::default()
        };
        let info = dpkg.join("info");
        let mut lists: Vec<PathBuf> = match std::fs::read_dir(&info) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(source) => return Err(DpkgError::Read { path: info, source }),
        };
        lists.retain(|p| p.extension().is_some_and(|e| e == "list"));
        lists.sort();
        for list in lists {
            let stem = list
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let (name, arch) = match stem.split_once(':') {
                Some((n, a)) => (n.to_string(), Some(a.to_string())),
                None => (stem.clone(), None),
            };
            let key = by_key
                .keys()
                .find(|(n, a)| *n == name && arch.as_deref().map_or(true, |want| want == a))
                .cloned();
            let Some(key) = key else { continue };
            let pkg = by_key.remove(&key).expect("key just found");
            let idx = db.packages.len();
            db.packages.push(pkg);
            let body = std::fs::read_to_string(&list).map_err(|source| DpkgError::Read {
                path: list.clone(),
                source,
            })?;
            for line in body.lines().filter(|l| l.starts_with('/')) {
                let path = canonical(line);
                if INDEXED.iter().any(|p| path.starts_with(p)) {
                    db.owners.entry(path).or_insert(idx);
                }
            }
        }
        Ok(db)
    }

    /// The root this database describes (`/` for the machine's own).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an absolute path of the described system is on this machine.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The package owning an absolute path (in image or host spelling), if any.
    pub fn owner(&self, path: &str) -> Option<&DebPackage> {
        self.owners
            .get(&canonical(path))
            .map(|&i| &self.packages[i])
    }

    /// The package owning a host file, trying the path as asked and with symlinks resolved
    /// (a library is usually looked up through its SONAME link but listed under its real name
    /// too, and either may be what the list holds).
    pub fn owner_of_host_file(&self, path: &Path) -> Option<&DebPackage> {
        let rel = path
            .strip_prefix(&self.root)
            .map(|p| Path::new("/").join(p))
            .unwrap_or(path.to_path_buf());
        if let Some(p) = self.owner(&rel.to_string_lossy()) {
            return Some(p);
        }
        let real = std::fs::canonicalize(path).ok()?;
        let rel = real
            .strip_prefix(&self.root)
            .map(|p| Path::new("/").join(p))
            .unwrap_or(real);
        self.owner(&rel.to_string_lossy())
    }

    /// `pkg` with its license filled in from its copyright file. Done on demand because reading
    /// every installed package's copyright file would dominate loading the database.
    pub fn with_license(&self, pkg: &DebPackage) -> DebPackage {
        let mut out = pkg.clone();
        if out.license.is_none() {
            out.license = license::short_name(&self.root, &pkg.name);
        }
        out
    }

    pub fn package(&self, name: &str) -> Option<&DebPackage> {
        self.packages.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_spellings_meet() {
        assert_eq!(
            canonical("/lib/x86_64-linux-gnu/libc.so.6"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(
            canonical("/lib64/ld-linux-x86-64.so.2"),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            canonical("/usr/lib/x86_64-linux-gnu/libm.so.6"),
            "/usr/lib/x86_64-linux-gnu/libm.so.6"
        );
        assert_eq!(canonical("/library/x"), "/library/x");
    }

    #[test]
    fn fixture_root_attributes_both_spellings_and_multiarch_names() {
        let root = tempfile::tempdir().unwrap();
        let dpkg = root.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("info")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: libfoo1\nStatus: install ok installed\nMaintainer: A <a@b>\nArchitecture: amd64\n\
             Multi-Arch: same\nSource: foo (1.0-1)\nVersion: 1.0-1+b1\nDescription: foo\n more\n\n\
             Package: gone\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 1\n",
        )
        .unwrap();
        std::fs::write(
            dpkg.join("info/libfoo1:amd64.list"),
            "/.\n/lib\n/lib/x86_64-linux-gnu/libfoo.so.1\n",
        )
        .unwrap();
        std::fs::write(dpkg.join("info/gone.list"), "/usr/bin/gone\n").unwrap();
        let db = Database::load(root.path()).unwrap();
        let p = db.owner("/usr/lib/x86_64-linux-gnu/libfoo.so.1").unwrap();
        assert_eq!(
            (p.source.as_str(), p.source_version.as_str()),
            ("foo", "1.0-1")
        );
        assert!(db.owner("/usr/bin/gone").is_none());
        assert_eq!(
            p.status_d_record(),
            "Package: libfoo1\nStatus: install ok installed\nMaintainer: A <a@b>\nArchitecture: amd64\n\
             Multi-Arch: same\nSource: foo (1.0-1)\nVersion: 1.0-1+b1\n"
        );
    }
}
