//! A Debian toolchain's package trees as an OCI image in a registry (`kiln toolchain push` /
//! `pull`, and a toolchain file's `image = "REGISTRY/PREFIX"`). Debian's archive serves only
//! current versions, so the registry copy is how an old release of a toolchain stays
//! rebuildable.
//!
//! The image of a pinned set is `PREFIX/toolchain-<name>:set-<first 32 hex of the set digest>`:
//! - one layer per pinned package (sorted by name), a deterministic tar of that package's tree
//!   as the store keeps it (`control.json` and `root/…`: the .deb's own control data and its
//!   unpacked files), written by [`crate::layer`] (sorted entries, uid/gid 0, mtime 0,
//!   directories 0755, files with the tree's read-only modes; hard links become plain files),
//!   annotated with the package, version, architecture and the .deb's sha256;
//! - a config that is an ordinary OCI image config (rootfs diff_ids) plus `dev.kiln.toolchain`:
//!   the set digest and the pinned packages.
//!
//! Nothing of the machine or the clock enters, so the same pins give the same manifest digest
//! on every machine. A pull fetches the manifest by that tag, requires the config's set digest
//! and packages to be the lock's, fetches each missing tree's layer (digest and size checked
//! while streaming to a staging file, before anything is unpacked), unpacks it under the same
//! rules as a .deb (no absolute paths or `..`, no entry through a symlink, no symlink climbing
//! out, no hard links or devices), checks its `control.json` names the pinned package and
//! version, and renames it into the store, where [`extract::existing_tree`] finds it. The root
//! is then materialised from the trees as if they had been unpacked from the .debs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::debian::extract::{self, DebControl, Tree};
use crate::debian::locked::{set_digest, LockedPackage};
use crate::debian::store::Downloads;
use crate::digest::Digest;
use crate::layer::cache::LayerCache;
use crate::layer::{Content, Layer, LayerError, LayerSpec};
use crate::oci::layout::{self, Blob};
use crate::oci::{media_type, to_json, Descriptor, Index, LayoutError, Manifest, REF_NAME};
use crate::registry::{PullError, Puller, PushError, PushImage, PushOptions, PushReport};

/// Layer annotations: which package a layer holds.
pub const PACKAGE_ANNOTATION: &str = "dev.kiln.debian.package";
pub const VERSION_ANNOTATION: &str = "dev.kiln.debian.version";
pub const ARCHITECTURE_ANNOTATION: &str = "dev.kiln.debian.architecture";
/// The sha256 of the .deb the layer's tree was unpacked from (as kiln.lock pins it).
pub const DEB_SHA256_ANNOTATION: &str = "dev.kiln.debian.sha256";
/// Manifest annotation and config label: the set digest of the pinned packages.
pub const SET_ANNOTATION: &str = "dev.kiln.toolchain.set";

/// The largest `control.json` a pulled layer may carry (a control paragraph and md5sums).
const CONTROL_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} holds {kind}, which a toolchain layer cannot carry", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("writing the layer of {package}")]
    Layer { package: String, source: LayerError },
    #[error("writing the OCI layout")]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("{image}: {problem}")]
    Refused { image: String, problem: String },
    #[error("{image}: layer {digest} ({package}): unsafe entry {entry:?}: {problem}")]
    Unsafe {
        image: String,
        digest: Digest,
        package: String,
        entry: String,
        problem: &'static str,
    },
    /// `layer` is `IMAGE layer DIGEST`.
    #[error("{layer}: its control.json says {field} {actual:?}, but kiln.lock pins {package} with {locked:?}")]
    ControlMismatch {
        layer: String,
        package: String,
        field: &'static str,
        locked: String,
        actual: String,
    },
}

/// The repository (under a prefix) of toolchain `name`'s image.
pub fn repository_name(name: &str) -> String {
    format!("toolchain-{name}")
}

/// The tag of a pinned set's image.
pub fn tag_for(set: &Digest) -> String {
    format!("set-{}", &set.hex()[..32])
}

/// `REGISTRY[:PORT]/PREFIX` split in two; `None` when it does not start with a registry host.
pub fn parse_location(location: &str) -> Option<(String, String)> {
    let location = location.trim_end_matches('/');
    let (registry, prefix) = location.split_once('/').unwrap_or((location, ""));
    let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
    (!registry.is_empty() && host_like).then(|| (registry.to_string(), prefix.to_string()))
}

