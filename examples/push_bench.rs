//! Pushes one OCI image layout with `kiln::registry::push_all`, for `scripts/bench` (peak memory
//! while pushing a 1 GB layer: run it under a max-RSS probe).
//!
//! Usage: push_bench LAYOUT_DIR REGISTRY[:PORT] REPOSITORY TAG
//!
//! Prints one JSON line with the wall time and the push report's counters.

use std::path::PathBuf;
use std::time::Instant;

use kiln::registry::{push_all, PushImage, PushOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, layout, registry, repository, tag] = &args[..] else {
        eprintln!("usage: push_bench LAYOUT_DIR REGISTRY[:PORT] REPOSITORY TAG");
        std::process::exit(2);
    };
    let mut opts = PushOptions::new(registry);
    let (prefix, service) = repository.rsplit_once('/').unwrap_or(("", repository));
    opts.prefix = prefix.to_string();
    let image = PushImage {
        service: service.to_string(),
        layout: PathBuf::from(layout),
        tags: vec![tag.clone()],
    };
    let t0 = Instant::now();
    let results = push_all(&opts, &[image]);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    for r in results {
        match r {
            Ok(rep) => println!(
                "{{\"push_ms\":{ms:.1},\"reference\":\"{}\",\"uploaded_blobs\":{},\"uploaded_bytes\":{}}}",
                rep.reference, rep.uploaded_blobs, rep.uploaded_bytes
            ),
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                eprintln!("push_bench: {msg}");
                std::process::exit(1);
            }
        }
    }
}
