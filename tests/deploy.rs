//! `kiln k8s` and `kiln resolve` checked by tools that are not kiln: the official Kubernetes
//! JSON schemas in strict mode (PyPI `kubernetes-validate`, pinned to one minor version),
//! `kubectl kustomize` for every overlay, PyYAML to read what kiln wrote, a NetworkPolicy
//! evaluator written from the API definition (tests/support/netpol_eval.rs), and for `resolve`
//! the real registry and skopeo.
//!
//! Needs: `pip install kubernetes-validate` (and PyYAML, which it pulls in), kubectl,
//! docker-registry, skopeo.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::kiln::Kiln;
use support::netpol_eval::{self, labels, Cluster, Labels, Pod};
use support::workspace::Workspace;

/// The Kubernetes minor version every manifest is validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// kiln in the repository's own workspace.
fn repo_kiln() -> Kiln {
    Kiln::at(repo()).env("CI", "1")
}

/// [`repo_kiln`] with `args`, which must succeed; its stdout.
fn repo_ok(args: &[&str], what: &str) -> String {
    String::from_utf8(repo_kiln().run(args).ok(what).stdout).unwrap()
}

/// A tool's stdout, after checking it succeeded.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tool(program: &str, install: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{program} is not installed: {install}");
    Command::new(program)
}

fn kubectl() -> Command {
    tool(
        "kubectl",
        "install kubectl (https://kubernetes.io/docs/tasks/tools/)",
    )
}

/// Every YAML document in `text`, read by PyYAML (not by kiln), as JSON values.
fn parse_yaml(text: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = tool("python3", "scripts/setup installs python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let docs: Value = serde_json::from_slice(&ok(out, "PyYAML").into_bytes()).unwrap();
    docs.as_array().unwrap().clone()
}

/// Runs kubernetes-validate in strict mode; returns (success, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = tool(
        "kubernetes-validate",
        "pip install kubernetes-validate (scripts/setup does)",
    )
    .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
    .args(files)
    .output()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn layout(dir: &Path) -> PathBuf {
    let out = dir.join("k8s");
    repo_ok(&["k8s", "-o", out.to_str().unwrap()], "kiln k8s -o");
    out
}

fn kustomize(overlay: &Path) -> String {
    let out = kubectl().arg("kustomize").arg(overlay).output().unwrap();
    ok(out, &format!("kubectl kustomize {}", overlay.display()))
}

