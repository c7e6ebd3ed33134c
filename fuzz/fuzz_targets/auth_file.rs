//! docker `config.json` / containers `auth.json`: any bytes give a credential, none, or a parse
//! error, and no error message carries the secret.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = std::path::Path::new("config.json");
    for registry in ["127.0.0.1:5000", "docker.io", "registry.example"] {
        if let Err(e) = kiln::registry::credentials::parse_auth_file(path, bytes, registry) {
            let _ = e.to_string();
        }
    }
});
