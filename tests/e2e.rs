//! The 16 services end to end, as CI runs them: build with kiln, push with kiln to the real
//! registry on loopback, pull and run every image with podman, check health, readiness, metrics
//! and domain endpoints, then stop each with SIGTERM.
//!
//! Works on the repository's own workspace (out/ is git-ignored) with the default cache, so a
//! developer's warm cache makes it fast.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kiln::Kiln;
use support::registry_server;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// kiln in the repository's own workspace, with the default cache.
fn repo_kiln() -> Kiln {
    Kiln::at(root()).env("CI", "1")
}

/// A container tool's stdout, after checking it succeeded.
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minimal HTTP/1.1 client (the services close the connection after each answer).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(5),
    )?;
    // Generous: on a loaded 2-core machine a container can be slow to answer; a hang still
    // ends here instead of stalling the suite.
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(15)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `path` answers 200, for at most 60 s; panics with the last answer otherwise.
fn wait_for_status(port: u16, path: &str, name: &str) {
    let start = Instant::now();
    loop {
        let last = match http(port, "GET", path, "") {
            Ok((200, _)) => return,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: {path} not 200 within 60 s; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks Prometheus text exposition line by line; returns samples as (name, labels, value).
fn parse_prometheus(text: &str) -> Result<Vec<(String, String, f64)>, String> {
    let mut samples = Vec::new();
    let mut typed = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(t)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(format!("line {}: unknown type {t}", n + 1));
                    }
                    typed.insert(name.to_string(), t.to_string());
                }
                (Some("HELP"), Some(_), _) => {}
                _ => return Err(format!("line {}: bad comment {line:?}", n + 1)),
            }
            continue;
        }
        let (name_labels, value) = line
            .rsplit_once(' ')
            .ok_or(format!("line {}: no value", n + 1))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|_| format!("line {}: bad value {v:?}", n + 1))?,
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((name, l)) => {
                let l = l
                    .strip_suffix('}')
                    .ok_or(format!("line {}: unclosed labels", n + 1))?;
                (name, l)
            }
            None => (name_labels, ""),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("line {}: bad metric name {name:?}", n + 1));
        }
        samples.push((name.to_string(), labels.to_string(), value));
    }
    for (name, _, _) in &samples {
        let base = name.trim_end_matches("_total");
        if !typed.contains_key(name.as_str()) && !typed.contains_key(base) {
            return Err(format!("sample {name} has no # TYPE"));
        }
    }
    Ok(samples)
}

struct Containers {
    podman_conf: tempfile::TempDir,
    names: Vec<String>,
}

impl Containers {
    fn podman(&self) -> Command {
        let conf = self.podman_conf.path().join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", conf)
            .arg("--runtime")
            .arg("/usr/sbin/runc");
        c
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.podman().args(["rm", "-f", "-t", "0", n]).output();
        }
    }
}

#[derive(serde::Deserialize)]
struct Check {
    method: String,
    path: String,
    #[serde(default)]
    body: String,
    status: u16,
    contains: String,
}

