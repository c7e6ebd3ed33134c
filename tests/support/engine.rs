//! `fixtures/engine` on kiln's built-in Debian toolchains (g++ 12, GNAT 12 and wxBase from
//! pinned packages) instead of its host ones, pinned by this repository's kiln.lock, whose
//! `gcc` and `gnat` are the built-in ones: every workspace made here compiles with the same
//! packages, and a `--locked` build of it reads no Debian index (the packages come from the
//! machine's shared store, see [`super::kiln::shared_debian_store`]).

use std::fs;
use std::path::Path;

use super::workspace::Workspace;

/// The engine with its `toolchains/` removed and the repository's pins for gcc and gnat.
pub fn pinned(dir: &str) -> Workspace {
    let ws = Workspace::fixture_at("engine", dir);
    fs::remove_dir_all(ws.path("toolchains")).unwrap();
    let repo: toml::Value = toml::from_str(
        &fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kiln.lock")).unwrap(),
    )
    .unwrap();
    let mut toolchain = toml::Table::new();
    for name in ["gcc", "gnat"] {
        toolchain.insert(name.into(), repo["toolchain"][name].clone());
    }
    let mut lock = toml::Table::new();
    lock.insert("version".into(), repo["version"].clone());
    lock.insert("toolchain".into(), toml::Value::Table(toolchain));
    ws.write("kiln.lock", &toml::to_string(&lock).unwrap());
    ws
}

/// The same without its C++ recipes: a build then needs only the gnat toolchain's root (the
/// driver resolves the toolchain of every recipe).
pub fn pinned_ada(dir: &str) -> Workspace {
    let ws = pinned(dir);
    for cxx in ["greet", "greet-test", "hello"] {
        fs::remove_file(ws.path(&format!("recipes/{cxx}.toml"))).unwrap();
    }
    ws
}
