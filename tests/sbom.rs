//! SBOMs and provenance of real images, checked by tools that are not kiln: the official JSON
//! schemas (via scripts/validate-sbom.py: jsonschema, lib4sbom's schema copies, spdx-tools),
//! python-debian for the status.d records, dpkg-query for what they should say, the layer
//! tarballs themselves for what the image holds, and the real registry for referrers.
//!
//! One build of fixtures/engine (in a git repository with a pinned commit, so the source
//! revision is real) is shared by the tests that only read it; the determinism test builds its
//! own copy elsewhere with its own cache.
//!
//! Needs: python3 with `pip install jsonschema lib4sbom python-debian spdx-tools`,
//! dpkg-query, docker-registry.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::kiln::Run;
use support::registry_server;
use support::workspace::Workspace;

const SERVICES: &[&str] = &["geometry", "hello"];
const SDE: &str = "1700000000";
const SDE_RFC3339: &str = "2023-11-14T22:13:20Z";

fn git(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        // A pinned identity and date make the commit hash the same in every copy.
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
        .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// fixtures/engine alone, at `<tmp>/<dir>`, committed to a fresh git repository.
fn committed(dir: &str) -> Workspace {
    let ws = Workspace::fixture_at("engine", dir);
    git(ws.root(), &["init", "-q"]);
    git(ws.root(), &["add", "-A"]);
    git(ws.root(), &["commit", "-q", "-m", "fixture"]);
    ws
}

impl Workspace {
    /// kiln with a pinned SOURCE_DATE_EPOCH and no source URL from the environment; it must
    /// succeed.
    fn kiln_ok(&self, args: &[&str]) -> Run {
        self.kiln()
            .env("SOURCE_DATE_EPOCH", SDE)
            .env_remove("KILN_SOURCE_URL")
            .run(args)
            .ok("kiln")
    }

    fn json(&self, rel: &str) -> Value {
        let p = self.root().join(rel);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn spdx(&self, service: &str) -> Value {
        self.json(&format!("out/sbom/{service}.spdx.json"))
    }

    fn cdx(&self, service: &str) -> Value {
        self.json(&format!("out/sbom/{service}.cdx.json"))
    }

    fn provenance(&self, service: &str) -> Value {
        self.json(&format!("out/provenance/{service}.intoto.json"))
    }

    /// The manifest digest in `out/images/<service>/index.json`.
    fn manifest_digest(&self, service: &str) -> String {
        let index = self.json(&format!("out/images/{service}/index.json"));
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The shared build, made once per test binary.
fn built() -> &'static Workspace {
    static WS: OnceLock<Workspace> = OnceLock::new();
    WS.get_or_init(|| {
        let ws = committed("ws");
        ws.kiln_ok(&["build", "-j2"]);
        ws
    })
}

fn validator() -> Command {
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/validate-sbom.py"));
    c
}

fn run_validator(args: &[&Path], sub: &str) -> String {
    let out =
        validator().arg(sub).args(args).output().expect(
            "python3 runs (install: pip install jsonschema lib4sbom python-debian spdx-tools)",
        );
    assert!(
        out.status.success(),
        "validate-sbom.py {sub} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every regular file of every layer of the image, last layer wins: path -> (sha256, bytes).
fn layer_files(ws: &Workspace, service: &str) -> BTreeMap<String, (String, Vec<u8>)> {
    let layout = ws.path("out/images").join(service);
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&ws.manifest_digest(service))).unwrap())
            .unwrap();
    let mut files = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let f = std::fs::File::open(blob(layer["digest"].as_str().unwrap())).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = format!(
                "/{}",
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_start_matches('/')
            );
            if e.header().entry_type() != tar::EntryType::Regular {
                files.remove(&path);
                continue;
            }
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            let sha = kiln::digest::Digest::of(&bytes).hex();
            files.insert(path, (sha, bytes));
        }
    }
    files
}

