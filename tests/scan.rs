//! `kiln scan`, `kiln push --scan-db` and `kiln resolve` on a real kiln-built image: the engine
//! fixture's `hello` (C++ on wxBase, so glibc, gcc-12, pcre2, zlib with its epoch are in it),
//! scanned against small OSV databases the tests write from the packages its SBOM lists — a
//! fixed and an unfixed vulnerability in packages it has, one in a package it does not have, a
//! withdrawn one, and epoch and tilde comparisons — then pushed to the real registry and the
//! manifests resolved to what the registry holds (checked with skopeo).
//!
//! Needs: g++, wxBase, docker-registry, skopeo.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::{json, Value};
use support::kiln::Kiln;
use support::registry_server;
use support::workspace::Workspace;

impl Workspace {
    /// kiln with a pinned SOURCE_DATE_EPOCH, so image bytes do not depend on the clock.
    fn pinned_kiln(&self) -> Kiln {
        self.kiln().env("SOURCE_DATE_EPOCH", "1700000000")
    }

    fn path_str(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }
}

/// One build of `hello` shared by every test; the tests take turns, since each scan rewrites
/// out/scan/ and pushes rewrite out/pushed.json.
fn built() -> MutexGuard<'static, Workspace> {
    static WS: OnceLock<Mutex<Workspace>> = OnceLock::new();
    WS.get_or_init(|| {
        let ws = Workspace::engine();
        ws.pinned_kiln()
            .run(["build", "hello", "-j2"])
            .assert_ok("kiln build hello");
        Mutex::new(ws)
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

/// (binary name, source name, source version) of the Debian packages in hello's SBOM.
fn packages(ws: &Workspace) -> Vec<(String, String, String)> {
    let cdx: Value =
        serde_json::from_slice(&std::fs::read(ws.path("out/sbom/hello.cdx.json")).unwrap())
            .unwrap();
    cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let prop = |n: &str| {
                c["properties"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == n)?["value"]
                    .as_str()
                    .map(String::from)
            };
            Some((
                c["name"].as_str()?.to_string(),
                prop("kiln:deb:source")?,
                prop("kiln:deb:source-version")?,
            ))
        })
        .collect()
}

fn source_version(pkgs: &[(String, String, String)], source: &str) -> String {
    pkgs.iter()
        .find(|p| p.1 == source)
        .unwrap_or_else(|| panic!("hello's image has no package from source {source}: {pkgs:?}"))
        .2
        .clone()
}