/// The config blob: an OCI image config (so registries and tools read it) plus kiln's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainConfig {
    pub architecture: String,
    pub os: String,
    pub config: ConfigLabels,
    pub rootfs: RootFs,
    #[serde(rename = "dev.kiln.toolchain")]
    pub toolchain: ToolchainRecord,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigLabels {
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// What the image holds: the set digest and every pinned package, as kiln.lock records them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainRecord {
    pub set: Digest,
    pub packages: Vec<LockedPackage>,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

/// The layer of one tree: `/control.json` and `/root/…`, every entry as the module comment says.
pub fn layer_spec(tree: &Tree) -> Result<LayerSpec, ImageError> {
    let mut spec = LayerSpec::new(0);
    let layer_err = |source| ImageError::Layer {
        package: tree.control.package.clone(),
        source,
    };
    let control = serde_json::to_vec_pretty(&tree.control).expect("control serialises");
    spec.bytes("/control.json", control, 0o444)
        .map_err(layer_err)?;
    spec.dir("/root", 0o755, 0).map_err(layer_err)?;
    let root = tree.root();
    // Depth-first with an explicit stack; every directory is read once, so this ends.
    let mut stack = vec![(root.clone(), "/root".to_string())];
    while let Some((dir, at)) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
            let e = e.map_err(io_err("reading", &dir))?;
            let path = e.path();
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                return Err(ImageError::Unsupported {
                    path,
                    kind: "a name that is not UTF-8",
                });
            };
            let inside = format!("{at}/{name}");
            let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                spec.dir(&inside, 0o755, 0).map_err(layer_err)?;
                stack.push((path, inside));
            } else if ft.is_file() {
                let (digest, size) = Digest::of_file(&path).map_err(io_err("reading", &path))?;
                spec.file(
                    &inside,
                    Content::Host(path),
                    size,
                    digest,
                    meta.mode() & 0o7555,
                )
                .map_err(layer_err)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err("reading", &path))?;
                let Some(target) = target.to_str() else {
                    return Err(ImageError::Unsupported {
                        path,
                        kind: "a symlink target that is not UTF-8",
                    });
                };
                spec.symlink(&inside, target).map_err(layer_err)?;
            } else {
                return Err(ImageError::Unsupported {
                    path,
                    kind: "a device node, socket or fifo",
                });
            }
        }
    }
    Ok(spec)
}

/// A toolchain image written as an OCI layout.
pub struct WrittenImage {
    pub layout: PathBuf,
    pub manifest: Digest,
    pub tag: String,
    pub layers: usize,
}

