//! The assembly pipeline (see the `image` module comment for the order of steps). Nothing lands
//! in `layout_dir`, `debug_dir` or the sizes record until every step succeeded and the image is
//! within budget; the layer cache may gain entries, which is harmless.

use std::collections::BTreeMap;

use super::budget::{self, Breakdown, LayerSize, SizeRecord};
use super::config::image_config;
use super::layout;
use super::plan::{plan, Stripped};
use super::planned::PlannedLayer;
use super::{safety, ImageContext, ImageError, ImageFile, ImageRequest, ImageResult, LayerSummary};
use crate::closure::Resolver;
use crate::digest::Digest;
use crate::dpkg::{Database, Origin};
use crate::exec::Runner;
use crate::layer::cache::{write_atomic, LayerCache, LayerTier, Lookup};
use crate::layer::EntryKind;
use crate::oci::layout::Blob;
use crate::oci::{self, media_type, to_json, Descriptor, Index, Manifest, Platform};

/// Assembles one image against this machine's libraries and dpkg database, in a context of its
/// own (a build shares one context across its images: [`assemble_in`]), running binutils
/// through `runner`.
pub fn assemble(runner: &dyn Runner, req: &ImageRequest) -> Result<ImageResult, ImageError> {
    let cx = ImageContext::host(&req.cache_dir);
    let img = assemble_in(&cx, runner, req)?;
    // Losing the memo only costs hashing next time: a warning, not a failed image.
    if let Err(e) = cx.save() {
        eprintln!("kiln: warning: could not save the host file-digest memo: {e}");
    }
    Ok(img)
}

/// Assembles `req` with the binutils, dpkg database and digest memo of `cx`, running binutils
/// through `runner`.
pub fn assemble_in(
    cx: &ImageContext,
    runner: &dyn Runner,
    req: &ImageRequest,
) -> Result<ImageResult, ImageError> {
    assemble_tiered(cx, runner, req, None)
}

