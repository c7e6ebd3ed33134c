//! ELF reader used for runtime-library closures: any bytes are an `ElfInfo` or "not ELF".
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Some(info) = kiln::closure::elf::parse(bytes) {
        for entry in info.rpath.iter().chain(info.runpath.iter()) {
            let _ = kiln::closure::elf::expand_origin(entry, std::path::Path::new("/usr/lib/x.so"));
        }
    }
});
