//! The archive index: which binary packages a suite has, read from its signed metadata.
//!
//! The chain of trust, one step at a time:
//! 1. `dists/<suite>/InRelease` is fetched and verified with gpgv (see [`super::signature`]);
//!    only the signed text is read on, and its `Suite` or `Codename` must be the suite asked
//!    for (a validly signed Release of another suite is a replay, not an answer).
//!    A `Valid-Until` in the past is refused (see [`super::release`]).
//! 2. Its `SHA256` list gives the digest and size of `<component>/binary-<arch>/Packages.xz`.
//! 3. That file is taken from `$KILN_CACHE` by digest when present and intact, else fetched
//!    (from `by-hash/SHA256/<hex>` when the Release says `Acquire-By-Hash: yes`, so a mirror
//!    updating mid-fetch cannot hand over a newer file than the one signed), checked for size
//!    and digest, and stored by temp file + rename.
//! 4. It is decompressed (xz) and parsed into [`Package`]s.
//!
//! InRelease is fetched on every call (it is what says which Packages is current); the
//! Packages file, tens of megabytes, is fetched once per digest.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use super::control::{self, ControlError, Paragraph};
use super::http::{Http, HttpError};
use super::relation::{self, Dependency, Relation};
use super::release::{check_fresh, ReleaseError};
use super::signature::{self, SignatureError};
use super::store::{DownloadError, Downloads};
use super::version::Version;
use crate::digest::Digest;
use crate::exec::Runner;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiArch {
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package as the index describes it.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub pre_depends: Vec<Dependency>,
    pub depends: Vec<Dependency>,
    pub provides: Vec<Relation>,
    /// Path of the .deb relative to the mirror.
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
    /// Source package and version (`Source: gcc-12 (12.2.0-14)`; absent = same as binary).
    pub source: String,
    pub source_version: Version,
    /// The mirror the package was listed by, without a trailing slash.
    pub mirror: Arc<str>,
    pub suite: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("fetching the index of suite {suite}")]
    Fetch {
        suite: String,
        #[source]
        source: HttpError,
    },
    #[error("checking the signature of suite {suite}")]
    Signature {
        suite: String,
        #[source]
        source: SignatureError,
    },
    #[error("{url} is signed for suite {found:?}, not {wanted:?}")]
    WrongSuite {
        url: String,
        found: String,
        wanted: String,
    },
    #[error("checking the freshness of suite {suite}")]
    Stale {
        suite: String,
        #[source]
        source: ReleaseError,
    },
    #[error("{url} does not list {path} (is the component or architecture right?)")]
    NotListed { url: String, path: String },
    #[error("{url}: malformed SHA256 line {line:?}")]
    BadChecksumLine { url: String, line: String },
    #[error("fetching {path}")]
    Download {
        path: String,
        #[source]
        source: Box<DownloadError>,
    },
    #[error("decompressing {path}")]
    Decompress {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Entry(#[from] Box<EntryError>),
    #[error("creating a scratch directory in {}", .0.display())]
    Scratch(PathBuf, #[source] io::Error),
}

/// A bad stanza in a Packages file.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}: package {package}: {problem}")]
pub struct EntryError {
    pub origin: String,
    pub line: usize,
    pub package: String,
    pub problem: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Where to read one suite from.
#[derive(Clone, Debug)]
pub struct SuiteSpec {
    pub mirror: String,
    pub suite: String,
    pub component: String,
    pub architecture: String,
    /// The current time (seconds since the epoch), for `Valid-Until`.
    pub now: i64,
}

/// Fetches, verifies and parses one suite's Packages index.
pub fn load_suite(
    spec: &SuiteSpec,
    http: &dyn Http,
    runner: &dyn Runner,
    keyring: &std::path::Path,
    downloads: &Downloads,
) -> Result<Vec<Package>, IndexError> {
    let suite = spec.suite.clone();
    let base = format!("{}/dists/{}", spec.mirror, spec.suite);
    let url = format!("{base}/InRelease");
    let mut signed = Vec::new();
    http.get(&url, &mut signed)
        .map_err(|source| IndexError::Fetch {
            suite: suite.clone(),
            source,
        })?;
    let scratch = downloads
        .scratch_dir()
        .map_err(|e| IndexError::Scratch(downloads.root().into(), e))?;
    let text = signature::verify_clearsigned(runner, keyring, &signed, &url, scratch.path())
        .map_err(|source| IndexError::Signature {
            suite: suite.clone(),
            source,
        })?;
    let Some(release) = control::parse(&String::from_utf8_lossy(&text), &url)?
        .into_iter()
        .next()
    else {
        return Err(IndexError::WrongSuite {
            url,
            found: String::new(),
            wanted: spec.suite.clone(),
        });
    };
    let names = [release.get("Suite"), release.get("Codename")];
    if !names.iter().flatten().any(|n| *n == spec.suite) {
        return Err(IndexError::WrongSuite {
            url,
            found: names.iter().flatten().next().unwrap_or(&"").to_string(),
            wanted: spec.suite.clone(),
        });
    }
    check_fresh(release.get("Valid-Until"), spec.now, &url).map_err(|source| {
        IndexError::Stale {
            suite: suite.clone(),
            source,
        }
    })?;
    let path = format!(
        "{}/binary-{}/Packages.xz",
        spec.component, spec.architecture
    );
    let (digest, size) = listed_sha256(&release, &path, &url)?;
    let by_hash = release
        .get("Acquire-By-Hash")
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let fetch_url = if by_hash {
        format!(
            "{base}/{}/binary-{}/by-hash/SHA256/{}",
            spec.component,
            spec.architecture,
            digest.hex()
        )
    } else {
        format!("{base}/{path}")
    };
    let xz = downloads
        .get(http, &fetch_url, &digest, size)
        .map_err(|source| IndexError::Download {
            path: format!("{base}/{path}"),
            source: Box::new(source),
        })?;
    let mut text = String::new();
    xz2::read::XzDecoder::new(std::fs::File::open(&xz).map_err(|source| {
        IndexError::Decompress {
            path: path.clone(),
            source,
        }
    })?)
    .read_to_string(&mut text)
    .map_err(|source| IndexError::Decompress {
        path: path.clone(),
        source,
    })?;
    parse_packages(
        &text,
        &format!("{base}/{path}"),
        &Arc::from(spec.mirror.as_str()),
        &Arc::from(spec.suite.as_str()),
    )
}

fn listed_sha256(release: &Paragraph, path: &str, url: &str) -> Result<(Digest, u64), IndexError> {
    for line in release.get("SHA256").unwrap_or("").lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let bad = || IndexError::BadChecksumLine {
            url: url.to_string(),
            line: line.to_string(),
        };
        let [hex, size, name] = words[..] else {
            return Err(bad());
        };
        if name == path {
            let digest = format!("sha256:{hex}").parse().map_err(|_| bad())?;
            let size = size.parse().map_err(|_| bad())?;
            return Ok((digest, size));
        }
    }
    Err(IndexError::NotListed {
        url: url.to_string(),
        path: path.to_string(),
    })
}

/// Parses a Packages file (`origin` names it in errors).
pub fn parse_packages(
    text: &str,
    origin: &str,
    mirror: &Arc<str>,
    suite: &Arc<str>,
) -> Result<Vec<Package>, IndexError> {
    control::parse(text, origin)?
        .iter()
        .map(|p| package(p, origin, mirror, suite))
        .collect()
}

fn package(
    p: &Paragraph,
    origin: &str,
    mirror: &Arc<str>,
    suite: &Arc<str>,
) -> Result<Package, IndexError> {
    let name = p.get("Package").unwrap_or("").to_string();
    let entry = |problem: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
        IndexError::Entry(Box::new(EntryError {
            origin: origin.to_string(),
            line: p.line,
            package: name.clone(),
            problem,
            source,
        }))
    };
    let field = |problem: String| entry(problem, None);
    if name.is_empty() {
        return Err(field("no Package field".into()));
    }
    let required = |f: &str| p.get(f).ok_or_else(|| field(format!("no {f} field")));
    let version_of = |f: &'static str, text: &str| {
        text.parse::<Version>()
            .map_err(|e| entry(format!("field {f}"), Some(Box::new(e))))
    };
    let relations = |f: &'static str| {
        relation::parse_field(p.get(f).unwrap_or(""))
            .map_err(|e| entry(format!("field {f}"), Some(Box::new(e))))
    };
    let version = version_of("Version", required("Version")?)?;
    let (source, source_version) = match p.get("Source") {
        None => (name.clone(), version.clone()),
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (
                n.trim().to_string(),
                version_of("Source", v.trim_end_matches(')').trim())?,
            ),
            None => (s.trim().to_string(), version.clone()),
        },
    };
    let multi_arch = match p.get("Multi-Arch").unwrap_or("no") {
        "no" => MultiArch::No,
        "same" => MultiArch::Same,
        "foreign" => MultiArch::Foreign,
        "allowed" => MultiArch::Allowed,
        other => return Err(field(format!("unknown Multi-Arch value {other:?}"))),
    };
    let sha256 = format!("sha256:{}", required("SHA256")?)
        .parse()
        .map_err(|_| field("SHA256 is not 64 hex digits".into()))?;
    let size = required("Size")?
        .parse()
        .map_err(|_| field("Size is not a number".into()))?;
    Ok(Package {
        version,
        architecture: required("Architecture")?.to_string(),
        multi_arch,
        essential: p.get("Essential").is_some_and(|e| e == "yes"),
        pre_depends: relations("Pre-Depends")?,
        depends: relations("Depends")?,
        provides: relations("Provides")?.into_iter().flatten().collect(),
        filename: required("Filename")?.to_string(),
        size,
        sha256,
        source,
        source_version,
        mirror: mirror.clone(),
        suite: suite.clone(),
        name,
    })
}

