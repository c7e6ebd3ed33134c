//! Per-workspace memory of what is in `out/` (`out/.kiln/state.json`): for each action, the
//! base key, discovered dependencies and output digests of the result last put in place.
//! Losing it costs only cache lookups; it never decides correctness on its own, since every
//! check compares digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ActionState {
    pub base: Digest,
    pub deps: Vec<(String, Digest)>,
    pub outputs: Vec<(PathBuf, Digest)>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub actions: BTreeMap<String, ActionState>,
    /// Image input keys by service, for skipping unchanged image assembly.
    #[serde(default)]
    pub images: BTreeMap<String, (Digest, serde_json::Value)>,
}

impl State {
    pub fn load(path: &Path) -> State {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::cache::atomic_write(path, &bytes)
    }
}
