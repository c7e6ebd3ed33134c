//! Publishing built images: the push policy between a finished build and the registry client.
//!
//! Which tags an image gets (the recipe's version and the checkout's short revision unless told
//! otherwise, `latest` only on request), where the registry keeps its mount-source memory, which
//! artifacts go up as referrers, and what is recorded for `kiln resolve`. The registry client
//! ([`crate::registry`]) knows how to push; this module knows what to push. `kiln push` is this
//! module plus argument parsing and printing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::image::ImageResult;
use crate::recipe::Recipe;
use crate::registry::{self, PushError, PushImage, PushOptions, PushReport};
use crate::sbom::SbomError;
use crate::vcs::Meta;
use crate::workspace::Workspace;

/// `REGISTRY[:PORT]/PREFIX`: where a set of images goes, each to `PREFIX/<service>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub registry: String,
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
#[error("--to {0:?} must start with a registry host (REGISTRY[:PORT]/PREFIX), for example 127.0.0.1:5000/team")]
pub struct DestinationError(String);

impl Destination {
    pub fn parse(to: &str) -> Result<Destination, DestinationError> {
        let to = to.trim_end_matches('/');
        let (registry, prefix) = to.split_once('/').unwrap_or((to, ""));
        if registry.is_empty()
            || !(registry.contains('.') || registry.contains(':') || registry == "localhost")
        {
            return Err(DestinationError(to.to_string()));
        }
        Ok(Destination {
            registry: registry.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// How the user asked for images to be published.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Explicit tags; empty means the recipe's version and the short revision.
    pub tags: Vec<String>,
    pub latest: bool,
    /// Attach SBOMs and provenance as referrers.
    pub attach: bool,
}

impl Policy {
    /// The tags `recipe`'s image gets, given the revision the build labelled it with.
    pub fn tags_for(&self, recipe: &Recipe, meta: &Meta) -> Vec<String> {
        let mut tags = if self.tags.is_empty() {
            let mut t = vec![recipe.version.clone()];
            if meta.short_revision != "unknown" {
                t.push(meta.short_revision.clone());
            }
            t
        } else {
            self.tags.clone()
        };
        if self.latest && !tags.iter().any(|t| t == "latest") {
            tags.push("latest".into());
        }
        tags
    }
}

/// Where a registry's mount-source memory lives in the cache: one file per registry host.
pub fn holders_file(cache_dir: &Path, registry: &str) -> PathBuf {
    let safe: String = registry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir.join("registries").join(format!("{safe}.json"))
}

/// Why a pushed image's artifacts did not all go up.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Sbom(#[from] SbomError),
    #[error(transparent)]
    Push(#[from] PushError),
    /// A platform's image layout, read for the manifest its SBOMs describe.
    #[error("reading a platform's image layout")]
    Layout(#[source] Box<crate::oci::LayoutError>),
}

/// One service's publication: the push, and (when it went up and attaching was asked for) the
/// number of artifacts attached.
pub struct Published {
    pub pushed: Result<PushReport, PushError>,
    pub attached: Option<Result<usize, AttachError>>,
}

/// Pushes the `images` of `services` (built, labelled with `meta`) under `policy`, then attaches
/// their artifacts, images in parallel. Results are in `services` order.
pub fn publish(
    ws: &Workspace,
    opts: &PushOptions,
    policy: &Policy,
    services: &[&Recipe],
    images: &BTreeMap<String, ImageResult>,
    meta: &Meta,
) -> Vec<Published> {
    let push: Vec<PushImage> = services
        .iter()
        .map(|r| PushImage {
            service: r.name.clone(),
            layout: images[&r.name].layout.clone(),
            tags: policy.tags_for(r, meta),
        })
        .collect();
    let results = registry::push_all(opts, &push);
    // SBOMs and provenance go up as referrers, images in parallel (each over one connection).
    std::thread::scope(|scope| {
        let handles: Vec<_> = results
            .into_iter()
            .map(|pushed| {
                scope.spawn(move || {
                    let attached = match &pushed {
                        Ok(rep) if policy.attach => Some(attach(ws, opts, rep)),
                        _ => None,
                    };
                    Published { pushed, attached }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("attaching panicked"))
            .collect()
    })
}

fn attach(ws: &Workspace, opts: &PushOptions, rep: &PushReport) -> Result<usize, AttachError> {
    if ws.splits_platforms() {
        return attach_per_platform(ws, opts, rep);
    }
    let artifacts = crate::sbom::artifacts(&ws.root, &rep.service)?;
    registry::push_referrers(opts, &rep.service, &rep.descriptor(), &artifacts)?;
    Ok(artifacts.len())
}

/// A multi-platform image's SBOMs and provenance describe one platform's image each, so each
/// set is attached to its platform's manifest (the index's child), not to the index.
fn attach_per_platform(
    ws: &Workspace,
    opts: &PushOptions,
    rep: &PushReport,
) -> Result<usize, AttachError> {
    let mut n = 0;
    for p in &ws.platforms {
        let layout = crate::workspace::OutDir::of_platform(&ws.root, Some(p)).image(&rep.service);
        let subject = crate::oci::layout::read_index(&layout)
            .map_err(|e| AttachError::Layout(Box::new(e)))?;
        let artifacts = crate::sbom::artifacts_of(&ws.root, Some(p), &rep.service)?;
        let subject =
            crate::oci::Descriptor::new(&subject.media_type, subject.digest, subject.size);
        registry::push_referrers(opts, &rep.service, &subject, &artifacts)?;
        n += artifacts.len();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("127.0.0.1:5000/team/svc/").unwrap();
        assert_eq!(
            (d.registry.as_str(), d.prefix.as_str()),
            ("127.0.0.1:5000", "team/svc")
        );
        let d = Destination::parse("localhost").unwrap();
        assert_eq!((d.registry.as_str(), d.prefix.as_str()), ("localhost", ""));
        assert!(Destination::parse("team/svc").is_err());
    }

    #[test]
    fn holders_files_are_one_safe_name_per_registry() {
        let p = holders_file(Path::new("/c"), "127.0.0.1:5000");
        assert_eq!(p, Path::new("/c/registries/127.0.0.1_5000.json"));
    }
}
