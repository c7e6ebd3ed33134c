//! Size budgets and the breakdown shown when an image is over its budget.
//!
//! After every successful assembly kiln writes `<layout_dir>.sizes.json` (beside the layout, e.g.
//! `out/images/<service>.sizes.json`): per-layer compressed sizes and per-file uncompressed sizes.
//! The next build compares against it to say what grew. It is advisory — a missing or unreadable
//! file only means no "grew" section.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many largest files / biggest growths a breakdown lists.
const TOP: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeRecord {
    pub total: u64,
    pub layers: Vec<LayerSize>,
    /// Image path -> uncompressed size.
    pub files: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSize {
    pub name: String,
    pub description: String,
    pub compressed: u64,
    pub uncompressed: u64,
}

pub fn record_path(layout_dir: &Path) -> PathBuf {
    let mut s = layout_dir.as_os_str().to_owned();
    s.push(".sizes.json");
    PathBuf::from(s)
}

pub fn read_record(layout_dir: &Path) -> Option<SizeRecord> {
    serde_json::from_slice(&std::fs::read(record_path(layout_dir)).ok()?).ok()
}

/// What an over-budget error shows: biggest layers, biggest files, and growth since last time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub layers: Vec<LayerSize>,
    pub largest_files: Vec<(String, u64)>,
    /// `(what, before, now)`; empty when there is no previous build to compare with.
    pub grew: Vec<(String, u64, u64)>,
}

impl Breakdown {
    pub fn new(now: &SizeRecord, before: Option<&SizeRecord>) -> Breakdown {
        let mut layers = now.layers.clone();
        layers.sort_by(|a, b| b.compressed.cmp(&a.compressed).then(a.name.cmp(&b.name)));
        let mut largest_files: Vec<(String, u64)> =
            now.files.iter().map(|(p, s)| (p.clone(), *s)).collect();
        largest_files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        largest_files.truncate(TOP);
        let mut grew = Vec::new();
        if let Some(before) = before {
            if now.total > before.total {
                grew.push(("image (compressed)".to_string(), before.total, now.total));
            }
            for layer in &now.layers {
                let old = before
                    .layers
                    .iter()
                    .find(|l| l.name == layer.name)
                    .map_or(0, |l| l.compressed);
                if layer.compressed > old {
                    grew.push((
                        format!("{} layer (compressed)", layer.name),
                        old,
                        layer.compressed,
                    ));
                }
            }
            let mut files: Vec<(String, u64, u64)> = now
                .files
                .iter()
                .filter_map(|(p, &s)| {
                    let old = before.files.get(p).copied().unwrap_or(0);
                    (s > old).then(|| (p.clone(), old, s))
                })
                .collect();
            files.sort_by(|a, b| (b.2 - b.1).cmp(&(a.2 - a.1)).then(a.0.cmp(&b.0)));
            files.truncate(TOP);
            grew.extend(files);
        }
        Breakdown {
            layers,
            largest_files,
            grew,
        }
    }
}

impl fmt::Display for Breakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "largest layers (compressed):")?;
        for l in &self.layers {
            writeln!(f, "  {:>12}  {}", human(l.compressed), l.description)?;
        }
        writeln!(f, "largest files (uncompressed):")?;
        for (p, s) in &self.largest_files {
            writeln!(f, "  {:>12}  {p}", human(*s))?;
        }
        if self.grew.is_empty() {
            write!(f, "no previous build to compare with")?;
        } else {
            write!(f, "grew since the last build:")?;
            for (what, before, now) in &self.grew {
                write!(
                    f,
                    "\n  {:>12}  {what} ({} -> {})",
                    format!("+{}", human(now - before)),
                    human(*before),
                    human(*now)
                )?;
            }
        }
        Ok(())
    }
}

/// Bytes in binary units with one decimal (`4.2 MiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_names_the_file_and_layer_that_grew() {
        let layer = |c| LayerSize {
            name: "service".into(),
            description: "kiln: service".into(),
            compressed: c,
            uncompressed: c,
        };
        let before = SizeRecord {
            total: 10,
            layers: vec![layer(10)],
            files: [("/a".to_string(), 5)].into(),
        };
        let now = SizeRecord {
            total: 30,
            layers: vec![layer(30)],
            files: [("/a".to_string(), 25)].into(),
        };
        let text = Breakdown::new(&now, Some(&before)).to_string();
        assert!(text.contains("service layer (compressed)"), "{text}");
        assert!(text.contains("/a (5 B -> 25 B)"), "{text}");
    }
}
