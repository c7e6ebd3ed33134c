//! `kiln push` as a user runs it: kiln-built images of the engine fixture, pushed to the real
//! registry over plain HTTP, over TLS with Basic auth, and with token auth.

#[path = "support/fixture.rs"]
#[allow(dead_code)]
mod fixture;

#[path = "support/registry_server.rs"]
#[allow(dead_code)]
mod registry_server;

use std::path::PathBuf;
use std::process::{Command, Output};

use registry_server::{Mode, TestRegistry, PASSWORD, USER};
use serde_json::Value;

struct Ws {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    docker_config: PathBuf,
}

/// The engine fixture plus a second C++ service with the same libraries as `hello`.
fn workspace() -> Ws {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture::engine_workspace(tmp.path());
    let hello = std::fs::read_to_string(root.join("recipes/hello.toml")).unwrap();
    std::fs::write(
        root.join("recipes/hello-twin.toml"),
        hello.replace(
            "deps = [\"greet\"]",
            "deps = [\"greet\"]\ndefines = [\"TWIN=1\"]\noutput = \"hello-twin\"",
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("hello/src/twin.cpp"),
        "#ifdef TWIN\nint twin_marker = 2;\n#endif\n",
    )
    .unwrap();
    let docker_config = tmp.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    Ws {
        cache: tmp.path().join("cache"),
        docker_config,
        root,
        _tmp: tmp,
    }
}

impl Ws {
    fn kiln(&self, reg: &TestRegistry, args: &[&str], creds: Option<(&str, &str)>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(args)
            .current_dir(&self.root)
            .env("KILN_CACHE", &self.cache)
            .env("CI", "1")
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("REGISTRY_AUTH_FILE", self.docker_config.join("auth.json"))
            .env_remove("KILN_REGISTRY_USERNAME")
            .env_remove("KILN_REGISTRY_PASSWORD");
        if let Some(certs) = &reg.certs_d {
            c.env("KILN_CERTS_D", certs);
        }
        if let Some((u, p)) = creds {
            c.env("KILN_REGISTRY_USERNAME", u)
                .env("KILN_REGISTRY_PASSWORD", p);
        }
        c.output().unwrap()
    }
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "kiln failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let first = stdout_json(&ws.kiln(
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
    let twin = stdout_json(&ws.kiln(&reg, &["push", "hello-twin", "--to", &to, "--json"], creds));
    let twin = image(&twin, "hello-twin");
    assert_eq!(twin["uploaded_blobs"], 2, "{twin}");
    assert_eq!(
        twin["mounted_blobs"].as_u64().unwrap() + twin["skipped_blobs"].as_u64().unwrap(),
        2,
        "{twin}"
    );

    // Everything again, unchanged: nothing uploaded.
    let again = stdout_json(&ws.kiln(
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
        let podman = |args: &[&str]| {
            Command::new("podman")
                .env("CONTAINERS_CONF", &conf)
                .args(["--runtime", "/usr/sbin/runc"])
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
    let out = ws.kiln(
        &reg,
        &["push", "hello", "--to", &to],
        Some((USER, "wrong-password")),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
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
    let mut login = Command::new(env!("CARGO_BIN_EXE_kiln"));
    login
        .args(["login", &reg.addr, "-u", USER, "--password-stdin"])
        .env("DOCKER_CONFIG", &ws.docker_config)
        .env("KILN_CERTS_D", reg.certs_d.as_ref().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
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
    let config = std::fs::read_to_string(ws.docker_config.join("config.json")).unwrap();
    assert!(
        config.contains(&reg.addr) && !config.contains(PASSWORD),
        "{config}"
    );
    let pushed = stdout_json(&ws.kiln(
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
    let out = ws.kiln(&reg, &["push", "--to", "no-registry-here"], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ws.kiln(&reg, &["push", "greet", "--to", &reg.addr], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
