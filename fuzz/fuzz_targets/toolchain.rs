//! Toolchain reader: any text gives a toolchain or a positioned diagnostic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(d) =
        kiln::toolchain::ToolchainSpec::parse("toolchains/fuzz.toml", "fuzz", text.to_string())
    {
        let _ = d.to_string();
    }
});
