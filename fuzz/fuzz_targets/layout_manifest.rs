//! Manifests and indexes read from an OCI layout before a push: the input is the manifest blob,
//! named by an index.json that describes it correctly, so parsing is what gets exercised.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: every input is written and read back, and a disk-backed /tmp
        // makes that the bottleneck.
        let d = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        std::fs::create_dir_all(d.path().join("blobs/sha256")).unwrap();
        d
    })
}

fuzz_target!(|bytes: &[u8]| {
    let layout = dir().path();
    let digest = kiln::digest::Digest::of(bytes);
    let blob = kiln::oci::layout::blob_path(layout, &digest);
    std::fs::write(&blob, bytes).unwrap();
    // An empty media type makes the reader take the manifest's own `mediaType`.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "", "digest": digest.to_string(), "size": bytes.len()}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let _ = kiln::registry::layout::read_layout(layout);
    let _ = std::fs::remove_file(&blob);
});
