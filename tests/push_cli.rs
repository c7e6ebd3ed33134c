//! `kiln push` as a user runs it: kiln-built images of the engine fixture, pushed to the real
//! registry over plain HTTP, over TLS with Basic auth, and with token auth.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::kiln::{Kiln, Run};
use support::registry_server::{self, Mode, TestRegistry, PASSWORD, USER};
use support::workspace::Workspace;

/// The engine fixture plus a second C++ service with the same libraries as `hello`.
fn workspace() -> Workspace {
    let ws = Workspace::engine();
    let hello = ws.read("recipes/hello.toml");
    std::fs::write(
        ws.path("recipes/hello-twin.toml"),
        hello.replace(
            "deps = [\"greet\"]",
            "deps = [\"greet\"]\ndefines = [\"TWIN=1\"]\noutput = \"hello-twin\"",
        ),
    )
    .unwrap();
    std::fs::write(
        ws.path("hello/src/twin.cpp"),
        "#ifdef TWIN\nint twin_marker = 2;\n#endif\n",
    )
    .unwrap();
    std::fs::create_dir_all(ws.docker_config()).unwrap();
    ws
}

impl Workspace {
    /// The docker config directory (credentials `kiln login` stores), beside the workspace.
    fn docker_config(&self) -> PathBuf {
        self.scratch().join("docker")
    }

    /// kiln pushing to `reg`: it trusts the registry's CA, keeps credentials in this
    /// workspace's docker config, and has only the credentials `creds` in its environment.
    fn push_kiln(&self, reg: &TestRegistry, args: &[&str], creds: Option<(&str, &str)>) -> Run {
        let mut k = self
            .kiln()
            .env("DOCKER_CONFIG", self.docker_config())
            .env("REGISTRY_AUTH_FILE", self.docker_config().join("auth.json"))
            .env_remove("KILN_REGISTRY_USERNAME")
            .env_remove("KILN_REGISTRY_PASSWORD");
        if let Some(certs) = &reg.certs_d {
            k = k.env("KILN_CERTS_D", certs);
        }
        if let Some((u, p)) = creds {
            k = k
                .env("KILN_REGISTRY_USERNAME", u)
                .env("KILN_REGISTRY_PASSWORD", p);
        }
        k.run(args)
    }
}

fn stdout_json(out: &Run) -> Value {
    out.assert_ok("kiln");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image<'a>(doc: &'a Value, service: &str) -> &'a Value {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .unwrap()
}