/// Writes the image of `pins` (whose trees are `trees`, in the same order) as an OCI layout at
/// `dir`. Layers go through the layer cache at `layer_cache` (pinned into `pins_dir`, on the
/// same filesystem), so pushing the same set again re-tars nothing. `jobs` layers at a time.
pub fn write_layout(
    pins: &[LockedPackage],
    trees: &[Tree],
    layer_cache: &Path,
    pins_dir: &Path,
    dir: &Path,
    jobs: usize,
) -> Result<WrittenImage, ImageError> {
    assert_eq!(pins.len(), trees.len(), "a tree per pinned package");
    let mut order: Vec<usize> = (0..pins.len()).collect();
    order.sort_by(|a, b| pins[*a].cmp(&pins[*b]));
    fs::create_dir_all(pins_dir).map_err(io_err("creating", pins_dir))?;
    let cache = LayerCache::new(layer_cache).pinning_into(pins_dir);
    let results: Vec<Mutex<Option<Result<Layer, ImageError>>>> =
        order.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, order.len().max(1)) {
            s.spawn(|| loop {
                let k = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(&i) = order.get(k) else { break };
                let layer = layer_spec(&trees[i]).and_then(|spec| {
                    cache
                        .get_or_write(&spec)
                        .map(|(layer, _)| layer)
                        .map_err(|source| ImageError::Layer {
                            package: pins[i].name.clone(),
                            source,
                        })
                });
                *results[k].lock().unwrap() = Some(layer);
            });
        }
    });
    let mut layers = Vec::new();
    for r in results {
        layers.push(r.into_inner().unwrap().expect("every layer was written")?);
    }
    let sorted: Vec<LockedPackage> = order.iter().map(|&i| pins[i].clone()).collect();
    let set = set_digest(&sorted);
    let config = ToolchainConfig {
        architecture: sorted
            .first()
            .map_or_else(|| "amd64".into(), |p| oci_architecture(&p.architecture)),
        os: "linux".into(),
        config: ConfigLabels {
            labels: BTreeMap::from([(SET_ANNOTATION.to_string(), set.to_string())]),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id).collect(),
        },
        toolchain: ToolchainRecord {
            set,
            packages: sorted.clone(),
        },
    };
    let config_bytes = to_json(&config);
    let config_desc = Descriptor::new(
        media_type::IMAGE_CONFIG,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    let layer_descs: Vec<Descriptor> = layers
        .iter()
        .zip(&sorted)
        .map(|(l, p)| {
            let mut d = Descriptor::new(media_type::IMAGE_LAYER_GZIP, l.digest, l.compressed_size);
            d.annotations = BTreeMap::from([
                (PACKAGE_ANNOTATION.to_string(), p.name.clone()),
                (VERSION_ANNOTATION.to_string(), p.version.clone()),
                (ARCHITECTURE_ANNOTATION.to_string(), p.architecture.clone()),
                (DEB_SHA256_ANNOTATION.to_string(), p.sha256.to_string()),
            ]);
            d
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: media_type::IMAGE_MANIFEST.into(),
        artifact_type: None,
        config: config_desc.clone(),
        layers: layer_descs,
        subject: None,
        annotations: BTreeMap::from([(SET_ANNOTATION.to_string(), set.to_string())]),
    };
    let manifest_bytes = to_json(&manifest);
    let manifest_digest = Digest::of(&manifest_bytes);
    let tag = tag_for(&set);
    let mut top = Descriptor::new(
        media_type::IMAGE_MANIFEST,
        manifest_digest,
        manifest_bytes.len() as u64,
    );
    top.annotations.insert(REF_NAME.to_string(), tag.clone());
    let index = Index {
        schema_version: 2,
        media_type: media_type::IMAGE_INDEX.into(),
        manifests: vec![top],
    };
    let mut blobs: Vec<(Digest, Blob)> = vec![
        (manifest_digest, Blob::Bytes(&manifest_bytes)),
        (config_desc.digest, Blob::Bytes(&config_bytes)),
    ];
    for l in &layers {
        if !blobs.iter().any(|(d, _)| *d == l.digest) {
            blobs.push((l.digest, Blob::File(&l.blob)));
        }
    }
    layout::write(dir, &index, &blobs)?;
    Ok(WrittenImage {
        layout: dir.to_path_buf(),
        manifest: manifest_digest,
        tag,
        layers: layers.len(),
    })
}

/// Debian's architecture names as OCI spells them.
fn oci_architecture(debian: &str) -> String {
    match debian {
        "i386" => "386",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        other => other,
    }
    .to_string()
}

/// Writes the image of toolchain `name`'s pins in a temp directory under `cache_dir` and pushes
/// it to `opts` (registry and prefix) as `toolchain-<name>:<set tag>`.
pub fn push(
    opts: &PushOptions,
    name: &str,
    pins: &[LockedPackage],
    trees: &[Tree],
    cache_dir: &Path,
) -> Result<(WrittenImage, PushReport), ImageError> {
    fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let work = tempfile::Builder::new()
        .prefix(".toolchain-push-")
        .tempdir_in(cache_dir)
        .map_err(io_err("creating a temp directory in", cache_dir))?;
    let written = write_layout(
        pins,
        trees,
        &cache_dir.join("layers"),
        &work.path().join("pins"),
        &work.path().join("layout"),
        opts.jobs,
    )?;
    let image = PushImage {
        service: repository_name(name),
        layout: written.layout.clone(),
        tags: vec![written.tag.clone()],
    };
    let report = crate::registry::push_all(opts, &[image])
        .pop()
        .expect("one result per image")?;
    Ok((written, report))
}

/// [`pull`] from `REGISTRY[:PORT]/PREFIX` with default settings (credentials from the
/// environment and docker/containers config, system TLS roots): a toolchain file's `image`.
pub fn pull_location(
    location: &str,
    name: &str,
    pins: &[LockedPackage],
    store: &Downloads,
) -> Result<PullReport, ImageError> {
    pull(&location_options(location)?, name, pins, store)
}

/// Default registry settings for `REGISTRY[:PORT]/PREFIX` (a toolchain file's `image`).
fn location_options(location: &str) -> Result<PushOptions, ImageError> {
    let (registry, prefix) = parse_location(location).ok_or_else(|| ImageError::Refused {
        image: location.to_string(),
        problem: "not REGISTRY[:PORT]/PREFIX".into(),
    })?;
    let mut opts = PushOptions::new(&registry);
    opts.prefix = prefix;
    Ok(opts)
}

/// What a pull did.
#[derive(Clone, Debug, Default)]
pub struct PullReport {
    /// `registry/repository@digest` of the manifest read.
    pub reference: String,
    pub pulled: usize,
    pub present: usize,
}

/// Every tree of `pins` that `store` does not have, from the image of toolchain `name` under
/// `opts`' registry and prefix (see the module comment for what is checked).
pub fn pull(
    opts: &PushOptions,
    name: &str,
    pins: &[LockedPackage],
    store: &Downloads,
) -> Result<PullReport, ImageError> {
    let repository = opts
        .repository(&repository_name(name))
        .map_err(|e| ImageError::Refused {
            image: format!("{}/{}", opts.registry, repository_name(name)),
            problem: e.to_string(),
        })?;
    let set = set_digest(pins);
    let tag = tag_for(&set);
    let image = format!("{}/{repository}:{tag}", opts.registry);
    let refused = |problem: String| ImageError::Refused {
        image: image.clone(),
        problem,
    };
    let missing: Vec<&LockedPackage> = pins
        .iter()
        .filter(|p| extract::existing_tree(store, &p.sha256).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(PullReport {
            reference: image.clone(),
            pulled: 0,
            present: pins.len(),
        });
    }
    let puller = Puller::connect(opts)?;
    let m = puller.manifest(&repository, &tag)?;
    let manifest: Manifest = serde_json::from_slice(&m.bytes)
        .map_err(|e| refused(format!("manifest {} does not parse: {e}", m.digest)))?;
    let reference = format!("{}/{repository}@{}", opts.registry, m.digest);
    let config_bytes = puller.blob_bytes(&repository, &manifest.config)?;
    let config: ToolchainConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
        refused(format!(
            "config {} is not a kiln toolchain config: {e}",
            manifest.config.digest
        ))
    })?;
    if config.toolchain.set != set || set_digest(&config.toolchain.packages) != set {
        return Err(refused(format!(
            "its config is for package set {}, but kiln.lock pins {set}",
            config.toolchain.set
        )));
    }
    // Which layer holds which pinned package: by the .deb sha256 the layer names.
    let mut layer_of: BTreeMap<Digest, &Descriptor> = BTreeMap::new();
    for l in &manifest.layers {
        let sha = l
            .annotations
            .get(DEB_SHA256_ANNOTATION)
            .and_then(|s| s.parse::<Digest>().ok())
            .ok_or_else(|| refused(format!("layer {} names no .deb sha256", l.digest)))?;
        layer_of.insert(sha, l);
    }
    fs::create_dir_all(store.root()).map_err(io_err("creating", store.root()))?;
    store
        .sweep_stale()
        .map_err(io_err("sweeping", &store.tmp_dir()))?;
    let mut pulled = 0;
    for p in &missing {
        let Some(desc) = layer_of.get(&p.sha256) else {
            return Err(refused(format!(
                "no layer holds {} {} (.deb {})",
                p.name, p.version, p.sha256
            )));
        };
        for (key, want) in [
            (PACKAGE_ANNOTATION, &p.name),
            (VERSION_ANNOTATION, &p.version),
        ] {
            let got = desc.annotations.get(key).map(String::as_str).unwrap_or("");
            if got != want {
                return Err(refused(format!(
                    "layer {} of .deb {} is annotated {key}={got:?}, but kiln.lock pins {want:?}",
                    desc.digest, p.sha256
                )));
            }
        }
        pull_tree(&puller, &repository, &image, desc, p, store)?;
        pulled += 1;
    }
    Ok(PullReport {
        reference,
        pulled,
        present: pins.len() - pulled,
    })
}