#[test]
fn sboms_validate_against_the_official_schemas() {
    let ws = built();
    let mut paths = Vec::new();
    for s in SERVICES {
        paths.push(ws.root().join(format!("out/sbom/{s}.spdx.json")));
        paths.push(ws.root().join(format!("out/sbom/{s}.cdx.json")));
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = run_validator(&refs, "schema");
    assert_eq!(
        out.lines().filter(|l| l.contains(": valid ")).count(),
        4,
        "{out}"
    );
}

#[test]
fn every_file_in_every_layer_is_covered_by_a_component() {
    let ws = built();
    for service in SERVICES {
        let files = layer_files(ws, service);
        assert!(
            files.contains_key("/etc/passwd"),
            "{service}: {:?}",
            files.keys()
        );

        // SPDX: each file listed with its SHA256 and contained by some package.
        let spdx = ws.spdx(service);
        let mut by_path = BTreeMap::new();
        for f in spdx["files"].as_array().unwrap() {
            let name = f["fileName"].as_str().unwrap();
            let sha = f["checksums"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["algorithm"] == "SHA256")
                .unwrap()["checksumValue"]
                .as_str()
                .unwrap();
            by_path.insert(
                name.strip_prefix('.').unwrap().to_string(),
                (sha.to_string(), f["SPDXID"].as_str().unwrap().to_string()),
            );
        }
        let contained: BTreeSet<&str> = spdx["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .map(|r| r["relatedSpdxElement"].as_str().unwrap())
            .collect();
        for (path, (sha, _)) in &files {
            let (spdx_sha, id) = by_path
                .get(path)
                .unwrap_or_else(|| panic!("{service}: {path} is not in the SPDX document"));
            assert_eq!(spdx_sha, sha, "{service}: {path}");
            assert!(
                contained.contains(id.as_str()),
                "{service}: nothing CONTAINS {path}"
            );
        }
        assert_eq!(
            by_path.len(),
            files.len(),
            "{service}: SPDX lists files not in the image"
        );

        // CycloneDX: each file a `file` component somewhere in the tree, with its SHA-256.
        let cdx = ws.cdx(service);
        let mut cdx_files = BTreeMap::new();
        let mut stack: Vec<&Value> = cdx["components"].as_array().unwrap().iter().collect();
        while let Some(c) = stack.pop() {
            if c["type"] == "file" {
                let sha = c["hashes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|h| h["alg"] == "SHA-256")
                    .unwrap()["content"]
                    .as_str()
                    .unwrap();
                let prev = cdx_files.insert(c["name"].as_str().unwrap(), sha);
                assert!(prev.is_none(), "{service}: {} listed twice", c["name"]);
            }
            if let Some(children) = c["components"].as_array() {
                stack.extend(children);
            }
        }
        for (path, (sha, _)) in &files {
            assert_eq!(
                cdx_files.get(path.as_str()).copied(),
                Some(sha.as_str()),
                "{service}: {path} in CycloneDX"
            );
        }
        assert_eq!(cdx_files.len(), files.len());

        // The image is the root of both, by manifest digest.
        let digest = ws.manifest_digest(service);
        let hex = &digest["sha256:".len()..];
        assert_eq!(
            spdx["documentDescribes"],
            serde_json::json!(["SPDXRef-Image"])
        );
        assert_eq!(spdx["packages"][0]["checksums"][0]["checksumValue"], hex);
        assert_eq!(spdx["creationInfo"]["created"], SDE_RFC3339);
        assert_eq!(cdx["metadata"]["component"]["hashes"][0]["content"], hex);
        assert_eq!(cdx["metadata"]["timestamp"], SDE_RFC3339);
    }
}

/// `(Package, Version, Architecture, source package)` as the host's dpkg has it.
fn dpkg_query(package: &str) -> (String, String, String, String) {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture} ${source:Package}\n",
            package,
        ])
        .output()
        .expect("dpkg-query runs");
    assert!(out.status.success(), "dpkg-query {package}");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
    (f[0].into(), f[1].into(), f[2].into(), f[3].into())
}

