//! The shared cache against real g++ and GNAT: damaged blobs and layers are caught while they are
//! restored, `kiln cache verify` finds and removes damage, `kiln cache gc` and the configured
//! limit remove least recently used files and spare what running builds use, and `kiln cache
//! stats` reports hit rates. Each test has its own copy of fixtures/engine and its own cache.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::kiln::{Kiln, Run};
use support::workspace::Workspace;

impl Workspace {
    /// kiln with no cache limits from the developer's environment and a pinned
    /// SOURCE_DATE_EPOCH.
    fn pinned_kiln(&self) -> Kiln {
        self.kiln()
            .without_cache_limits()
            .env("SOURCE_DATE_EPOCH", "1700000000")
    }

    /// `kiln build --json` (binaries only unless `images`), which must succeed.
    fn build(&self, extra: &[&str]) -> Run {
        let mut args = vec!["build", "--json", "-j2"];
        args.extend_from_slice(extra);
        self.pinned_kiln().run(&args).ok("build")
    }

    fn clean(&self) {
        self.pinned_kiln().run(["clean"]).assert_ok("clean");
    }

    /// The CAS path of the blob holding `out/<rel>`'s current bytes.
    fn blob_of(&self, rel: &str) -> PathBuf {
        let bytes = std::fs::read(self.root().join(rel)).unwrap();
        let hex = sha256_hex(&bytes);
        self.cache().join("cas").join(&hex[..2]).join(&hex)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    kiln::digest::Digest::of(bytes).hex()
}

fn ran(out: &Run) -> BTreeSet<String> {
    out.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["ran"].as_array().unwrap().clone())
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn cached(out: &Run) -> u64 {
    out.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["actions_cached"].as_u64().unwrap())
        .sum()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Flips one bit in the middle of a file, keeping its size (only the digest can tell).
fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn warnings(out: &Run) -> Vec<String> {
    out.stderr_text()
        .lines()
        .filter(|l| l.starts_with("kiln: warning:"))
        .map(str::to_string)
        .collect()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// Makes every file in the cache look unused for an hour.
fn age_cache(cache: &Path) {
    let then = SystemTime::now() - Duration::from_secs(3600);
    for f in files(cache) {
        if let Ok(file) = std::fs::File::open(&f) {
            file.set_modified(then).unwrap();
        }
    }
}

#[test]
fn a_flipped_byte_in_a_cached_object_is_caught_and_only_its_action_reruns() {
    let ws = Workspace::engine();
    ws.build(&["--no-images"]);
    let cxx = ws.blob_of("out/obj/greet/greet/src/greet.cpp.o");
    let ada = ws.blob_of("out/obj/shapes/shapes.o");
    let (cxx_digest, ada_digest) = (
        format!("sha256:{}", cxx.file_name().unwrap().to_string_lossy()),
        format!("sha256:{}", ada.file_name().unwrap().to_string_lossy()),
    );
    flip_byte(&cxx);
    flip_byte(&ada);

    ws.clean();
    let out = ws.build(&["--no-images"]);
    // Exactly the two damaged actions reran; everything after them matched and was restored.
    assert_eq!(
        ran(&out),
        set(&[
            "greet compile greet/src/greet.cpp",
            "shapes compile shapes/shapes.adb"
        ]),
        "{}",
        out.stderr_text()
    );
    let w = warnings(&out);
    assert_eq!(w.len(), 2, "one warning per damaged blob: {w:?}");
    assert!(
        w.iter()
            .any(|l| l.contains(&cxx_digest) && l.contains("is damaged")),
        "{w:?}"
    );
    assert!(w.iter().any(|l| l.contains(&ada_digest)), "{w:?}");
    assert_eq!(
        out.json()["cache"]["damaged"].as_array().unwrap().len(),
        2,
        "--json lists the damaged blobs"
    );
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");

    // The rerun stored good bytes again: the cache is whole, and the next restore is silent.
    let v = ws.pinned_kiln().run(["cache", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", v.stderr_text());
    ws.clean();
    let out = ws.build(&["--no-images"]);
    assert_eq!(ran(&out), set(&[]));
    assert!(warnings(&out).is_empty(), "{}", out.stderr_text());
}

#[test]
fn a_damaged_cached_layer_is_rewritten_and_the_image_keeps_its_digest() {
    let ws = Workspace::engine();
    ws.build(&["hello"]);
    let index = std::fs::read(ws.path("out/images/hello/index.json")).unwrap();
    let layers: Vec<PathBuf> = files(&ws.cache().join("layers"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert!(!layers.is_empty());
    // The largest layer: the runtime, shared by every C++ service.
    let victim = layers
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let facts: serde_json::Value = serde_json::from_slice(
        &std::fs::read(victim.to_string_lossy().replace(".tar.gz", ".json")).unwrap(),
    )
    .unwrap();
    let digest = facts["digest"].as_str().unwrap().to_string();
    flip_byte(victim);

    ws.clean();
    let out = ws.build(&["hello"]);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(&digest), "{w:?}");
    assert_eq!(
        std::fs::read(ws.path("out/images/hello/index.json")).unwrap(),
        index,
        "the rewritten layer has the bytes it had"
    );
    let blob = ws
        .root()
        .join("out/images/hello/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert_eq!(
        format!("sha256:{}", sha256_hex(&std::fs::read(blob).unwrap())),
        digest
    );
}

#[test]
fn cache_verify_removes_damaged_blobs_and_bad_entries_and_says_which() {
    let ws = Workspace::engine();
    ws.build(&["--no-images"]);
    let blob = ws.blob_of("out/obj/greet/greet/src/format.cpp.o");
    flip_byte(&blob);
    let entries: Vec<PathBuf> = files(&ws.cache().join("ac"));
    assert_eq!(entries.len(), 13);
    let blobs = files(&ws.cache().join("cas")).len();
    std::fs::write(&entries[0], b"{\"deps\": [").unwrap();

    let out = ws.pinned_kiln().run(["cache", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let report = out.json();
    let removed: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    let rel = |p: &Path| {
        p.strip_prefix(ws.cache())
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert!(removed.contains(&rel(&blob)), "{removed:?}");
    assert!(removed.contains(&rel(&entries[0])), "{removed:?}");
    assert!(!blob.exists() && !entries[0].exists());
    // The entry that named the damaged blob went too (unless it was the one made unparsable).
    assert!(removed.len() >= 2 && removed.len() <= 3, "{removed:?}");
    assert_eq!(report["blobs"].as_u64(), Some(blobs as u64), "{report}");

    // Human output names each removal; a second run finds a whole cache.
    let again = ws.pinned_kiln().run(["cache", "verify"]);
    assert_eq!(again.status.code(), Some(0), "{}", again.stderr_text());
    assert!(
        again
            .stderr_text()
            .contains(&format!("checked {} blobs", blobs - 1)),
        "{}",
        again.stderr_text()
    );

    // The next build reruns what was removed, silently (the damage is already gone).
    ws.clean();
    let out = ws.build(&["--no-images"]);
    assert!(ran(&out).contains("greet compile greet/src/format.cpp"));
    assert!(warnings(&out).is_empty(), "{}", out.stderr_text());
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
}

#[test]
fn gc_to_zero_empties_the_cache_but_spares_recent_use_unless_told_otherwise() {
    let ws = Workspace::engine();
    ws.build(&["--no-images"]);
    // Everything was used a moment ago: the default grace period keeps it all.
    let out = ws
        .pinned_kiln()
        .run(["cache", "gc", "--max-size", "0", "--json"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let r = out.json();
    assert_eq!(r["removed_items"], 0, "{r}");
    assert_eq!(r["protected_items"], r["kept_items"], "{r}");

    let items = files(&ws.cache().join("cas")).len() + files(&ws.cache().join("ac")).len();
    let out = ws
        .pinned_kiln()
        .run(["cache", "gc", "--max-size", "0", "--grace", "0s"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains(&format!("kiln: cache gc: removed {items} item(s)")),
        "{}",
        out.stderr_text()
    );
    let stats = ws.pinned_kiln().run(["cache", "stats", "--json"]).json();
    assert_eq!(stats["blobs"], 0, "{stats}");
    assert_eq!(stats["action_entries"], 0, "{stats}");

    ws.clean();
    let out = ws.build(&["--no-images"]);
    assert_eq!(ran(&out).len(), 13);
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
}

#[test]
fn a_configured_max_size_removes_the_least_recently_used_after_a_build() {
    let ws = Workspace::engine();
    let cold = ran(&ws.build(&["--no-images"]));
    let ada: BTreeSet<String> = cold
        .iter()
        .filter(|id| id.starts_with("shapes") || id.starts_with("geometry"))
        .cloned()
        .collect();
    age_cache(ws.cache());
    std::fs::write(ws.cache().join("config.toml"), "max_size = \"1kB\"\n").unwrap();

    // Restoring hello (and greet) marks their entries and blobs used; the Ada ones stay old.
    ws.clean();
    let out = ws.build(&["hello", "--no-images"]);
    let cxx = cached(&out);
    assert_eq!(
        cxx as usize,
        cold.len() - ada.len(),
        "{}",
        out.stderr_text()
    );
    let err = out.stderr_text();
    assert!(
        err.contains("kiln: cache over its limits: removed "),
        "{err}"
    );
    assert!(
        err.contains("only because they were used within the grace period"),
        "{err}"
    );

    // The Ada results were the least recently used: they, and only they, are gone.
    ws.clean();
    let out = ws.build(&["--no-images"]);
    assert_eq!(ran(&out), ada);
    assert_eq!(cached(&out), cxx);
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
}

#[test]
fn a_bad_cache_config_is_a_usage_error_with_its_position() {
    let ws = Workspace::engine();
    std::fs::create_dir_all(ws.cache()).unwrap();
    std::fs::write(
        ws.cache().join("config.toml"),
        "max_age = \"a fortnight\"\n",
    )
    .unwrap();
    let out = ws.pinned_kiln().run(["build", "--no-images"]);
    assert_eq!(out.status.code(), Some(2));
    let err = out.stderr_text();
    assert!(
        err.contains("config.toml:1:11: `max_age` must be a duration"),
        "{err}"
    );
    assert!(!ws.path("out/bin").exists(), "it built before checking");

    std::fs::remove_file(ws.cache().join("config.toml")).unwrap();
    let out = ws
        .pinned_kiln()
        .env("KILN_CACHE_MAX_SIZE", "huge")
        .run(["build", "--no-images"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("KILN_CACHE_MAX_SIZE=\"huge\" is not a size"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn stats_report_the_hit_rate_of_the_last_builds() {
    let ws = Workspace::engine();
    ws.build(&["--no-images"]);
    ws.clean();
    ws.build(&["--no-images"]);
    ws.build(&["--no-images"]); // all fresh: no lookup
    let last = ws
        .pinned_kiln()
        .run(["cache", "stats", "--json", "--builds", "2"])
        .json();
    assert_eq!(last["hit_rate"], 1.0, "{last}");
    assert_eq!(last["recent"]["fresh"], 13, "{last}");
    let all = ws.pinned_kiln().run(["cache", "stats", "--json"]).json();
    assert_eq!(all["builds"], 3);
    assert_eq!(all["hit_rate"], 0.5, "{all}");
    assert_eq!(all["action_entries"], 13);
    assert!(all["size"].as_u64().unwrap() > 0);
    let text = ws.pinned_kiln().run(["cache", "stats"]);
    let shown = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        shown.contains("hit rate: 50.0% over the last 3 build(s)"),
        "{shown}"
    );
    assert!(shown.contains("13 action entries"), "{shown}");
}
