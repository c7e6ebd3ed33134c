//! A workspace: the directory holding `recipes/` and `toolchains/`, loaded and cross-checked;
//! the `out/` directory it builds into ([`OutDir`]) and the lock that serialises writers to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod lock;
mod out_dir;
pub mod platforms;

pub use lock::{lock, LockError, WorkspaceLock};
pub use out_dir::OutDir;

use crate::graph;
use crate::platform::Platform;
use crate::recipe::{self, Diagnostic, Recipe};
use crate::toolchain::ToolchainSpec;

#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Sorted by name.
    pub recipes: Vec<Recipe>,
    pub toolchains: BTreeMap<String, ToolchainSpec>,
    /// The platforms `kiln.toml` asks for (see [`platforms`]), the default first.
    pub platforms: Vec<Platform>,
    /// The platform this view of the workspace builds for, when its outputs go to that
    /// platform's `out/<os>-<arch>/` (see [`Workspace::for_platform`]); `None` as loaded: the
    /// default platform into `out/`.
    pub platform: Option<Platform>,
    /// Recipes this view's platform has no toolchain for, with the error a build of one of
    /// them is (the other recipes still build for the platform).
    pub no_toolchain: BTreeMap<String, String>,
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

/// A recipe the platform of a [`Workspace::for_platform`] view has no toolchain for.
#[derive(Debug, thiserror::Error)]
#[error("platform {platform} has no toolchain for `{recipe}`: it is built with `{toolchain}`, so {platform} needs a toolchain `{wanted}` with `platform = \"{platform}\"` (define toolchains/{wanted}.toml){found}")]
pub struct NoPlatformToolchain {
    pub platform: Platform,
    pub recipe: String,
    pub toolchain: String,
    pub wanted: String,
    /// Why an existing `wanted` does not do, if one exists.
    pub found: String,
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
        let platforms = platforms::read(root)?;
        let ws = Workspace {
            root: root.to_path_buf(),
            recipes,
            toolchains,
            platforms,
            platform: None,
            no_toolchain: BTreeMap::new(),
        };
        graph::validate(&ws.graph())?;
        // A workspace that keeps platforms apart is, by default, its default platform's view:
        // `kiln test`, `inspect`, `verify` then read and write out/linux-amd64 like the build.
        if ws.splits_platforms() {
            return Ok(ws.for_platform(Platform::default()));
        }
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

    /// The workspace's `out/` directory for this view's platform (`out/` itself as loaded,
    /// see [`OutDir::of_platform`]).
    pub fn out(&self) -> OutDir {
        OutDir::of_platform(&self.root, self.platform.as_ref())
    }

    /// The platform this view builds for.
    pub fn target_platform(&self) -> Platform {
        self.platform.unwrap_or_default()
    }

    /// Whether the workspace's outputs are kept per platform: it builds for several, or for
    /// one that is not the default.
    pub fn splits_platforms(&self) -> bool {
        self.platforms.len() > 1 || self.platforms.iter().any(|p| !p.is_default())
    }

    /// The workspace as built for `platform`: every recipe's toolchain is the one that builds
    /// for that platform ([`crate::toolchain::name_for_platform`]: `gcc` → `gcc-arm64`) and,
    /// when the workspace keeps platforms apart ([`Workspace::splits_platforms`], always for a
    /// platform that is not the default), its outputs go to that platform's `out/`. The
    /// toolchain is part of every action key, so two platforms' actions never share a key. A
    /// recipe whose toolchain has no counterpart for the platform is recorded in
    /// [`Workspace::no_toolchain`], an error naming both as soon as a build needs it.
    pub fn for_platform(&self, platform: Platform) -> Workspace {
        let mut ws = self.clone();
        let split = self.splits_platforms() || !platform.is_default();
        ws.platform = split.then_some(platform);
        for r in &mut ws.recipes {
            let base = self.platform_base(&r.toolchain.value);
            let wanted = crate::toolchain::name_for_platform(&base, &platform);
            let problem = match ws.toolchains.get(&wanted) {
                None => Some(String::new()),
                Some(t) if t.platform != platform => {
                    Some(format!("; {} builds for {}", t.file, t.platform))
                }
                Some(t) if t.language != r.language => {
                    Some(format!("; {} is for {}", t.file, t.language_name()))
                }
                Some(_) => None,
            };
            if let Some(found) = problem {
                let e = NoPlatformToolchain {
                    platform,
                    recipe: r.name.clone(),
                    toolchain: r.toolchain.value.clone(),
                    wanted,
                    found,
                };
                ws.no_toolchain.insert(r.name.clone(), e.to_string());
                continue;
            }
            r.toolchain.value = wanted;
            r.platform = ws.platform;
        }
        ws
    }

    /// The default platform's toolchain name behind `name` (`gcc-arm64` → `gcc` when this view
    /// was already made for arm64; names are otherwise left alone).
    fn platform_base(&self, name: &str) -> String {
        let current = self.target_platform();
        if current.is_default() {
            return name.to_string();
        }
        let suffix = format!("-{}", current.architecture);
        name.strip_suffix(&suffix).unwrap_or(name).to_string()
    }
}
