//! The handful of ELF facts the runtime closure needs, read with goblin.
//!
//! Only the dynamic section and program headers matter here: the interpreter the kernel starts
//! (`PT_INTERP`), the libraries the loader must map (`DT_NEEDED`), where it looks for them
//! (`DT_RPATH`, `DT_RUNPATH`) and the name the object answers to (`DT_SONAME`).

use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use super::ClosureError;

/// What the dynamic loader reads from one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub interp: Option<String>,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// `DT_RPATH` entries, split on ':' and not yet `$ORIGIN`-expanded.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries, split on ':' and not yet `$ORIGIN`-expanded.
    pub runpath: Vec<String>,
    /// `(is_64, e_machine)`: a candidate library of another class or machine is skipped, as the
    /// loader does, instead of being copied into an image it cannot run in.
    pub kind: (bool, u16),
}

pub fn read(path: &Path) -> Result<ElfInfo, ClosureError> {
    let bytes = std::fs::read(path).map_err(|source| ClosureError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).ok_or_else(|| ClosureError::NotElf(path.to_path_buf()))
}

/// `None` when the bytes are not an ELF object (linker scripts such as `libc.so` are text).
pub fn parse(bytes: &[u8]) -> Option<ElfInfo> {
    let elf = Elf::parse(bytes).ok()?;
    let split = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(ElfInfo {
        interp: elf.interpreter.map(str::to_string),
        soname: elf.soname.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
        kind: (elf.is_64, elf.header.e_machine),
    })
}

/// Expands `$ORIGIN` / `${ORIGIN}` against the directory holding the object, as ld.so does.
/// `$LIB` and `$PLATFORM` are not used by kiln's toolchains and are left as written, so such an
/// entry simply finds nothing.
pub fn expand_origin(entry: &str, object: &Path) -> PathBuf {
    let origin = object
        .parent()
        .unwrap_or(Path::new("/"))
        .to_string_lossy()
        .into_owned();
    PathBuf::from(
        entry
            .replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expands_in_both_spellings() {
        let obj = Path::new("/w/out/bin/svc");
        assert_eq!(
            expand_origin("$ORIGIN/../lib", obj),
            PathBuf::from("/w/out/bin/../lib")
        );
        assert_eq!(
            expand_origin("${ORIGIN}/x", obj),
            PathBuf::from("/w/out/bin/x")
        );
    }

    #[test]
    fn text_is_not_elf() {
        assert_eq!(parse(b"/* GNU ld script */ GROUP ( libc.so.6 )"), None);
    }
}