/// Every package of the suites loaded, by name, and who provides each virtual name.
#[derive(Default)]
pub struct Index {
    packages: BTreeMap<String, Vec<Package>>,
    /// Virtual name → (providing package, index in its list, provided version).
    providers: BTreeMap<String, Vec<(String, usize, Option<Version>)>>,
}

impl Index {
    pub fn new(all: impl IntoIterator<Item = Package>) -> Index {
        let mut index = Index::default();
        for p in all {
            index.packages.entry(p.name.clone()).or_default().push(p);
        }
        for (name, list) in &mut index.packages {
            // Highest version first; equal versions keep suite order (the first suite wins).
            list.sort_by(|a, b| b.version.cmp(&a.version));
            for (i, p) in list.iter().enumerate() {
                for r in &p.provides {
                    let provided = r.constraint.as_ref().map(|(_, v)| v.clone());
                    index.providers.entry(r.name.clone()).or_default().push((
                        name.clone(),
                        i,
                        provided,
                    ));
                }
            }
        }
        index
    }

    /// Every version of a real package, highest first.
    pub fn versions(&self, name: &str) -> &[Package] {
        self.packages.get(name).map_or(&[], Vec::as_slice)
    }

    /// Packages that provide `name`, with the version they provide it at.
    pub fn providers(&self, name: &str) -> impl Iterator<Item = (&Package, Option<&Version>)> {
        self.providers
            .get(name)
            .into_iter()
            .flatten()
            .map(|(pkg, i, v)| (&self.packages[pkg][*i], v.as_ref()))
    }

