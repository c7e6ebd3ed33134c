//! `kiln build` with a remote cache (src/build/remote.rs): against a real BuildGrid on loopback,
//! a port nobody listens on, and the fault-injecting fake of tests/remote_cache.
//!
//! The two-machine case is two copies of fixtures/engine at different paths, each with its own
//! (initially empty) local cache, sharing one BuildGrid.

// Shared with tests/remote_cache.rs, which uses more of them.
#[allow(dead_code)]
#[path = "remote_cache/buildgrid.rs"]
mod buildgrid;
#[allow(dead_code)]
#[path = "remote_cache/fake.rs"]
mod fake;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use buildgrid::BuildGrid;
use fake::FakeServer;
use support::kiln::Run;
use support::workspace::Workspace;

/// Every action of the build with where its outputs came from (`local`, `local-cache`,
/// `remote-cache`, `up-to-date`).
fn sources(run: &Run) -> BTreeMap<String, String> {
    let doc = run.json();
    let mut out = BTreeMap::new();
    for t in doc["targets"].as_array().unwrap() {
        for a in t["actions"].as_array().unwrap() {
            out.insert(
                a["id"].as_str().unwrap().to_string(),
                a["source"].as_str().unwrap().to_string(),
            );
        }
    }
    out
}

fn all(map: &BTreeMap<String, String>, source: &str) -> bool {
    !map.is_empty() && map.values().all(|s| s == source)
}

fn ran(map: &BTreeMap<String, String>) -> Vec<&str> {
    map.iter()
        .filter(|(_, s)| *s == "local")
        .map(|(id, _)| id.as_str())
        .collect()
}

/// Image digests by service.
fn images(run: &Run) -> BTreeMap<String, String> {
    let doc = run.json();
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let digest = t["image"]["digest"].as_str()?;
            Some((t["name"].as_str()?.to_string(), digest.to_string()))
        })
        .collect()
}

fn remote_warnings(run: &Run) -> Vec<String> {
    run.stderr_text()
        .lines()
        .filter(|l| l.contains("remote cache"))
        .map(String::from)
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn build_no_images(ws: &Workspace, url: &str) -> Run {
    ws.kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-cache",
            url,
        ])
        .ok("build")
}

const PRODUCTS: &[&str] = &["out/bin/hello", "out/bin/geometry", "out/lib/libgreet.a"];

