//! How errors reach a person: the message, then each cause on its own `caused by:` line, every
//! cause exactly once.

use std::process::Command;

fn kiln(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env(
            "KILN_CACHE",
            std::env::temp_dir().join("kiln-cli-errors-cache"),
        )
        .output()
        .expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_workspace_names_the_path_and_prints_the_os_error_once() {
    let (code, stderr) = kiln(&["-C", "/nonexistent/kiln-workspace", "build"]);
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
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("recipes")).unwrap();
    std::fs::write(ws.path().join("kiln.lock"), "version = [\n").unwrap();
    let dir = ws.path().to_str().unwrap();
    let (code, stderr) = kiln(&["-C", dir, "build", "--locked"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("kiln.lock"), "{stderr}");
    assert!(stderr.contains("line 1, column 13"), "{stderr}");
}
