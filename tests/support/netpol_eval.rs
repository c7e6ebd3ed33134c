//! An evaluator of Kubernetes NetworkPolicies over parsed manifests, written from the API's own
//! definition (networking.k8s.io/v1 NetworkPolicySpec) rather than from kiln's generator:
//!
//! - a pod is *isolated* for a direction when at least one policy in its namespace selects it
//!   (`podSelector`) and lists that direction in `policyTypes`; a non-isolated pod allows all;
//! - an isolated pod allows a connection when any selecting policy has a rule whose peers
//!   (`from`/`to`; empty or absent means every peer) match the other end and whose `ports`
//!   (empty or absent means every port) match the protocol and port — a named port is looked
//!   up in the destination pod's container ports;
//! - a peer with only `podSelector` matches pods in the policy's own namespace; with
//!   `namespaceSelector` it matches pods in the namespaces whose labels match (and, with both,
//!   only the pods that also match the pod selector); `ipBlock` never matches a pod;
//! - a connection succeeds only when the source's egress and the destination's ingress allow it.
//!
//! Label selectors support `matchLabels` and `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist); an empty selector matches everything.

use std::collections::BTreeMap;

use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub namespace_labels: Labels,
    pub labels: Labels,
    /// (name, number, protocol) of each container port.
    pub ports: Vec<(String, u16, String)>,
}

pub struct Cluster {
    pub policies: Vec<Value>,
}

pub fn labels(v: &Value) -> Labels {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn selector_matches(sel: &Value, l: &Labels) -> bool {
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if l.get(k).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let have = l.get(key).map(String::as_str);
        let ok = match e["operator"].as_str() {
            Some("In") => have.is_some_and(|h| values.contains(&h)),
            Some("NotIn") => have.map_or(true, |h| !values.contains(&h)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            other => panic!("unknown selector operator {other:?}"),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn peer_matches(peer: &Value, policy_ns: &str, other: &Pod) -> bool {
    if peer.get("ipBlock").is_some() {
        return false;
    }
    let ns_ok = match peer.get("namespaceSelector") {
        Some(ns) => selector_matches(ns, &other.namespace_labels),
        None => other.namespace == policy_ns,
    };
    let pod_ok = peer
        .get("podSelector")
        .map_or(true, |ps| selector_matches(ps, &other.labels));
    ns_ok && pod_ok
}

fn port_matches(rule_ports: Option<&Value>, dst: &Pod, port: u16, protocol: &str) -> bool {
    let Some(list) = rule_ports
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return true;
    };
    list.iter().any(|p| {
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if proto != protocol {
            return false;
        }
        match &p["port"] {
            Value::Null => true,
            Value::Number(n) => {
                let start = n.as_u64().unwrap_or(0);
                let end = p["endPort"].as_u64().unwrap_or(start);
                (start..=end).contains(&u64::from(port))
            }
            Value::String(name) => dst
                .ports
                .iter()
                .any(|(n, num, pr)| n == name && *num == port && pr == protocol),
            other => panic!("bad port {other}"),
        }
    })
}

impl Cluster {
    /// Whether `pod` allows `direction` ("Ingress"/"Egress") with `other` on `port`/`protocol`
    /// of the destination (`dst`).
    fn allows(
        &self,
        pod: &Pod,
        direction: &str,
        other: &Pod,
        dst: &Pod,
        port: u16,
        protocol: &str,
    ) -> bool {
        let (rules_key, peers_key) = match direction {
            "Ingress" => ("ingress", "from"),
            _ => ("egress", "to"),
        };
        let selecting: Vec<&Value> = self
            .policies
            .iter()
            .filter(|p| {
                p["metadata"]["namespace"].as_str().unwrap_or("default") == pod.namespace
                    && selector_matches(&p["spec"]["podSelector"], &pod.labels)
                    && policy_types(p).iter().any(|t| t == direction)
            })
            .collect();
        if selecting.is_empty() {
            return true;
        }
        selecting.iter().any(|p| {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
            p["spec"][rules_key]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| {
                    let peers_ok = match rule.get(peers_key).and_then(Value::as_array) {
                        None => true,
                        Some(peers) if peers.is_empty() => true,
                        Some(peers) => peers.iter().any(|peer| peer_matches(peer, ns, other)),
                    };
                    peers_ok && port_matches(rule.get("ports"), dst, port, protocol)
                })
        })
    }

    /// Whether a connection from `src` to `dst` on `port`/`protocol` gets through.
    pub fn connects(&self, src: &Pod, dst: &Pod, port: u16, protocol: &str) -> bool {
        self.allows(src, "Egress", dst, dst, port, protocol)
            && self.allows(dst, "Ingress", src, dst, port, protocol)
    }
}

/// `policyTypes`, defaulted as the API does: Ingress always, Egress when egress rules exist.
fn policy_types(p: &Value) -> Vec<String> {
    match p["spec"]["policyTypes"].as_array() {
        Some(t) => t
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        None => {
            let mut t = vec!["Ingress".to_string()];
            if p["spec"].get("egress").is_some() {
                t.push("Egress".into());
            }
            t
        }
    }
}
