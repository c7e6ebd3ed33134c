//! Recipe reader: any text gives a recipe or a positioned diagnostic, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // A root that does not exist: source globs and Ada unit discovery find nothing, quickly.
    let root = std::path::Path::new("/nonexistent/kiln-fuzz");
    if let Err(d) = kiln::recipe::parse(root, "recipes/fuzz.toml", "fuzz", text.to_string()) {
        // Rendering the caret line must hold for any span the reader produced.
        let _ = d.to_string();
    }
});
