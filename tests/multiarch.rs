//! linux/arm64 images from an amd64 machine: `fixtures/engine`'s wxBase C++ service built for
//! `platforms = ["linux/amd64", "linux/arm64"]` with kiln's built-in toolchains (the arm64 one
//! is Debian 12's amd64 cross g++ with the arm64 runtime and wxBase, two architectures in one
//! pinned root), then checked with tools that are not kiln: `readelf -h` on every ELF file of
//! the unpacked arm64 image, `qemu-aarch64 -L ROOTFS` running its binary, and `skopeo inspect
//! --raw` reading the pushed image index from the reference registry.
//!
//! The Debian packages come from the shared test store (`support::kiln::shared_debian_store`);
//! the first run on a machine downloads them.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::registry_server::{self, Mode};
use support::workspace::{copy_dir, fixture_dir, Workspace};

const PLATFORMS: &str = "platforms = [\"linux/amd64\", \"linux/arm64\"]\n";

/// `fixtures/engine` with kiln's built-in toolchains and both platforms.
fn two_platform_engine(dir: &str) -> Workspace {
    let ws = Workspace::fixture_at("engine", dir);
    fs::remove_dir_all(ws.path("toolchains")).unwrap();
    ws.write("kiln.toml", PLATFORMS);
    ws
}

/// [`two_platform_engine`] without its Ada targets: every toolchain it uses is a C++ one.
fn two_platform_cxx_engine(dir: &str) -> Workspace {
    let ws = two_platform_engine(dir);
    for r in ["geometry", "shapes", "shapes-test"] {
        fs::remove_file(ws.path(&format!("recipes/{r}.toml"))).unwrap();
    }
    ws
}

fn build_hello(ws: &Workspace) -> support::kiln::Run {
    ws.kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build", "hello"])
        .ok("two-platform build of hello")
}

fn json(path: &Path) -> serde_json::Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The one manifest descriptor of a single-image layout's index.json.
fn manifest_of(layout: &Path) -> serde_json::Value {
    let index = json(&layout.join("index.json"));
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{index}");
    m[0].clone()
}

