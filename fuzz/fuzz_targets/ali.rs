//! GNAT ALI and binder-output parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = kiln::toolchain::gnat::ali_dependencies(text);
    let _ = kiln::toolchain::gnat::binder_link_list(text, "/obj");
});