fn record(id: &str, source: &str, events: Value, extra: Value) -> Value {
    let mut r = json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": "2001-01-01T00:00:00Z",
        "summary": format!("{id} in {source}"),
        "affected": [{
            "package": { "ecosystem": "Debian:12", "name": source },
            "ranges": [{ "type": "ECOSYSTEM", "events": events }],
        }],
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"; // 9.8
const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"; // 7.5

/// The fixture database: which records must and must not match is in each comment.
fn database(ws: &Workspace) -> Vec<(String, Value)> {
    let pkgs = packages(ws);
    let glibc = source_version(&pkgs, "glibc");
    let gcc = source_version(&pkgs, "gcc-12");
    let zlib = source_version(&pkgs, "zlib");
    assert!(
        zlib.starts_with("1:"),
        "zlib carries an epoch in Debian 12: {zlib}"
    );
    let cvss = |v: &str| json!({ "severity": [{ "type": "CVSS_V3", "score": v }] });
    vec![
        // Fixed in a later glibc: a CRITICAL finding with a fix, which fails the scan.
        (
            "glibc-fixed.json".into(),
            record(
                "DEBIAN-CVE-2099-0001",
                "glibc",
                json!([{ "introduced": "0" }, { "fixed": format!("{glibc}+kiln1") }]),
                json!({ "aliases": ["CVE-2099-0001"], "severity": [{ "type": "CVSS_V3", "score": CRITICAL }] }),
            ),
        ),
        // No fix yet in pcre2: reported, but cannot fail the scan.
        (
            "pcre2-unfixed.json".into(),
            record(
                "DEBIAN-CVE-2099-0002",
                "pcre2",
                json!([{ "introduced": "0" }]),
                cvss(HIGH),
            ),
        ),
        // A package the image does not have.
        (
            "openssl.json".into(),
            record(
                "DEBIAN-CVE-2099-0003",
                "openssl",
                json!([{ "introduced": "0" }, { "fixed": "99.0" }]),
                cvss(CRITICAL),
            ),
        ),
        // Withdrawn: ignored.
        (
            "withdrawn.json".into(),
            record(
                "DEBIAN-CVE-2099-0004",
                "glibc",
                json!([{ "introduced": "0" }, { "fixed": format!("{glibc}+kiln1") }]),
                json!({ "withdrawn": "2001-01-02T00:00:00Z", "severity": [{ "type": "CVSS_V3", "score": CRITICAL }] }),
            ),
        ),
        // The fix has no epoch, so it is epoch 0: older than the installed 1:… version.
        (
            "zlib-epoch.json".into(),
            record(
                "DEBIAN-CVE-2099-0005",
                "zlib",
                json!([{ "introduced": "0" }, { "fixed": format!("{}+deb12u9", zlib.trim_start_matches("1:")) }]),
                cvss(CRITICAL),
            ),
        ),
        // `~pre1` sorts before the installed version: already fixed.
        (
            "glibc-tilde.json".into(),
            record(
                "DEBIAN-CVE-2099-0006",
                "glibc",
                json!([{ "introduced": "0" }, { "fixed": format!("{glibc}~pre1") }]),
                cvss(CRITICAL),
            ),
        ),
        // Fixed in a `+deb12u99~1` upload, which is after the installed one; LOW by Debian's label.
        (
            "gcc-low.json".into(),
            record(
                "DEBIAN-CVE-2099-0007",
                "gcc-12",
                json!([{ "introduced": "0" }, { "fixed": format!("{gcc}+deb12u99~1") }]),
                json!({ "database_specific": { "severity": "low" } }),
            ),
        ),
        // Fixed in exactly the installed version.
        (
            "glibc-same.json".into(),
            record(
                "DEBIAN-CVE-2099-0008",
                "glibc",
                json!([{ "introduced": "0" }, { "fixed": glibc }]),
                cvss(CRITICAL),
            ),
        ),
    ]
}

fn write_db(dir: &Path, records: &[(String, Value)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, r) in records {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(r).unwrap()).unwrap();
    }
    dir.to_path_buf()
}

fn write_zip(path: &Path, records: &[(String, Value)]) -> PathBuf {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, r) in records {
        z.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, &serde_json::to_vec(r).unwrap()).unwrap();
    }
    z.finish().unwrap();
    path.to_path_buf()
}

fn report(ws: &Workspace) -> Value {
    serde_json::from_slice(&std::fs::read(ws.path("out/scan/scan.json")).unwrap()).unwrap()
}

/// (id, binary package, severity, fixed?) of every finding.
fn findings(r: &Value) -> BTreeSet<(String, String, String, bool)> {
    r["images"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["package"]["name"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["fixed"].is_string(),
            )
        })
        .collect()
}