/// [`assemble_in`], with layers the local layer cache lacks asked of `tier` (the remote
/// cache) before they are written, and those written offered to it.
pub fn assemble_tiered(
    cx: &ImageContext,
    runner: &dyn Runner,
    req: &ImageRequest,
    tier: Option<&dyn LayerTier>,
) -> Result<ImageResult, ImageError> {
    let binutils = &cx.binutils;
    // Cheap checks first, so a typo in a destination fails before any stripping.
    for extra in &req.extra_files {
        safety::check_destination(&extra.dst)?;
    }
    let db = cx.database()?;
    let db: &Database = &db;
    let closure = Resolver::new(&req.workspace_libs, &req.library_paths)?
        .in_root(db.root())
        .resolve(&req.binary, &req.extra_libraries)?;

    std::fs::create_dir_all(&req.cache_dir).map_err(ImageError::io("creating", &req.cache_dir))?;
    let work = tempfile::Builder::new()
        .prefix(".kiln-image-")
        .tempdir_in(&req.cache_dir)
        .map_err(ImageError::io(
            "creating a temp directory in",
            &req.cache_dir,
        ))?;
    let debug_tmp = work.path().join(format!("{}.debug", req.service));
    let stripped_bin = work.path().join(&req.binary_name);
    binutils.split_debug(runner, &req.binary, &debug_tmp, &stripped_bin)?;
    let mut workspace_libs = BTreeMap::new();
    for lib in closure.libraries.iter().filter(|l| l.workspace) {
        let name = lib.real_path.file_name().unwrap_or_default();
        let out = work.path().join("lib").join(name);
        std::fs::create_dir_all(work.path().join("lib"))
            .map_err(ImageError::io("creating", work.path()))?;
        binutils.strip_to(runner, &lib.real_path, &out)?;
        workspace_libs.insert(lib.real_path.clone(), out);
    }
    let stripped = Stripped {
        binary: stripped_bin,
        workspace_libs,
    };

    let planned = plan(req, &closure, db, cx.host_digests(), &stripped)?;
    let cache = LayerCache::new(&req.cache_dir)
        .pinning_into(work.path())
        .with_tier(tier);
    let mut layers = Vec::new();
    let mut damage = Vec::new();
    for p in &planned {
        let (layer, lookup) = cache
            .get_or_write(&p.spec)
            .map_err(|source| ImageError::Layer {
                layer: p.name.to_string(),
                source,
            })?;
        if let Lookup::Repaired(d) = lookup {
            damage.push(d);
        }
        layers.push((layer, describe(p, req)));
    }

    let history: Vec<(Digest, String)> =
        layers.iter().map(|(l, d)| (l.diff_id, d.clone())).collect();
    let config_json = to_json(&image_config(req, &closure.platform, &history));
    let config_digest = Digest::of(&config_json);
    let created = crate::rfc3339::rfc3339(req.source_date_epoch);
    let (manifest_type, config_type, layer_type) = layout::media_types(req.format);
    let mut manifest = Manifest {
        schema_version: 2,
        media_type: manifest_type.into(),
        artifact_type: None,
        config: Descriptor::new(config_type, config_digest, config_json.len() as u64),
        layers: layers
            .iter()
            .map(|(l, _)| Descriptor::new(layer_type, l.digest, l.compressed_size))
            .collect(),
        subject: None,
        annotations: [
            (oci::CREATED, created),
            ("org.opencontainers.image.revision", req.revision.clone()),
            ("org.opencontainers.image.source", req.source.clone()),
            ("org.opencontainers.image.title", req.service.clone()),
            ("org.opencontainers.image.version", req.version.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    if req.format == super::ManifestFormat::Docker {
        manifest.annotations.clear();
    }
    let manifest_json = to_json(&manifest);
    let manifest_digest = Digest::of(&manifest_json);
    let mut index_entry =
        Descriptor::new(manifest_type, manifest_digest, manifest_json.len() as u64);
    index_entry.platform = Some(Platform::of(&closure.platform));
    index_entry
        .annotations
        .insert(oci::REF_NAME.into(), req.version.clone());
    let index = Index {
        schema_version: 2,
        media_type: media_type::IMAGE_INDEX.into(),
        manifests: vec![index_entry],
    };

    let files = image_files(&planned);
    let compressed_size =
        config_json.len() as u64 + layers.iter().map(|(l, _)| l.compressed_size).sum::<u64>();
    let record = SizeRecord {
        total: compressed_size,
        layers: planned
            .iter()
            .zip(&layers)
            .map(|(p, (l, d))| LayerSize {
                name: p.name.into(),
                description: d.clone(),
                compressed: l.compressed_size,
                uncompressed: l.uncompressed_size,
            })
            .collect(),
        files: files.iter().map(|f| (f.path.clone(), f.size)).collect(),
    };
    if compressed_size > req.budget {
        let before = budget::read_record(&req.layout_dir);
        return Err(ImageError::OverBudget {
            service: req.service.clone(),
            size: compressed_size,
            budget: req.budget,
            breakdown: Breakdown::new(&record, before.as_ref()),
        });
    }

    let mut blobs: Vec<(Digest, Blob)> = vec![
        (config_digest, Blob::Bytes(&config_json)),
        (manifest_digest, Blob::Bytes(&manifest_json)),
    ];
    blobs.extend(layers.iter().map(|(l, _)| (l.digest, Blob::File(&l.blob))));
    oci::layout::write(&req.layout_dir, &index, &blobs)?;
    let record_path = budget::record_path(&req.layout_dir);
    write_atomic(&record_path, &to_json(&record))
        .map_err(ImageError::io("writing", &record_path))?;
    std::fs::create_dir_all(&req.debug_dir).map_err(ImageError::io("creating", &req.debug_dir))?;
    let debug_file = req.debug_dir.join(format!("{}.debug", req.service));
    let debug_bytes = std::fs::read(&debug_tmp).map_err(ImageError::io("reading", &debug_tmp))?;
    write_atomic(&debug_file, &debug_bytes).map_err(ImageError::io("writing", &debug_file))?;

    let mut packages: BTreeMap<String, _> = BTreeMap::new();
    for p in &planned {
        packages.extend(p.packages.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(ImageResult {
        layout: req.layout_dir.clone(),
        digest: manifest_digest,
        compressed_size,
        uncompressed_size: layers.iter().map(|(l, _)| l.uncompressed_size).sum(),
        budget: req.budget,
        layers: layers
            .iter()
            .map(|(l, d)| LayerSummary {
                digest: l.digest,
                diff_id: l.diff_id,
                compressed_size: l.compressed_size,
                uncompressed_size: l.uncompressed_size,
                description: d.clone(),
            })
            .collect(),
        files,
        packages: packages.into_values().collect(),
        debug_file,
        damage,
    })
}

/// The history text of a layer: what it holds, with package versions where there are packages.
fn describe(p: &PlannedLayer, req: &ImageRequest) -> String {
    let pkgs: Vec<String> = p
        .packages
        .values()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let loose: Vec<String> = p
        .origins
        .iter()
        .filter_map(|(path, o)| match o {
            Origin::Host { .. } | Origin::Workspace { .. } => {
                path.rsplit('/').next().map(str::to_string)
            }
            _ => None,
        })
        .collect();
    match p.name {
        "base" => {
            let mut parts = pkgs;
            parts.push("users root, nonroot 65532".into());
            if req.ca_certificates {
                parts.push("CA certificates".into());
            }
            format!("kiln: base ({})", parts.join(", "))
        }
        "runtime" => {
            let mut parts = pkgs;
            parts.extend(loose);
            format!("kiln: {} runtime ({})", req.family, parts.join(", "))
        }
        "workspace" => format!("kiln: workspace libraries ({})", loose.join(", ")),
        _ => {
            let data = p.origins.len().saturating_sub(1);
            format!(
                "kiln: service {} (/usr/local/bin/{}, {data} data files)",
                req.service, req.binary_name
            )
        }
    }
}

fn image_files(planned: &[PlannedLayer]) -> Vec<ImageFile> {
    let mut files = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        for e in p.spec.entries() {
            if let EntryKind::File { size, digest, .. } = &e.kind {
                let origin = p.origins.get(&e.path).cloned().unwrap_or(Origin::Generated);
                files.push(ImageFile {
                    path: e.path.clone(),
                    size: *size,
                    sha256: *digest,
                    layer: i,
                    origin,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path).then(a.layer.cmp(&b.layer)));
    files
}
