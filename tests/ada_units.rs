//! Ada as it is written, built with real GNAT through the kiln CLI: subunits, generics and their
//! instantiations, child packages, specs without bodies and `pragma No_Body`
//! (fixtures/ada-units), and the unit reader over GNAT's own runtime sources.

use std::path::PathBuf;
use std::process::Command;

use kiln::ada::{self, UnitKind};

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
