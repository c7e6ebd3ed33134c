//! Toolchain images (`kiln toolchain push` / `pull`, a toolchain file's `image`): the pinned
//! GNAT toolchain of a hermetic `fixtures/engine` copy pushed to the reference registry, checked
//! with skopeo, pushed again from a second checkout (same manifest digest), then pulled into
//! an empty store with the Debian mirror unreachable and built from, byte for byte as the
//! original; a layer corrupted on the way is refused and leaves nothing in the store.
//!
//! The pins come from this repository's kiln.lock (its `gnat` is kiln's built-in one), so no
//! test here reads the Debian archive; the original checkout builds from the machine's shared
//! store (see `support::kiln::shared_debian_store`).

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::engine::{pinned as hermetic_engine, pinned_ada as ada_engine};
use support::hostile_front::{self, Config};
use support::kiln::{Kiln, DEBIAN_STORE_ENV};
use support::registry_server::{self, Mode, TestRegistry};
use support::workspace::Workspace;

/// Nothing listens on port 9 of loopback: every request to the archive fails at once.
const NO_MIRROR: &str = "http://127.0.0.1:9/debian";

fn kiln(ws: &Workspace) -> Kiln {
    ws.kiln().env("SOURCE_DATE_EPOCH", "1700000000")
}

/// kiln with an empty Debian store of its own and no reachable mirror.
fn offline(ws: &Workspace, store: &Path) -> Kiln {
    kiln(ws)
        .env(DEBIAN_STORE_ENV, store)
        .env("KILN_DEBIAN_MIRROR", NO_MIRROR)
}

