//! Bodies a registry sends back: OCI error bodies, token responses and referrers indexes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let errors = kiln::registry::error::decode_error_body(bytes);
    let e = kiln::registry::RegistryError::Status {
        method: "GET".into(),
        url: "http://127.0.0.1:1/v2/".into(),
        status: 400,
        errors,
    };
    let _ = e.to_string();
    if let Ok(t) = serde_json::from_slice::<kiln::registry::auth::TokenResponse>(bytes) {
        let _ = t.into_token();
    }
    let _ = kiln::registry::index_entries(bytes, "GET", "http://127.0.0.1:1/v2/a/referrers/x");
});
