//! NetworkPolicies from the run-time dependency graph (`[service] depends_on`).
//!
//! Zero trust inside the namespace: one `default-deny` policy selects every pod for both
//! directions, so anything not allowed below is dropped. Then per service one policy that
//! selects its pods and allows, on its own ports only:
//! - ingress from the pods of each service whose `depends_on` names it;
//! - ingress from the ingress controller's namespace, for services with `[deploy] ingress = true`;
//! - ingress from the monitoring namespace (Prometheus scrapes `/metrics` on the service port);
//! - egress to the pods of each dependency, on that dependency's ports, and to the cluster DNS.
//!
//! Policies are additive in Kubernetes (a connection is allowed when any policy selecting the
//! pod allows it), so the default deny plus these allows is exactly the graph and nothing more.
//! Peers outside the namespace are matched by the `kubernetes.io/metadata.name` label the API
//! server sets on every namespace.

use serde_json::{json, Value};

use super::workload::{port_name, NAME_LABEL};
use super::{Options, ServiceSpec};

const NAMESPACE_LABEL: &str = "kubernetes.io/metadata.name";

pub fn default_deny() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "default-deny", "labels": { "app.kubernetes.io/managed-by": "kiln" } },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress", "Egress"] },
    })
}

fn ports(ports: &[u16]) -> Vec<Value> {
    ports
        .iter()
        .map(|&p| json!({ "protocol": "TCP", "port": p }))
        .collect()
}

fn pods(name: &str) -> Value {
    json!({ "podSelector": { "matchLabels": { NAME_LABEL: name } } })
}

fn namespace(name: &str) -> Value {
    json!({ "namespaceSelector": { "matchLabels": { NAMESPACE_LABEL: name } } })
}

/// `spec_of(name)` gives the ports of a dependency (every service in the workspace, deployed or not).
pub fn policy<'a>(
    s: &ServiceSpec,
    spec_of: impl Fn(&str) -> Option<&'a ServiceSpec>,
    opts: &Options,
) -> Value {
    let own_ports = ports(&s.ports);
    let mut ingress = Vec::new();
    if !s.dependants.is_empty() {
        ingress.push(json!({
            "from": s.dependants.iter().map(|d| pods(d)).collect::<Vec<_>>(),
            "ports": own_ports,
        }));
    }
    if s.deploy.ingress {
        ingress.push(json!({ "from": [namespace(&opts.ingress_namespace)], "ports": own_ports }));
    }
    if let Some(m) = &opts.monitoring_namespace {
        ingress.push(json!({ "from": [namespace(m)], "ports": ports(&s.ports[..1]) }));
    }
    let mut egress: Vec<Value> = s
        .depends_on
        .iter()
        .filter_map(|d| spec_of(d))
        // A dependency without ports serves nothing; an empty port list would mean all ports.
        .filter(|d| !d.ports.is_empty())
        .map(|d| json!({ "to": [pods(&d.name)], "ports": ports(&d.ports) }))
        .collect();
    let mut dns = namespace(&opts.dns_namespace);
    dns["podSelector"] = json!({ "matchLabels": { "k8s-app": "kube-dns" } });
    egress.push(json!({
        "to": [dns],
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    }));
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": s.name, "labels": super::workload::labels(s) },
        "spec": {
            "podSelector": { "matchLabels": { NAME_LABEL: s.name } },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    })
}

/// The port names a policy allows, for the summary line.
pub fn summary(s: &ServiceSpec) -> String {
    let from = if s.dependants.is_empty() {
        "-".to_string()
    } else {
        s.dependants.join(",")
    };
    let to = if s.depends_on.is_empty() {
        "-".to_string()
    } else {
        s.depends_on.join(",")
    };
    format!(
        "{} port {} ingress from {from}{} egress to {to}",
        s.name,
        port_name(s.ports[0]),
        if s.deploy.ingress { " +ingress" } else { "" }
    )
}
