//! Where two versions of a file part ways: the first differing byte, and for ELF files the
//! section holding it, which usually says why (`.rodata`: an embedded string such as a
//! timestamp; `.note.gnu.build-id`: anything at all changed; `.debug_str`: a path or producer).

use goblin::elf::Elf;

/// The section every ELF difference also shows up in: the linker hashes the whole output into
/// it, so a difference there is a consequence, never the cause.
const BUILD_ID: &str = ".note.gnu.build-id";

/// How `rebuilt` differs from `original`, or None when they are equal. In an ELF file the
/// build-id note is skipped over when something else differs too, since that is the cause.
pub fn describe(original: &[u8], rebuilt: &[u8]) -> Option<String> {
    let first = first_difference(original, rebuilt)?;
    let mut offset = first;
    let mut note = String::new();
    if let Some((section, end)) = elf_section_at(original, first) {
        if section == BUILD_ID {
            if let Some(next) = first_difference(
                &original[end.min(original.len())..],
                &rebuilt[end.min(rebuilt.len())..],
            ) {
                offset = end + next;
                note = format!(" (and, as a consequence, the build-id at byte {first})");
            }
        }
    }
    let mut text = if original.len() == rebuilt.len() {
        format!(
            "content differs from byte {offset} ({offset:#x}) of {}",
            original.len()
        )
    } else {
        format!(
            "size {} in the original, {} in the rebuild; content differs from byte {offset} \
             ({offset:#x})",
            original.len(),
            rebuilt.len()
        )
    };
    if let Some((section, _)) = elf_section_at(original, offset) {
        text.push_str(&format!(", in ELF section {section}"));
    }
    text.push_str(&note);
    if let Some((a, b)) = printable_context(original, rebuilt, offset) {
        text.push_str(&format!(": {a:?} became {b:?}"));
    }
    Some(text)
}

/// Text around `offset` in both files when the difference is inside printable ASCII (an
/// embedded date or path), which usually names the culprit outright.
fn printable_context(a: &[u8], b: &[u8], offset: usize) -> Option<(String, String)> {
    const BEFORE: usize = 16;
    const AFTER: usize = 32;
    let printable = |c: u8| c == b' ' || c.is_ascii_graphic();
    if !printable(*a.get(offset)?) || !printable(*b.get(offset)?) {
        return None;
    }
    let mut start = offset;
    while start > 0 && offset - start < BEFORE && printable(a[start - 1]) {
        start -= 1;
    }
    let run = |x: &[u8]| -> String {
        x[start..]
            .iter()
            .take(offset - start + AFTER)
            .take_while(|&&c| printable(c))
            .map(|&c| c as char)
            .collect()
    };
    Some((run(a), run(b)))
}

/// The offset of the first byte that differs, counting a missing tail as a difference.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    // Compare in chunks first: slice equality is vectorised, a byte loop over megabytes is not.
    const CHUNK: usize = 4096;
    let common = a.len().min(b.len());
    let mut start = 0;
    while start < common {
        let end = (start + CHUNK).min(common);
        if a[start..end] != b[start..end] {
            return (start..end).find(|&i| a[i] != b[i]);
        }
        start = end;
    }
    (a.len() != b.len()).then_some(common)
}

/// The name of the section whose file bytes contain `offset` (or the header or table it falls
/// in), with the offset where that part ends.
pub fn elf_section_at(bytes: &[u8], offset: usize) -> Option<(String, usize)> {
    let elf = Elf::parse(bytes).ok()?;
    let off = offset as u64;
    let named = |name: &str, end: u64| Some((name.to_string(), end as usize));
    let ehsize = u64::from(elf.header.e_ehsize);
    if off < ehsize {
        return named("(ELF header)", ehsize);
    }
    let found = elf.section_headers.iter().find(|sh| {
        sh.sh_type != goblin::elf::section_header::SHT_NOBITS
            && off >= sh.sh_offset
            && off < sh.sh_offset + sh.sh_size
    });
    if let Some(sh) = found {
        let name = elf
            .shdr_strtab
            .get_at(sh.sh_name)
            .unwrap_or("(unnamed section)");
        return named(name, sh.sh_offset + sh.sh_size);
    }
    let shoff = elf.header.e_shoff;
    let shsize = u64::from(elf.header.e_shentsize) * u64::from(elf.header.e_shnum);
    if off >= shoff && off < shoff + shsize {
        return named("(section header table)", shoff + shsize);
    }
    let phoff = elf.header.e_phoff;
    let phsize = u64::from(elf.header.e_phentsize) * u64::from(elf.header.e_phnum);
    if off >= phoff && off < phoff + phsize {
        return named("(program header table)", phoff + phsize);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_finds_changed_bytes_and_missing_tails() {
        let a = vec![7u8; 10_000];
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b[8191] = 0;
        assert_eq!(first_difference(&a, &b), Some(8191));
        assert_eq!(first_difference(&a, &a[..9000]), Some(9000));
    }

    #[test]
    fn describe_names_the_section_of_a_real_elf_file() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf::parse(&exe).unwrap();
        let text = elf
            .section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".text"))
            .unwrap();
        let at = text.sh_offset as usize + 16;
        let mut changed = exe.clone();
        changed[at] ^= 0xff;
        let d = describe(&exe, &changed).unwrap();
        assert!(d.contains(&format!("byte {at} ")), "{d}");
        assert!(d.contains("in ELF section .text"), "{d}");
    }

    #[test]
    fn embedded_text_is_quoted() {
        let a = b"\0\0built Sun Sep  9 01:46:40 2001\0";
        let b = b"\0\0built Mon Jan  1 10:00:00 2024\0";
        assert_eq!(
            describe(a, b).unwrap(),
            "content differs from byte 8 (0x8) of 33: \"built Sun Sep  9 01:46:40 2001\" became \"built Mon Jan  1 10:00:00 2024\""
        );
    }
}
