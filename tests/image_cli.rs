//! Images as a user meets them through the CLI: budgets that fail the build, `--docker-archive`
//! loaded by podman, `kiln inspect`, and errors for libraries that cannot be found.

mod support;

use std::process::{Command, Output};

use support::kiln::Kiln;
use support::registry_server;
use support::workspace::Workspace;

impl Workspace {
    /// kiln with a pinned SOURCE_DATE_EPOCH, so image bytes do not depend on the clock.
    fn pinned_kiln(&self) -> Kiln {
        self.kiln().env("SOURCE_DATE_EPOCH", "1700000000")
    }
}

/// A container tool's stderr.
fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Outputs and cache files have the read bits `File::create` gives under this process's umask
/// (executables add their x bits): a tool running as another user (a CI step, a registry
/// reading an OCI layout) can read what kiln wrote, as it could read a compiler's output.
fn every_file_is_as_readable_as_one_file_create_makes(roots: &[std::path::PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    let probe = tempfile::tempdir().unwrap();
    let made = probe.path().join("made");
    std::fs::File::create(&made).unwrap();
    let want = std::fs::metadata(&made).unwrap().permissions().mode() & 0o666;
    let mut stack = roots.to_vec();
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if meta.is_file() {
            seen += 1;
            let mode = meta.permissions().mode() & 0o666;
            assert!(
                mode == want,
                "{} is {mode:o}, a file kiln writes should be {want:o}",
                p.display()
            );
        }
    }
    assert!(seen > 20, "only {seen} files under {roots:?}");
}

