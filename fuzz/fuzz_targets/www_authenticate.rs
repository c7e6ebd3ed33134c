//! `WWW-Authenticate` challenges as a registry (or anything in between) may send them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = kiln::registry::auth::parse_challenge(text);
});
