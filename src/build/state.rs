//! Per-workspace memory of what is in `out/` (`out/.kiln/state.json`): for each action, the
//! base key, the discovered dependencies (as indices into one path table: a hundred translation
//! units share the same wx headers) with the full key they produced, and the output digests of
//! the result last put in place. Losing it costs only cache lookups; it never decides
//! correctness on its own, since every check recomputes digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ActionState {
    pub base: Digest,
    /// Indices into [`State::paths`], in the order the full key was computed over.
    pub deps: Vec<u32>,
    /// `cache::key::full_key(base, deps with their digests)` when the outputs were put in place.
    pub full: Digest,
    pub outputs: Vec<(PathBuf, Digest)>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Every dependency path any action discovered, once.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(skip)]
    index: std::collections::HashMap<String, u32>,
    pub actions: BTreeMap<String, ActionState>,
    /// Image input keys by service, for skipping unchanged image assembly.
    #[serde(default)]
    pub images: BTreeMap<String, (Digest, serde_json::Value)>,
    /// Outputs the last build left in the remote CAS (`build::lazy`), absent from `out/`.
    #[serde(default)]
    pub left: BTreeMap<PathBuf, LeftRecord>,
}

/// An output in the remote CAS only: its digest, size and mode.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftRecord {
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
}

impl State {
    /// Records what an action put in `out/`.
    pub fn record(
        &mut self,
        id: &str,
        base: Digest,
        deps: &[(String, Digest)],
        outputs: Vec<(PathBuf, Digest)>,
    ) {
        if self.index.len() != self.paths.len() {
            self.index = self
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), i as u32))
                .collect();
        }
        let ids = deps
            .iter()
            .map(|(p, _)| {
                *self.index.entry(p.clone()).or_insert_with(|| {
                    self.paths.push(p.clone());
                    (self.paths.len() - 1) as u32
                })
            })
            .collect();
        let full = crate::cache::key::full_key(&base, deps);
        self.actions.insert(
            id.to_string(),
            ActionState {
                base,
                deps: ids,
                full,
                outputs,
            },
        );
    }

    /// The dependency paths of a recorded action.
    pub fn dep_paths(&self, a: &ActionState) -> Vec<String> {
        a.deps
            .iter()
            .filter_map(|&i| self.paths.get(i as usize).cloned())
            .collect()
    }

    pub fn load(path: &Path) -> State {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        // A no-op build changes nothing: skip the write (and the rename's metadata update).
        if std::fs::read(path).map(|old| old == bytes).unwrap_or(false) {
            return Ok(());
        }
        crate::cache::atomic_write(path, &bytes)
    }
}
