//! The per-service objects: ServiceAccount, Service, Deployment and the optional
//! HorizontalPodAutoscaler, all derived from the recipe.
//!
//! Health: the images' own health check runs the service binary with `--probe`, which a kubelet
//! could only do through exec; the services serve `/readyz` and `/healthz` themselves, so the
//! probes are httpGet on the first port and need nothing inside the image. Docker's health-check
//! timing maps onto the probes as follows (Docker's defaults where the recipe is silent):
//! - readiness and liveness: `periodSeconds` = interval, `timeoutSeconds` = timeout,
//!   `failureThreshold` = retries;
//! - startup: probed every second, allowed `start_period + retries × interval` seconds in all, the
//!   longest Docker would wait before calling the container unhealthy, while liveness is held off.

use serde_json::{json, Value};

use super::ServiceSpec;

/// Docker's defaults for a health check with no timing (`docker run --health-*`).
const DEFAULT_INTERVAL_S: u64 = 30;
const DEFAULT_TIMEOUT_S: u64 = 30;
const DEFAULT_RETRIES: u32 = 3;

/// The label every selector and policy matches on.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

pub fn port_name(port: u16) -> String {
    // Istio and Linkerd pick the protocol from the `<protocol>-` prefix; the port keeps names
    // unique and under the 15-character limit of an IANA service name.
    format!("http-{port}")
}

fn seconds(ns: Option<u64>, default: u64) -> u64 {
    ns.map(|ns| ns.div_ceil(1_000_000_000))
        .unwrap_or(default)
        .max(1)
}

pub fn labels(s: &ServiceSpec) -> Value {
    let mut l = serde_json::Map::new();
    l.insert(NAME_LABEL.into(), json!(s.name));
    if is_label_value(&s.version) {
        l.insert("app.kubernetes.io/version".into(), json!(s.version));
    }
    l.insert("app.kubernetes.io/managed-by".into(), json!("kiln"));
    Value::Object(l)
}

/// A label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn metadata(s: &ServiceSpec) -> Value {
    json!({ "name": s.name, "labels": labels(s) })
}

pub fn service_account(s: &ServiceSpec) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(s),
        // The services never call the API server; a token in the pod is only something to steal.
        "automountServiceAccountToken": false,
    })
}

pub fn service(s: &ServiceSpec) -> Value {
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|&p| {
            json!({
                "name": port_name(p),
                "appProtocol": "http",
                "protocol": "TCP",
                "port": p,
                "targetPort": port_name(p),
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(s),
        "spec": {
            "type": "ClusterIP",
            "selector": { NAME_LABEL: s.name },
            "ports": ports,
        },
    })
}

fn probe(path: &str, port: &str, period: u64, timeout: u64, failures: u32) -> Value {
    json!({
        "httpGet": { "path": path, "port": port, "scheme": "HTTP" },
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    })
}

pub fn deployment(s: &ServiceSpec) -> Value {
    let hc = s.healthcheck.clone().unwrap_or_default();
    let interval = seconds(hc.interval_ns, DEFAULT_INTERVAL_S);
    let timeout = seconds(hc.timeout_ns, DEFAULT_TIMEOUT_S);
    let retries = hc.retries.filter(|&r| r > 0).unwrap_or(DEFAULT_RETRIES);
    let start = hc
        .start_period_ns
        .map(|ns| ns.div_ceil(1_000_000_000))
        .unwrap_or(0);
    let startup_budget = start + u64::from(retries) * interval;
    let main_port = port_name(s.ports[0]);

    let mut env = Vec::new();
    if !s.upstreams.is_empty() {
        // The images carry loopback UPSTREAMS for running side by side on one host; in a
        // cluster each dependency is its Service's DNS name, in `depends_on` order as before.
        env.push(json!({ "name": "UPSTREAMS", "value": s.upstreams.join(",") }));
    }
    let mut container = json!({
        "name": s.name,
        "image": format!("kiln://{}", s.name),
        "imagePullPolicy": "IfNotPresent",
        "ports": s.ports.iter().map(|&p| json!({
            "name": port_name(p),
            "containerPort": p,
            "protocol": "TCP",
        })).collect::<Vec<_>>(),
        "env": env,
        "resources": {
            "requests": { "cpu": s.deploy.cpu, "memory": s.deploy.memory },
            "limits": { "cpu": s.deploy.cpu_limit, "memory": s.deploy.memory_limit },
        },
        "startupProbe": probe("/healthz", &main_port, 1, timeout.min(interval), startup_budget.clamp(1, u64::from(u32::MAX)) as u32),
        "readinessProbe": probe("/readyz", &main_port, interval, timeout, retries),
        "livenessProbe": probe("/healthz", &main_port, interval, timeout, retries),
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": s.uid,
            "runAsGroup": s.uid,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": { "drop": ["ALL"] },
        },
        "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
    });
    if s.upstreams.is_empty() {
        container.as_object_mut().map(|c| c.remove("env"));
    }
    let port = s.ports[0].to_string();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(s),
        "spec": {
            "replicas": s.deploy.hpa.as_ref().map_or(s.deploy.replicas, |h| h.min),
            "revisionHistoryLimit": 5,
            "selector": { "matchLabels": { NAME_LABEL: s.name } },
            "template": {
                "metadata": {
                    "labels": labels(s),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": port,
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": s.name,
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": s.uid,
                        "runAsGroup": s.uid,
                        "fsGroup": s.uid,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    // The root filesystem is read-only; /tmp is the one writable place, as in
                    // the image's base layer.
                    "volumes": [{ "name": "tmp", "emptyDir": { "sizeLimit": "64Mi" } }],
                },
            },
        },
    })
}

pub fn autoscaler(s: &ServiceSpec) -> Option<Value> {
    let h = s.deploy.hpa.as_ref()?;
    Some(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(s),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": s.name },
            "minReplicas": h.min,
            "maxReplicas": h.max,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": h.target_cpu },
                },
            }],
        },
    }))
}