#[test]
fn a_second_checkout_with_an_empty_cache_builds_everything_from_the_remote() {
    let bg = BuildGrid::start();

    let first = Workspace::fixture_at("engine", "first");
    let one = first
        .kiln()
        .run(["build", "--json", "-j2", "--remote-cache", &bg.url])
        .ok("first build");
    let one_sources = sources(&one);
    assert!(all(&one_sources, "local"), "{one_sources:?}");
    let uploads = one.json()["remote"]["uploads"].as_u64().unwrap();
    assert_eq!(uploads as usize, one_sources.len(), "{one}");
    assert!(remote_warnings(&one).is_empty(), "{one}");

    // Another path, another (empty) cache; the remote named in kiln.toml this time.
    let second = Workspace::fixture_at("engine", "elsewhere/second");
    second.write(
        "kiln.toml",
        &format!("[remote]\ncache = \"{}\"\ninstance = \"\"\n", bg.url),
    );
    assert!(!second.cache().exists());
    let two = second
        .kiln()
        .run(["build", "--json", "-j2"])
        .ok("second checkout's build");
    let two_sources = sources(&two);
    assert!(all(&two_sources, "remote-cache"), "{two}");
    assert_eq!(two_sources.len(), one_sources.len());
    assert!(ran(&two_sources).is_empty());
    assert!(remote_warnings(&two).is_empty(), "{two}");
    for p in PRODUCTS {
        assert!(
            std::fs::read(first.path(p)).unwrap() == std::fs::read(second.path(p)).unwrap(),
            "{p} differs between the checkouts"
        );
    }
    let imgs = images(&two);
    assert_eq!(imgs.len(), 2, "{two}");
    assert_eq!(images(&one), imgs, "images differ between the checkouts");
    // The images' layers came from the remote's CAS too, not compressed again here: every
    // layer written is offered to the remote, and the second machine offered none. (Counts
    // are not compared: two images assembled at once may both write, or fetch, a layer they
    // share.)
    let (r1, r2) = (&one.json()["remote"], &two.json()["remote"]);
    assert!(r1["layers_stored"].as_u64().unwrap() >= 4, "{r1}");
    assert_eq!(r1["layers_fetched"], 0, "{r1}");
    assert!(r2["layers_fetched"].as_u64().unwrap() >= 4, "{r2}");
    assert_eq!(r2["layers_stored"], 0, "{r2}");
    assert!(r1["blobs_uploaded"].as_u64().unwrap() > 0, "{r1}");
    assert_eq!(
        (r2["blobs_uploaded"].as_u64(), r2["uploads"].as_u64()),
        (Some(0), Some(0)),
        "{r2}"
    );
    assert_eq!(second.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");

    // A no-op rebuild runs nothing and fetches nothing.
    let noop = second
        .kiln()
        .run(["build", "--json", "-j2"])
        .ok("no-op build");
    assert!(all(&sources(&noop), "up-to-date"), "{noop}");

    // The discovered dependencies came along: a header edit reruns exactly what includes it.
    second.edit("hello/src/banner.h", "kiln-fixture", "kiln-banner");
    let edit = second
        .kiln()
        .run(["build", "--json", "--no-images", "-j2"])
        .ok("incremental build");
    assert_eq!(
        ran(&sources(&edit)),
        ["hello compile hello/src/main.cpp", "hello link"],
        "{edit}"
    );
    assert!(second.run_bin("hello").starts_with("kiln-banner "));
    // And the Ada units' (from ALI files): a spec edit reruns its body, the units that with
    // it, the bind and the link.
    second.edit(
        "shapes/shapes-circles.ads",
        "   overriding function Area",
        "   function Diameter (C : Circle) return Float is (2.0 * C.Radius);\n   overriding function Area",
    );
    let edit = second
        .kiln()
        .run(["build", "--json", "--no-images", "-j2"])
        .ok("incremental Ada build");
    assert_eq!(
        ran(&sources(&edit)),
        [
            "geometry bind",
            "geometry compile geometry/geometry_main.adb",
            "geometry compile-binder",
            "geometry link",
            "shapes compile shapes/shapes-circles.adb",
        ],
        "{edit}"
    );

    // A third checkout has a header neither holds: the compile that includes it is not served
    // either's object.
    let third = Workspace::fixture_at("engine", "third");
    third.edit("hello/src/banner.h", "kiln-fixture", "kiln-third");
    let three = build_no_images(&third, &bg.url);
    assert_eq!(
        ran(&sources(&three)),
        ["hello compile hello/src/main.cpp", "hello link"],
        "{three}"
    );
    assert!(third.run_bin("hello").starts_with("kiln-third "));

    // A fourth has the original header again: the manifest kept that set of dependencies next
    // to the newer ones, so everything is the first checkout's.
    let fourth = Workspace::fixture_at("engine", "fourth");
    let four = build_no_images(&fourth, &bg.url);
    assert!(all(&sources(&four), "remote-cache"), "{four}");
    for p in PRODUCTS {
        assert!(
            std::fs::read(first.path(p)).unwrap() == std::fs::read(fourth.path(p)).unwrap(),
            "{p} differs between the first and fourth checkouts"
        );
    }

    // After `kiln clean` without the remote, the local cache it filled serves everything.
    second.kiln().run(["clean"]).ok("clean");
    let local = second
        .kiln()
        .run(["build", "--json", "--no-images", "-j2", "--no-remote-cache"])
        .ok("build from the local cache");
    assert!(all(&sources(&local), "local-cache"), "{local}");
}

#[test]
fn an_unreachable_remote_gives_one_warning_and_a_local_build() {
    let ws = Workspace::engine();
    let url = format!("grpc://127.0.0.1:{}", free_port());
    let run = ws
        .kiln()
        .run(["build", "--no-images", "-j2", "--remote-cache", &url])
        .ok("build with a remote nobody serves");
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 2, "one warning and the summary: {run}");
    assert!(
        warnings[0].starts_with("kiln: warning: remote cache not used: ")
            && warnings[0].contains(&url)
            && warnings[0].ends_with("; built locally"),
        "{run}"
    );
    assert!(
        warnings[1].contains(" actions run, 0 from cache, 0 from remote cache, 0 up to date"),
        "{run}"
    );
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");

    let json = ws
        .kiln()
        .run(["build", "--json", "--no-images", "--remote-cache", &url])
        .ok("no-op build");
    assert!(all(&sources(&json), "up-to-date"), "{json}");
    assert!(
        json.json()["remote"]["error"].is_null(),
        "nothing to look up: {json}"
    );
}

