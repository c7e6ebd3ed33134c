//! The tar reader `kiln verify` compares layers with: any two archives (the input split in two)
//! give a difference, none, or an I/O error, never a panic or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let _ = kiln::verify::diff_archives(&mut tar::Archive::new(a), &mut tar::Archive::new(b));
    // And an archive against itself, which must never report a difference.
    if let Ok(d) = kiln::verify::diff_archives(&mut tar::Archive::new(a), &mut tar::Archive::new(a))
    {
        assert!(d.is_none(), "an archive differs from itself: {d:?}");
    }
});
