//! Ada as it is written, built with real GNAT through the kiln CLI: subunits, generics and their
//! instantiations, child packages (a private one too), specs without bodies and `pragma No_Body`
//! (fixtures/ada-units), and the unit reader over GNAT's own runtime sources.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use kiln::ada::{self, UnitKind};
use support::workspace::Workspace;

/// A fresh copy of fixtures/ada-units with its own cache.
fn fixture() -> Workspace {
    Workspace::fixture("ada-units")
}

impl Workspace {
    /// Builds the default targets (tests are not among them) and returns the ids of the
    /// actions that ran a command.
    fn build(&self) -> BTreeSet<String> {
        self.build_targets(&[])
    }

    fn build_targets(&self, targets: &[&str]) -> BTreeSet<String> {
        let mut args = vec!["build", "--json", "--no-images", "-j2"];
        args.extend(targets);
        let out = self.kiln().run(&args);
        out.assert_ok("build");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["targets"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["ran"].as_array().unwrap().iter())
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const STATEMENT: &str = "account alice    217\naccount bob      39\nlargest 217\nchecksum 6766\n";

/// What the parent's edit reruns: its compile, then every bind and link above it. Nothing that
/// only `with`s Ledger.Accounts recompiles, since its spec did not change.
const PARENT_AND_LINKS: &[&str] = &[
    "ledger compile ledger/src/ledger-accounts.adb",
    "teller bind",
    "teller compile-binder",
    "teller link",
];

#[test]
fn each_unit_is_compiled_once_and_subunits_only_inside_their_parent() {
    let ws = fixture();
    let ran = ws.build();
    assert_eq!(
        ran,
        set(&[
            // Specs alone: without a body, with a No_Body file, an instantiation, a private child.
            "ledger compile ledger/src/ledger.ads",
            "ledger compile ledger/src/ledger-fees.ads",
            "ledger compile ledger/src/ledger-amount_queue.ads",
            "ledger compile ledger/src/ledger-internal.ads",
            // Bodies, generic or not; the child package's body carries its three subunits.
            "ledger compile ledger/src/ledger-accounts.adb",
            "ledger compile ledger/src/ledger-bounded_queue.adb",
            "ledger compile ledger/src/ledger-generic_max.adb",
            "teller compile teller/teller_main.adb",
            "teller bind",
            "teller compile-binder",
            "teller link",
        ])
    );
    assert_eq!(ws.run_bin("teller"), STATEMENT);
    // A glob over `tests/*.ad?` matched the main's subunit too; it is not compiled.
    assert_eq!(
        ws.build_targets(&["ledger-test"]),
        set(&[
            "ledger-test compile tests/ledger_test.adb",
            "ledger-test bind",
            "ledger-test compile-binder",
            "ledger-test link",
        ])
    );
    let out = ws.kiln().run(["test"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text().trim(), "1 passed, 0 failed");
}

#[test]
fn editing_a_subunit_recompiles_its_parent_and_changes_the_binary() {
    let ws = fixture();
    ws.build();

    ws.edit(
        "ledger/src/ledger-accounts-report.adb",
        "(\"account \"",
        "(\"acct \"",
    );
    assert_eq!(ws.build(), set(PARENT_AND_LINKS));
    assert!(
        ws.run_bin("teller").starts_with("acct alice    217\n"),
        "{}",
        ws.run_bin("teller")
    );

    // A subunit of a subunit: still compiled in (and recorded by) the library-level parent.
    ws.edit(
        "ledger/src/ledger-accounts-audit-checksum.adb",
        "Sum * 31",
        "Sum * 37",
    );
    assert_eq!(ws.build(), set(PARENT_AND_LINKS));
    assert!(
        ws.run_bin("teller").ends_with("checksum 8068\n"),
        "{}",
        ws.run_bin("teller")
    );

    // Both edits undone: the parent's object of the first build comes back from the cache, as
    // its entry lists the subunits with their digests.
    ws.edit(
        "ledger/src/ledger-accounts-report.adb",
        "(\"acct \"",
        "(\"account \"",
    );
    ws.edit(
        "ledger/src/ledger-accounts-audit-checksum.adb",
        "Sum * 37",
        "Sum * 31",
    );
    let ran = ws.build();
    assert!(
        !ran.contains("ledger compile ledger/src/ledger-accounts.adb"),
        "the parent was recompiled: {ran:?}"
    );
    assert_eq!(ws.run_bin("teller"), STATEMENT);
}

#[test]
fn a_no_body_file_given_a_body_is_compiled_instead_of_its_spec() {
    let ws = fixture();
    ws.build();
    ws.write(
        "ledger/src/ledger-fees.ads",
        "package Ledger.Fees is\n   function Fee (A : Amount) return Amount;\n   \
         function After_Fee (A : Amount) return Amount is (A - Fee (A));\nend Ledger.Fees;\n",
    );
    ws.write(
        "ledger/src/ledger-fees.adb",
        "package body Ledger.Fees is\n   function Fee (A : Amount) return Amount is (if A > 100 \
         then 3 else 1);\nend Ledger.Fees;\n",
    );
    let ran = ws.build();
    assert!(
        ran.contains("ledger compile ledger/src/ledger-fees.adb")
            && !ran.contains("ledger compile ledger/src/ledger-fees.ads"),
        "{ran:?}"
    );
    assert!(
        ws.run_bin("teller").starts_with("account alice    216\n"),
        "{}",
        ws.run_bin("teller")
    );
}

#[test]
fn ada_files_that_break_the_naming_scheme_are_recipe_errors_with_a_position() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ledger/src/ledger-audit_log.ads",
            "--  The log.\npackage Ledger.Audit is\nend Ledger.Audit;\n",
            "ledger/src/ledger-audit_log.ads:2:9: this file holds a spec of `ledger.audit`, \
             which GNAT's default naming scheme looks for in `ledger-audit.ads`\n  |\n\
             2 | package Ledger.Audit is\n  |         ^^^^^^^^^^^^",
        ),
        (
            "ledger/src/ledger-extra.adb",
            "package body Ledger.Extra is\nend Ledger.Extra;\npackage body Ledger.More is\nend;\n",
            "ledger/src/ledger-extra.adb:3:1: a second compilation unit after `ledger.extra`",
        ),
        (
            "teller/teller_main-banner.ads",
            "separate (Teller_Main)\nprocedure Banner is begin null; end Banner;\n",
            "teller/teller_main-banner.ads:2:11: a `.ads` file holds a subunit",
        ),
    ];
    for (file, text, expected) in cases {
        let ws = fixture();
        ws.write(file, text);
        let out = ws.kiln().run(["build", "--no-images"]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", out.stderr_text());
        assert!(
            out.stderr_text().contains(expected),
            "{file}: {}",
            out.stderr_text()
        );
        assert!(!ws.path("out/bin").exists(), "{file}: something was built");
    }
}

/// GNAT's runtime sources (`adainclude`): about a thousand real units of every kind.
fn adainclude() -> PathBuf {
    let out = Command::new("gcc")
        .arg("-print-file-name=adainclude")
        .output()
        .expect("gcc runs");
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        dir.is_dir(),
        "GNAT's adainclude not found: {}",
        dir.display()
    );
    dir
}

