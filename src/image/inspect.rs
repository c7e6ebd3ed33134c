//! `kiln inspect <service>`: what an assembled layout holds, read back from the layout itself
//! (not from kiln's memory of building it), so it also explains layouts from older builds.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use flate2::read::GzDecoder;
use serde::Serialize;

use super::budget::human;
use super::layout::read_layout;
use super::ImageError;
use crate::digest::{Digest, HashingReader};

/// How many files `largest_files` lists.
const LARGEST: usize = 15;

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub reference: Option<String>,
    pub digest: Digest,
    pub config_digest: Digest,
    pub created: String,
    /// Config plus layers, as pulled.
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub layers: Vec<LayerInspection>,
    pub largest_files: Vec<FileInspection>,
    /// What the service's toolchain is, as the workspace defines it now (the layout does not
    /// record it): filled in by the caller that knows the workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<ToolchainLabel>,
}

/// The toolchain an image's binaries came from, and whether another machine can rebuild it.
#[derive(Clone, Debug, Serialize)]
pub struct ToolchainLabel {
    pub name: String,
    /// `debian` or `host`.
    pub source: String,
    pub reproducible: bool,
}

impl fmt::Display for ToolchainLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reproducible {
            write!(f, "{} ({}, pinned packages)", self.name, self.source)
        } else {
            write!(
                f,
                "{} ({}: NOT REPRODUCIBLE, built with this machine's installed packages; \
                 `kiln build --locked` refuses it)",
                self.name, self.source
            )
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerInspection {
    pub digest: Digest,
    pub diff_id: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub history: String,
    pub files: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileInspection {
    pub path: String,
    pub size: u64,
    pub layer: usize,
}

pub fn inspect(layout_dir: &Path) -> Result<Inspection, ImageError> {
    let image = read_layout(layout_dir)?;
    let history: Vec<&str> = image
        .config
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect();
    let mut layers = Vec::new();
    let mut files = Vec::new();
    for (i, desc) in image.manifest.layers.iter().enumerate() {
        let path = image.blob_path(&desc.digest);
        let file = File::open(&path).map_err(ImageError::io("opening", &path))?;
        let mut tar_bytes = HashingReader::new(GzDecoder::new(BufReader::new(file)));
        let mut count = 0;
        {
            let mut archive = tar::Archive::new(&mut tar_bytes);
            for entry in archive
                .entries()
                .map_err(ImageError::io("reading layer", &path))?
            {
                let entry = entry.map_err(ImageError::io("reading layer", &path))?;
                if entry.header().entry_type().is_file() {
                    let name = entry
                        .path()
                        .map_err(ImageError::io("reading layer", &path))?;
                    files.push(FileInspection {
                        path: format!("/{}", name.display()),
                        size: entry.size(),
                        layer: i,
                    });
                    count += 1;
                }
            }
        }
        // Drain the end-of-archive padding so the diff_id covers the whole tar.
        io::copy(&mut tar_bytes, &mut io::sink())
            .map_err(ImageError::io("reading layer", &path))?;
        let (diff_id, uncompressed_size) = tar_bytes.finish();
        layers.push(LayerInspection {
            digest: desc.digest,
            diff_id,
            compressed_size: desc.size,
            uncompressed_size,
            history: history.get(i).copied().unwrap_or("").to_string(),
            files: count,
        });
    }
    files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    files.truncate(LARGEST);
    Ok(Inspection {
        reference: image
            .manifest_descriptor
            .annotations
            .get(crate::oci::REF_NAME)
            .cloned(),
        digest: image.manifest_descriptor.digest,
        config_digest: image.manifest.config.digest,
        created: image.config.created.clone(),
        compressed_size: image.manifest.config.size
            + layers.iter().map(|l| l.compressed_size).sum::<u64>(),
        uncompressed_size: layers.iter().map(|l| l.uncompressed_size).sum(),
        layers,
        largest_files: files,
        toolchain: None,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "image    {}", self.digest)?;
        if let Some(r) = &self.reference {
            writeln!(f, "tag      {r}")?;
        }
        writeln!(f, "created  {}", self.created)?;
        if let Some(t) = &self.toolchain {
            writeln!(f, "toolchain {t}")?;
        }
        writeln!(
            f,
            "size     {} compressed, {} uncompressed",
            human(self.compressed_size),
            human(self.uncompressed_size)
        )?;
        writeln!(f, "layers:")?;
        for (i, l) in self.layers.iter().enumerate() {
            writeln!(
                f,
                "  {i}  {}  {:>10} gz  {:>10} tar  {:>4} files  {}",
                l.digest.short(),
                human(l.compressed_size),
                human(l.uncompressed_size),
                l.files,
                l.history
            )?;
        }
        writeln!(f, "largest files:")?;
        for file in &self.largest_files {
            writeln!(
                f,
                "  {:>10}  layer {}  {}",
                human(file.size),
                file.layer,
                file.path
            )?;
        }
        Ok(())
    }
}