fn services() -> BTreeMap<String, Vec<String>> {
    let ws = kiln::workspace::Workspace::load(&repo()).unwrap();
    ws.recipes
        .iter()
        .filter(|r| r.kind == kiln::recipe::Kind::Service)
        .map(|r| {
            (
                r.name.clone(),
                r.depends_on.iter().map(|d| d.value.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn every_manifest_passes_the_strict_schemas_and_every_overlay_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layout(tmp.path());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "default-deny plus one file per service");
    for env in ["dev", "staging", "prod"] {
        let built = tmp.path().join(format!("{env}.yaml"));
        std::fs::write(&built, kustomize(&dir.join("overlays").join(env))).unwrap();
        files.push(built);
    }
    let (passed, report) = validate(&files);
    assert!(passed, "kubernetes-validate --strict:\n{report}");

    // The validator is strict for real: an unknown field and a wrong type are both rejected.
    let bad = tmp.path().join("bad.yaml");
    let base = std::fs::read_to_string(dir.join("base/http-gateway.yaml")).unwrap();
    std::fs::write(
        &bad,
        base.replace("revisionHistoryLimit: 5", "revisionHistoryLimt: 5"),
    )
    .unwrap();
    assert!(
        !validate(std::slice::from_ref(&bad)).0,
        "a misspelt field must fail"
    );
    std::fs::write(&bad, base.replace("runAsUser: 65532", "runAsUser: \"x\"")).unwrap();
    assert!(!validate(&[bad]).0, "a wrong type must fail");
}

fn dns_1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn manifests_hold_what_schemas_cannot_express() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layout(tmp.path());
    let graph = services();
    for env in ["dev", "staging", "prod"] {
        let docs = parse_yaml(&kustomize(&dir.join("overlays").join(env)));
        let deployments = of_kind(&docs, "Deployment");
        assert_eq!(
            deployments
                .iter()
                .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>(),
            graph.keys().cloned().collect::<BTreeSet<_>>(),
            "{env}: one Deployment per service"
        );
        for d in &docs {
            let name = d["metadata"]["name"].as_str().unwrap();
            assert!(
                dns_1123_label(name),
                "{env}: {name} is not a DNS-1123 label"
            );
            assert_eq!(d["metadata"]["namespace"], format!("kiln-{env}"), "{name}");
        }
        for d in &deployments {
            let name = d["metadata"]["name"].as_str().unwrap();
            let template_labels = labels(&d["spec"]["template"]["metadata"]["labels"]);
            assert!(
                netpol_eval::selector_matches(&d["spec"]["selector"], &template_labels),
                "{env}/{name}: selector does not match the template's labels"
            );
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], name);
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"],
                "RuntimeDefault"
            );
            let c = &pod["containers"][0];
            assert_eq!(c["image"], format!("kiln://{name}"));
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["runAsUser"], 65532, "the uid kiln images run as");
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
            assert!(pod["volumes"][0]["emptyDir"].is_object());
            let port_names: Vec<&str> = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for n in &port_names {
                assert!(
                    n.len() <= 15 && n.starts_with("http-"),
                    "{name}: port name {n}"
                );
            }
            for (probe, path) in [
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/healthz"),
                ("startupProbe", "/healthz"),
            ] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{name} {probe}");
                assert!(
                    port_names.contains(&get["port"].as_str().unwrap()),
                    "{name}: {probe} names port {} the container does not have",
                    get["port"]
                );
                assert!(c[probe].get("exec").is_none());
            }
            // The gateway's recipe has start_period 2s, interval 10s, retries 3 (see
            // recipes/http-gateway.toml): 2 + 3 × 10 one-second startup probes.
            if name == "http-gateway" {
                assert_eq!(c["startupProbe"]["failureThreshold"], 32);
                assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
                assert_eq!(c["readinessProbe"]["timeoutSeconds"], 2);
            }
            let annotations = &d["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true");
            assert_eq!(annotations["prometheus.io/path"], "/metrics");
            assert_eq!(
                annotations["prometheus.io/port"],
                c["ports"][0]["containerPort"].to_string()
            );
            let svc = of_kind(&docs, "Service")
                .into_iter()
                .find(|s| s["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{name} has no Service"));
            assert!(netpol_eval::selector_matches(
                &serde_json::json!({ "matchLabels": svc["spec"]["selector"] }),
                &template_labels
            ));
            for p in svc["spec"]["ports"].as_array().unwrap() {
                assert!(port_names.contains(&p["targetPort"].as_str().unwrap()));
            }
            // UPSTREAMS names each dependency's Service and port, in depends_on order.
            let want: Vec<String> = graph[name]
                .iter()
                .map(|dep| {
                    let dd = deployments
                        .iter()
                        .find(|x| x["metadata"]["name"] == *dep)
                        .unwrap();
                    format!(
                        "{dep}:{}",
                        dd["spec"]["template"]["spec"]["containers"][0]["ports"][0]
                            ["containerPort"]
                    )
                })
                .collect();
            let got = c["env"]
                .as_array()
                .and_then(|e| e.iter().find(|v| v["name"] == "UPSTREAMS"))
                .map(|v| v["value"].as_str().unwrap().to_string());
            assert_eq!(got, (!want.is_empty()).then(|| want.join(",")), "{name}");
        }
        for h in of_kind(&docs, "HorizontalPodAutoscaler") {
            let target = &h["spec"]["scaleTargetRef"]["name"];
            assert!(deployments.iter().any(|d| d["metadata"]["name"] == *target));
        }
    }
    // The [deploy] table of recipes/http-gateway.toml, as written and per environment.
    let prod = parse_yaml(&kustomize(&dir.join("overlays/prod")));
    let gw = of_kind(&prod, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "http-gateway")
        .unwrap();
    let res = &gw["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(
        res["requests"], res["limits"],
        "prod runs with Guaranteed QoS"
    );
    let hpa = of_kind(&prod, "HorizontalPodAutoscaler");
    assert_eq!(hpa.len(), 1);
    assert_eq!(hpa[0]["spec"]["minReplicas"], 2);
    assert_eq!(hpa[0]["spec"]["maxReplicas"], 6);
    let dev = parse_yaml(&kustomize(&dir.join("overlays/dev")));
    for d in of_kind(&dev, "Deployment") {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["requests"]["cpu"], "10m");
        if d["metadata"]["name"] != "http-gateway" {
            assert_eq!(d["spec"]["replicas"], 1);
        }
    }
}

fn pod(ns: &str, labels: Labels, ports: Vec<(String, u16, String)>) -> Pod {
    Pod {
        namespace: ns.into(),
        namespace_labels: [("kubernetes.io/metadata.name".to_string(), ns.to_string())].into(),
        labels,
        ports,
    }
}

