//! The Kustomize layout `kiln k8s -o DIR` writes:
//!
//! ```text
//! DIR/base/kustomization.yaml              every file below, in a fixed order
//! DIR/base/default-deny.yaml               the namespace-wide NetworkPolicy
//! DIR/base/<service>.yaml                  ServiceAccount, Service, Deployment, [HPA], NetworkPolicy
//! DIR/overlays/<env>/kustomization.yaml    namespace kiln-<env>, replicas, patches
//! DIR/overlays/<env>/patches/<service>.yaml  JSON 6902 patches of the Deployment's resources
//! ```
//!
//! The environments differ where clusters usually do: `dev` runs one replica with a small CPU
//! request so all services fit a laptop cluster; `staging` runs the recipe's numbers; `prod` runs
//! at least two replicas with requests equal to limits (Guaranteed QoS, so a node under pressure
//! evicts it last). Services with an autoscaler keep their replicas to the HPA.
//!
//! The tree is built next to DIR and renamed into place, so DIR is either the old layout or the
//! new one; DIR belongs to kiln and is replaced as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{netpol, service_documents, yaml, DeployError, Options, ServiceSpec};

pub const ENVIRONMENTS: &[&str] = &["dev", "staging", "prod"];

/// The CPU request of every container in `dev`.
const DEV_CPU: &str = "10m";

/// Relative path → contents, sorted by path.
pub type Tree = BTreeMap<String, String>;

fn kustomization(mut fields: serde_json::Map<String, Value>) -> String {
    let mut m = serde_json::Map::new();
    m.insert(
        "apiVersion".into(),
        json!("kustomize.config.k8s.io/v1beta1"),
    );
    m.insert("kind".into(), json!("Kustomization"));
    m.append(&mut fields);
    yaml::to_string(&Value::Object(m))
}

fn requests_patch(cpu: &str, memory: &str) -> String {
    yaml::to_string(&json!([{
        "op": "replace",
        "path": "/spec/template/spec/containers/0/resources/requests",
        "value": { "cpu": cpu, "memory": memory },
    }]))
}

pub fn tree(
    selected: &[&ServiceSpec],
    all: &BTreeMap<String, ServiceSpec>,
    opts: &Options,
) -> Tree {
    let mut t = Tree::new();
    let mut resources = vec!["default-deny.yaml".to_string()];
    t.insert(
        "base/default-deny.yaml".into(),
        yaml::to_string(&netpol::default_deny()),
    );
    for s in selected {
        let file = format!("{}.yaml", s.name);
        t.insert(
            format!("base/{file}"),
            yaml::documents(&service_documents(s, all, opts)),
        );
        resources.push(file);
    }
    let mut base = serde_json::Map::new();
    base.insert("resources".into(), json!(resources));
    t.insert("base/kustomization.yaml".into(), kustomization(base));

    for env in ENVIRONMENTS {
        let mut replicas = Vec::new();
        let mut patches = Vec::new();
        for s in selected {
            let d = &s.deploy;
            if d.hpa.is_none() {
                let count = match *env {
                    "dev" => 1,
                    "prod" => d.replicas.max(2),
                    _ => d.replicas,
                };
                replicas.push(json!({ "name": s.name, "count": count }));
            }
            let patch = match *env {
                "dev" => Some(requests_patch(DEV_CPU, &d.memory)),
                "prod" => Some(requests_patch(&d.cpu_limit, &d.memory_limit)),
                _ => None,
            };
            if let Some(p) = patch {
                let path = format!("patches/{}.yaml", s.name);
                t.insert(format!("overlays/{env}/{path}"), p);
                patches.push(json!({
                    "path": path,
                    "target": { "group": "apps", "version": "v1", "kind": "Deployment", "name": s.name },
                }));
            }
        }
        let mut k = serde_json::Map::new();
        k.insert("namespace".into(), json!(format!("kiln-{env}")));
        k.insert("resources".into(), json!(["../../base"]));
        k.insert(
            "labels".into(),
            json!([{ "pairs": { "app.kubernetes.io/instance": format!("kiln-{env}") } }]),
        );
        if !replicas.is_empty() {
            k.insert("replicas".into(), Value::Array(replicas));
        }
        if !patches.is_empty() {
            k.insert("patches".into(), Value::Array(patches));
        }
        t.insert(
            format!("overlays/{env}/kustomization.yaml"),
            kustomization(k),
        );
    }
    t
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeployError {
    let path = path.display().to_string();
    move |source| DeployError::Io {
        context,
        path,
        source,
    }
}

/// Writes `tree` as `dir`, replacing what was there only once the whole tree is on disk.
pub fn write(dir: &Path, tree: &Tree) -> Result<(), DeployError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-k8s-")
        .tempdir_in(&parent)
        .map_err(io("creating a temporary directory in", &parent))?;
    for (rel, text) in tree {
        let path = staging.path().join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io("creating", p))?;
        }
        std::fs::write(&path, text).map_err(io("writing", &path))?;
    }
    let old = staging.path().with_extension("old");
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io("moving aside", dir))?;
    }
    let new = staging.keep();
    // tempfile makes private (0700) directories; the layout is for everyone to read.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755));
    }
    std::fs::rename(&new, dir).map_err(io("renaming into place", dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io("removing", &old))?;
    }
    Ok(())
}
