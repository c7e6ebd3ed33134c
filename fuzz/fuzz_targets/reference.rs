//! Image references, repository names and tags: parse, and a parsed reference prints back to
//! something that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

use kiln::registry::reference;
use kiln::registry::Reference;

fuzz_target!(|text: &str| {
    if let Ok(r) = text.parse::<Reference>() {
        let again: Reference = r
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("{r} does not parse back: {e}"));
        assert_eq!(again, r);
    }
    let _ = reference::validate_repository(text);
    let _ = reference::validate_tag(text);
    let _ = Reference::repository_for("team", text);
});
