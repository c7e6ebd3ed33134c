//! g++ `-MD` depfile parser: escapes, continuations and targets in any arrangement.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let deps = kiln::toolchain::gcc::parse_depfile(text);
    // Every dependency is a piece of the input; none can be longer than it.
    assert!(deps.iter().all(|d| d.len() <= text.len()));
});
