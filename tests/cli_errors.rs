//! How errors reach a person: the message, then each cause on its own `caused by:` line, every
//! cause exactly once.

mod support;

use support::kiln::Kiln;
use support::workspace::Workspace;

#[test]
fn a_missing_workspace_names_the_path_and_prints_the_os_error_once() {
    let ws = Workspace::with_files(&[]);
    let out = Kiln::outside().env("KILN_CACHE", ws.cache()).run([
        "-C",
        "/nonexistent/kiln-workspace",
        "build",
    ]);
    let (code, stderr) = (out.code().unwrap_or(-1), out.stderr_text());
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("/nonexistent/kiln-workspace"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the OS error should appear once:\n{stderr}"
    );
    assert!(
        stderr.contains("caused by: No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn a_broken_lock_file_is_a_build_failure_that_points_at_its_line_and_column() {
    let ws = Workspace::with_files(&[("kiln.lock", "version = [\n")]);
    let out = ws.kiln().run(["build", "--locked"]);
    let (code, stderr) = (out.code().unwrap_or(-1), out.stderr_text());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("kiln.lock"), "{stderr}");
    assert!(stderr.contains("line 1, column 13"), "{stderr}");
}

#[test]
fn a_reader_that_went_away_ends_kiln_quietly_as_it_ends_cat() {
    let ws = Workspace::engine();
    for args in [&["graph"][..], &["toolchain", "list"], &["cache", "stats"]] {
        // The read end is closed before kiln starts: every write it makes gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ws
            .kiln()
            .command(args.iter().copied())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "kiln {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "kiln {args:?}: {stderr}");
    }
}
