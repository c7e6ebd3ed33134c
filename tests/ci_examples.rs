//! The example pipelines in examples/ci/ checked by tools that are not kiln: the GitHub Actions
//! and GitLab CI JSON schemas that PyPI's `check-jsonschema` vendors (plus its rule that every
//! GitHub job has a timeout), and kiln's own argument parser for every `kiln` command line in
//! them, so a renamed flag breaks this test rather than a team's pipeline.
//!
//! Needs: `pip install check-jsonschema` (scripts/setup does).

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(name)
}

fn check(schema: &str, file: &Path) -> (bool, String) {
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .expect("check-jsonschema is installed: pip install check-jsonschema (scripts/setup does)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn pipelines_pass_their_platform_schemas() {
    for (schema, file) in [
        ("vendor.github-workflows", "github-actions.yml"),
        (
            "custom.github-workflows-require-timeout",
            "github-actions.yml",
        ),
        ("vendor.gitlab-ci", "gitlab-ci.yml"),
    ] {
        let (ok, text) = check(schema, &example(file));
        assert!(ok, "{file} against {schema}:\n{text}");
    }
    // The checker rejects broken pipelines for real.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yml");
    let gh = std::fs::read_to_string(example("github-actions.yml")).unwrap();
    std::fs::write(
        &bad,
        gh.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"),
    )
    .unwrap();
    assert!(!check("vendor.github-workflows", &bad).0);
    let gl = std::fs::read_to_string(example("gitlab-ci.yml")).unwrap();
    std::fs::write(&bad, gl.replace("    when: always", "    when: sometimes")).unwrap();
    assert!(!check("vendor.gitlab-ci", &bad).0);
}

/// Each `kiln …` command in a pipeline, with shell quoting and variables reduced to words.
fn kiln_commands(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("- ")
                .trim_start_matches("run: ");
            l.strip_prefix("kiln ")
        })
        .map(|rest| {
            rest.split_whitespace()
                .map(|w| {
                    w.trim_matches('"')
                        .replace("$REGISTRY", "registry.example:5000/team")
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_kiln_command_in_the_pipelines_parses() {
    let mut seen = std::collections::BTreeSet::new();
    for file in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(example(file)).unwrap();
        for args in kiln_commands(&text) {
            seen.insert(args[0].clone());
            // clap validates names and values of every flag before anything runs; `--help`
            // after them stops it there, so nothing is built or pushed.
            let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{file}: kiln {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let want = ["build", "test", "scan", "push", "k8s", "resolve"];
    for stage in want {
        assert!(
            seen.contains(stage),
            "no `kiln {stage}` in the pipelines: {seen:?}"
        );
    }
    let allow = example("kiln-allowlist.toml");
    kiln::scan::allowlist::Allowlist::load(&allow)
        .unwrap_or_else(|d| panic!("the example allowlist does not parse: {d}"));
}
