//! A workspace: the directory holding `recipes/` and `toolchains/`, loaded and cross-checked;
//! the `out/` directory it builds into ([`OutDir`]) and the lock that serialises writers to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod lock;
mod out_dir;

pub use lock::{lock, LockError, WorkspaceLock};
pub use out_dir::OutDir;

use crate::graph;
use crate::recipe::{self, Diagnostic, Recipe};
use crate::toolchain::ToolchainSpec;

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Sorted by name.
    pub recipes: Vec<Recipe>,
    pub toolchains: BTreeMap<String, ToolchainSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no kiln workspace (a directory with recipes/) in {0} or any parent")]
    NotFound(PathBuf),
    #[error("{0}")]
    Recipe(Box<Diagnostic>),
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<Diagnostic> for WorkspaceError {
    fn from(d: Diagnostic) -> Self {
        WorkspaceError::Recipe(Box::new(d))
    }
}

/// The nearest directory at or above `start` that holds `recipes/`.
pub fn find_root(start: &Path) -> Result<PathBuf, WorkspaceError> {
    let start = std::fs::canonicalize(start).map_err(|e| WorkspaceError::Io {
        path: start.to_path_buf(),
        source: e,
    })?;
    start
        .ancestors()
        .find(|d| d.join("recipes").is_dir())
        .map(Path::to_path_buf)
        .ok_or(WorkspaceError::NotFound(start))
}

fn toml_files(root: &Path, dir: &str) -> Result<Vec<String>, WorkspaceError> {
    let path = root.join(dir);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WorkspaceError::Io { path, source: e }),
    };
    let mut files: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    Ok(files)
}

impl Workspace {
    pub fn load(root: &Path) -> Result<Workspace, WorkspaceError> {
        let mut toolchains = BTreeMap::new();
        for file in toml_files(root, "toolchains")? {
            let tc = ToolchainSpec::load(root, &file)?;
            toolchains.insert(tc.name.clone(), tc);
        }
        for (name, _) in crate::toolchain::BUILTIN {
            if !toolchains.contains_key(name) {
                let tc = ToolchainSpec::builtin(name).expect("a built-in toolchain");
                toolchains.insert(name.to_string(), tc);
            }
        }
        let mut recipes = Vec::new();
        for file in toml_files(root, "recipes")? {
            recipes.push(recipe::load(root, &file)?);
        }
        // By name, not file name: `a-test.toml` sorts before `a.toml`, but `a` before `a-test`.
        recipes.sort_by(|a, b| a.name.cmp(&b.name));
        let ws = Workspace {
            root: root.to_path_buf(),
            recipes,
            toolchains,
        };
        graph::validate(&ws.graph())?;
        Ok(ws)
    }

    /// The recipes and toolchains as the target graph sees them.
    pub fn graph(&self) -> graph::Graph<'_> {
        graph::Graph {
            recipes: &self.recipes,
            toolchains: &self.toolchains,
        }
    }

    pub fn recipe(&self, name: &str) -> Option<&Recipe> {
        self.graph().recipe(name)
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.graph().index(name)
    }

    /// The workspace's `out/` directory.
    pub fn out(&self) -> OutDir {
        OutDir::of(&self.root)
    }
}