#[test]
fn a_second_identical_build_sends_the_cas_no_blob() {
    let server = FakeServer::start(1 << 20);
    let first = Workspace::fixture_at("engine", "first");
    let one = first
        .kiln()
        .run(["build", "--json", "-j2", "--remote-cache", &server.url])
        .ok("first build");
    let r1 = &one.json()["remote"];
    let sent = server.log();
    // What kiln says it sent is what the server received: outputs, stdout/stderr and the
    // images' layers.
    assert!(sent.blobs_received > 0, "{sent:?}");
    assert_eq!(r1["blobs_uploaded"], sent.blobs_received as u64, "{r1}");
    assert_eq!(r1["bytes_uploaded"], sent.bytes_received, "{r1}");

    // Another checkout, an empty local cache, images too: everything is a hit, nothing goes up.
    let second = Workspace::fixture_at("engine", "second");
    let two = second
        .kiln()
        .run(["build", "--json", "-j2", "--remote-cache", &server.url])
        .ok("second build");
    assert!(all(&sources(&two), "remote-cache"), "{two}");
    let r2 = &two.json()["remote"];
    assert_eq!(
        (r2["blobs_uploaded"].as_u64(), r2["uploads"].as_u64()),
        (Some(0), Some(0)),
        "{r2}"
    );
    let after = server.log();
    assert_eq!(
        (
            after.blobs_received,
            after.batch_updates,
            after.write_starts.len()
        ),
        (
            sent.blobs_received,
            sent.batch_updates,
            sent.write_starts.len()
        ),
        "the second build wrote to the CAS"
    );
    assert_eq!(
        images(&one),
        images(&two),
        "images differ between the checkouts"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_the_action_runs_locally() {
    let server = FakeServer::start(1 << 20);
    let first = Workspace::fixture_at("engine", "first");
    let one = first
        .kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-cache",
            &server.url,
        ])
        .ok("first build");
    assert!(all(&sources(&one), "local"), "{one}");

    // Healthy, the fake serves a second checkout...
    let second = Workspace::fixture_at("engine", "second");
    let two = second
        .kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-cache",
            &server.url,
        ])
        .ok("second build");
    assert!(all(&sources(&two), "remote-cache"), "{two}");

    // ...corrupt, it serves nothing: every action runs, with one warning.
    server.state.corrupt_reads.store(true, Ordering::SeqCst);
    let third = Workspace::fixture_at("engine", "third");
    let three = third
        .kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-cache",
            &server.url,
        ])
        .ok("third build");
    let three_sources = sources(&three);
    assert!(all(&three_sources, "local"), "{three}");
    let warnings = remote_warnings(&three);
    assert_eq!(warnings.len(), 1, "{three}");
    assert!(warnings[0].contains("does not match its digest"), "{three}");
    let error = &three.json()["remote"]["error"];
    assert_eq!(error["during"], "lookup", "{three}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("does not match its digest"),
        "{three}"
    );
    for p in PRODUCTS {
        assert!(
            std::fs::read(first.path(p)).unwrap() == std::fs::read(third.path(p)).unwrap(),
            "{p} differs"
        );
    }
}