/// The layers of the image in `layout`, unpacked in order with the system's tar.
fn unpack(layout: &Path, rootfs: &Path) -> serde_json::Value {
    let desc = manifest_of(layout);
    let manifest = json(&blob(layout, desc["digest"].as_str().unwrap()));
    fs::create_dir_all(rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let st = Command::new("tar")
            .arg("-xzf")
            .arg(blob(layout, layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(rootfs)
            .status()
            .unwrap();
        assert!(st.success(), "tar failed on {layer}");
    }
    json(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
}

fn elf_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = fs::read(e.path()).unwrap();
                if bytes.starts_with(b"\x7fELF") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// `Machine:` of `readelf -h`.
fn machine(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-h")
        .arg(path)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -h {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Machine:")
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Machine line for {}", path.display()))
}

#[test]
fn hello_for_arm64_is_aarch64_throughout_runs_under_qemu_and_is_one_index_with_amd64() {
    let a = two_platform_cxx_engine("a");
    let first = build_hello(&a);
    let err = first.stderr_text();
    assert!(
        err.contains("pinned toolchain gcc-arm64 in kiln.lock"),
        "{err}"
    );
    assert!(err.contains("kiln: platform linux/arm64"), "{err}");

    // Both architectures in one root, each package pinned with its architecture.
    let lock: toml::Value = toml::from_str(&a.read("kiln.lock")).unwrap();
    let pinned: Vec<(String, String)> = lock["toolchain"]["gcc-arm64"]["debian"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, arch) in [
        ("g++-aarch64-linux-gnu", "amd64"),
        ("libc6", "amd64"),
        ("libc6", "arm64"),
        ("libstdc++6", "arm64"),
        ("libwxbase3.2-1", "arm64"),
        ("libwxgtk3.2-dev", "arm64"),
    ] {
        assert!(
            pinned.contains(&(name.to_string(), arch.to_string())),
            "{name}:{arch} not pinned: {pinned:?}"
        );
    }

    // Outputs never mix: each platform's binary in its own out/ and of its own machine.
    let arm_bin = a.path("out/linux-arm64/bin/hello");
    let amd_bin = a.path("out/linux-amd64/bin/hello");
    assert_eq!(machine(&arm_bin), "AArch64");
    assert_eq!(machine(&amd_bin), "Advanced Micro Devices X86-64");

    // The arm64 image: config, every ELF file, status.d.
    let arm_layout = a.path("out/linux-arm64/images/hello");
    let rootfs = a.scratch().join("rootfs-arm64");
    let config = unpack(&arm_layout, &rootfs);
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["variant"], "v8");
    let elves = elf_files(&rootfs);
    assert!(
        elves.len() >= 5,
        "expected the binary, the loader, libc, libstdc++ and wxBase: {elves:?}"
    );
    for f in &elves {
        assert_eq!(machine(f), "AArch64", "{}", f.display());
    }
    assert!(
        rootfs.join("lib/ld-linux-aarch64.so.1").exists(),
        "the loader the binary names is in the image"
    );
    let status_d = rootfs.join("var/lib/dpkg/status.d");
    let mut records: Vec<String> = fs::read_dir(&status_d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    records.sort();
    for needed in ["libc6", "libstdc++6", "libwxbase3.2-1"] {
        assert!(records.iter().any(|r| r == needed), "{needed}: {records:?}");
    }
    for r in &records {
        let text = fs::read_to_string(status_d.join(r)).unwrap();
        assert!(text.contains("Architecture: arm64\n"), "{r}: {text}");
    }

    // The closure skips a library of the wrong machine as ld.so does: with an x86-64
    // libstdc++ first in the aarch64 multiarch directory, the aarch64 one after it is taken.
    let amd_rootfs = a.scratch().join("rootfs-amd64");
    unpack(&a.path("out/linux-amd64/images/hello"), &amd_rootfs);
    let trap = a.scratch().join("wrong-machine-root");
    let (arm_dir, x86_dir) = ("usr/lib/aarch64-linux-gnu", "usr/lib/x86_64-linux-gnu");
    copy_dir(&rootfs.join("usr"), &trap.join("usr"));
    std::os::unix::fs::symlink("usr/lib", trap.join("lib")).unwrap();
    fs::create_dir_all(trap.join("usr/lib")).unwrap();
    fs::rename(
        trap.join(arm_dir).join("libstdc++.so.6"),
        trap.join("usr/lib/libstdc++.so.6"),
    )
    .unwrap();
    fs::copy(
        fs::canonicalize(amd_rootfs.join(x86_dir).join("libstdc++.so.6")).unwrap(),
        trap.join(arm_dir).join("libstdc++.so.6"),
    )
    .unwrap();
    assert_eq!(
        machine(&trap.join(arm_dir).join("libstdc++.so.6")),
        "Advanced Micro Devices X86-64"
    );
    let closure = kiln::closure::Resolver::new(&[], &[])
        .unwrap()
        .in_root(&trap)
        .resolve(&arm_bin, &[])
        .unwrap();
    assert_eq!(closure.platform, kiln::platform::Platform::LINUX_ARM64);
    let stdcxx = closure
        .libraries
        .iter()
        .find(|l| l.name == "libstdc++.so.6")
        .unwrap();
    assert_eq!(
        stdcxx.real_path,
        fs::canonicalize(trap.join("usr/lib/libstdc++.so.6")).unwrap(),
        "found at {}",
        stdcxx.found_at.display()
    );
    assert_eq!(machine(&stdcxx.real_path), "AArch64");

    // It runs: the image's own loader and libraries, under qemu-user.
    let run = Command::new("qemu-aarch64")
        .arg("-L")
        .arg(&rootfs)
        .arg(rootfs.join("usr/local/bin/hello"))
        .output()
        .expect("qemu-aarch64 (qemu-user, scripts/setup) runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("wxBase 3"), "{stdout}");

    // One index over both platforms' manifests, in out/images/hello.
    let top = manifest_of(&a.path("out/images/hello"));
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        top["annotations"]["org.opencontainers.image.ref.name"],
        "1.2.3"
    );
    let index_digest = top["digest"].as_str().unwrap().to_string();
    let index = json(&blob(&a.path("out/images/hello"), &index_digest));
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<(String, String)> = entries
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let arm_manifest = manifest_of(&arm_layout)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let amd_manifest = manifest_of(&a.path("out/linux-amd64/images/hello"))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        platforms,
        [
            ("amd64".to_string(), amd_manifest.clone()),
            ("arm64".to_string(), arm_manifest.clone())
        ]
    );
    assert_eq!(entries[1]["platform"]["variant"], "v8");
    assert!(
        err.contains(&format!("kiln: image index hello: {index_digest}")),
        "{err}"
    );

    // Nothing changed, nothing runs, on either platform; the index is the same, not rewritten.
    let inode = |p: PathBuf| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let before = inode(a.path("out/images/hello/index.json"));
    let again = build_hello(&a).stderr_text();
    assert_eq!(inode(a.path("out/images/hello/index.json")), before);
    assert_eq!(
        again.matches("0 actions run, 0 from cache").count(),
        2,
        "{again}"
    );
    assert!(
        again.contains(&format!("kiln: image index hello: {index_digest}")),
        "{again}"
    );
    // --json is still one document, with each platform's targets and the indexes.
    let doc = a
        .kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build", "--json", "hello"])
        .ok("--json build")
        .json();
    assert_eq!(doc["indexes"]["hello"], index_digest.as_str(), "{doc}");
    let platforms: Vec<&str> = doc["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{doc}");

    // The lock answers both platforms' toolchains; one without the arm64 pins does not.
    let locked = a
        .kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build", "--locked", "hello"])
        .ok("--locked build with both platforms pinned");
    assert!(
        locked
            .stderr_text()
            .contains(&format!("kiln: image index hello: {index_digest}")),
        "{}",
        locked.stderr_text()
    );
    let c = two_platform_cxx_engine("c");
    let mut partial: toml::Value = toml::from_str(&a.read("kiln.lock")).unwrap();
    partial["toolchain"]
        .as_table_mut()
        .unwrap()
        .remove("gcc-arm64")
        .unwrap();
    c.write("kiln.lock", &toml::to_string(&partial).unwrap());
    let refused = c.kiln().run(["build", "--locked", "hello"]);
    refused.assert_code(1, "--locked build whose lock lacks the arm64 toolchain");
    assert!(
        refused.stderr_text().contains("gcc-arm64"),
        "{}",
        refused.stderr_text()
    );
    assert!(!c.path("out/linux-amd64").exists(), "nothing was built");

    // The workspace's other commands see its default platform's outputs.
    let inspect = a.kiln().run(["inspect", "hello"]).ok("inspect");
    assert!(
        inspect
            .stdout_text()
            .contains(&format!("image    {amd_manifest}")),
        "{}",
        inspect.stdout_text()
    );
    let inspect = a
        .kiln()
        .run(["inspect", "--platform", "linux/arm64", "hello"])
        .ok("inspect --platform linux/arm64");
    let text = inspect.stdout_text();
    assert!(
        text.contains(&format!("image    {arm_manifest}"))
            && text.contains("/usr/lib/aarch64-linux-gnu/libstdc++.so.6"),
        "{text}"
    );

    // Same inputs, same bytes: a second checkout with its own cache and out/, from the lock.
    let b = two_platform_cxx_engine("b");
    fs::copy(a.path("kiln.lock"), b.path("kiln.lock")).unwrap();
    build_hello(&b);
    let b_top = manifest_of(&b.path("out/images/hello"));
    assert_eq!(b_top["digest"].as_str().unwrap(), index_digest);
    assert_eq!(
        manifest_of(&b.path("out/linux-arm64/images/hello"))["digest"]
            .as_str()
            .unwrap(),
        arm_manifest
    );

    // The vulnerability gate reads each platform's image: glibc is in both, as libc6:amd64
    // and libc6:arm64, so one record finds it twice, named per platform.
    let db = a.scratch().join("osv");
    fs::create_dir_all(&db).unwrap();
    let record = serde_json::json!({
        "schema_version": "1.6.0",
        "id": "DEBIAN-CVE-2099-0001",
        "modified": "2001-01-01T00:00:00Z",
        "summary": "a glibc flaw",
        "affected": [{
            "package": { "ecosystem": "Debian:12", "name": "glibc" },
            "ranges": [{ "type": "ECOSYSTEM", "events": [{ "introduced": "0" }, { "fixed": "99.0-1" }] }],
        }],
        "severity": [{ "type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" }],
    });
    fs::write(db.join("glibc.json"), record.to_string()).unwrap();
    let scanned = a.kiln().run([
        "scan",
        "hello",
        "--json",
        "--max-db-age",
        "100000d",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(scanned.code(), Some(1), "{}", scanned.stderr_text());
    let report: serde_json::Value = serde_json::from_slice(&scanned.stdout).unwrap();
    let per_platform: Vec<(&str, &str, usize)> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap(),
                i["sbom"].as_str().unwrap(),
                i["findings"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        per_platform,
        [
            ("linux/amd64", "out/linux-amd64/sbom/hello.cdx.json", 1),
            ("linux/arm64", "out/linux-arm64/sbom/hello.cdx.json", 1)
        ],
        "{report}"
    );
    assert!(
        scanned.stderr_text().contains("hello (linux/arm64): "),
        "{}",
        scanned.stderr_text()
    );

    // Pushed, the tag names the index; the registry serves it with both platforms.
    let reg = registry_server::start(Mode::Plain);
    let to = format!("{}/ma", reg.addr);
    a.kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run([
            "push",
            "hello",
            "--to",
            &to,
            "--insecure-registry",
            &reg.addr,
        ])
        .ok("push");
    let raw = registry_server::run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/ma/hello:1.2.3", reg.addr),
    ]));
    let served: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        index_digest,
        "the tag names the index kiln wrote"
    );
    let archs: Vec<&str> = served["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{served}");
    // Each platform's SBOMs and provenance are referrers of that platform's manifest
    // (distribution 2.8 keeps them under the referrers tag schema's `sha256-<hex>` tag).
    let referrers = registry_server::run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!(
            "docker://{}/ma/hello:sha256-{}",
            reg.addr,
            arm_manifest.strip_prefix("sha256:").unwrap()
        ),
    ]));
    let referrers: serde_json::Value = serde_json::from_str(&referrers).unwrap();
    let mut types: Vec<&str> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ],
        "{referrers}"
    );

    // GitOps: `kiln resolve` pins a manifest's kiln://hello to the index, not one platform.
    let deploy = a.scratch().join("deploy");
    a.kiln()
        .run(["k8s", "hello", "-o", deploy.to_str().unwrap()])
        .ok("k8s");
    a.kiln()
        .run(["resolve", "-f", deploy.to_str().unwrap(), "--to", &to, "-i"])
        .ok("resolve");
    let base = fs::read_to_string(deploy.join("base/hello.yaml")).unwrap();
    assert!(
        base.contains(&format!("image: \"{to}/hello@{index_digest}\"")),
        "{base}"
    );

    // podman, an independent client, picks each platform's image out of the pushed index.
    let config_of = |layout: &Path| -> String {
        let m = json(&blob(
            layout,
            manifest_of(layout)["digest"].as_str().unwrap(),
        ));
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    let store = a.scratch().join("podman");
    let podman = |args: &[&str]| {
        let mut cmd = support::image::podman(a.scratch());
        cmd.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        registry_server::run(&mut cmd)
    };
    let auth = reg.tool_auth_args();
    let reference = format!("{}/ma/hello:1.2.3", reg.addr);
    for (arch, layout) in [
        ("arm64", arm_layout.clone()),
        ("amd64", a.path("out/linux-amd64/images/hello")),
    ] {
        let mut args = vec!["pull", "--quiet", "--arch", arch];
        args.extend(auth.iter().map(String::as_str));
        args.push(&reference);
        let id = podman(&args);
        let shown = podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}} {{.Id}}",
            id.trim(),
        ]);
        let config = config_of(&layout);
        assert_eq!(
            shown.trim(),
            format!("{arch} {}", config.strip_prefix("sha256:").unwrap()),
            "podman pull --arch {arch} takes that platform's image"
        );
    }

    // A `docker load` archive holds one platform's images: --platform chooses which.
    let archive = a.scratch().join("arm64.tar");
    let refused = a.kiln().env("SOURCE_DATE_EPOCH", "1700000000").run([
        "build",
        "hello",
        "--docker-archive",
        archive.to_str().unwrap(),
    ]);
    refused.assert_code(2, "--docker-archive with two platforms and no --platform");
    assert!(
        refused.stderr_text().contains("add --platform"),
        "{}",
        refused.stderr_text()
    );
    assert!(!archive.exists());
    a.kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run([
            "build",
            "hello",
            "--platform",
            "linux/arm64",
            "--docker-archive",
            archive.to_str().unwrap(),
        ])
        .ok("arm64 docker archive");
    let loaded = podman(&["load", "--quiet", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("localhost/hello:1.2.3"), "{loaded}");
    let shown = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{.Id}}",
        "localhost/hello:1.2.3",
    ]);
    assert_eq!(
        shown.trim(),
        format!(
            "arm64 {}",
            config_of(&arm_layout).strip_prefix("sha256:").unwrap()
        )
    );

    // out/images/hello is an index of every platform or nothing. That --platform build
    // replaced no image, so the index still holds and stays.
    let index_dir = a.path("out/images/hello");
    let entries = |dir: &Path| -> Vec<(String, String)> {
        let top = manifest_of(dir);
        let index = json(&blob(dir, top["digest"].as_str().unwrap()));
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"].as_str().unwrap().to_string(),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let both = entries(&index_dir);
    assert_eq!(
        both.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    // A build of arm64 alone that replaces its image removes the index naming the old one,
    // rather than leaving it stale or writing an index of arm64 alone.
    let later = "1700000100";
    let arm_only = a
        .kiln()
        .env("SOURCE_DATE_EPOCH", later)
        .run(["build", "hello", "--platform", "linux/arm64"])
        .ok("arm64 alone, a later commit time");
    let new_arm = manifest_of(&arm_layout)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_arm, both[1].1, "the arm64 image did not change");
    assert!(!index_dir.exists(), "a stale index was left");
    assert!(
        arm_only
            .stderr_text()
            .contains("kiln: image index hello: removed, it named an image this build for linux/arm64 replaced"),
        "{}",
        arm_only.stderr_text()
    );
    // Every platform, named in the other order: the index is back, in the workspace's order.
    a.kiln()
        .env("SOURCE_DATE_EPOCH", later)
        .run([
            "build",
            "hello",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
        ])
        .ok("both platforms named");
    let back = entries(&index_dir);
    assert_eq!(back[0].0, "amd64");
    assert_eq!(back[1], ("arm64".to_string(), new_arm));
    let named = manifest_of(&index_dir)["digest"].clone();
    a.kiln()
        .env("SOURCE_DATE_EPOCH", later)
        .run(["build", "hello"])
        .ok("the workspace's platforms");
    assert_eq!(manifest_of(&index_dir)["digest"], named);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn geometry_for_arm64_takes_the_arm64_libgnat_across_the_cross_version_skew_and_tests_run_under_qemu(
) {
    let ws = two_platform_engine("ws");
    ws.kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build", "geometry"])
        .ok("two-platform build of the Ada service");
    // The cross GNAT links against its own libgnat (…cross1); the image's is the arm64 one.
    let lock: toml::Value = toml::from_str(&ws.read("kiln.lock")).unwrap();
    let pinned: Vec<String> = lock["toolchain"]["gnat-arm64"]["debian"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}={}",
                p["name"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    let find = |prefix: &str| -> String {
        pinned
            .iter()
            .find(|p| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} not pinned: {pinned:?}"))
            .clone()
    };
    let cross = find("libgnat-12-arm64-cross:all=");
    let runtime = find("libgnat-12:arm64=");
    assert!(cross.ends_with("cross1"), "{cross}");
    assert_ne!(cross.split('=').nth(1), runtime.split('=').nth(1));
    let runtime_version = runtime.split('=').nth(1).unwrap().to_string();

    let rootfs = ws.scratch().join("rootfs-geometry");
    let config = unpack(&ws.path("out/linux-arm64/images/geometry"), &rootfs);
    assert_eq!(config["architecture"], "arm64");
    let elves = elf_files(&rootfs);
    assert!(
        elves
            .iter()
            .any(|p| p.ends_with("usr/lib/aarch64-linux-gnu/libgnat-12.so")),
        "{elves:?}"
    );
    for f in &elves {
        assert_eq!(machine(f), "AArch64", "{}", f.display());
    }
    let record = fs::read_to_string(rootfs.join("var/lib/dpkg/status.d/libgnat-12")).unwrap();
    assert!(
        record.contains("Architecture: arm64\n")
            && record.contains(&format!("Version: {runtime_version}\n")),
        "{record}"
    );
    // The SBOM names the package the image holds: the arm64 runtime, not the cross one.
    let cdx = ws.read("out/linux-arm64/sbom/geometry.cdx.json");
    assert!(
        cdx.contains("pkg:deb/debian/libgnat-12@") && cdx.contains("arch=arm64"),
        "{cdx}"
    );
    assert!(!cdx.contains("arm64-cross"), "{cdx}");
    let run = Command::new("qemu-aarch64")
        .arg("-L")
        .arg(&rootfs)
        .arg(rootfs.join("usr/local/bin/geometry"))
        .output()
        .expect("qemu-aarch64 runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "geometry area 12 stack 2 top 9\n"
    );

    // The tests of both languages, built for arm64 and run under qemu-user.
    let tests = ws
        .kiln()
        .run(["test", "--platform", "linux/arm64"])
        .ok("kiln test --platform linux/arm64");
    assert!(
        tests.stdout_text().contains("2 passed, 0 failed"),
        "{}",
        tests.stdout_text()
    );
    for t in ["greet-test", "shapes-test"] {
        assert_eq!(
            machine(&ws.path(&format!("out/linux-arm64/tests/{t}"))),
            "AArch64"
        );
    }
    let junit = ws.read("out/linux-arm64/test-results/greet-test.xml");
    assert!(
        junit.contains("tests=\"2\"") && junit.contains("failures=\"0\""),
        "{junit}"
    );
}

#[test]
fn a_platform_without_a_toolchain_for_a_target_names_it_before_building_anything() {
    let ws = two_platform_engine("ws");
    // A workspace toolchain with no linux/arm64 counterpart.
    ws.write("toolchains/special.toml", kiln::toolchain::BUILTIN[0].1);
    ws.edit(
        "recipes/hello.toml",
        "kind = \"service\"\n",
        "kind = \"service\"\ntoolchain = \"special\"\n",
    );
    let run = ws.kiln().run(["build", "hello"]);
    run.assert_code(
        2,
        "build of a service whose toolchain has no arm64 counterpart",
    );
    let err = run.stderr_text();
    assert!(
        err.contains(
            "platform linux/arm64 has no toolchain for `hello`: it is built with `special`"
        ) && err.contains("(define toolchains/special-arm64.toml)"),
        "{err}"
    );
    assert!(
        !ws.path("out/linux-amd64/bin").exists(),
        "nothing was built"
    );
    // A counterpart that builds for another platform does not do either.
    ws.write(
        "toolchains/special-arm64.toml",
        kiln::toolchain::BUILTIN[0].1,
    );
    let err = ws.kiln().run(["build", "hello"]).stderr_text();
    assert!(
        err.contains("; toolchains/special-arm64.toml builds for linux/amd64"),
        "{err}"
    );
    let run = ws
        .kiln()
        .run(["build", "--platform", "linux/riscv64", "hello"]);
    run.assert_code(2, "an unknown platform");
    assert!(
        run.stderr_text().contains(
            "unknown platform \"linux/riscv64\"; kiln builds for linux/amd64, linux/arm64"
        ),
        "{}",
        run.stderr_text()
    );
}

/// An HTTP GET on loopback, `None` until something answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Kills the service under qemu when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn arm64_images_of_a_cpp_and_an_ada_service_answer_health_and_metrics_under_qemu() {
    // The repository's 16-service workspace (its recipes and sources), for arm64 alone; two
    // of the services are built.
    let ws = Workspace::with_files(&[]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("recipes"), &ws.path("recipes"));
    copy_dir(&fixture_dir("services"), &ws.path("fixtures/services"));
    copy_dir(&fixture_dir("libs"), &ws.path("fixtures/libs"));
    ws.write("kiln.toml", "platforms = [\"linux/arm64\"]\n");
    ws.kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build", "config-service", "dsa-adapter"])
        .ok("arm64 build of a C++ and an Ada service");
    for service in ["config-service", "dsa-adapter"] {
        let rootfs = ws.scratch().join(format!("rootfs-{service}"));
        let config = unpack(
            &ws.path(&format!("out/linux-arm64/images/{service}")),
            &rootfs,
        );
        assert_eq!(config["architecture"], "arm64");
        let port = support::ports::free_port();
        // The image's own environment, with a free port instead of the recipe's.
        let mut cmd = Command::new("qemu-aarch64");
        cmd.arg("-L")
            .arg(&rootfs)
            .arg(rootfs.join(format!("usr/local/bin/{service}")))
            .env_clear()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for kv in config["config"]["Env"].as_array().unwrap() {
            let (k, v) = kv.as_str().unwrap().split_once('=').unwrap();
            cmd.env(k, v);
        }
        cmd.env("PORT", port.to_string())
            .env("CONFIG_DIR", ws.scratch());
        let _running = Running(cmd.spawn().expect("qemu-aarch64 starts"));
        // Emulated start-up takes a while: wait (bounded) until the port answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let health = loop {
            if let Some(r) = http_get(port, "/healthz") {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service} never answered under qemu"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(
            health.starts_with("HTTP/1.") && health.contains(" 200 "),
            "{health}"
        );
        let metrics = http_get(port, "/metrics").expect("metrics answer");
        assert!(
            metrics.contains(&format!("build_info{{service=\"{service}\"")),
            "{metrics}"
        );
    }
}

