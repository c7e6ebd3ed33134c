//! The unit header reader on tricky inputs, and discovery over real files in a temporary
//! directory. Whole-program behaviour with GNAT is in tests/ada_units.rs.

use super::*;

fn unit(src: &str) -> Unit {
    parse(src.as_bytes()).unwrap_or_else(|e| panic!("{src:?}: {e:?}"))
}

fn error(src: &str) -> ParseError {
    parse(src.as_bytes()).expect_err(src)
}

fn spec(name: &str, generic: bool) -> (UnitKind, String, bool) {
    (UnitKind::Spec, name.into(), generic)
}

fn summary(u: &Unit) -> (UnitKind, String, bool) {
    (u.kind.clone(), u.name.clone(), u.generic)
}

#[test]
fn context_clauses_of_every_form_precede_the_unit() {
    let u = unit(
        "pragma Ada_2012;
limited with A.B;
limited private with C;
private with D, E.F;
with Ada.Text_IO; use Ada.Text_IO;
use type Interfaces.Unsigned_8; use all type G.T;
package body Orb_Core.Http is
end Orb_Core.Http;",
    );
    assert_eq!(u.kind, UnitKind::Body);
    assert_eq!(u.name, "orb_core.http");
}

#[test]
fn specs_bodies_instantiations_and_renamings_are_told_apart() {
    assert_eq!(summary(&unit("package P is end P;")), spec("p", false));
    assert_eq!(
        summary(&unit("procedure Main is begin null; end Main;")).0,
        UnitKind::Body
    );
    assert_eq!(
        summary(&unit("function F (X : Integer) return Integer;")),
        spec("f", false)
    );
    assert_eq!(
        summary(&unit("with G; package Int_Stack is new G (Integer);")),
        spec("int_stack", false)
    );
    assert_eq!(
        summary(&unit("with G; procedure Swap_Int is new G (T => Integer);")),
        spec("swap_int", false)
    );
    assert_eq!(
        summary(&unit("with Q; package R renames Q;")),
        spec("r", false)
    );
    assert_eq!(
        summary(&unit("private package Lib.Internal is end Lib.Internal;")),
        spec("lib.internal", false)
    );
    // An aspect on a body comes before its `is`.
    assert_eq!(
        unit("procedure P (X : Integer) with Pre => (X > 0) is begin null; end P;").kind,
        UnitKind::Body
    );
}

#[test]
fn generic_formals_of_every_kind_are_skipped() {
    let u = unit(
        "generic
   type Element (<>) is private;
   type Index is range <>;
   Capacity : Positive := 10;
   with function \"=\" (L, R : Element) return Boolean is <>;
   with procedure Visit (E : Element) is null;
   with package Maps is new Ada.Containers.Ordered_Maps (<>);
package Generic_Stack is
   procedure Push (E : Element);
end Generic_Stack;",
    );
    assert_eq!(summary(&u), spec("generic_stack", true));
    let u = unit("generic type T is private; function Identity (X : T) return T;");
    assert_eq!(summary(&u), spec("identity", true));
}

#[test]
fn subunits_name_their_parent() {
    let u = unit(
        "with Ada.Text_IO;
separate (Shapes.Report)
procedure Print (S : String) is
begin
   Ada.Text_IO.Put_Line (S);
end Print;",
    );
    assert_eq!(
        u.kind,
        UnitKind::Subunit {
            parent: "shapes.report".into(),
            parent_span: 28..41,
        }
    );
    assert_eq!(u.name, "shapes.report.print");
    for body in [
        "separate (P) package body Q is end Q;",
        "separate (P) task body T is begin null; end T;",
        "separate (P) protected body R is end R;",
        "separate (P) function F return Integer is begin return 1; end F;",
    ] {
        assert!(
            matches!(unit(body).kind, UnitKind::Subunit { .. }),
            "{body}"
        );
    }
}

#[test]
fn pragma_no_body_stands_alone() {
    let u = unit("--  The body was removed in 2.0.\npragma No_Body;\n");
    assert_eq!(u.kind, UnitKind::NoBody);
    assert_eq!(u.name_span, 33..48);
    let e = error("pragma No_Body;\npackage body P is end P;");
    assert!(e.message.contains("No_Body"), "{}", e.message);
    assert_eq!(e.span.start, 16);
}

