//! Hit counts of recent builds, for `kiln cache stats`.
//!
//! Format: `stats/builds.jsonl`, one JSON object per build ([`BuildStats`]), appended with a
//! single `write` of one short line, which `O_APPEND` keeps whole when processes append at once.
//! No times or paths: the log says how well the cache serves, not who used it when. [`trim`]
//! (run by GC) keeps the last [`KEEP`] lines; a line appended while it rewrites may be lost, which
//! only makes the statistics a little shorter.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Lines kept by [`trim`].
pub const KEEP: usize = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildStats {
    /// Actions restored from the cache.
    pub cached: u64,
    /// Actions that ran their command (cache misses).
    pub ran: u64,
    /// Actions whose outputs in out/ were already current (no cache lookup).
    pub fresh: u64,
    pub failed: u64,
    /// Damaged blobs found (and removed).
    #[serde(default)]
    pub damaged: u64,
    /// Actions fetched from the remote cache (local misses).
    #[serde(default)]
    pub remote: u64,
}

impl BuildStats {
    /// Hits over lookups, or None when nothing was looked up.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.cached + self.ran + self.failed + self.remote;
        (lookups > 0).then(|| self.cached as f64 / lookups as f64)
    }

    pub fn add(&mut self, o: &BuildStats) {
        self.cached += o.cached;
        self.ran += o.ran;
        self.fresh += o.fresh;
        self.failed += o.failed;
        self.damaged += o.damaged;
        self.remote += o.remote;
    }
}

fn log_path(root: &Path) -> PathBuf {
    root.join("stats/builds.jsonl")
}

/// Appends one build's counts.
pub fn record(root: &Path, s: &BuildStats) -> io::Result<()> {
    let path = log_path(root);
    std::fs::create_dir_all(path.parent().expect("log has a parent"))?;
    let mut line = serde_json::to_vec(s).map_err(io::Error::other)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?
        .write_all(&line)
}

/// The last `n` builds, oldest first; lines that do not parse are skipped.
pub fn recent(root: &Path, n: usize) -> Vec<BuildStats> {
    let text = std::fs::read_to_string(log_path(root)).unwrap_or_default();
    let all: Vec<BuildStats> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

/// Keeps the last [`KEEP`] lines.
pub fn trim(root: &Path) {
    let path = log_path(root);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > KEEP {
        let mut kept = lines[lines.len() - KEEP..].join("\n");
        kept.push('\n');
        let _ = super::atomic_write(&path, kept.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_back_in_order_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(KEEP as u64 + 5) {
            record(
                dir.path(),
                &BuildStats {
                    cached: i,
                    ran: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let last = recent(dir.path(), 2);
        assert_eq!(
            last.iter().map(|s| s.cached).collect::<Vec<_>>(),
            [103, 104]
        );
        trim(dir.path());
        let all = recent(dir.path(), usize::MAX);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].cached, 5);
        assert_eq!(
            BuildStats {
                cached: 3,
                ran: 1,
                ..Default::default()
            }
            .hit_rate(),
            Some(0.75)
        );
        assert_eq!(BuildStats::default().hit_rate(), None);
    }
}
