//! The deploy stage: Kubernetes manifests from the recipes (`kiln k8s`), a Kustomize layout, and
//! the rewrite of `kiln://SERVICE` image references to pushed digests (`kiln resolve`).
//!
//! Everything a manifest says comes from the recipes: ports, health-check timing, the
//! `[service] depends_on` graph and the `[deploy]` table; the uid is the one every kiln image
//! runs as (`image::base::NONROOT`, written into each image config's `User`). Images are named
//! `kiln://SERVICE` so the manifests do not depend on where, or whether, they were pushed; the
//! output is the same bytes for the same recipes (no time, no path, maps in a fixed order).

pub mod kustomize;
pub mod netpol;
pub mod resolve;
pub mod workload;
pub mod yaml;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::recipe::{DeploySection, Healthcheck, Kind};
use crate::workspace::Workspace;

/// The image reference scheme `kiln resolve` rewrites.
pub const SCHEME: &str = "kiln://";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("`{service}` has no [image] ports: kiln k8s needs one for its Service and probes")]
    NoPorts { service: String },
    #[error("`{service}` is a {kind}, not a service")]
    NotAService { service: String, kind: &'static str },
    #[error("unknown service `{0}`")]
    UnknownService(String),
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Namespaces outside the application's own that policies let in (or out).
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the ingress controller runs (`[deploy] ingress = true` services accept it).
    pub ingress_namespace: String,
    /// Where Prometheus runs; `None` lets no scraper in.
    pub monitoring_namespace: Option<String>,
    /// Where the cluster DNS (`k8s-app: kube-dns`) runs.
    pub dns_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingress_namespace: "ingress-nginx".into(),
            monitoring_namespace: Some("monitoring".into()),
            dns_namespace: "kube-system".into(),
        }
    }
}

/// What the manifests need to know about one service, taken from its recipe and the graph.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: String,
    pub version: String,
    pub ports: Vec<u16>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: DeploySection,
    /// `[service] depends_on`, in the recipe's order.
    pub depends_on: Vec<String>,
    /// `host:port` of each dependency's Service, in `depends_on` order.
    pub upstreams: Vec<String>,
    /// Services whose `depends_on` names this one, sorted.
    pub dependants: Vec<String>,
    pub uid: u32,
}

/// Every service of the workspace, by name (a service without ports is kept as a graph node,
/// but [`select`] refuses to write manifests for it).
pub fn service_specs(ws: &Workspace) -> BTreeMap<String, ServiceSpec> {
    let services: Vec<_> = ws
        .recipes
        .iter()
        .filter(|r| r.kind == Kind::Service)
        .collect();
    let mut out = BTreeMap::new();
    for r in &services {
        let depends_on: Vec<String> = r.depends_on.iter().map(|d| d.value.clone()).collect();
        let mut dependants: Vec<String> = services
            .iter()
            .filter(|o| o.depends_on.iter().any(|d| d.value == r.name))
            .map(|o| o.name.clone())
            .collect();
        dependants.sort();
        let upstreams = depends_on
            .iter()
            .filter_map(|d| ws.recipe(d))
            .filter_map(|d| d.image.ports.first().map(|p| format!("{}:{p}", d.name)))
            .collect();
        out.insert(
            r.name.clone(),
            ServiceSpec {
                name: r.name.clone(),
                version: r.version.clone(),
                ports: r.image.ports.clone(),
                healthcheck: r.image.healthcheck.clone(),
                deploy: r.deploy.clone(),
                depends_on,
                upstreams,
                dependants,
                uid: crate::image::base::NONROOT,
            },
        );
    }
    out
}

/// The manifests of one service, in apply order.
pub fn service_documents(
    s: &ServiceSpec,
    all: &BTreeMap<String, ServiceSpec>,
    opts: &Options,
) -> Vec<Value> {
    let mut docs = vec![
        workload::service_account(s),
        workload::service(s),
        workload::deployment(s),
    ];
    docs.extend(workload::autoscaler(s));
    docs.push(netpol::policy(s, |n| all.get(n), opts));
    docs
}

/// The selected services (all when `names` is empty), checked against the workspace.
pub fn select<'a>(
    ws: &Workspace,
    all: &'a BTreeMap<String, ServiceSpec>,
    names: &[String],
) -> Result<Vec<&'a ServiceSpec>, DeployError> {
    let mut out = Vec::new();
    if names.is_empty() {
        out = all.values().collect();
    }
    for n in names {
        match all.get(n) {
            Some(s) => out.push(s),
            None => match ws.recipe(n) {
                Some(r) => {
                    return Err(DeployError::NotAService {
                        service: n.clone(),
                        kind: r.kind.as_str(),
                    })
                }
                None => return Err(DeployError::UnknownService(n.clone())),
            },
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    if let Some(s) = out.iter().find(|s| s.ports.is_empty()) {
        return Err(DeployError::NoPorts {
            service: s.name.clone(),
        });
    }
    Ok(out)
}

/// Every manifest as one multi-document YAML stream (what `kiln k8s` prints without `-o`).
pub fn stream(
    selected: &[&ServiceSpec],
    all: &BTreeMap<String, ServiceSpec>,
    opts: &Options,
) -> String {
    let mut docs = vec![netpol::default_deny()];
    for s in selected {
        docs.extend(service_documents(s, all, opts));
    }
    yaml::documents(&docs)
}