#[test]
fn sixteen_services_build_push_run_and_stop() {
    let root = root();
    // Build all 16 services (and their images).
    let built = repo_kiln()
        .run(["build", "--json", "-j2"])
        .ok("kiln build")
        .json();
    let services: Vec<&Value> = built["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "service")
        .collect();
    assert_eq!(services.len(), 16, "expected 16 services");
    for s in &services {
        let img = &s["image"];
        let (size, budget) = (
            img["compressed_size"].as_u64().unwrap(),
            img["budget"].as_u64().unwrap(),
        );
        assert!(size < budget, "{} over budget", s["name"]);
        // The mission aims an order of magnitude below the budget.
        assert!(
            size * 10 < budget,
            "{}: {size} bytes is more than a tenth of its {budget} budget",
            s["name"]
        );
    }

    // Push them all to the reference registry on loopback.
    let registry = registry_server::start(registry_server::Mode::Plain);
    let to = format!("{}/kiln", registry.addr);
    let pushed = repo_kiln()
        .run(["push", "--to", &to, "--json"])
        .ok("kiln push")
        .json();
    let pushed = pushed["images"].as_array().unwrap().clone();
    assert_eq!(pushed.len(), 16);
    let uploaded: u64 = pushed
        .iter()
        .map(|p| p["uploaded_blobs"].as_u64().unwrap())
        .sum();
    let shared: u64 = pushed
        .iter()
        .map(|p| p["mounted_blobs"].as_u64().unwrap() + p["skipped_blobs"].as_u64().unwrap())
        .sum();
    assert!(
        shared >= 2 * 14,
        "lower layers of each family should be shared, got {shared} shared vs {uploaded} uploaded"
    );

    // skopeo, an independent client, sees what kiln reported.
    let first = &pushed[0];
    let reference = first["reference"].as_str().unwrap();
    let tag_ref = format!(
        "docker://{}:{}",
        reference.split('@').next().unwrap(),
        first["tags"][0].as_str().unwrap()
    );
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &tag_ref])
        .output()
        .unwrap();
    let inspect: Value = serde_json::from_slice(&inspect.stdout)
        .unwrap_or_else(|_| panic!("skopeo: {}", String::from_utf8_lossy(&inspect.stderr)));
    assert_eq!(inspect["Digest"], first["digest"]);

    // Pull every image and run it, in deployment order (kiln graph's tiers).
    let ws = kiln::workspace::Workspace::load(&root).unwrap();
    let tiers = kiln::graph::deploy_tiers(&ws.graph());
    let mut containers = Containers {
        podman_conf: tempfile::tempdir().unwrap(),
        names: Vec::new(),
    };
    let by_service: BTreeMap<String, &Value> = pushed
        .iter()
        .map(|p| (p["service"].as_str().unwrap().to_string(), p))
        .collect();
    let mut ports = BTreeMap::new();
    for tier in &tiers {
        for &name in tier {
            let r = ws.recipe(name).unwrap();
            let port = r.image.ports[0];
            ports.insert(name.to_string(), port);
            let reference = by_service[name]["reference"].as_str().unwrap();
            ok(
                &containers
                    .podman()
                    .args(["pull", "-q", "--tls-verify=false", reference])
                    .output()
                    .unwrap(),
                "podman pull",
            );
            let cname = format!("kiln-e2e-{name}-{}", std::process::id());
            let _ = containers.podman().args(["rm", "-f", &cname]).output();
            ok(
                &containers
                    .podman()
                    .args(["run", "-d", "--network=host", "--name", &cname, reference])
                    .output()
                    .unwrap(),
                "podman run",
            );
            containers.names.push(cname);

            // /healthz answers 200 once the service is up (bounded generously: what is
            // checked is that it comes up, not how fast a loaded machine starts it).
            wait_for_status(port, "/healthz", name);

            // The image's own health check works inside the minimal image (no shell, no curl).
            let check = &r
                .image
                .healthcheck
                .as_ref()
                .expect("every service declares a health check")
                .test;
            assert_eq!(check[0], "CMD", "{name}: exec-form health check");
            let cname = containers.names.last().unwrap().clone();
            let mut exec = vec!["exec".to_string(), cname];
            exec.extend(check[1..].iter().cloned());
            let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
            ok(
                &containers.podman().args(&exec).output().unwrap(),
                "health check command",
            );
        }
    }

    let revision = kiln::vcs::Meta::of(&kiln::exec::ProcessRunner, &root).revision;
    for (name, &port) in &ports {
        let r = ws.recipe(name).unwrap();
        // Every dependency is up, so every service becomes ready (its readiness probes its
        // upstreams with a short timeout, which a loaded machine can miss once).
        wait_for_status(port, "/readyz", name);

        // Domain endpoints and malformed requests, as the service's smoke file says.
        let checks: Vec<Check> = serde_json::from_slice(
            &std::fs::read(root.join("fixtures/services").join(name).join("smoke.json")).unwrap(),
        )
        .unwrap();
        assert!(
            checks.iter().any(|c| c.status == 400),
            "{name}: smoke.json has no malformed-request check"
        );
        for c in &checks {
            let (status, body) = http(port, &c.method, &c.path, &c.body).unwrap();
            assert_eq!(
                status, c.status,
                "{name}: {} {} answered {status}: {body}",
                c.method, c.path
            );
            assert!(
                body.contains(&c.contains),
                "{name}: {} {}: {body:?} lacks {:?}",
                c.method,
                c.path,
                c.contains
            );
        }
        let (status, _) = http(port, "GET", "/no/such/path", "").unwrap();
        assert_eq!(status, 404, "{name}: unknown path");
        let (status, _) = http(port, "GARBAGE", "no-slash", "").unwrap_or((400, String::new()));
        assert!(
            status == 400 || status == 405 || status == 501,
            "{name}: malformed request line answered {status}"
        );

        // A burst of concurrent requests (8 clients x 25, bounded) is answered and survived.
        let answered: usize = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(move || {
                        (0..25)
                            .filter(|_| matches!(http(port, "GET", "/healthz", ""), Ok((200, _))))
                            .count()
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).sum()
        });
        assert_eq!(
            answered, 200,
            "{name}: only {answered} of 200 burst requests answered 200"
        );
        assert_eq!(
            http(port, "GET", "/healthz", "").unwrap().0,
            200,
            "{name} died in the burst"
        );

        // Metrics parse as Prometheus text and carry the build info.
        let (status, metrics) = http(port, "GET", "/metrics", "").unwrap();
        assert_eq!(status, 200);
        let samples =
            parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{name}: {e}\n{metrics}"));
        assert!(
            samples.iter().any(|(n, l, v)| n == "http_requests_total"
                && l.contains("path=\"/healthz\"")
                && *v >= 1.0),
            "{name}: {metrics}"
        );
        assert!(
            samples
                .iter()
                .any(|(n, _, _)| n == "process_uptime_seconds"),
            "{name}"
        );
        let info = samples
            .iter()
            .find(|(n, _, _)| n == "build_info")
            .unwrap_or_else(|| panic!("{name}: no build_info"));
        assert!(
            info.1.contains(&format!("version=\"{}\"", r.version)),
            "{name}: {}",
            info.1
        );
        assert!(
            info.1.contains(&format!("revision=\"{revision}\"")),
            "{name}: {}",
            info.1
        );
    }

    // SIGTERM stops each one cleanly, last tier first. `podman stop -t 30` sends SIGTERM and
    // only after 30 s SIGKILL, so exit code 0 proves the service stopped on SIGTERM by itself
    // (a killed one exits 137); no wall-clock bound that a loaded machine could break.
    for cname in containers.names.clone().iter().rev() {
        ok(
            &containers
                .podman()
                .args(["stop", "-t", "30", cname])
                .output()
                .unwrap(),
            "podman stop",
        );
        let code = ok(
            &containers
                .podman()
                .args(["inspect", "--format", "{{.State.ExitCode}}", cname])
                .output()
                .unwrap(),
            "podman inspect",
        );
        assert_eq!(
            code.trim(),
            "0",
            "{cname} exited with {} after SIGTERM",
            code.trim()
        );
    }
    let _ = Path::new("");
}