#[test]
fn keywords_inside_comments_strings_and_characters_are_not_structure() {
    let u = unit(
        "-- separate (Fake) package body Fake is
with Ada.Text_IO; -- package body Also_Fake is
procedure Main is
   S : constant String := \"end Main; package body X is separate (Y)\";
   Q : constant String := \"say \"\"end;\"\" twice\";
   C : constant Character := ';';
   A : constant Character := ''';
begin
   Ada.Text_IO.Put_Line (S & Q & C & A & Character'Val (59)'Img);
end Main;
-- package Trailing is end Trailing;
",
    );
    assert_eq!((u.kind, u.name.as_str()), (UnitKind::Body, "main"));
}

#[test]
fn pragmas_may_follow_a_unit_but_a_second_unit_may_not() {
    let u = unit("procedure P;\npragma Inline (P);\npragma Pure_Function (P);");
    assert_eq!(u.kind, UnitKind::Spec);
    let src = "package A is\n   X : Integer;\nend A;\n\nwith A;\npackage B is\nend B;\n";
    let e = error(src);
    assert!(
        e.message.contains("second compilation unit"),
        "{}",
        e.message
    );
    assert_eq!(&src[e.span.clone()], "with");
    let e = error("procedure Main is begin null; end Main;\nprocedure Other is begin null; end;");
    assert_eq!(e.span.start, 40);
    let e = error("package P is end P; 42");
    assert_eq!(e.message, "a number after the end of `p`");
}

#[test]
fn malformed_headers_say_what_was_expected_where() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "expected a compilation unit, found the end of the file"),
        ("-- only a comment\n", 18, "expected a compilation unit, found the end of the file"),
        ("with ;", 5, "expected a name, found `;`"),
        ("with A.;", 7, "expected a name, found `;`"),
        ("with A B;", 7, "expected `;`, found `b`"),
        ("type T is range 1 .. 2;", 0, "expected a compilation unit (`package`, `procedure`, `function`, `generic` or `separate`), found `type`"),
        ("package body is end;", 13, "expected a name, found `is`"),
        ("separate P procedure Q is begin null; end Q;", 9, "expected `(`, found `p`"),
        ("separate (P) type T is null record;", 13, "expected the subunit's body (`procedure`, `function`, `package body`, `task body` or `protected body`), found `type`"),
        ("generic type T is private;", 26, "expected the generic unit after its formal parameters, found the end of the file"),
        ("generic type T is private", 8, "this declaration has no closing `;`"),
        ("pragma Ada_2012", 0, "this declaration has no closing `;`"),
        ("X : String := \"open", 14, "string literal is not closed on this line"),
    ];
    for (src, at, message) in cases {
        let e = error(src);
        assert_eq!(
            (e.span.start, e.message.as_str()),
            (*at, *message),
            "{src:?}"
        );
    }
    let e = error("function \"+\" (L, R : T) return T;");
    assert!(e.message.contains("operator symbol"), "{}", e.message);
}

#[test]
fn default_file_names_follow_gnat() {
    assert_eq!(default_file_stem("orb_core.http"), "orb_core-http");
    assert_eq!(default_file_stem("p.hello"), "p-hello");
    assert_eq!(default_file_stem("main"), "main");
    assert_eq!(default_file_stem("ada.text_io"), "a~text_io");
    assert_eq!(default_file_stem("gnat.sockets.thin"), "g~sockets-thin");
    assert_eq!(default_file_stem("adapters.x"), "adapters-x");
}

/// A temporary directory holding the given files.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn units(dir: &tempfile::TempDir, files: &[&str]) -> Result<Vec<String>, DiscoverError> {
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    Ok(compilation_units(dir.path(), &files)?
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

#[test]
fn discovery_compiles_bodies_and_lone_specs_only() {
    let dir = tree(&[
        ("src/p.ads", "package P is procedure Hello; end P;"),
        (
            "src/p.adb",
            "package body P is procedure Hello is separate; end P;",
        ),
        (
            "src/p-hello.adb",
            "separate (P) procedure Hello is begin null; end Hello;",
        ),
        (
            "src/consts.ads",
            "package Consts is X : constant := 1; end Consts;",
        ),
        (
            "src/gone.ads",
            "package Gone is Y : constant := 2; end Gone;",
        ),
        ("src/gone.adb", "pragma No_Body;"),
        (
            "src/g.ads",
            "generic type T is private; function G (X : T) return T;",
        ),
        (
            "src/g.adb",
            "function G (X : T) return T is begin return X; end G;",
        ),
        ("src/notes.txt", "package body Not_Ada is"),
    ]);
    let all = sources_in(dir.path(), &[PathBuf::from("src")]);
    assert_eq!(all.len(), 8, "{all:?}");
    let files: Vec<String> = all
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(
        units(&dir, &files).unwrap(),
        ["src/consts.ads", "src/g.adb", "src/gone.ads", "src/p.adb"]
    );
}

#[test]
fn discovery_errors_point_into_the_ada_file() {
    let dir = tree(&[
        (
            "a/wrong.adb",
            "with X;\nprocedure Other is begin null; end Other;",
        ),
        ("a/body.ads", "package body Body_In_Spec is end;"),
        ("b/twice.ads", "package Twice is end;"),
        ("c/twice.ads", "package Twice is end;"),
        (
            "d/latin.adb",
            "-- caf\u{e9}\nprocedure Latin is begin null; end Latin;\nprocedure X;",
        ),
    ]);
    let diag = |files: &[&str]| match units(&dir, files) {
        Err(DiscoverError::Source(d)) => *d,
        other => panic!("{other:?}"),
    };
    let d = diag(&["a/wrong.adb"]);
    assert_eq!((d.file.as_str(), d.line, d.column), ("a/wrong.adb", 2, 11));
    assert!(d.message.contains("`other.adb`"), "{}", d.message);
    let d = diag(&["a/body.ads"]);
    assert_eq!((d.line, d.column), (1, 14));
    assert!(
        d.message.contains("a `.ads` file holds a body"),
        "{}",
        d.message
    );
    let d = diag(&["b/twice.ads", "c/twice.ads"]);
    assert_eq!(d.file, "c/twice.ads");
    assert!(
        d.message.contains("also declared in `b/twice.ads`"),
        "{}",
        d.message
    );
    let d = diag(&["d/latin.adb"]);
    assert_eq!((d.line, d.column), (3, 1));
}

#[test]
fn a_subunit_without_its_parent_is_an_error_with_a_suggestion() {
    let dir = tree(&[
        (
            "s/ledger-accounts.ads",
            "package Ledger.Accounts is procedure R; end;",
        ),
        (
            "s/ledger-accounts.adb",
            "package body Ledger.Accounts is procedure R is separate; end;",
        ),
        // Left behind by a rename, or misspelt in both places.
        (
            "s/ledger-acounts-r.adb",
            "separate (Ledger.Acounts)\nprocedure R is begin null; end R;",
        ),
    ]);
    let files = [
        "s/ledger-accounts.ads",
        "s/ledger-accounts.adb",
        "s/ledger-acounts-r.adb",
    ];
    let d = match units(&dir, &files) {
        Err(DiscoverError::Source(d)) => *d,
        other => panic!("{other:?}"),
    };
    assert_eq!((d.line, d.column, d.width), (1, 11, 14));
    assert!(
        d.message.contains("no body of `ledger.acounts`"),
        "{}",
        d.message
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `ledger.accounts`?"));
}

#[test]
fn discovery_errors_outside_ada_files_name_the_file() {
    let dir = tree(&[
        ("s/p.ads", "package P is procedure Q; end P;"),
        (
            "s/p.adb",
            "package body P is procedure Q is begin null; end Q; end P;",
        ),
        ("s/x.ada", "package X is end X;"),
    ]);
    assert!(matches!(
        units(&dir, &["s/p.ads"]),
        Err(DiscoverError::BodyLeftOut { .. })
    ));
    assert!(matches!(
        units(&dir, &["s/x.ada"]),
        Err(DiscoverError::NotAda { .. })
    ));
    assert!(matches!(
        units(&dir, &["s/missing.adb"]),
        Err(DiscoverError::Read { .. })
    ));
}

#[test]
fn a_latin1_file_is_read_and_located() {
    let mut src =
        b"-- Copyright J\xf6rg\npackage body P is\n   S : constant String := \"\xe9\";\nend P;\nX"
            .to_vec();
    let e = parse(&src).unwrap_err();
    let d = diagnostic(Path::new("p.adb"), &src, e.span, e.message);
    assert_eq!((d.line, d.column, d.source_line.as_str()), (5, 1, "X"));
    src.truncate(src.len() - 1);
    assert_eq!(parse(&src).unwrap().kind, UnitKind::Body);
}
