//! What one image holds, in the terms both SBOM formats need: the image itself, the components
//! (the service, the workspace libraries it links, the Debian packages), and every regular file
//! with the component it belongs to.
//!
//! Everything comes from the [`SbomInput`] (the image result, the recipes) plus two reads: the
//! image's own layers, for the SHA1 of each file that SPDX 2.3 requires and the image result does
//! not carry ([`super::layers`]), and the workspace's static archives, for their checksums.
//!
//! Order is part of the output: components are service, libraries by name, packages by name;
//! files are sorted by path.

use super::license::License;
use super::purl::{deb_purl, oci_purl};
use super::{io_err, SbomError, SbomInput};
use crate::digest::Digest;
use crate::dpkg::Origin;
use crate::recipe::Kind as RecipeKind;

/// Per-layer SHA1 lists, under the workspace root (see [`super::layers`]).
/// Under the cache directory: the lists are named by layer digest, like the layers themselves,
/// so they survive `kiln clean` and serve every workspace.
const SHA1_CACHE: &str = "sbom-sha1";

pub struct Inventory {
    pub service: String,
    pub version: String,
    pub description: String,
    pub image_digest: Digest,
    pub image_purl: String,
    /// SOURCE_DATE_EPOCH as RFC 3339.
    pub created: String,
    pub components: Vec<Component>,
    pub files: Vec<File>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Service,
    Library {
        /// Installed in the image as a `.so`; otherwise linked into the service.
        shared: bool,
    },
    Package {
        architecture: String,
        source: String,
        source_version: String,
    },
}

pub struct Component {
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub description: String,
    pub license: License,
    /// The component's own bytes: the binary or shared library in the image, or the static
    /// archive it was linked from. Debian packages have none: the .deb is not in the image.
    pub checksum: Option<Digest>,
    pub purl: Option<String>,
    /// Where the component's own file sits in the image, if it installs one.
    installed: Option<String>,
}

pub struct File {
    /// Absolute path in the image.
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
    pub sha1: [u8; 20],
    /// Index into [`Inventory::components`]; `None` for files kiln wrote or took from the host,
    /// which belong to the image itself.
    pub owner: Option<usize>,
    /// Why an unowned file is there.
    pub note: Option<String>,
}

impl Inventory {
    pub fn of(input: &SbomInput) -> Result<Inventory, SbomError> {
        let r = input.recipe;
        let img = input.image;
        let mut components = vec![Component {
            kind: Kind::Service,
            name: r.name.clone(),
            version: r.version.clone(),
            description: r.description.clone(),
            license: License::of_recipe(&r.license),
            checksum: None,
            purl: None,
            installed: Some(format!("/usr/local/bin/{}", r.output)),
        }];
        components.extend(libraries(input)?);
        for p in &img.packages {
            components.push(Component {
                kind: Kind::Package {
                    architecture: p.architecture.clone(),
                    source: p.source.clone(),
                    source_version: p.source_version.clone(),
                },
                name: p.name.clone(),
                version: p.version.clone(),
                description: String::new(),
                license: License::of_debian(p.license.as_deref()),
                checksum: None,
                purl: Some(deb_purl(p)),
                installed: None,
            });
        }

        let sha1s = super::layers::sha1_of_files(img, &input.cache_dir.join(SHA1_CACHE))?;
        let mut files: Vec<File> = img
            .files
            .iter()
            .map(|f| {
                let (owner, note) = owner_of(&components, &f.origin);
                File {
                    path: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256,
                    sha1: sha1s[&(f.layer, f.path.as_str())],
                    owner,
                    note,
                }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));

        // The service's and shared libraries' checksums are those of their files in the image
        // (stripped, as shipped), not of the unstripped host files.
        for (i, c) in components.iter_mut().enumerate() {
            if let Some(path) = &c.installed {
                c.checksum = files
                    .iter()
                    .find(|f| f.owner == Some(i) && f.path == *path)
                    .map(|f| f.sha256);
            }
        }

        Ok(Inventory {
            service: r.name.clone(),
            version: r.version.clone(),
            description: r.description.clone(),
            image_digest: img.digest,
            image_purl: oci_purl(&r.name, &img.digest, &r.version),
            created: crate::rfc3339::rfc3339(input.meta.source_date_epoch),
            components,
            files,
        })
    }

    /// Files belonging to component `i` (or to the image itself for `None`), in path order.
    pub fn files_of(&self, owner: Option<usize>) -> impl Iterator<Item = &File> {
        self.files.iter().filter(move |f| f.owner == owner)
    }
}

/// The workspace libraries that went into the service, from the recipes the driver listed.
fn libraries(input: &SbomInput) -> Result<Vec<Component>, SbomError> {
    let mut out = Vec::new();
    for (file, _) in &input.recipes {
        if *file == input.recipe.file {
            continue;
        }
        let mut lib = crate::recipe::load(input.root, file).map_err(|d| SbomError::Recipe {
            file: file.clone(),
            message: d.to_string(),
        })?;
        // The service's libraries were built for its platform, into that platform's out/.
        lib.platform = input.recipe.platform;
        if lib.kind != RecipeKind::Library {
            continue;
        }
        // A static archive is not in the image; its checksum says which build was linked in.
        // Libraries without an archive (Ada units compiled straight into the service) have none.
        let (checksum, installed) = if lib.shared {
            (None, Some(format!("/usr/local/lib/lib{}.so", lib.output)))
        } else {
            let archive = input.root.join(crate::build::plan::product_path(&lib));
            let checksum = match Digest::of_file(&archive) {
                Ok((d, _)) => Some(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(format!("hashing {}", archive.display()))(e)),
            };
            (checksum, None)
        };
        out.push(Component {
            kind: Kind::Library { shared: lib.shared },
            name: lib.name.clone(),
            version: lib.version.clone(),
            description: lib.description.clone(),
            license: License::of_recipe(&lib.license),
            checksum,
            purl: None,
            installed,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn owner_of(components: &[Component], origin: &Origin) -> (Option<usize>, Option<String>) {
    match origin {
        Origin::Package {
            name, architecture, ..
        } => {
            let i = components.iter().position(|c| {
                c.name == *name
                    && matches!(&c.kind, Kind::Package { architecture: a, .. } if a == architecture)
            });
            match i {
                Some(i) => (Some(i), None),
                None => (None, Some(format!("installed by Debian package {name}"))),
            }
        }
        Origin::Workspace { target } => {
            let i = components
                .iter()
                .position(|c| c.name == *target && !matches!(c.kind, Kind::Package { .. }));
            // `[image] files` entries name the service (or nothing we know): they are its data.
            (Some(i.unwrap_or(0)), None)
        }
        Origin::Generated => (None, Some("written by kiln".to_string())),
        Origin::Host { path } => (
            None,
            Some(format!(
                "copied from the build host's {} (owned by no package)",
                path.display()
            )),
        ),
    }
}