/// One layer into the store as the tree of `pin`: fetched and checked into a staging
/// directory, unpacked there, its control data checked, then renamed into place.
fn pull_tree(
    puller: &Puller,
    repository: &str,
    image: &str,
    desc: &Descriptor,
    pin: &LockedPackage,
    store: &Downloads,
) -> Result<Tree, ImageError> {
    let staging = store
        .staging_dir("pull")
        .map_err(io_err("creating a staging directory in", &store.tmp_dir()))?;
    let blob = staging.path().join("layer.tar.gz");
    puller.blob_to_file(repository, desc, &blob)?;
    let tree_stage = staging.path().join("tree");
    let control = unpack_layer(&blob, &tree_stage, image, desc, pin)?;
    for (field, locked, actual) in [
        ("Package", &pin.name, &control.package),
        ("Version", &pin.version, &control.version),
        ("Architecture", &pin.architecture, &control.architecture),
        ("Source", &pin.source, &control.source),
        (
            "source version",
            &pin.source_version,
            &control.source_version,
        ),
    ] {
        if locked != actual {
            return Err(ImageError::ControlMismatch {
                layer: format!("{image} layer {}", desc.digest),
                package: pin.name.clone(),
                field,
                locked: locked.clone(),
                actual: actual.clone(),
            });
        }
    }
    let json = serde_json::to_vec_pretty(&control).expect("control serialises");
    let control_path = tree_stage.join("control.json");
    fs::write(&control_path, json).map_err(io_err("writing", &control_path))?;
    let dir = extract::tree_dir(store, &pin.sha256);
    let parent = dir.parent().expect("tree dir has a parent");
    fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    if let Err(e) = fs::rename(&tree_stage, &dir) {
        // Another process put the same tree there first: theirs is as good.
        if !dir.join("control.json").is_file() {
            return Err(io_err("renaming the pulled tree to", &dir)(e));
        }
    }
    extract::existing_tree(store, &pin.sha256).ok_or_else(|| ImageError::Refused {
        image: image.to_string(),
        problem: format!(
            "the tree of {} did not appear at {}",
            pin.name,
            dir.display()
        ),
    })
}