#[test]
fn network_policies_allow_exactly_the_dependency_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layout(tmp.path());
    let docs = parse_yaml(&kustomize(&dir.join("overlays/prod")));
    let ns = "kiln-prod";
    let cluster = Cluster {
        policies: of_kind(&docs, "NetworkPolicy")
            .into_iter()
            .cloned()
            .collect(),
    };
    let pods: BTreeMap<String, Pod> = of_kind(&docs, "Deployment")
        .into_iter()
        .map(|d| {
            let c = &d["spec"]["template"]["spec"]["containers"][0];
            let ports = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["containerPort"].as_u64().unwrap() as u16,
                        p["protocol"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                pod(
                    ns,
                    labels(&d["spec"]["template"]["metadata"]["labels"]),
                    ports,
                ),
            )
        })
        .collect();
    let graph = services();
    assert_eq!(pods.len(), 16);
    let mut edges = 0;
    for (a, pa) in &pods {
        for (b, pb) in &pods {
            if a == b {
                continue;
            }
            let want = graph[a].contains(b);
            edges += usize::from(want);
            for (_, port, proto) in &pb.ports {
                assert_eq!(
                    cluster.connects(pa, pb, *port, proto),
                    want,
                    "{a} -> {b}:{port}: depends_on says {want}"
                );
            }
            // Never on a port the destination does not serve.
            assert!(!cluster.connects(pa, pb, 9999, "TCP"), "{a} -> {b}:9999");
        }
    }
    assert_eq!(edges, graph.values().map(Vec::len).sum::<usize>());
    assert!(edges > 15, "the graph has real edges to check");

    // Outside the graph: DNS is reachable from everyone, nothing else outside is; the ingress
    // controller reaches only the service whose [deploy] says ingress = true; Prometheus scrapes
    // every service; a stranger pod in the namespace reaches nothing.
    let dns = pod(
        "kube-system",
        [("k8s-app".to_string(), "kube-dns".to_string())].into(),
        vec![
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into()),
        ],
    );
    let outside = pod(
        "elsewhere",
        Labels::new(),
        vec![("http".into(), 80, "TCP".into())],
    );
    let ingress = pod("ingress-nginx", Labels::new(), vec![]);
    let prometheus = pod("monitoring", Labels::new(), vec![]);
    let stranger = pod(
        ns,
        [("app.kubernetes.io/name".to_string(), "intruder".to_string())].into(),
        vec![],
    );
    for (name, p) in &pods {
        let port = p.ports[0].1;
        assert!(cluster.connects(p, &dns, 53, "UDP"), "{name} -> DNS/UDP");
        assert!(cluster.connects(p, &dns, 53, "TCP"), "{name} -> DNS/TCP");
        assert!(
            !cluster.connects(p, &outside, 80, "TCP"),
            "{name} -> outside"
        );
        assert_eq!(
            cluster.connects(&ingress, p, port, "TCP"),
            name == "http-gateway",
            "ingress controller -> {name}"
        );
        assert!(
            cluster.connects(&prometheus, p, port, "TCP"),
            "prometheus -> {name}"
        );
        assert!(
            !cluster.connects(&stranger, p, port, "TCP"),
            "stranger -> {name}"
        );
    }
}

#[test]
fn output_is_deterministic_and_bad_deploy_tables_fail_with_a_position() {
    let a = repo_ok(&["k8s"], "kiln k8s");
    let b = repo_ok(&["k8s"], "kiln k8s");
    assert_eq!(a, b);
    assert!(!a.contains(env!("CARGO_MANIFEST_DIR")), "no absolute path");
    // The stream is the same objects as the layout's base.
    let tmp = tempfile::tempdir().unwrap();
    let dir = layout(tmp.path());
    let stream = parse_yaml(&a);
    let mut base = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    files.sort();
    for f in files {
        base.extend(parse_yaml(&std::fs::read_to_string(f).unwrap()));
    }
    let key = |d: &Value| format!("{}/{}", d["kind"], d["metadata"]["name"]);
    let mut s: Vec<_> = stream.iter().map(key).collect();
    let mut l: Vec<_> = base.iter().map(key).collect();
    s.sort();
    l.sort();
    assert_eq!(s, l);

    let one = parse_yaml(&repo_ok(
        &["k8s", "naming-service"],
        "kiln k8s naming-service",
    ));
    assert_eq!(
        one.len(),
        5,
        "default-deny, ServiceAccount, Service, Deployment, NetworkPolicy"
    );
    let out = repo_kiln().run(["k8s", "orb-core-lib"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out
        .stderr_text()
        .contains("`orb-core-lib` is a library, not a service"));

    let ws = Workspace::engine();
    let recipe = ws.path("recipes/hello.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        format!("{text}\n[deploy]\nreplicas = 2\nmemory = \"lots\"\n"),
    )
    .unwrap();
    let out = ws.kiln().run(["k8s"]);
    let err = out.stderr_text();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = text.lines().count() + 4;
    assert!(
        err.contains(&format!("recipes/hello.toml:{line}:10"))
            && err.contains("not a Kubernetes quantity"),
        "{err}"
    );
    // geometry has no ports: nothing to probe or expose, and kiln says so.
    std::fs::write(&recipe, text).unwrap();
    let out = ws
        .kiln()
        .run(["k8s", "-o", tmp.path().join("never").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out
        .stderr_text()
        .contains("`geometry` has no [image] ports"));
    assert!(!tmp.path().join("never").exists(), "nothing half-written");
}