#[test]
fn status_d_records_round_trip_through_python_debian_and_match_dpkg() {
    let ws = built();
    let dir = tempfile::tempdir().unwrap();
    for service in SERVICES {
        let files = layer_files(ws, service);
        let mut paths = Vec::new();
        for (path, (_, bytes)) in &files {
            if let Some(name) = path.strip_prefix("/var/lib/dpkg/status.d/") {
                let p = dir.path().join(format!("{service}-{name}"));
                std::fs::write(&p, bytes).unwrap();
                paths.push(p);
            }
        }
        assert!(paths.len() >= 2, "{service}: status.d records {paths:?}");
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let parsed: Vec<Value> =
            serde_json::from_str(&run_validator(&refs, "deb822")).expect("deb822 prints JSON");

        let sbom_packages: BTreeMap<String, (String, String)> = ws.cdx(service)["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["publisher"] == "Debian")
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    (
                        c["version"].as_str().unwrap().to_string(),
                        c["purl"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        assert_eq!(sbom_packages.len(), parsed.len(), "{service}");
        for rec in &parsed {
            let pkg = rec["Package"].as_str().unwrap();
            let (name, version, arch, source) = dpkg_query(pkg);
            assert_eq!(rec["Package"], name.as_str());
            assert_eq!(rec["Version"], version.as_str(), "{pkg}");
            assert_eq!(rec["Architecture"], arch.as_str(), "{pkg}");
            assert_eq!(rec["Status"], "install ok installed", "{pkg}");
            // dpkg writes `Source: name (version)` when the versions differ.
            let rec_source = rec["Source"]
                .as_str()
                .map_or(pkg, |s| s.split(" (").next().unwrap());
            assert_eq!(rec_source, source, "{pkg}");
            let (sbom_version, purl) = &sbom_packages[pkg];
            assert_eq!(sbom_version, &version, "{pkg}");
            assert!(
                purl.starts_with("pkg:deb/debian/") && purl.contains(&format!("arch={arch}")),
                "{purl}"
            );
            assert!(purl.contains("distro=debian-12"), "{purl}");
            if source != name {
                assert!(purl.contains(&format!("upstream={source}")), "{purl}");
            }
        }
    }
}

#[test]
fn provenance_names_the_image_its_inputs_and_toolchains() {
    let ws = built();
    let revision = git(ws.root(), &["rev-parse", "HEAD"]);
    let expected_toolchains = [("geometry", "gnat"), ("hello", "gcc")];
    for (service, toolchain) in expected_toolchains {
        let st = ws.provenance(service);
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
        let digest = ws.manifest_digest(service);
        assert_eq!(st["subject"][0]["name"], service);
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            &digest["sha256:".len()..]
        );
        let def = &st["predicate"]["buildDefinition"];
        assert!(def["buildType"].as_str().unwrap().starts_with("https://"));
        assert_eq!(def["externalParameters"]["service"], service);
        assert_eq!(
            def["externalParameters"]["source"]["revision"],
            revision.as_str()
        );
        let toolchains = def["internalParameters"]["toolchains"].as_object().unwrap();
        assert_eq!(
            toolchains.keys().collect::<Vec<_>>(),
            vec![toolchain],
            "{service}"
        );
        for fp in toolchains.values() {
            fp.as_str()
                .unwrap()
                .parse::<kiln::digest::Digest>()
                .expect("a fingerprint is a sha256 digest");
        }
        let deps = def["resolvedDependencies"].as_array().unwrap();
        assert!(deps
            .iter()
            .any(|d| d["digest"]["gitCommit"] == revision.as_str()));
        let recipe = format!("recipes/{service}.toml");
        let recipe_sha = kiln::digest::Digest::of(&std::fs::read(ws.root().join(&recipe)).unwrap());
        assert!(
            deps.iter()
                .any(|d| d["name"] == recipe.as_str() && d["digest"]["sha256"] == recipe_sha.hex()),
            "{service}: {recipe} not among {deps:?}"
        );
        assert!(deps.iter().any(|d| d["uri"]
            .as_str()
            .unwrap_or("")
            .starts_with("pkg:deb/debian/libc6@")));
        let builder = st["predicate"]["runDetails"]["builder"]["id"]
            .as_str()
            .unwrap();
        assert!(
            builder.starts_with("https://kiln.dev/builder@"),
            "{builder}"
        );
        // The SBOMs are byproducts, bound by digest.
        let spdx = std::fs::read(ws.root().join(format!("out/sbom/{service}.spdx.json"))).unwrap();
        assert!(st["predicate"]["runDetails"]["byproducts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["digest"]["sha256"] == kiln::digest::Digest::of(&spdx).hex()));
    }
}

fn outputs(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for s in SERVICES {
        for rel in [
            format!("out/sbom/{s}.spdx.json"),
            format!("out/sbom/{s}.cdx.json"),
            format!("out/provenance/{s}.intoto.json"),
        ] {
            m.insert(rel.clone(), std::fs::read(ws.root().join(&rel)).unwrap());
        }
    }
    m
}

#[test]
fn rebuilding_elsewhere_after_clean_gives_identical_bytes() {
    let first = outputs(built());
    // A different directory name and an empty cache: nothing may leak the path or reuse state.
    let other = committed("elsewhere");
    other.kiln_ok(&["build", "-j2"]);
    other.kiln_ok(&["clean"]);
    assert!(
        !other.path("out/sbom").exists(),
        "kiln clean keeps out/sbom"
    );
    other.kiln_ok(&["build", "-j2"]);
    let second = outputs(&other);
    for (rel, bytes) in &first {
        assert!(
            bytes == &second[rel],
            "{rel} differs between builds:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&second[rel])
        );
    }
}

#[test]
fn push_attaches_the_three_documents_as_referrers() {
    let ws = built();
    let reg = registry_server::start(registry_server::Mode::Plain);
    ws.kiln_ok(&["push", "--to", &format!("{}/test", reg.addr)]);
    let opts = reg.options("test");
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: &str, accept: &str| {
        let resp = http
            .get(format!("http://{}/v2/{path}", reg.addr))
            .header("Accept", accept)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.bytes().unwrap().to_vec()
    };
    for service in SERVICES {
        let subject: kiln::digest::Digest = ws.manifest_digest(service).parse().unwrap();
        let refs = kiln::registry::list_referrers(&opts, service, &subject, None).unwrap();
        let types: BTreeSet<&str> = refs
            .iter()
            .map(|d| d.artifact_type.as_deref().unwrap())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from([
                "application/spdx+json",
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ]),
            "{service}"
        );
        assert_eq!(refs.len(), 3, "{service}: {refs:?}");
        for d in &refs {
            assert_eq!(
                d.annotations["org.opencontainers.image.created"], SDE_RFC3339,
                "{service}"
            );
            let manifest: Value = serde_json::from_slice(&get(
                &format!("test/{service}/manifests/{}", d.digest),
                "application/vnd.oci.image.manifest.v1+json",
            ))
            .unwrap();
            assert_eq!(manifest["subject"]["digest"], subject.to_string());
            let layer = manifest["layers"][0]["digest"].as_str().unwrap();
            let content = get(&format!("test/{service}/blobs/{layer}"), "*/*");
            let file = match d.artifact_type.as_deref().unwrap() {
                "application/spdx+json" => format!("out/sbom/{service}.spdx.json"),
                "application/vnd.cyclonedx+json" => format!("out/sbom/{service}.cdx.json"),
                _ => format!("out/provenance/{service}.intoto.json"),
            };
            assert!(
                content == std::fs::read(ws.root().join(&file)).unwrap(),
                "{service}: pushed {file} differs from out/"
            );
        }
    }
}
