//! `kiln test`: tests are build targets, run through the cache, reported as JUnit XML.

#[path = "support/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::path::PathBuf;
use std::process::{Command, Output};

struct Ws {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
}

fn fixture() -> Ws {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture::engine_workspace(tmp.path());
    Ws {
        cache: tmp.path().join("cache"),
        root,
        _tmp: tmp,
    }
}

impl Ws {
    fn kiln(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .current_dir(&self.root)
            .env("KILN_CACHE", &self.cache)
            .env("CI", "1")
            .output()
            .unwrap()
    }
}

fn results(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn tests_run_once_then_come_from_the_cache_unless_asked() {
    let ws = fixture();
    let out = ws.kiln(&["test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2 passed, 0 failed"
    );

    // JUnit XML for CI: gtest's own report, and one kiln writes for an exit-code test.
    let gtest = std::fs::read_to_string(ws.root.join("out/test-results/greet-test.xml")).unwrap();
    assert!(
        gtest.contains("<testsuites")
            && gtest.contains("tests=\"2\"")
            && gtest.contains("DecoratesTheName"),
        "{gtest}"
    );
    let ada = std::fs::read_to_string(ws.root.join("out/test-results/shapes-test.xml")).unwrap();
    assert!(
        ada.contains("<testcase classname=\"shapes-test\"")
            && ada.contains("shapes: ok")
            && ada.contains("failures=\"0\""),
        "{ada}"
    );

    let again = results(&ws.kiln(&["test", "--json"]));
    assert!(
        again["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["cached"] == true),
        "{again}"
    );
    let forced = results(&ws.kiln(&["test", "--json", "--rerun"]));
    assert!(
        forced["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["cached"] == false && t["passed"] == true),
        "{forced}"
    );

    // Changing the library under test makes its test run again, and only that test.
    let f = ws.root.join("greet/src/format.cpp");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("\">\"", "\"> \""),
    )
    .unwrap();
    let changed = results(&ws.kiln(&["test", "--json"]));
    let by_name = |n: &str| {
        changed["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("greet-test")["cached"], false);
    assert_eq!(
        by_name("greet-test")["passed"],
        false,
        "the greeting changed, the test must fail"
    );
    assert_eq!(by_name("shapes-test")["cached"], true);
}

#[test]
fn a_failing_test_exits_1_shows_its_output_and_is_not_cached() {
    let ws = fixture();
    let f = ws.root.join("tests/shapes_test.adb");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("= 3.0", "= 4.0"),
    )
    .unwrap();
    for _ in 0..2 {
        let out = ws.kiln(&["test", "shapes-test"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("shapes: wrong area"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0 passed, 1 failed"
        );
    }
    let xml = std::fs::read_to_string(ws.root.join("out/test-results/shapes-test.xml")).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
}

#[test]
fn naming_a_service_is_a_usage_error() {
    let ws = fixture();
    assert_eq!(ws.kiln(&["test", "hello"]).status.code(), Some(2));
}