#[test]
fn prometheus_parser_rejects_malformed_text() {
    assert!(parse_prometheus("# TYPE up gauge\nup 1\n").is_ok());
    assert!(parse_prometheus("up 1\n").is_err(), "sample without TYPE");
    assert!(parse_prometheus("# TYPE up gauge\nup one\n").is_err());
    assert!(parse_prometheus("# TYPE up gauge\nup{a=\"b\" 1\n").is_err());
}

#[test]
fn every_service_has_domain_tests_and_they_pass() {
    let root = root();
    let ws = kiln::workspace::Workspace::load(&root).unwrap();
    let tests: Vec<&kiln::recipe::Recipe> = ws
        .recipes
        .iter()
        .filter(|r| r.kind == kiln::recipe::Kind::Test)
        .collect();
    for s in ws
        .recipes
        .iter()
        .filter(|r| r.kind == kiln::recipe::Kind::Service)
    {
        let dir = format!("fixtures/services/{}/", s.name);
        assert!(
            tests.iter().any(|t| t
                .sources
                .iter()
                .chain(&t.source_dirs)
                .any(|p| p.to_string_lossy().starts_with(&dir))),
            "no test target covers {}",
            s.name
        );
    }
    let doc = repo_kiln()
        .run(["test", "--json", "-j2"])
        .ok("kiln test")
        .json();
    let results = doc["tests"].as_array().unwrap();
    assert_eq!(results.len(), tests.len());
    for r in results {
        assert_eq!(r["passed"], true, "{}: {}", r["name"], r["output"]);
        assert!(root.join(r["junit"].as_str().unwrap()).is_file());
    }
}

#[test]
fn kiln_graph_shows_the_deployment_order() {
    let dot = repo_kiln().run(["graph"]).ok("kiln graph").stdout_text();
    let tier = |n: usize| -> Vec<String> {
        let prefix = format!("  // deploy tier {n}: ");
        let line = dot
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no tier {n} in:\n{dot}"));
        line[prefix.len()..]
            .split(", ")
            .map(str::to_string)
            .collect()
    };
    assert_eq!(tier(0), ["orb-core", "widget-core", "xrc-service"]);
    for s in [
        "render-manager",
        "event-manager",
        "giop-protocol",
        "poa-manager",
        "naming-service",
        "security-service",
    ] {
        assert!(
            tier(1).contains(&s.to_string()),
            "{s} not in the second tier"
        );
    }
    for s in ["http-gateway", "soap-gateway", "dsa-adapter"] {
        assert!(tier(2).contains(&s.to_string()), "{s} not in the last tier");
    }
    // Build edges: the shared libraries are real cross-recipe dependencies.
    for edge in [
        "\"render-manager\" -> \"widget-core-lib\";",
        "\"event-manager\" -> \"widget-core-lib\";",
        "\"naming-service\" -> \"orb-core-lib\";",
        "\"giop-protocol\" -> \"orb-core-lib\";",
    ] {
        assert!(dot.contains(edge), "missing {edge}");
    }
}
