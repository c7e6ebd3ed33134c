//! `kiln test`: tests are build targets, run through the cache, reported as JUnit XML.

mod support;

use support::workspace::Workspace;

#[test]
fn tests_run_once_then_come_from_the_cache_unless_asked() {
    let ws = Workspace::engine();
    let out = ws.kiln().run(["test"]);
    out.assert_ok("kiln test");
    assert_eq!(out.stdout_text().trim(), "2 passed, 0 failed");

    // JUnit XML for CI: gtest's own report, and one kiln writes for an exit-code test.
    let gtest = std::fs::read_to_string(ws.path("out/test-results/greet-test.xml")).unwrap();
    assert!(
        gtest.contains("<testsuites")
            && gtest.contains("tests=\"2\"")
            && gtest.contains("DecoratesTheName"),
        "{gtest}"
    );
    let ada = std::fs::read_to_string(ws.path("out/test-results/shapes-test.xml")).unwrap();
    assert!(
        ada.contains("<testcase classname=\"shapes-test\"")
            && ada.contains("shapes: ok")
            && ada.contains("failures=\"0\""),
        "{ada}"
    );

    let again = ws.kiln().run(["test", "--json"]).json();
    assert!(
        again["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["cached"] == true),
        "{again}"
    );
    let forced = ws.kiln().run(["test", "--json", "--rerun"]).json();
    assert!(
        forced["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["cached"] == false && t["passed"] == true),
        "{forced}"
    );

    // Changing the library under test makes its test run again, and only that test.
    let f = ws.path("greet/src/format.cpp");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("\">\"", "\"> \""),
    )
    .unwrap();
    let changed = ws.kiln().run(["test", "--json"]).json();
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
    let ws = Workspace::engine();
    let f = ws.path("tests/shapes_test.adb");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("= 3.0", "= 4.0"),
    )
    .unwrap();
    for _ in 0..2 {
        let out = ws.kiln().run(["test", "shapes-test"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stderr_text().contains("shapes: wrong area"));
        assert_eq!(out.stdout_text().trim(), "0 passed, 1 failed");
    }
    let xml = std::fs::read_to_string(ws.path("out/test-results/shapes-test.xml")).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
}

#[test]
fn naming_a_service_is_a_usage_error() {
    let ws = Workspace::engine();
    assert_eq!(ws.kiln().run(["test", "hello"]).status.code(), Some(2));
}
