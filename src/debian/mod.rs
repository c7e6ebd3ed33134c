//! Hermetic toolchains from pinned Debian packages: read a suite's signed index, resolve a
//! package closure, fetch and check the .debs, unpack each into a content-addressed tree, stack
//! the trees into a toolchain root, and run programs inside it with bubblewrap.
//!
//! One concept a file: `version` (Debian version ordering), `control` (deb822), `relation`
//! (Depends/Provides), `release` (Valid-Until), `sources` (which mirror serves a suite), `http`
//! (the transport seam), `signature` (gpgv), `index` (InRelease → Packages), `resolve` (the closure), `locked` (what a
//! lock pins and the set digest), `store` (the cache layout and checked downloads), `extract`
//! (.deb → tree), `root` (trees → root), `sandbox` (bwrap). [`Archive`] strings them together.

pub mod control;
pub mod extract;
pub mod http;
pub mod index;
pub mod locked;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod root;
pub mod sandbox;
pub mod signature;
pub mod sources;
pub mod store;
pub mod version;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::exec::Runner;
use extract::{ExtractError, Tree};
use http::Http;
use index::{Index, IndexError, SuiteSpec};
use locked::LockedPackage;
use resolve::{Request, ResolveError};
use root::RootError;
use store::{DownloadError, Downloads};

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("no mirror configured for suite {0:?}")]
    NoMirror(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("resolving the toolchain packages")]
    Resolve(#[from] ResolveError),
    #[error("fetching {package} {version} ({architecture})")]
    Fetch {
        package: String,
        version: String,
        architecture: String,
        #[source]
        source: Box<DownloadError>,
    },
    #[error("unpacking {package} {version} ({architecture})")]
    Extract {
        package: String,
        version: String,
        architecture: String,
        #[source]
        source: Box<ExtractError>,
    },
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("the lock says {package} has {field} {locked:?}, but its .deb (sha256 as locked) says {actual:?}")]
    LockMismatch {
        package: String,
        field: &'static str,
        locked: String,
        actual: String,
    },
}