fn allowlist(dir: &Path, expires: &str) -> String {
    let p = dir.join(format!("allow-{expires}.toml"));
    std::fs::write(
        &p,
        format!("# accepted after review\n[[allow]]\nid = \"CVE-2099-0001\"\npackage = \"glibc\"\nexpires = \"{expires}\"\nreason = \"the fixture's own vulnerability\"\n"),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn scan_finds_exactly_the_affected_packages_and_fails_only_on_fixable_ones() {
    let ws = built();
    let tmp = tempfile::tempdir().unwrap();
    let records = database(&ws);
    let db = write_db(&tmp.path().join("db"), &records);
    let db = db.to_str().unwrap();

    let out = ws.pinned_kiln().run(["scan", "hello", "--db", db]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("days old"),
        "a 2001 database is old: {}",
        out.stderr_text()
    );
    let r = report(&ws);
    let got = findings(&r);
    let libc = packages(&ws)
        .into_iter()
        .filter(|p| p.1 == "gcc-12")
        .map(|p| p.0)
        .collect::<Vec<_>>();
    assert!(!libc.is_empty());
    let mut want: BTreeSet<_> = [(
        "DEBIAN-CVE-2099-0001".to_string(),
        "libc6".to_string(),
        "CRITICAL".to_string(),
        true,
    )]
    .into();
    for p in packages(&ws).iter().filter(|p| p.1 == "pcre2") {
        want.insert((
            "DEBIAN-CVE-2099-0002".into(),
            p.0.clone(),
            "HIGH".into(),
            false,
        ));
    }
    for b in &libc {
        want.insert(("DEBIAN-CVE-2099-0007".into(), b.clone(), "LOW".into(), true));
    }
    assert_eq!(got, want);
    let glibc = &r["images"][0]["findings"][0];
    assert_eq!(glibc["score"], 9.8);
    assert_eq!(glibc["fails"], true);
    assert!(glibc["fixed"].as_str().unwrap().ends_with("+kiln1"));

    // SARIF: one result per finding, a rule per id with GitHub's security-severity.
    let sarif: Value =
        serde_json::from_slice(&std::fs::read(ws.path("out/scan/scan.sarif")).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), want.len());
    let rule = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "DEBIAN-CVE-2099-0001")
        .unwrap();
    assert_eq!(rule["properties"]["security-severity"], "9.8");
    assert_eq!(run["results"][0]["level"], "error");

    // The same records in a zip give the same report, byte for byte.
    let before = std::fs::read(ws.path("out/scan/scan.json")).unwrap();
    let z = write_zip(&tmp.path().join("all.zip"), &records);
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", z.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        std::fs::read(ws.path("out/scan/scan.json")).unwrap(),
        before
    );

    // Below the threshold the fixable LOW finding does not fail; with --fail-on low it does.
    let live = allowlist(tmp.path(), "2999-12-31");
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", db, "--allowlist", &live]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("allowed until 2999-12-31"),
        "{}",
        out.stderr_text()
    );
    let sarif: Value =
        serde_json::from_slice(&std::fs::read(ws.path("out/scan/scan.sarif")).unwrap()).unwrap();
    assert_eq!(
        sarif["runs"][0]["results"][0]["suppressions"][0]["kind"],
        "external"
    );
    let out = ws.pinned_kiln().run([
        "scan",
        "hello",
        "--db",
        db,
        "--allowlist",
        &live,
        "--fail-on",
        "low",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());

    // An expired entry stops applying, and kiln says so.
    let old = allowlist(tmp.path(), "2000-01-01");
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", db, "--allowlist", &old]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_text()
            .contains("allowlist entry for CVE-2099-0001 expired on 2000-01-01"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn fresh_databases_do_not_warn_and_bad_ones_name_the_file() {
    let ws = built();
    let tmp = tempfile::tempdir().unwrap();
    let today = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut records = database(&ws);
    for (_, r) in &mut records {
        r["modified"] = json!(format!("{}T00:00:00Z", today.trim()));
    }
    let db = write_db(&tmp.path().join("fresh"), &records);
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !out.stderr_text().contains("days old"),
        "{}",
        out.stderr_text()
    );

    std::fs::write(db.join("broken.json"), "{ \"id\": \"X\", \"affected\": [ }").unwrap();
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = out.stderr_text();
    assert!(err.contains("broken.json is not an OSV record"), "{err}");
    assert!(err.contains("caused by:"), "{err}");

    let notzip = tmp.path().join("all.zip");
    std::fs::write(&notzip, "not a zip").unwrap();
    let out = ws
        .pinned_kiln()
        .run(["scan", "hello", "--db", notzip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("all.zip is not a zip archive of OSV records"),
        "{}",
        out.stderr_text()
    );

    let out = ws.pinned_kiln().run([
        "scan",
        "hello",
        "--db",
        tmp.path().join("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text().contains("missing"),
        "{}",
        out.stderr_text()
    );

    let bad = tmp.path().join("allow.toml");
    std::fs::write(
        &bad,
        "[[allow]]\nid = \"X\"\nexpires = \"soon\"\nreason = \"r\"\n",
    )
    .unwrap();
    let out = ws.pinned_kiln().run([
        "scan",
        "hello",
        "--db",
        write_db(&tmp.path().join("ok"), &records[..1])
            .to_str()
            .unwrap(),
        "--allowlist",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text().contains("allow.toml:3:11"),
        "{}",
        out.stderr_text()
    );
}

fn skopeo_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)))
}

#[test]
fn push_is_gated_by_the_scan_and_resolve_pins_what_was_pushed() {
    let ws = built();
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_server::start(registry_server::Mode::Plain);
    let to = format!("{}/team", reg.addr);
    let db = write_db(&tmp.path().join("db"), &database(&ws));
    let db = db.to_str().unwrap();

    let out = ws
        .pinned_kiln()
        .run(["push", "hello", "--to", &to, "--scan-db", db]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("nothing pushed"),
        "{}",
        out.stderr_text()
    );
    let probe = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{to}/hello:1.2.3"))
        .output()
        .unwrap();
    assert!(!probe.status.success(), "the gate let the image through");

    let live = allowlist(tmp.path(), "2999-12-31");
    let out = ws.pinned_kiln().run([
        "push",
        "hello",
        "--to",
        &to,
        "--scan-db",
        db,
        "--scan-allowlist",
        &live,
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let pushed: Value =
        serde_json::from_slice(&std::fs::read(ws.path("out/pushed.json")).unwrap()).unwrap();
    let reference = pushed["destinations"][&to]["hello"]
        .as_str()
        .unwrap()
        .to_string();
    let digest = reference.split_once('@').unwrap().1;
    assert_eq!(skopeo_digest(&format!("{to}/hello:1.2.3")), digest);

    // The layout kiln wrote, resolved in place: the registry serves exactly that digest.
    let k8s = ws.path_str("deploy");
    let out = ws.pinned_kiln().run(["k8s", "hello", "-o", &k8s]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let out = ws
        .pinned_kiln()
        .run(["resolve", "-f", &k8s, "--to", &to, "-i"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let base = std::fs::read_to_string(ws.path("deploy/base/hello.yaml")).unwrap();
    assert!(base.contains(&format!("image: \"{reference}\"")), "{base}");
    assert!(!base.contains("kiln://"));
    assert_eq!(skopeo_digest(&reference), digest);

    // Or in one step: push, then resolve what was just pushed.
    let again = ws.path_str("deploy-again");
    assert!(ws
        .pinned_kiln()
        .run(["k8s", "hello", "-o", &again])
        .status
        .success());
    let out = ws.pinned_kiln().run([
        "push",
        "hello",
        "--to",
        &to,
        "--scan-db",
        db,
        "--scan-allowlist",
        &live,
        "--resolve",
        &again,
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        std::fs::read_to_string(ws.path("deploy-again/base/hello.yaml")).unwrap(),
        base
    );

    // A user's file keeps its comments and layout; only the reference changes.
    let user = tmp.path().join("user.yaml");
    let text = "# hand-written\nspec:\n  containers:\n    - name: hello   # the greeter\n      image: kiln://hello\n";
    std::fs::write(&user, text).unwrap();
    let out = ws
        .pinned_kiln()
        .run(["resolve", "-f", user.to_str().unwrap(), "--to", &to]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        text.replace("kiln://hello", &reference)
    );

    // An image never pushed there, and a name that is no service: errors naming them, and
    // the files stay as they were.
    std::fs::write(&user, format!("{text}---\nimage: kiln://geometry\n")).unwrap();
    let out = ws
        .pinned_kiln()
        .run(["resolve", "-f", user.to_str().unwrap(), "--to", &to, "-i"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_text()
            .contains(":7:8: `geometry` was not pushed to"),
        "{}",
        out.stderr_text()
    );
    assert!(std::fs::read_to_string(&user)
        .unwrap()
        .contains("kiln://hello"));
    std::fs::write(&user, "image: kiln://nope\n").unwrap();
    let out = ws
        .pinned_kiln()
        .run(["resolve", "-f", user.to_str().unwrap(), "--to", &to]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("`nope` is not a service of this workspace"),
        "{}",
        out.stderr_text()
    );
}
