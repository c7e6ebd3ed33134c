//! The shared test helpers themselves (tests/support): a workspace holds what it was given and
//! kiln runs in it, the environment kiln sees is the one the test built (later settings win,
//! removals remove), and a failed expectation shows the command, status, stdout and stderr.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use support::kiln::{Kiln, Run};
use support::workspace::Workspace;

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the expectation should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_workspace_holds_its_files_and_kiln_runs_in_it() {
    let ws = Workspace::with_files(&[("recipes/bad.toml", "kind = \n"), ("src/a/b.cpp", "")]);
    assert!(ws.path("src/a/b.cpp").is_file());
    assert!(ws.root().starts_with(ws.scratch()));
    assert!(
        !ws.cache().starts_with(ws.root()),
        "the cache is beside the root"
    );

    let out = ws.kiln().run(["build"]);
    out.assert_code(2, "building a broken recipe");
    assert!(
        out.stderr_text()
            .contains("recipes/bad.toml:1:8: invalid TOML"),
        "{out}"
    );
}

#[test]
fn later_environment_settings_win_and_removals_remove() {
    let ws = Workspace::with_files(&[]);
    let max_size =
        |k: Kiln| k.run(["cache", "stats", "--json"]).ok("cache stats").json()["max_size"].clone();
    let limited = ws.kiln().env("KILN_CACHE_MAX_SIZE", "1MB");
    assert_eq!(max_size(limited.clone()), 1_000_000);
    assert_eq!(
        max_size(limited.clone().env("KILN_CACHE_MAX_SIZE", "2MB")),
        2_000_000
    );
    assert_ne!(max_size(limited.without_cache_limits()), 1_000_000);
}

#[test]
fn a_failed_expectation_shows_the_command_status_stdout_and_stderr() {
    let ws = Workspace::with_files(&[]);
    let out: Run = ws.kiln().run(["build", "nope"]);
    let root = ws.root().display().to_string();

    let msg = panic_message(|| out.assert_ok("building nope"));
    for part in [
        "building nope failed",
        &format!("`kiln -C {root} build nope` exited with exit status: 2"),
        "--- stdout\n",
        "--- stderr\nkiln: error: no target named `nope`",
    ] {
        assert!(msg.contains(part), "{part:?} missing from:\n{msg}");
    }
    let msg = panic_message(|| out.assert_code(0, "building nope"));
    assert!(msg.contains("no target named `nope`"), "{msg}");
    let msg = panic_message(|| {
        out.json();
    });
    assert!(
        msg.contains("stdout is not JSON") && msg.contains("no target named `nope`"),
        "{msg}"
    );
    // A umask wrapper is not part of the command a person reads.
    let wrapped = ws.kiln().umask("077").run(["build", "nope"]);
    assert_eq!(wrapped.command, format!("kiln -C {root} build nope"));
    assert_eq!(wrapped.code(), Some(2), "{wrapped}");
}