/// The sha256 pins the bytes; this catches a lock whose other fields were edited (or written
/// from a different index) so they no longer describe those bytes.
fn check_control(p: &LockedPackage, tree: &Tree) -> Result<(), DebianError> {
    let c = &tree.control;
    for (field, locked, actual) in [
        ("Package", &p.name, &c.package),
        ("Version", &p.version, &c.version),
        ("Architecture", &p.architecture, &c.architecture),
        ("Source", &p.source, &c.source),
        ("source version", &p.source_version, &c.source_version),
    ] {
        if locked != actual {
            return Err(DebianError::LockMismatch {
                package: p.name.clone(),
                field,
                locked: locked.clone(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

/// Somewhere besides the mirrors that may hold a .deb, asked by its pinned sha256 and size
/// first (the remote cache's CAS, where REAPI names a blob by exactly those). What it gives is
/// checked against both before it enters the store.
pub trait DebSource: Sync {
    fn deb(&self, sha256: &Digest, size: u64) -> Option<Vec<u8>>;
}

/// A Debian archive as kiln uses it: where each suite comes from, how to fetch and verify, and
/// the cache everything lands in.
pub struct Archive<'a> {
    pub http: &'a dyn Http,
    /// Asked for a .deb the store lacks before its mirror is.
    pub cas: Option<&'a dyn DebSource>,
    pub runner: &'a dyn Runner,
    /// The keyring InRelease files must be signed by ([`signature::DEBIAN_KEYRING`]).
    pub keyring: PathBuf,
    pub downloads: Downloads,
    /// Suite → mirror URL (see [`sources::mirror_for`]).
    pub mirrors: BTreeMap<String, String>,
    pub component: String,
    pub architecture: String,
    /// The current time (seconds since the epoch), for `Valid-Until`; callers pass the clock.
    pub now: i64,
}

impl Archive<'_> {
    fn mirror(&self, suite: &str) -> Result<&str, DebianError> {
        self.mirrors
            .get(suite)
            .map(String::as_str)
            .ok_or_else(|| DebianError::NoMirror(suite.to_string()))
    }

    /// The merged index of `suites` (every mirror named in [`Archive::mirrors`], in order).
    pub fn index(&self, suites: &[String]) -> Result<Index, DebianError> {
        self.index_of(suites, std::slice::from_ref(&self.architecture))
    }

    /// The merged index of `suites` for every one of `architectures` (a cross root needs the
    /// native index and the target's).
    pub fn index_of(
        &self,
        suites: &[String],
        architectures: &[String],
    ) -> Result<Index, DebianError> {
        let mut all = Vec::new();
        for (suite, architecture) in suites
            .iter()
            .flat_map(|s| architectures.iter().map(move |a| (s, a)))
        {
            let spec = SuiteSpec {
                mirror: self.mirror(suite)?.to_string(),
                suite: suite.clone(),
                component: self.component.clone(),
                architecture: architecture.clone(),
                now: self.now,
            };
            all.extend(index::load_suite(
                &spec,
                self.http,
                self.runner,
                &self.keyring,
                &self.downloads,
            )?);
        }
        Ok(Index::new(all))
    }

    /// The closure of `roots` over `suites`, as a lock would record it (sorted by name).
    pub fn resolve(
        &self,
        suites: &[String],
        roots: &[String],
        with_essential: bool,
    ) -> Result<Vec<LockedPackage>, DebianError> {
        self.resolve_request(
            suites,
            &Request {
                roots: roots.to_vec(),
                architecture: self.architecture.clone(),
                with_essential,
                without_dependencies: Vec::new(),
            },
        )
    }

    /// The closure `request` asks for over `suites` (see [`Archive::resolve`]).
    pub fn resolve_request(
        &self,
        suites: &[String],
        request: &Request,
    ) -> Result<Vec<LockedPackage>, DebianError> {
        let index = self.index_of(suites, &resolve::architectures(request))?;
        Ok(resolve::resolve(&index, request)?
            .into_iter()
            .map(LockedPackage::from_index)
            .collect())
    }

    /// The tree of every package, fetching only the .debs whose tree is not yet in the cache.
    pub fn trees(&self, packages: &[LockedPackage]) -> Result<Vec<Tree>, DebianError> {
        let mut out = Vec::new();
        for p in packages {
            let context = |e| DebianError::Extract {
                package: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                source: Box::new(e),
            };
            let tree = match extract::existing_tree(&self.downloads, &p.sha256) {
                Some(tree) => tree,
                None => {
                    let deb = self.fetch(p)?;
                    extract::tree_for(&self.downloads, &deb, &p.sha256).map_err(context)?
                }
            };
            check_control(p, &tree)?;
            out.push(tree);
        }
        Ok(out)
    }

    /// The .deb of `p` in the cache, fetched (from [`Archive::cas`] when it has it, else the
    /// mirror) and checked against the lock's size and sha256.
    pub fn fetch(&self, p: &LockedPackage) -> Result<PathBuf, DebianError> {
        if let Some(cas) = self.cas.filter(|_| !self.downloads.has(&p.sha256, p.size)) {
            if let Some(path) = cas
                .deb(&p.sha256, p.size)
                .and_then(|bytes| self.downloads.put(&p.sha256, p.size, &bytes))
            {
                return Ok(path);
            }
        }
        let url = format!("{}/{}", self.mirror(&p.suite)?, p.filename);
        self.downloads
            .get(self.http, &url, &p.sha256, p.size)
            .map_err(|source| DebianError::Fetch {
                package: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                source: Box::new(source),
            })
    }

    /// The toolchain root of `packages`: returned at once when already materialised (no
    /// network, no tree read), else built from the trees.
    pub fn root(&self, packages: &[LockedPackage]) -> Result<(Digest, PathBuf), DebianError> {
        let set = locked::set_digest(packages);
        let dir = root::root_dir(&self.downloads, &set);
        if dir.is_dir() {
            return Ok((set, dir));
        }
        // Leftovers of a killed run (half a download, half a tree) go before new work starts.
        self.downloads
            .sweep_stale()
            .map_err(|source| RootError::Io {
                path: self.downloads.tmp_dir(),
                source,
            })?;
        let trees = self.trees(packages)?;
        Ok((set, root::materialise(&self.downloads, &set, &trees)?))
    }
}