    /// Every real and virtual name, sorted, for suggestions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut all: Vec<&str> = self
            .packages
            .keys()
            .chain(self.providers.keys())
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
    }

    /// Packages marked `Essential: yes` (highest version of each).
    pub fn essential(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .values()
            .filter_map(|l| l.first())
            .filter(|p| p.essential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "Package: g++-12\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\nArchitecture: amd64\nMulti-Arch: foreign\n\
Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.34)\nProvides: c++-compiler, c++abi2-dev\nFilename: pool/main/g/gcc-12/g++-12_12.2.0-14_amd64.deb\n\
Size: 10\nSHA256: 0000000000000000000000000000000000000000000000000000000000000001\n\n\
Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nMulti-Arch: same\nFilename: pool/main/g/glibc/libc6.deb\nSize: 1\n\
SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n";

    fn parse(text: &str) -> Result<Vec<Package>, IndexError> {
        parse_packages(
            text,
            "Packages",
            &Arc::from("http://m"),
            &Arc::from("bookworm"),
        )
    }

    #[test]
    fn parses_source_provides_and_multi_arch() {
        let ps = parse(PACKAGES).unwrap();
        assert_eq!(ps[0].source, "gcc-12");
        assert_eq!(ps[0].source_version.as_str(), "12.2.0-14");
        assert_eq!(ps[0].multi_arch, MultiArch::Foreign);
        assert_eq!(ps[0].provides.len(), 2);
        assert_eq!(ps[1].source, "libc6");
        assert_eq!(ps[1].source_version.as_str(), "2.36-9+deb12u4");
        let index = Index::new(ps);
        assert_eq!(
            index.providers("c++-compiler").next().unwrap().0.name,
            "g++-12"
        );
        assert_eq!(
            index.names().collect::<Vec<_>>(),
            ["c++-compiler", "c++abi2-dev", "g++-12", "libc6"]
        );
    }

    #[test]
    fn bad_fields_name_the_package_and_line() {
        let text = PACKAGES.replace("Version: 2.36-9+deb12u4", "Version: x2.36");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.to_string(), "Packages:12: package libc6: field Version");
        let text = PACKAGES.replace("Size: 1\n", "");
        assert_eq!(
            parse(&text).unwrap_err().to_string(),
            "Packages:12: package libc6: no Size field"
        );
    }

    #[test]
    fn finds_the_listed_digest() {
        let r = control::parse(
            "Suite: stable\nSHA256:\n 00000000000000000000000000000000000000000000000000000000000000aa 12 main/binary-amd64/Packages\n \
             00000000000000000000000000000000000000000000000000000000000000bb 7 main/binary-amd64/Packages.xz\n",
            "R",
        )
        .unwrap()
        .remove(0);
        let (d, size) = listed_sha256(&r, "main/binary-amd64/Packages.xz", "R").unwrap();
        assert_eq!((d.hex().ends_with("bb"), size), (true, 7));
        assert!(matches!(
            listed_sha256(&r, "contrib/binary-amd64/Packages.xz", "R"),
            Err(IndexError::NotListed { .. })
        ));
    }
}