#[test]
fn an_unavailable_remote_falls_back_with_one_warning() {
    let server = FakeServer::start(1 << 20);
    server.state.unavailable.store(true, Ordering::SeqCst);
    let ws = Workspace::engine();
    let run = ws
        .kiln()
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-cache",
            &server.url,
        ])
        .ok("build against an UNAVAILABLE remote");
    assert!(all(&sources(&run), "local"), "{run}");
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(warnings[0].contains("Unavailable"), "{run}");
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
}

#[test]
fn a_bad_remote_table_is_a_positioned_usage_error() {
    let ws = Workspace::engine();
    ws.write("kiln.toml", "[remote]\ncahce = \"grpc://127.0.0.1:1\"\n");
    let run = ws.kiln().run(["build", "--no-images"]);
    run.assert_code(2, "a misspelt key");
    let err = run.stderr_text();
    assert!(
        err.contains("kiln.toml:2:1: unknown key `cahce` in [remote]"),
        "{run}"
    );
    assert!(err.contains("did you mean `cache`?"), "{run}");

    ws.write("kiln.toml", "[remote]\ncache = \"127.0.0.1:1\"\n");
    let run = ws.kiln().run(["build", "--no-images"]);
    run.assert_code(2, "a URL without a scheme");
    assert!(run.stderr_text().contains("kiln.toml:2:9"), "{run}");

    // The user's config is read too, and the workspace's file wins over it.
    ws.write("kiln.toml", "");
    let xdg = ws.scratch().join("xdg");
    std::fs::create_dir_all(xdg.join("kiln")).unwrap();
    std::fs::write(xdg.join("kiln/config.toml"), "[remote]\ninstance = 3\n").unwrap();
    let run = ws
        .kiln()
        .env("XDG_CONFIG_HOME", &xdg)
        .run(["build", "--no-images"]);
    run.assert_code(2, "a user config with a number for a name");
    assert!(
        run.stderr_text()
            .contains("config.toml:2:12: `remote.instance` must be a string"),
        "{run}"
    );
}

#[test]
fn the_instance_name_and_token_reach_the_server_and_nothing_prints_the_token() {
    let server = FakeServer::start(1 << 20);
    let ws = Workspace::engine();
    // The URL from the user's config, the instance from the flag.
    let xdg = ws.scratch().join("xdg");
    std::fs::create_dir_all(xdg.join("kiln")).unwrap();
    std::fs::write(
        xdg.join("kiln/config.toml"),
        format!(
            "[remote]\ncache = \"{}\"\ninstance = \"other\"\n",
            server.url
        ),
    )
    .unwrap();
    let run = ws
        .kiln()
        .env("XDG_CONFIG_HOME", &xdg)
        .env("KILN_REMOTE_TOKEN", "s3cret-t0ken")
        .run([
            "build",
            "--json",
            "--no-images",
            "-j2",
            "--remote-instance",
            "main",
        ])
        .ok("build with a token");
    assert!(all(&sources(&run), "local"), "{run}");
    assert!(
        run.json()["remote"]["uploads"].as_u64().unwrap() > 0,
        "{run}"
    );
    let log = server.log();
    assert!(!log.authorization.is_empty(), "{log:?}");
    assert!(
        log.authorization.iter().all(|a| a == "Bearer s3cret-t0ken"),
        "{log:?}"
    );
    assert!(
        !log.instance_names.is_empty() && log.instance_names.iter().all(|i| i == "main"),
        "{log:?}"
    );
    assert!(!run.stdout_text().contains("s3cret") && !run.stderr_text().contains("s3cret"));
}