#[test]
fn every_gnat_runtime_source_reads_as_one_unit_of_the_kind_its_name_says() {
    let dir = adainclude();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ads") || n.ends_with(".adb"))
        .collect();
    names.sort();
    assert!(names.len() > 500, "only {} runtime sources", names.len());
    let mut failures = Vec::new();
    let (mut generics, mut bodies, mut no_bodies) = (0, 0, 0);
    for n in &names {
        let bytes = std::fs::read(dir.join(n)).unwrap();
        let no_body = match ada::parse(&bytes) {
            Ok(u) => {
                let is_spec = n.ends_with(".ads");
                if is_spec != (u.kind == UnitKind::Spec) {
                    failures.push(format!("{n}: read as {:?}", u.kind));
                }
                generics += u.generic as usize;
                bodies += (u.kind == UnitKind::Body) as usize;
                u.kind == UnitKind::NoBody
            }
            Err(e) => {
                let line = bytes[..e.span.start]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                failures.push(format!("{n}:{line}: {}", e.message));
                continue;
            }
        };
        no_bodies += no_body as usize;
        // The same file with a second unit after it: found exactly where it starts, so the
        // end of every real unit was found (not merely given up on).
        let mut two = bytes.clone();
        two.extend_from_slice(b"\npackage Kiln_Second is end Kiln_Second;\n");
        let expected = if no_body {
            "No_Body"
        } else {
            "second compilation unit"
        };
        match ada::parse(&two) {
            Err(e) if e.span.start == bytes.len() + 1 && e.message.contains(expected) => {}
            other => failures.push(format!("{n} + a second unit: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus holds each kind, so the loop above did check them.
    assert!(
        bodies > 300 && generics > 50 && no_bodies > 10,
        "{bodies} bodies, {generics} generics, {no_bodies} No_Body files"
    );
}