#[test]
fn over_budget_fails_the_build_with_a_breakdown() {
    let ws = Workspace::engine();
    ws.edit(
        "recipes/hello.toml",
        "budget = \"100MB\"",
        "budget = \"1MB\"",
    );
    let out = ws.pinned_kiln().run(["build", "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let e = out.stderr_text();
    assert!(e.contains("hello"), "{e}");
    assert!(e.contains("budget"), "{e}");
    assert!(
        e.contains("libwx_baseu"),
        "the breakdown names the largest files: {e}"
    );
    assert!(
        !ws.path("out/images/hello/index.json").exists(),
        "an over-budget image must not be written"
    );
}

#[test]
fn docker_archive_of_several_images_loads_into_podman() {
    let ws = Workspace::engine();
    let archive = ws.scratch().join("images.tar");
    let out = ws
        .pinned_kiln()
        .run(["build", "--docker-archive", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr_text());
    every_file_is_as_readable_as_one_file_create_makes(&[
        ws.path("out"),
        ws.cache().to_path_buf(),
        archive.clone(),
    ]);

    let scratch = tempfile::tempdir().unwrap();
    let conf = scratch.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let storage = [
        "--root",
        scratch
            .path()
            .join("root")
            .to_str()
            .unwrap()
            .to_string()
            .leak(),
        "--runroot",
        scratch
            .path()
            .join("runroot")
            .to_str()
            .unwrap()
            .to_string()
            .leak(),
    ];
    let podman = |args: &[&str]| {
        Command::new("podman")
            .env("CONTAINERS_CONF", &conf)
            .args(["--runtime", "/usr/sbin/runc", "--storage-driver", "vfs"])
            .args(storage)
            .args(args)
            .output()
            .unwrap()
    };
    let loaded = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}", err(&loaded));
    let run = podman(&["run", "--rm", "--network=host", "localhost/hello:1.2.3"]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "kiln-fixture <hello, wxBase 3>\n",
        "{}",
        err(&run)
    );
    let run = podman(&["run", "--rm", "--network=host", "localhost/geometry:0.4.0"]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "geometry area 12 stack 2 top 9\n",
        "{}",
        err(&run)
    );
    let user = podman(&[
        "image",
        "inspect",
        "localhost/hello:1.2.3",
        "--format",
        "{{.Config.User}}",
    ]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
}

#[test]
fn inspect_lists_layers_and_largest_files() {
    let ws = Workspace::engine();
    assert!(ws.pinned_kiln().run(["build", "geometry"]).status.success());
    let out = ws.pinned_kiln().run(["inspect", "geometry", "--json"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = doc.to_string();
    assert!(text.contains("libgnat-12.so"), "{text}");
    assert!(text.contains("/usr/local/bin/geometry"), "{text}");
    let table = ws.pinned_kiln().run(["inspect", "geometry"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("ada runtime"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    assert_eq!(
        ws.pinned_kiln().run(["inspect", "geometri"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_library_that_cannot_be_found_names_the_library_and_the_binary() {
    let ws = Workspace::engine();
    ws.edit(
        "recipes/hello.toml",
        "budget = \"100MB\"",
        "budget = \"100MB\"\nlibraries = [\"libkiln-not-there.so.7\"]",
    );
    let out = ws.pinned_kiln().run(["build", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let e = out.stderr_text();
    assert!(e.contains("libkiln-not-there.so.7"), "{e}");
}

#[test]
fn an_image_file_that_does_not_exist_is_a_recipe_error_with_its_position() {
    let ws = Workspace::engine();
    ws.edit("recipes/hello.toml", "budget = \"100MB\"", "budget = \"100MB\"\nfiles = [{ src = \"hello/missing.xrc\", dst = \"/usr/share/hello/x.xrc\" }]");
    let out = ws.pinned_kiln().run(["build", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("recipes/hello.toml:14:18: file \"hello/missing.xrc\" does not exist"),
        "{}",
        out.stderr_text()
    );
    ws.edit(
        "recipes/hello.toml",
        "hello/missing.xrc\", dst = \"/usr/share/hello/x.xrc\"",
        "hello/src/banner.h\", dst = \"/usr/../etc/x\"",
    );
    let out = ws.pinned_kiln().run(["build", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("must be an absolute path inside the image"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn docker_format_carries_the_health_check_to_podman_with_the_same_layers() {
    let ws = Workspace::engine();
    ws.edit(
        "recipes/geometry.toml",
        "budget = \"150MB\"",
        "budget = \"150MB\"\n\n[image.healthcheck]\ntest = [\"CMD\", \"/usr/local/bin/geometry\"]\ninterval = \"5s\"\nretries = 2",
    );
    assert!(ws.pinned_kiln().run(["build", "geometry"]).status.success());
    let manifest = |root: &std::path::Path| -> serde_json::Value {
        let layout = root.join("out/images/geometry");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(digest)).unwrap())
            .unwrap()
    };
    let oci = manifest(ws.root());
    assert_eq!(
        oci["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    ws.edit(
        "recipes/geometry.toml",
        "[image.healthcheck]",
        "format = \"docker\"\n\n[image.healthcheck]",
    );
    let out = ws.pinned_kiln().run(["build", "geometry"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let docker = manifest(ws.root());
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        docker["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let digests = |m: &serde_json::Value| {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        digests(&oci),
        digests(&docker),
        "the format changes no layer"
    );

    let scratch = tempfile::tempdir().unwrap();
    let conf = scratch.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let root = scratch.path().join("root");
    let runroot = scratch.path().join("runroot");
    let podman = |args: &[&str]| {
        Command::new("podman")
            .env("CONTAINERS_CONF", &conf)
            .args([
                "--runtime",
                "/usr/sbin/runc",
                "--storage-driver",
                "vfs",
                "--root",
                root.to_str().unwrap(),
                "--runroot",
                runroot.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    // Debian 12's containers/image does not read a docker manifest out of an OCI layout, so
    // the image goes the way users run it: through a registry.
    let reg = registry_server::start(registry_server::Mode::Plain);
    let to = format!("{}/team", reg.addr);
    let pushed = ws
        .pinned_kiln()
        .run(["push", "geometry", "--to", &to, "--json"]);
    assert!(pushed.status.success(), "{}", pushed.stderr_text());
    let pushed: serde_json::Value = serde_json::from_slice(&pushed.stdout).unwrap();
    let source = pushed["images"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let pulled = podman(&["pull", "-q", "--tls-verify=false", &source]);
    assert!(pulled.status.success(), "{}", err(&pulled));
    let id = String::from_utf8_lossy(&pulled.stdout).trim().to_string();
    let hc = podman(&["image", "inspect", &id, "--format", "{{json .HealthCheck}}"]);
    let hc = String::from_utf8_lossy(&hc.stdout).to_string();
    assert!(
        hc.contains("/usr/local/bin/geometry") && hc.contains("\"Retries\":2"),
        "{hc}"
    );
}