#[test]
fn a_remote_that_refuses_uploads_still_serves_hits() {
    let server = FakeServer::start(1 << 20);
    let first = Workspace::fixture_at("engine", "first");
    build_no_images(&first, &server.url);

    // A read-only credential: the server still advertises updates but refuses them.
    server.state.refuse_updates.store(true, Ordering::SeqCst);
    let second = Workspace::fixture_at("engine", "second");
    second.edit("greet/src/format.cpp", "\"<\"", "\"[\"");
    let two = build_no_images(&second, &server.url);
    let two_sources = sources(&two);
    assert_eq!(
        ran(&two_sources),
        [
            "greet archive",
            "greet compile greet/src/format.cpp",
            "hello link"
        ],
        "{two}"
    );
    assert_eq!(
        two_sources
            .values()
            .filter(|s| *s == "remote-cache")
            .count(),
        two_sources.len() - 3,
        "every other action is still served: {two}"
    );
    let warnings = remote_warnings(&two);
    assert_eq!(warnings.len(), 1, "{two}");
    assert!(
        warnings[0].starts_with("kiln: warning: remote cache not updated: ")
            && warnings[0].contains("PermissionDenied"),
        "{two}"
    );
    assert_eq!(two.json()["remote"]["uploads"], 0, "{two}");
    assert_eq!(second.run_bin("hello"), "kiln-fixture [hello, wxBase 3>\n");
}

/// fixtures/engine's C++ part on the pinned Debian toolchain (the repository's lock).
fn hermetic_cxx(dir: &str) -> Workspace {
    let ws = support::engine::pinned(dir);
    for r in ["geometry", "shapes", "shapes-test"] {
        std::fs::remove_file(ws.path(&format!("recipes/{r}.toml"))).unwrap();
    }
    ws
}

#[test]
fn a_fresh_machine_without_debs_or_a_mirror_restores_a_hermetic_build_from_the_remote() {
    let bg = BuildGrid::start();
    let first = hermetic_cxx("first");
    let one = first
        .kiln()
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-cache",
            &bg.url,
        ])
        .ok("first machine's build");
    assert!(one.json()["remote"]["error"].is_null(), "{one}");

    // The other machine has an empty cache, an empty Debian store and no mirror it can reach:
    // the toolchain root's .debs, every action's outputs and the images' layers all come from
    // the remote, each checked against its digest.
    let second = hermetic_cxx("elsewhere/second");
    let store = second.scratch().join("empty-debian-store");
    std::fs::create_dir_all(&store).unwrap();
    let closed = format!("http://127.0.0.1:{}/debian", free_port());
    let two = second
        .kiln()
        .env("KILN_DEBIAN_CACHE", &store)
        .env("KILN_DEBIAN_MIRROR", &closed)
        .run([
            "build",
            "--locked",
            "--json",
            "-j2",
            "--remote-cache",
            &bg.url,
        ])
        .ok("fresh machine's build");
    let remote = &two.json()["remote"];
    assert!(remote["error"].is_null(), "{two}");
    let lock: toml::Value = toml::from_str(&second.read("kiln.lock")).unwrap();
    let debs = lock["toolchain"]["gcc"]["debian"]["package"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        remote["debs_fetched"].as_u64().unwrap() as usize,
        debs,
        "{two}"
    );
    assert!(all(&sources(&two), "remote-cache"), "{two}");
    assert!(remote["layers_fetched"].as_u64().unwrap() > 0, "{two}");
    assert_eq!(
        images(&one),
        images(&two),
        "images differ between the machines"
    );
    assert_eq!(
        std::fs::read(first.path("out/bin/hello")).unwrap(),
        std::fs::read(second.path("out/bin/hello")).unwrap()
    );
}
