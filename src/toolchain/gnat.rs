//! GNAT: dependency discovery from ALI files and link lines from binder output.
//!
//! ALI `D` lines name every source a compilation read (specs, bodies for inlining, generic
//! bodies for instantiation, runtime units) by simple file name; kiln resolves them against the
//! unit's source directories and the runtime's adainclude. Subunits are among them (`D
//! p-hello.adb … p.hello`, with no `%s`/`%b`): GNAT compiles a subunit inside its parent, so
//! recording it as the parent's dependency is what makes an edit to it recompile the parent. The binder file (`b~main.adb`) lists the objects and options the final
//! link needs between `BEGIN Object file/option list` and `END`.

use std::path::{Path, PathBuf};

/// Source file names from the `D` lines of an ALI file.
pub fn ali_dependencies(ali: &str) -> Vec<String> {
    ali.lines()
        .filter_map(|l| l.strip_prefix("D "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Finds `name` in `dirs` (in order), returning the first existing path.
pub fn resolve_source(name: &str, dirs: &[PathBuf], root: &Path) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| {
        if p.is_absolute() {
            p.is_file()
        } else {
            root.join(p).is_file()
        }
    })
}

/// Object files and linker options from a binder file, with `prefix` (the relative path from
/// the binder's working directory back to the workspace) removed from object paths. Relative
/// `-L` options (object directories) and `-shared` (a binder notion, meaning "libgnat as a shared
/// library", already expressed by `-lgnat-NN`) are dropped.
pub fn binder_link_list(binder_adb: &str, prefix: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in binder_adb.lines() {
        let t = line.trim();
        if t.starts_with("--  BEGIN Object file/option list") {
            inside = true;
            continue;
        }
        if t.starts_with("--  END Object file/option list") {
            break;
        }
        if !inside {
            continue;
        }
        let Some(item) = t.strip_prefix("--").map(str::trim) else {
            continue;
        };
        if item.is_empty() || item == "-shared" {
            continue;
        }
        if let Some(dir) = item.strip_prefix("-L") {
            if !dir.starts_with('/') {
                continue;
            }
            out.push(item.to_string());
        } else if item.starts_with('-') {
            out.push(item.to_string());
        } else {
            out.push(item.strip_prefix(prefix).unwrap_or(item).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ali_d_lines() {
        let ali = "V \"GNAT Lib v12\"\nU main%b\t\tmain.adb\t\t282dd4ae NE OO SU\nW greet%s\t\tgreet.adb\t\tgreet.ali\n\nD greet.ads\t\t19700101000000 2193dd6a greet%s\nD main.adb\t\t19700101000000 09be09c4 main%b\nD system.ads\t\t19700101000000 a2da961d system%s\n";
        assert_eq!(
            ali_dependencies(ali),
            vec!["greet.ads", "main.adb", "system.ads"]
        );
    }

    #[test]
    fn ali_d_lines_include_subunits() {
        // As GNAT 12 writes them for `package body P` with two `is separate` bodies.
        let ali = "U p%b\t\tp.adb\t\t6ddfe943 NE OO PK\nD p.ads\t\t\t19700101000000 76eafa52 p%s\nD p.adb\t\t\t19700101000000 6ddfe943 p%b\nD p-hello.adb\t\t19700101000000 4ed1e15a p.hello\nD p-twice.adb\t\t19700101000000 e0839cc9 p.twice\n";
        assert_eq!(
            ali_dependencies(ali),
            vec!["p.ads", "p.adb", "p-hello.adb", "p-twice.adb"]
        );
    }

    #[test]
    fn binder_list_keeps_objects_and_libraries() {
        let b = "x\n--  BEGIN Object file/option list\n   --   ../../../../out/obj/lib/greet.o\n   --   ../../../../out/obj/svc/main.o\n   --   -L../../../../out/obj/svc/\n   --   -L/usr/lib/gcc/x86_64-linux-gnu/12/adalib/\n   --   -shared\n   --   -lgnat-12\n   --   -ldl\n--  END Object file/option list   \n";
        assert_eq!(
            binder_link_list(b, "../../../../"),
            vec![
                "out/obj/lib/greet.o",
                "out/obj/svc/main.o",
                "-L/usr/lib/gcc/x86_64-linux-gnu/12/adalib/",
                "-lgnat-12",
                "-ldl"
            ]
        );
    }
}