/// Unpacks a checked layer blob into `dest` (a new directory): `control.json` is parsed and
/// returned (written by the caller after its checks), `root/…` is unpacked with the rules of
/// [`extract`]; anything else is refused.
fn unpack_layer(
    blob: &Path,
    dest: &Path,
    image: &str,
    desc: &Descriptor,
    pin: &LockedPackage,
) -> Result<DebControl, ImageError> {
    let unsafe_entry = |entry: &Path, problem: &'static str| ImageError::Unsafe {
        image: image.to_string(),
        digest: desc.digest,
        package: pin.name.clone(),
        entry: entry.display().to_string(),
        problem,
    };
    let read_err = |source| ImageError::Io {
        action: "reading the layer",
        path: blob.to_path_buf(),
        source,
    };
    let root = dest.join("root");
    fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
    let file = fs::File::open(blob).map_err(read_err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut control: Option<DebControl> = None;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let mut parts: Vec<String> = Vec::new();
        for c in raw.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir => return Err(unsafe_entry(&raw, "contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry(&raw, "is absolute"))
                }
            }
        }
        let kind = entry.header().entry_type();
        match parts.first().map(String::as_str) {
            Some("control.json") if parts.len() == 1 && kind.is_file() => {
                if control.is_some() {
                    return Err(unsafe_entry(&raw, "appears twice"));
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(CONTROL_LIMIT + 1)
                    .read_to_end(&mut bytes)
                    .map_err(read_err)?;
                if bytes.len() as u64 > CONTROL_LIMIT {
                    return Err(unsafe_entry(&raw, "is over the size limit"));
                }
                control = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|_| unsafe_entry(&raw, "is not a package's control data"))?,
                );
                continue;
            }
            Some("root") if parts.len() == 1 && kind.is_dir() => continue,
            Some("root") => {}
            _ => {
                return Err(unsafe_entry(
                    &raw,
                    "is neither control.json nor under root/",
                ))
            }
        }
        let rel: PathBuf = parts[1..].iter().collect();
        let target = root.join(&rel);
        let write_err = io_err("unpacking into", &target);
        // Every parent must already be a real directory of the tree, so no symlink planted by
        // an earlier entry can carry a later one out.
        let mut parent = root.clone();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            match fs::symlink_metadata(&parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry(&raw, "goes through a symlink or file")),
                Err(_) => {
                    fs::create_dir(&parent).map_err(io_err("creating", &parent))?;
                    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("creating", &parent))?;
                }
            }
        }
        let mode = entry.header().mode().map_err(read_err)?;
        if kind.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry(&raw, "directory over a non-directory")),
                Err(_) => fs::create_dir(&target).map_err(write_err)?,
            }
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .map_err(io_err("unpacking into", &target))?;
        } else if kind.is_file() {
            let mut out =
                fs::File::create_new(&target).map_err(|_| unsafe_entry(&raw, "appears twice"))?;
            io::copy(&mut entry, &mut out).map_err(write_err)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o555))
                .map_err(io_err("unpacking into", &target))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(read_err)?
                .ok_or_else(|| unsafe_entry(&raw, "symlink without a target"))?
                .into_owned();
            let depth = rel.components().count().saturating_sub(1);
            if !link.is_absolute() && crate::relpath::climbs_out(depth, &link) {
                return Err(unsafe_entry(&raw, "symlink points outside the tree"));
            }
            if fs::symlink_metadata(&target).is_ok() {
                return Err(unsafe_entry(&raw, "appears twice"));
            }
            symlink(&link, &target).map_err(write_err)?;
        } else {
            return Err(unsafe_entry(
                &raw,
                "hard links, device nodes and fifos are not allowed in a toolchain layer",
            ));
        }
    }
    control.ok_or_else(|| unsafe_entry(Path::new("control.json"), "is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str, tree: &Tree) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: tree.control.version.clone(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: Digest::of(name.as_bytes()),
            source: name.into(),
            source_version: tree.control.version.clone(),
        }
    }

    fn tree(dir: &Path, name: &str) -> Tree {
        let root = dir.join("root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), format!("#!{name}\n")).unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o555)).unwrap();
        symlink("tool", root.join("usr/bin/alias")).unwrap();
        let control = DebControl {
            package: name.into(),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
            source: name.into(),
            source_version: "1.0-1".into(),
            md5sums: BTreeMap::new(),
            control: format!("Package: {name}\n"),
        };
        fs::write(
            dir.join("control.json"),
            serde_json::to_vec_pretty(&control).unwrap(),
        )
        .unwrap();
        Tree {
            dir: dir.to_path_buf(),
            control,
        }
    }

    #[test]
    fn a_layout_is_the_same_from_trees_in_different_places_and_unpacks_to_the_tree() {
        let mut digests = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..2 {
            let tmp = tempfile::tempdir().unwrap();
            let trees = vec![
                tree(&tmp.path().join("b"), "beta"),
                tree(&tmp.path().join("a"), "alpha"),
            ];
            let pins: Vec<_> = ["beta", "alpha"]
                .iter()
                .zip(&trees)
                .map(|(n, t)| pin(n, t))
                .collect();
            let w = write_layout(
                &pins,
                &trees,
                &tmp.path().join("layers"),
                &tmp.path().join("pins"),
                &tmp.path().join("layout"),
                2,
            )
            .unwrap();
            assert_eq!(w.layers, 2);
            digests.push(w.manifest);
            kept.push((tmp, w, pins));
        }
        assert_eq!(digests[0], digests[1]);
        let (tmp, w, pins) = &kept[0];
        let top = layout::read_index(&w.layout).unwrap();
        let (manifest, _): (Manifest, _) = layout::read_json(&w.layout, &top).unwrap();
        assert_eq!(
            manifest.layers[0].annotations[PACKAGE_ANNOTATION], "alpha",
            "layers are sorted by package"
        );
        let alpha = pins.iter().find(|p| p.name == "alpha").unwrap();
        let blob = layout::blob_path(&w.layout, &manifest.layers[0].digest);
        let dest = tmp.path().join("unpacked");
        let control = unpack_layer(&blob, &dest, "img", &manifest.layers[0], alpha).unwrap();
        assert_eq!(control.package, "alpha");
        assert_eq!(
            fs::read_to_string(dest.join("root/usr/bin/tool")).unwrap(),
            "#!alpha\n"
        );
        assert_eq!(
            fs::read_link(dest.join("root/bin")).unwrap(),
            Path::new("usr/bin")
        );
        let mode = fs::metadata(dest.join("root/usr/bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
    }

    fn layer_with(entries: &[(&str, tar::EntryType, &str)]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            // Written raw so that names tar::Builder would refuse reach the reader.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        (tmp, path)
    }

    #[test]
    fn escaping_entries_are_refused() {
        let t = Tree {
            dir: PathBuf::new(),
            control: DebControl {
                package: "p".into(),
                version: "1".into(),
                architecture: "amd64".into(),
                source: "p".into(),
                source_version: "1".into(),
                md5sums: BTreeMap::new(),
                control: String::new(),
            },
        };
        let p = pin("p", &t);
        let desc = Descriptor::new(media_type::IMAGE_LAYER_GZIP, Digest::of(b"x"), 1);
        use tar::EntryType as E;
        for (entries, problem) in [
            (vec![("root/../../etc", E::Directory, "")], "contains `..`"),
            (vec![("etc/passwd", E::Regular, "")], "neither control.json"),
            (
                vec![("root/up", E::Symlink, "../../x")],
                "symlink points outside",
            ),
            (
                vec![
                    ("root/lnk", E::Symlink, "/etc"),
                    ("root/lnk/shadow", E::Regular, ""),
                ],
                "goes through a symlink",
            ),
            (vec![("root/h", E::Link, "root/x")], "hard links"),
        ] {
            let (tmp, blob) = layer_with(&entries);
            let err = unpack_layer(&blob, &tmp.path().join("d"), "img", &desc, &p).unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
        }
    }

    #[test]
    fn the_image_key_takes_a_registry_location_and_only_for_debian_toolchains() {
        use crate::toolchain::ToolchainSpec;
        let parse = |text: &str| ToolchainSpec::parse("toolchains/t.toml", "t", text.into());
        let ok = parse("language = \"ada\"\nimage = \"127.0.0.1:5000/tc\"\n").unwrap();
        assert_eq!(ok.image.as_deref(), Some("127.0.0.1:5000/tc"));
        assert_eq!(
            parse_location("127.0.0.1:5000/tc/"),
            Some(("127.0.0.1:5000".into(), "tc".into()))
        );
        let not_a_host = parse("language = \"ada\"\nimage = \"toolchains\"\n").unwrap_err();
        assert!(
            not_a_host.to_string().contains("REGISTRY[:PORT]/PREFIX"),
            "{not_a_host}"
        );
        let host =
            parse("language = \"ada\"\nsource = \"host\"\nimage = \"r.example/tc\"\n").unwrap_err();
        assert!(host.to_string().contains("only applies to"), "{host}");
        assert_eq!(tag_for(&Digest::of(b"x")).len(), 4 + 32);
    }
}

/// `REGISTRY/REPOSITORY@sha256:…` of the pushed image of toolchain `name`'s pinned `set`
/// under `location` (`REGISTRY[:PORT]/PREFIX`, the toolchain file's `image`): its manifest read
/// by the set's tag, so the reference names those exact bytes. What remote execution puts in
/// the `container-image` platform property.
pub fn pushed_reference(location: &str, name: &str, set: &Digest) -> Result<String, ImageError> {
    let opts = location_options(location)?;
    let repository = opts
        .repository(&repository_name(name))
        .map_err(|e| ImageError::Refused {
            image: format!("{}/{}", opts.registry, repository_name(name)),
            problem: e.to_string(),
        })?;
    let m = Puller::connect(&opts)?.manifest(&repository, &tag_for(set))?;
    Ok(format!("{}/{repository}@{}", opts.registry, m.digest))
}

/// The location (`REGISTRY[:PORT]/PREFIX`) and toolchain name of a reference
/// [`pushed_reference`] made, `docker://` in front or not; None for any other image.
pub fn location_of_reference(reference: &str) -> Option<(String, String)> {
    let reference = reference.strip_prefix("docker://").unwrap_or(reference);
    let (repo, _digest) = reference.split_once('@')?;
    let (location, last) = repo.rsplit_once('/')?;
    let name = last.strip_prefix("toolchain-")?;
    parse_location(location)?;
    (!name.is_empty()).then(|| (location.to_string(), name.to_string()))
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn a_pushed_reference_gives_back_its_location_and_toolchain() {
        assert_eq!(
            location_of_reference("docker://127.0.0.1:5000/tc/toolchain-gnat@sha256:ab"),
            Some(("127.0.0.1:5000/tc".into(), "gnat".into()))
        );
        assert_eq!(
            location_of_reference("reg.example.com/toolchain-gcc@sha256:ab"),
            Some(("reg.example.com".into(), "gcc".into()))
        );
        for other in [
            "docker://reg.example.com/app@sha256:ab",
            "docker://reg.example.com/tc/toolchain-gcc:latest",
            "toolchain-gcc@sha256:ab",
        ] {
            assert_eq!(location_of_reference(other), None, "{other}");
        }
    }
}