fn skopeo_digest(reg: &TestRegistry, reference: &str) -> Option<String> {
    let mut c = Command::new("skopeo");
    c.arg("inspect").args(reg.tool_auth_args());
    if let Some(ca) = &reg.ca_file {
        let dir = ca.parent().unwrap().join("skopeo-certs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(ca, dir.join("ca.crt")).unwrap();
        c.arg(format!("--cert-dir={}", dir.display()));
    }
    let out = c.arg(format!("docker://{reference}")).output().unwrap();
    out.status.success().then(|| {
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["Digest"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

fn push_scenario(mode: Mode) {
    let reg = registry_server::start(mode);
    let ws = workspace();
    let creds = (mode != Mode::Plain).then_some((USER, PASSWORD));
    let to = format!("{}/team", reg.addr);

    // First push: hello only, with its default tags (version + git revision, here none).
    let first = stdout_json(&ws.push_kiln(
        &reg,
        &["push", "hello", "--to", &to, "--json", "-j2"],
        creds,
    ));
    let hello = image(&first, "hello");
    assert!(hello["uploaded_blobs"].as_u64().unwrap() >= 4, "{hello}");
    assert_eq!(hello["tags"], serde_json::json!(["1.2.3"]));
    let digest = hello["digest"].as_str().unwrap();
    assert_eq!(
        skopeo_digest(&reg, &format!("{}/team/hello:1.2.3", reg.addr)).as_deref(),
        Some(digest)
    );
    // The printed reference pins the digest.
    assert_eq!(
        hello["reference"].as_str().unwrap(),
        format!("{}/team/hello@{digest}", reg.addr)
    );

    // The twin shares base and runtime layers: only its own layer and config go up.
    let twin =
        stdout_json(&ws.push_kiln(&reg, &["push", "hello-twin", "--to", &to, "--json"], creds));
    let twin = image(&twin, "hello-twin");
    assert_eq!(twin["uploaded_blobs"], 2, "{twin}");
    assert_eq!(
        twin["mounted_blobs"].as_u64().unwrap() + twin["skipped_blobs"].as_u64().unwrap(),
        2,
        "{twin}"
    );

    // Everything again, unchanged: nothing uploaded.
    let again = stdout_json(&ws.push_kiln(
        &reg,
        &["push", "--to", &to, "--json", "--tag", "stable"],
        creds,
    ));
    for s in ["hello", "hello-twin"] {
        assert_eq!(image(&again, s)["uploaded_blobs"], 0, "{s} re-uploaded");
    }
    assert!(skopeo_digest(&reg, &format!("{}/team/hello:stable", reg.addr)).is_some());

    let geometry = image(&again, "geometry")["reference"]
        .as_str()
        .unwrap()
        .to_string();
    // The Ada service runs from the registry under podman, with the registry's credentials.
    {
        let scratch = tempfile::tempdir().unwrap();
        let conf = scratch.path().join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        // A store of its own: the other scenario pulls the same image (same ID) from its own
        // registry, and its `rmi -f` would otherwise remove this one between pull and run.
        let (store, run_store) = (scratch.path().join("store"), scratch.path().join("run"));
        let podman = |args: &[&str]| {
            Command::new("podman")
                .env("CONTAINERS_CONF", &conf)
                .args(["--runtime", "/usr/sbin/runc"])
                .arg("--root")
                .arg(&store)
                .arg("--runroot")
                .arg(&run_store)
                .args(args)
                .output()
                .unwrap()
        };
        let mut pull: Vec<String> = vec!["pull".into(), "-q".into()];
        pull.extend(reg.tool_auth_args());
        pull.push(geometry.clone());
        let pull: Vec<&str> = pull.iter().map(String::as_str).collect();
        let pulled = podman(&pull);
        assert!(
            pulled.status.success(),
            "{}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        let run = podman(&["run", "--rm", "--network=host", &geometry]);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "geometry area 12 stack 2 top 9\n",
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let _ = podman(&["rmi", "-f", &geometry]);
    }
}

#[test]
fn push_over_plain_http_shares_layers_and_skips_unchanged_blobs() {
    push_scenario(Mode::Plain);
}

#[test]
fn push_with_basic_auth_over_tls() {
    push_scenario(Mode::BasicTls);
}

#[test]
fn push_with_token_auth() {
    push_scenario(Mode::Token);
}

#[test]
fn a_wrong_password_fails_naming_the_registry_and_writes_no_tag() {
    let reg = registry_server::start(Mode::BasicTls);
    let ws = workspace();
    let to = format!("{}/team", reg.addr);
    let out = ws.push_kiln(
        &reg,
        &["push", "hello", "--to", &to],
        Some((USER, "wrong-password")),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = out.stderr_text();
    assert!(err.contains(&reg.addr), "{err}");
    assert!(err.contains("team/hello"), "{err}");
    assert!(
        !err.contains("wrong-password"),
        "the password leaked: {err}"
    );
    assert_eq!(
        skopeo_digest(&reg, &format!("{}/team/hello:1.2.3", reg.addr)),
        None
    );
}

#[test]
fn login_stores_credentials_that_push_then_uses() {
    let reg = registry_server::start(Mode::BasicTls);
    let ws = workspace();
    let mut login = Kiln::outside()
        .env("DOCKER_CONFIG", ws.docker_config())
        .env("KILN_CERTS_D", reg.certs_d.as_ref().unwrap())
        .command(["login", &reg.addr, "-u", USER, "--password-stdin"]);
    login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(ws.docker_config().join("config.json")).unwrap();
    assert!(
        config.contains(&reg.addr) && !config.contains(PASSWORD),
        "{config}"
    );
    let pushed = stdout_json(&ws.push_kiln(
        &reg,
        &[
            "push",
            "hello",
            "--to",
            &format!("{}/team", reg.addr),
            "--json",
        ],
        None,
    ));
    assert!(image(&pushed, "hello")["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

#[test]
fn usage_errors_exit_2() {
    let reg = registry_server::start(Mode::Plain);
    let ws = workspace();
    let out = ws.push_kiln(&reg, &["push", "--to", "no-registry-here"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr_text());
    let out = ws.push_kiln(&reg, &["push", "greet", "--to", &reg.addr], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr_text());
}