/// The pinned gnat packages' names, in the lock's (sorted) order.
fn pinned_names(ws: &Workspace) -> Vec<String> {
    let lock: toml::Value = toml::from_str(&ws.read("kiln.lock")).unwrap();
    lock["toolchain"]["gnat"]["debian"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn skopeo(reg: &TestRegistry, raw: bool, reference: &str) -> Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect").args(reg.tool_auth_args());
    if raw {
        c.arg("--raw");
    }
    let out = c.arg(format!("docker://{reference}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `gnat REGISTRY/REPO:TAG DIGEST` from push's stdout.
fn pushed(out: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("gnat "))
        .unwrap_or_else(|| panic!("no gnat line in {out:?}"));
    let parts: Vec<&str> = line.split(' ').collect();
    (parts[1].to_string(), parts[2].to_string())
}

/// Every entry under `dir` (relative paths), for "nothing was left here" checks.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // A store is a few levels deep; the walk visits each directory once.
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() && out.len() < 10_000 {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_pushed_toolchain_rebuilds_offline_from_the_registry_and_a_corrupt_layer_is_refused() {
    let a = hermetic_engine("a");
    kiln(&a)
        .run(["build", "--locked", "--no-images", "geometry"])
        .ok("original build");
    let original = fs::read(a.path("out/bin/geometry")).unwrap();
    let names = pinned_names(&a);
    assert!(names.len() > 10, "{names:?}");

    let reg = registry_server::start(Mode::Plain);
    let to = format!("{}/tc", reg.addr);
    let first = kiln(&a)
        .run(["toolchain", "push", "gnat", "--to", &to])
        .ok("push");
    let (reference, digest) = pushed(&first.stdout_text());
    assert!(
        reference.starts_with(&format!("{}/tc/toolchain-gnat:set-", reg.addr)),
        "{reference}"
    );

    // skopeo, independently: one layer per pinned package, named by its annotations, in order.
    let manifest = skopeo(&reg, true, &reference);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), names.len(), "{manifest}");
    let annotated: Vec<&str> = layers
        .iter()
        .map(|l| {
            l["annotations"]["dev.kiln.debian.package"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(annotated, names);
    for l in layers {
        for key in [
            "dev.kiln.debian.version",
            "dev.kiln.debian.architecture",
            "dev.kiln.debian.sha256",
        ] {
            assert!(l["annotations"][key].is_string(), "{key} missing: {l}");
        }
    }
    let inspected = skopeo(&reg, false, &reference);
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(
        inspected["Labels"]["dev.kiln.toolchain.set"]
            .as_str()
            .map(|s| &s[7..39]),
        reference.rsplit("set-").next(),
        "{inspected}"
    );

    // A second checkout elsewhere, with its own kiln cache (so every layer is written again),
    // gives the same manifest, which the registry already holds.
    let b = hermetic_engine("elsewhere/b");
    let second = kiln(&b)
        .run(["toolchain", "push", "gnat", "--to", &to])
        .ok("second push");
    assert_eq!(pushed(&second.stdout_text()), (reference.clone(), digest));
    assert!(
        second.stderr_text().contains(", 0 uploaded"),
        "{}",
        second.stderr_text()
    );

    // An empty store and no archive: the registry is the only source of the toolchain.
    let c = ada_engine("c");
    let store = c.scratch().join("empty-store");
    let pull = offline(&c, &store)
        .run(["toolchain", "pull", "gnat", "--from", &to])
        .ok("pull");
    assert!(
        pull.stdout_text()
            .contains(&format!("({} tree(s) pulled, 0 already here)", names.len())),
        "{}",
        pull.stdout_text()
    );
    offline(&c, &store)
        .run(["build", "--locked", "--no-images", "geometry"])
        .ok("offline build from the pulled trees");
    assert!(
        fs::read(c.path("out/bin/geometry")).unwrap() == original,
        "the binary built from the pulled toolchain differs from the original"
    );
    assert!(entries(&store.join("tmp")).is_empty());

    // The same through a front that flips one byte of the first package's layer: refused,
    // naming registry, repository and digest, and nothing of it reaches the store.
    let first_layer = layers[0]["digest"].as_str().unwrap().to_string();
    let target = first_layer.clone();
    let front = hostile_front::start(Config {
        edit: Box::new(move |seen, resp| {
            if seen.method == "GET" && seen.target.ends_with(&target) && !resp.body.is_empty() {
                let mid = resp.body.len() / 2;
                resp.body[mid] ^= 0x5a;
            }
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let d = ada_engine("d");
    let bad_store = d.scratch().join("empty-store");
    let refused = offline(&d, &bad_store).run([
        "toolchain",
        "pull",
        "gnat",
        "--from",
        &format!("{}/tc", front.addr),
    ]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr_text());
    let err = refused.stderr_text();
    for needed in [
        front.addr.as_str(),
        "tc/toolchain-gnat",
        first_layer.as_str(),
        "refused",
    ] {
        assert!(err.contains(needed), "{needed:?} not in {err}");
    }
    let left: Vec<String> = entries(&bad_store)
        .into_iter()
        .filter(|e| e != "tmp")
        .collect();
    assert!(left.is_empty(), "the store holds {left:?}");
}

#[test]
fn a_toolchain_file_naming_an_image_is_pulled_from_before_the_archive() {
    let a = hermetic_engine("a");
    let reg = registry_server::start(Mode::Plain);
    let to = format!("{}/tc", reg.addr);
    kiln(&a)
        .run(["toolchain", "push", "gnat", "--to", &to])
        .ok("push");

    // The built-in gnat, taken over by the workspace with one more key: the pins still answer.
    let b = ada_engine("b");
    let builtin = kiln::toolchain::BUILTIN[1].1;
    b.write(
        "toolchains/gnat.toml",
        &format!("{builtin}\nimage = \"{to}\"\n"),
    );
    let store = b.scratch().join("empty-store");
    let built = offline(&b, &store)
        .run(["build", "--locked", "--no-images", "geometry"])
        .ok("build pulling its toolchain");
    let err = built.stderr_text();
    assert!(
        err.contains("kiln: toolchain gnat: pulled ") && err.contains("toolchain-gnat@sha256:"),
        "{err}"
    );
    assert!(b.path("out/bin/geometry").is_file());
}
