//! `kiln push` against the real distribution registry, in three configurations (plain HTTP,
//! Basic auth over TLS, token auth), plus a fault-injecting proxy. Images are small umoci-built
//! layouts with a static program, so `podman run` proves the pushed image actually works.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use kiln::registry::{self, Artifact, ArtifactContent, PushImage, PushOptions, PushReport};
use support::registry_images::{images, line_for};
use support::registry_proxy;
use support::registry_server::{self, start, Mode, TestRegistry, PASSWORD, USER};

fn image(service: &str, tags: &[&str]) -> PushImage {
    let imgs = images();
    let layout = match service {
        "api" => imgs.api.clone(),
        "worker" => imgs.worker.clone(),
        _ => unreachable!(),
    };
    PushImage {
        service: service.into(),
        layout,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn push_ok(opts: &PushOptions, imgs: &[PushImage]) -> Vec<PushReport> {
    registry::push_all(opts, imgs)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("push failed: {}", chain(&e))))
        .collect()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str("\n  caused by: ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// `skopeo inspect` digest of a tag, or `None` when the tag does not exist.
fn skopeo_digest(reg: &TestRegistry, reference: &str) -> Option<String> {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(reg.tool_auth_args())
        .arg(format!("docker://{}/{reference}", reg.addr))
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v["Digest"].as_str().unwrap().to_string())
}

fn podman_run(reg: &TestRegistry, reference: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let base = |c: &mut Command| {
        c.env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--runroot")
            .arg(dir.path().join("runroot"))
            // Private libpod state: parallel tests would otherwise race on /run/libpod.
            .arg("--tmpdir")
            .arg(dir.path().join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
    };
    let full = format!("{}/{reference}", reg.addr);
    let mut pull = Command::new("podman");
    base(&mut pull);
    pull.arg("pull")
        .arg("-q")
        .args(reg.tool_auth_args())
        .arg(&full);
    registry_server::run(&mut pull);
    let mut run = Command::new("podman");
    base(&mut run);
    run.args([
        "--runtime",
        "/usr/sbin/runc",
        "run",
        "--network=host",
        "--rm",
    ])
    .arg(&full);
    let out = registry_server::run(&mut run);
    // Storage lives under the temp dir (vfs layers are plain directories); drop the image too
    // so nothing refers to it afterwards.
    let mut rmi = Command::new("podman");
    base(&mut rmi);
    let _ = rmi.args(["rmi", "--all", "--force"]).output();
    out
}

/// Pushes api and worker together, checks digests with skopeo, runs one with podman, and
/// checks that a second push uploads nothing.
fn full_cycle(reg: &TestRegistry) {
    let opts = reg.options("team");
    let reports = push_ok(
        &opts,
        &[image("api", &["v1", "latest"]), image("worker", &["v1"])],
    );
    let (api, worker) = (&reports[0], &reports[1]);
    assert_eq!(
        api.reference,
        format!("{}/team/api@{}", reg.addr, api.digest)
    );
    // Four blobs each (config, two shared layers, the program): the shared layers go up once.
    assert_eq!(
        api.uploaded_blobs + api.mounted_blobs + api.skipped_blobs,
        4
    );
    assert_eq!(
        worker.uploaded_blobs + worker.mounted_blobs + worker.skipped_blobs,
        4
    );
    assert_eq!(
        api.mounted_blobs + worker.mounted_blobs,
        2,
        "shared layers are mounted, not re-sent: {reports:?}"
    );
    assert_eq!(api.uploaded_blobs + worker.uploaded_blobs, 6);
    for (svc, r, tag) in [
        ("api", api, "v1"),
        ("api", api, "latest"),
        ("worker", worker, "v1"),
    ] {
        assert_eq!(
            skopeo_digest(reg, &format!("team/{svc}:{tag}")),
            Some(r.digest.to_string())
        );
    }
    assert_eq!(podman_run(reg, "team/api:v1").trim(), line_for("api"));

    let again = push_ok(&opts, &[image("api", &["v1"]), image("worker", &["v1"])]);
    for r in &again {
        assert_eq!(
            (
                r.uploaded_blobs,
                r.mounted_blobs,
                r.skipped_blobs,
                r.uploaded_bytes
            ),
            (0, 0, 4, 0),
            "{r:?}"
        );
    }
}

fn wrong_password_fails_without_tagging(reg: &TestRegistry) {
    let mut opts = reg.options("bad");
    opts.credentials = Some(registry::CredentialSources {
        env: Some(registry::Credential {
            username: USER.into(),
            password: "wrong".into(),
        }),
        ..Default::default()
    });
    let results = registry::push_all(&opts, &[image("api", &["v1"])]);
    let err = results
        .into_iter()
        .next()
        .unwrap()
        .expect_err("a wrong password must fail");
    let text = chain(&err);
    eprintln!("wrong password ({:?}): {text}", reg.mode);
    assert!(text.contains(&reg.addr), "error names the registry: {text}");
    assert!(
        text.contains("bad/api"),
        "error names the repository: {text}"
    );
    assert!(
        !text.contains("wrong"),
        "error never shows the password: {text}"
    );
    assert!(text.contains("authentication failed"), "{text}");
    assert_eq!(skopeo_digest(reg, "bad/api:v1"), None);
}

#[test]
fn plain_http_registry() {
    let reg = start(Mode::Plain);
    full_cycle(&reg);
}

#[test]
fn basic_auth_over_tls() {
    let reg = start(Mode::BasicTls);
    full_cycle(&reg);
    wrong_password_fails_without_tagging(&reg);

    // The CA can also come from PushOptions.ca_file instead of certs.d.
    let mut opts = reg.options("cafile");
    opts.certs_d = Some(Vec::new());
    opts.ca_file = reg.ca_file.clone();
    push_ok(&opts, &[image("worker", &["v1"])]);
    // And without either, the server's certificate is not trusted.
    opts.ca_file = None;
    let err = registry::push_all(&opts, &[image("worker", &["v1"])])
        .remove(0)
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("connecting") && text.contains("https://"),
        "the TLS failure is reported: {text}"
    );
}

#[test]
fn token_auth() {
    let reg = start(Mode::Token);
    full_cycle(&reg);
    let requests = &reg.token_server.as_ref().unwrap().requests;
    let before = requests.load(std::sync::atomic::Ordering::SeqCst);
    push_ok(
        &reg.options("cache"),
        &[image("api", &["v1"]), image("worker", &["v1"])],
    );
    let tokens = requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    // Tokens are cached per scope set (push to each repository, and push + pull of the mount
    // source for each of the five mounts' distinct pairs), not fetched per request: the push
    // makes about forty requests.
    assert!(tokens <= 6, "{tokens} token requests");
    wrong_password_fails_without_tagging(&reg);

    // Anonymous callers get a token without push access: the push fails, naming the registry.
    let mut opts = reg.options("anon");
    opts.credentials = Some(registry::CredentialSources::default());
    let err = registry::push_all(&opts, &[image("api", &["v1"])])
        .remove(0)
        .unwrap_err();
    assert!(
        chain(&err).contains("no credentials found"),
        "{}",
        chain(&err)
    );
}

#[test]
fn second_image_mounts_layers_pushed_earlier_by_this_process() {
    let reg = start(Mode::Plain);
    let opts = reg.options("seq");
    let api = push_ok(&opts, &[image("api", &["v1"])]).remove(0);
    assert_eq!((api.uploaded_blobs, api.mounted_blobs), (4, 0));
    let worker = push_ok(&opts, &[image("worker", &["v1"])]).remove(0);
    assert_eq!(
        (worker.uploaded_blobs, worker.mounted_blobs),
        (2, 2),
        "{worker:?}"
    );
    assert!(
        worker.uploaded_bytes < 1 << 20,
        "only the program and config are sent: {worker:?}"
    );
}

#[test]
fn interrupted_push_is_finished_without_resending_complete_blobs() {
    let reg = start(Mode::Plain);
    let opts = reg.options("resume");
    // Simulate a push killed after its biggest blob: upload only that blob by hand.
    let layout = registry::layout::read_layout(&images().api).unwrap();
    let big = layout.blobs.iter().max_by_key(|b| b.size).unwrap().clone();
    assert!(
        big.size > 16 << 20,
        "the big layer exercises chunked upload"
    );
    let t = registry::transport::Transport::connect(&reg.addr, &Default::default(), None).unwrap();
    let outcome = registry::upload::push_blob(&t, "resume/api", &big, None, &opts.upload).unwrap();
    assert!(matches!(
        outcome,
        registry::upload::BlobOutcome::Uploaded { .. }
    ));
    assert_eq!(
        skopeo_digest(&reg, "resume/api:v1"),
        None,
        "no tag before the manifest is pushed"
    );
    let r = push_ok(&opts, &[image("api", &["v1"])]).remove(0);
    assert_eq!((r.skipped_blobs, r.uploaded_blobs), (1, 3), "{r:?}");
}

#[test]
fn pushes_complete_through_a_faulty_proxy() {
    let reg = start(Mode::Plain);
    let proxy = registry_proxy::start(&reg.addr, 0x6b696c6e, 24);
    let mut opts = reg.options("flaky");
    opts.registry = proxy.addr.clone();
    // Small chunks: many PATCHes, so resets land mid-upload and must resume.
    opts.upload.chunk_size = 1 << 20;
    opts.upload.monolithic_max = 2 << 20;
    let reports = push_ok(&opts, &[image("api", &["v1"]), image("worker", &["v1"])]);
    let counts = &proxy.counts;
    let (resets, statuses) = (
        counts.resets.load(std::sync::atomic::Ordering::SeqCst),
        counts.statuses.load(std::sync::atomic::Ordering::SeqCst),
    );
    eprintln!(
        "proxy: {resets} resets, {statuses} statuses; resumed {:?}",
        reports
            .iter()
            .map(|r| r.resumed_uploads)
            .collect::<Vec<_>>()
    );
    assert!(
        resets > 0 && statuses > 0,
        "faults were injected: {resets} resets, {statuses} statuses"
    );
    assert!(
        reports.iter().map(|r| r.resumed_uploads).sum::<u64>() > 0,
        "a reset chunk resumed: {reports:?}"
    );
    // Every blob is in the registry (checked directly, not through the proxy) with its digest.
    let t = registry::transport::Transport::connect(&reg.addr, &Default::default(), None).unwrap();
    for (svc, r, layout) in [
        ("api", &reports[0], &images().api),
        ("worker", &reports[1], &images().worker),
    ] {
        assert_eq!(
            skopeo_digest(&reg, &format!("flaky/{svc}:v1")),
            Some(r.digest.to_string())
        );
        for blob in registry::layout::read_layout(layout).unwrap().blobs {
            assert!(
                registry::upload::blob_exists(&t, &format!("flaky/{svc}"), &blob.digest).unwrap()
            );
        }
    }
    // skopeo copy re-reads every blob and checks its digest end to end.
    let dest = tempfile::tempdir().unwrap();
    registry_server::run(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/flaky/worker:v1", reg.addr))
            .arg(format!("oci:{}:x", dest.path().display())),
    );
}

#[test]
fn referrers_fall_back_to_the_tag_schema_and_list_back() {
    let reg = start(Mode::Plain);
    let opts = reg.options("refs");
    let api = push_ok(&opts, &[image("api", &["v1"])]).remove(0);
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"api"}"#.to_vec();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        "2024-01-01T00:00:00Z".to_string(),
    );
    let artifact = Artifact {
        artifact_type: "application/spdx+json".into(),
        media_type: "application/spdx+json".into(),
        content: ArtifactContent::Bytes(sbom),
        annotations,
    };
    let r = registry::push_referrer(&opts, "api", &api.descriptor(), &artifact).unwrap();
    // distribution 2.8 has no referrers API, so the spec's fallback tag must hold the entry.
    assert_eq!(
        r.fallback_tag.as_deref(),
        Some(format!("sha256-{}", api.digest.hex()).as_str())
    );
    let dir = tempfile::tempdir().unwrap();
    let provenance = dir.path().join("prov.json");
    std::fs::write(
        &provenance,
        br#"{"_type":"https://in-toto.io/Statement/v1"}"#,
    )
    .unwrap();
    let prov = Artifact {
        artifact_type: "application/vnd.in-toto+json".into(),
        media_type: "application/vnd.in-toto+json".into(),
        content: ArtifactContent::File(provenance),
        annotations: BTreeMap::new(),
    };
    let p = registry::push_referrer(&opts, "api", &api.descriptor(), &prov).unwrap();
    // Attaching the same SBOM again does not duplicate it.
    registry::push_referrer(&opts, "api", &api.descriptor(), &artifact).unwrap();

    let all = registry::list_referrers(&opts, "api", &api.digest, None).unwrap();
    assert_eq!(
        all.iter().map(|d| d.digest).collect::<Vec<_>>(),
        vec![r.digest, p.digest]
    );
    let sboms =
        registry::list_referrers(&opts, "api", &api.digest, Some("application/spdx+json")).unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(
        sboms[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert_eq!(
        sboms[0].annotations["org.opencontainers.image.created"],
        "2024-01-01T00:00:00Z"
    );
    // The artifact manifest itself is retrievable and names the image as its subject.
    let out = registry_server::run(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/refs/api@{}", reg.addr, r.digest)),
    );
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["subject"]["digest"], api.digest.to_string());
    assert_eq!(m["artifactType"], "application/spdx+json");
    assert!(
        registry::list_referrers(&opts, "api", &kiln::digest::Digest::of(b"none"), None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn login_verifies_and_stores_credentials_like_docker() {
    use std::os::unix::fs::PermissionsExt;
    let reg = start(Mode::BasicTls);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let login = |password: &str| {
        registry::login(&registry::LoginOptions {
            registry: reg.addr.clone(),
            username: USER.into(),
            password: password.into(),
            insecure_registries: Vec::new(),
            ca_file: None,
            credentials: Some(registry::CredentialSources {
                docker_config: Some(config.clone()),
                ..Default::default()
            }),
            certs_d: Some(vec![reg.certs_d.clone().unwrap()]),
            retry: Default::default(),
        })
    };
    let err = login("wrong").unwrap_err();
    assert!(chain(&err).contains(&reg.addr), "{}", chain(&err));
    assert!(
        !config.exists(),
        "nothing is stored for rejected credentials"
    );
    assert_eq!(login(PASSWORD).unwrap(), config);
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sources = registry::CredentialSources {
        docker_config: Some(config.clone()),
        ..Default::default()
    };
    assert_eq!(
        sources.lookup(&reg.addr).unwrap().unwrap().password,
        PASSWORD
    );
    // A push with only the stored credentials works.
    let mut opts = reg.options("stored");
    opts.credentials = Some(sources);
    push_ok(&opts, &[image("worker", &["v1"])]);
}