#[test]
fn verify_rebuilds_every_platform_and_the_index_and_names_the_platform_that_differs() {
    let ws = two_platform_cxx_engine("v");
    // A service that leaks its source's mtime on arm64 only (see fixtures/repro/stamp for the
    // leak itself): the amd64 image stays reproducible, the arm64 one does not.
    ws.write(
        "recipes/stamp.toml",
        "kind = \"service\"\nlanguage = \"c++\"\nversion = \"0.1.0\"\n\
         description = \"Leaks its source's mtime when built for arm64\"\n\
         sources = [\"stamp/main.cpp\"]\n\n[image]\nbudget = \"100MB\"\n",
    );
    ws.write(
        "stamp/main.cpp",
        "#include <cstdio>\nint main() {\n#ifdef __aarch64__\n  \
         std::printf(\"%s\\n\", __TIMESTAMP__);\n#endif\n  return 0;\n}\n",
    );
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(ws.path("stamp/main.cpp"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let kiln = || ws.kiln().env("SOURCE_DATE_EPOCH", "1700000000");

    // CI's warm-up step pins and materialises the roots of every platform, not just amd64's.
    let fetched = kiln()
        .run(["toolchain", "fetch"])
        .ok("toolchain fetch")
        .stdout_text();
    let names: Vec<&str> = fetched
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["gcc", "gcc-arm64"], "{fetched}");
    let lock: toml::Value = toml::from_str(&ws.read("kiln.lock")).unwrap();
    for t in ["gcc", "gcc-arm64"] {
        assert!(lock["toolchain"].get(t).is_some(), "{t} is pinned");
    }

    // hello alone: both platforms' images and the index rebuild bit for bit.
    kiln().run(["build", "hello"]).ok("two-platform build");
    let index_json = fs::read(ws.path("out/images/hello/index.json")).unwrap();
    let index_digest = json(&ws.path("out/images/hello/index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let run = kiln().run(["verify", "hello", "--json"]).ok("verify hello");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let platforms: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{report:#}");
    for s in report["services"].as_array().unwrap() {
        assert_eq!(s["original"], s["rebuilt"], "{report:#}");
    }
    let indexes = report["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 1, "{report:#}");
    assert_eq!(indexes[0]["original"], index_digest.as_str());
    assert_eq!(indexes[0]["rebuilt"], index_digest.as_str());
    assert!(
        run.stderr_text()
            .contains("2 service image(s) and 1 image index(es) rebuilt bit for bit"),
        "{}",
        run.stderr_text()
    );
    // Verifying left the workspace's index where the build put it.
    assert_eq!(
        fs::read(ws.path("out/images/hello/index.json")).unwrap(),
        index_json
    );

    // stamp: the difference is named with its platform, and amd64 is not blamed.
    let out = kiln().run(["verify", "stamp", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mismatches = report["mismatches"].as_array().unwrap();
    assert!(!mismatches.is_empty(), "{report:#}");
    for m in mismatches {
        assert_eq!(m["platform"], "linux/arm64", "{report:#}");
    }
    assert!(
        mismatches
            .iter()
            .any(|m| m["path"] == "/usr/local/bin/stamp"),
        "{report:#}"
    );
    let err = out.stderr_text();
    assert!(err.contains("stamp (linux/arm64): layer "), "{err}");
    let kept = PathBuf::from(report["kept"].as_str().unwrap());
    fs::remove_dir_all(kept.parent().unwrap()).unwrap();

    // --platform narrows it: amd64 alone verifies.
    kiln()
        .run(["verify", "stamp", "--platform", "linux/amd64"])
        .ok("verify stamp for amd64 only");
}

/// The compressed size of the image in `layout`: its config and every layer, as pushed.
fn pushed_size(layout: &Path) -> u64 {
    let m = json(&blob(
        layout,
        manifest_of(layout)["digest"].as_str().unwrap(),
    ));
    let size = |d: &serde_json::Value| d["size"].as_u64().unwrap();
    size(&m["config"])
        + m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(size)
            .sum::<u64>()
}

#[test]
fn all_sixteen_services_on_both_platforms_are_under_budget_aarch64_and_rebuild_bit_for_bit() {
    // The repository's 16-service workspace (its recipes and sources), for both platforms.
    let ws = Workspace::with_files(&[]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("recipes"), &ws.path("recipes"));
    copy_dir(&fixture_dir("services"), &ws.path("fixtures/services"));
    copy_dir(&fixture_dir("libs"), &ws.path("fixtures/libs"));
    ws.write("kiln.toml", PLATFORMS);
    let kiln = || ws.kiln().env("SOURCE_DATE_EPOCH", "1700000000");
    kiln()
        .run(["build", "-j2"])
        .ok("two-platform build of the 16 services");

    // (name, language) of each service; a recipe is named by its file.
    let mut services: Vec<(String, String)> = Vec::new();
    for e in fs::read_dir(ws.path("recipes")).unwrap() {
        let path = e.unwrap().path();
        let recipe: toml::Value = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        if recipe["kind"].as_str() == Some("service") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            services.push((name, recipe["language"].as_str().unwrap().to_string()));
        }
    }
    services.sort();
    assert_eq!(services.len(), 16, "{services:?}");

    for (name, language) in &services {
        // The mission's budgets, checked from the manifests rather than kiln's own report.
        let budget: u64 = if language == "ada" {
            150_000_000
        } else {
            100_000_000
        };
        for arch in ["amd64", "arm64"] {
            let layout = ws.path(&format!("out/linux-{arch}/images/{name}"));
            let size = pushed_size(&layout);
            assert!(size < budget, "{name} for {arch}: {size} bytes");
        }
        // Every ELF file of the arm64 image is aarch64, by readelf; status.d is arm64's.
        let rootfs = ws.scratch().join(format!("rootfs-{name}"));
        let config = unpack(&ws.path(&format!("out/linux-arm64/images/{name}")), &rootfs);
        assert_eq!(config["architecture"], "arm64", "{name}");
        let elves = elf_files(&rootfs);
        assert!(
            elves.contains(&rootfs.join(format!("usr/local/bin/{name}"))),
            "{name}: {elves:?}"
        );
        for f in &elves {
            assert_eq!(machine(f), "AArch64", "{name}: {}", f.display());
        }
        let status_d = rootfs.join("var/lib/dpkg/status.d");
        let records: Vec<PathBuf> = fs::read_dir(&status_d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let libc = status_d.join("libc6");
        assert!(records.contains(&libc), "{name}: {records:?}");
        for r in &records {
            let text = fs::read_to_string(r).unwrap();
            assert!(
                text.contains("Architecture: arm64\n"),
                "{name}: {}: {text}",
                r.display()
            );
        }
        fs::remove_dir_all(&rootfs).unwrap();
    }

    // Same inputs, same bytes: `kiln verify` rebuilds every image of both platforms in a fresh
    // copy with an empty cache, and the 16 image indexes come out the same.
    let run = kiln().run(["verify", "-j2", "--json"]).ok("kiln verify");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report["services"].as_array().unwrap().len(),
        32,
        "{report:#}"
    );
    let indexes = report["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 16, "{report:#}");
    for i in indexes {
        let name = i["name"].as_str().unwrap();
        let written = manifest_of(&ws.path(&format!("out/images/{name}")));
        assert_eq!(i["original"], written["digest"], "{name}");
        assert_eq!(i["rebuilt"], written["digest"], "{name}");
    }
    assert!(
        report["mismatches"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}
