//! A build over several platforms: the workspace viewed for each one
//! ([`Workspace::for_platform`]: that platform's toolchains, its own `out/<os>-<arch>/`), built
//! one after the other through the same one-platform build, then, for every service whose
//! image was built for all of them, the image index over those images in
//! `out/images/<service>/` ([`crate::image::index`]; `out/` itself, whichever view `ws` is).
//! Only a build of every platform writes an index; a build of some of them removes an index
//! that names an image it replaced.

use std::collections::BTreeMap;

use super::{build_impl, BuildOptions, BuildOutcome, DriverError};
use crate::build::remote::Remote;
use crate::build::Progress;
use crate::digest::Digest;
use crate::exec::Runner;
use crate::image::index::{self, PlatformImage};
use crate::image::ImageError;
use crate::platform::Platform;
use crate::vcs::Meta;
use crate::workspace::Workspace;

pub struct PlatformsOutcome {
    /// Each platform's build, in the order asked.
    pub builds: Vec<(Platform, BuildOutcome)>,
    /// Service → the digest of its image index (services built for every platform).
    pub indexes: BTreeMap<String, Digest>,
    pub index_errors: Vec<(String, ImageError)>,
    /// Services whose index this build of some of the platforms removed: it named an image
    /// the build replaced.
    pub stale_indexes: Vec<String>,
}

impl PlatformsOutcome {
    pub fn failed(&self) -> bool {
        !self.index_errors.is_empty()
            || self
                .builds
                .iter()
                .any(|(_, b)| b.failed || !b.image_errors.is_empty())
    }
}

/// The platforms a build is for: those named (`--platform`), else the workspace's.
pub fn chosen(ws: &Workspace, named: &[String]) -> Result<Vec<Platform>, DriverError> {
    if named.is_empty() {
        return Ok(ws.platforms.clone());
    }
    let mut out = Vec::new();
    for n in named {
        let p = Platform::parse(n).map_err(|e| DriverError::Usage(e.to_string()))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Builds `platforms` of `ws` (see the module comment). Every platform's targets are checked
/// before anything is built, so a platform with no toolchain for one fails the build at once.
/// `meta` (revision, SOURCE_DATE_EPOCH, source URL) is read from the workspace when `None`.
pub fn build_platforms(
    ws: &Workspace,
    platforms: &[Platform],
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Progress,
    remote: Option<&Remote>,
    meta: Option<&Meta>,
) -> Result<PlatformsOutcome, DriverError> {
    let views: Vec<Workspace> = platforms.iter().map(|p| ws.for_platform(*p)).collect();
    // Every platform's targets are checked before anything is built.
    for view in &views {
        let roots = super::select(view, &opts.targets, |r| r.kind != crate::recipe::Kind::Test)?;
        super::select::check_platform_toolchains(view, &roots)?;
    }
    // Read once: it runs git, and every platform's images name the same revision.
    let read_meta;
    let meta = match meta {
        Some(m) => Some(m),
        None if opts.images => {
            read_meta = Meta::of(runner, &ws.root);
            Some(&read_meta)
        }
        None => None,
    };
    let mut builds = Vec::new();
    for (p, view) in platforms.iter().zip(&views) {
        let outcome = build_impl(view, opts, runner, progress, false, meta, remote)?;
        builds.push((*p, outcome));
    }
    let mut indexes = BTreeMap::new();
    let mut index_errors = Vec::new();
    let mut stale_indexes = Vec::new();
    // An index covers every platform of the workspace: a build of some of them writes none,
    // and removes one that names an image this build replaced, so that out/images/ never
    // holds an index of fewer platforms, nor one of images no longer current.
    let every_platform = ws.platforms.iter().all(|p| platforms.contains(p));
    // A workspace of one default platform has no index: out/images/<service> is its image.
    if opts.images && ws.splits_platforms() {
        let services: Vec<&String> = builds
            .first()
            .map(|(_, b)| b.images.keys().collect())
            .unwrap_or_default();
        let _lock = crate::workspace::lock(&ws.root)?;
        for service in services {
            let mut images: Vec<PlatformImage> = builds
                .iter()
                .filter_map(|(p, b)| {
                    b.images.get(service).map(|img| PlatformImage {
                        platform: *p,
                        layout: img.layout.clone(),
                    })
                })
                .collect();
            if images.len() != builds.len() {
                continue;
            }
            let dir = crate::workspace::OutDir::of(&ws.root).image(service);
            if !every_platform {
                let manifests: Vec<(Platform, Digest)> = builds
                    .iter()
                    .map(|(p, b)| (*p, b.images[service].digest))
                    .collect();
                if !index::names_images(&dir, &manifests) {
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => stale_indexes.push(service.clone()),
                        Err(e) => index_errors.push((
                            service.clone(),
                            ImageError::io("removing the stale image index", &dir)(e),
                        )),
                    }
                }
                continue;
            }
            // The workspace's order, whatever order `--platform` named them in: the same
            // images give the same index.
            images.sort_by_key(|img| ws.platforms.iter().position(|p| *p == img.platform));
            let version = ws
                .recipe(service)
                .map(|r| r.version.clone())
                .unwrap_or_default();
            match index::write_index(&dir, &version, &images) {
                Ok(d) => {
                    indexes.insert(service.clone(), d);
                }
                Err(e) => index_errors.push((service.clone(), e)),
            }
        }
    }
    Ok(PlatformsOutcome {
        builds,
        indexes,
        index_errors,
        stale_indexes,
    })
}
