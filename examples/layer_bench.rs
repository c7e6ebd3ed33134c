//! Writes one directory tree as one kiln layer, for `scripts/bench` (layer writing throughput).
//!
//! Usage: layer_bench DIR CACHE_DIR
//!
//! Does what image assembly does for a layer of host files: digest every file (the layer cache
//! key needs content digests), then `LayerCache::get_or_write` (tar -> sha256 -> gzip -6 ->
//! sha256 -> temp file, fsync, rename). CACHE_DIR should be empty, or the write is a cache hit.
//! Prints one JSON line with both phases timed separately.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln::digest::Digest;
use kiln::layer::cache::LayerCache;
use kiln::layer::{Content, LayerSpec};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("reading the tree")
        .map(|e| e.expect("reading the tree").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, cache] = &args[..] else {
        eprintln!("usage: layer_bench DIR CACHE_DIR");
        std::process::exit(2);
    };
    let root = Path::new(dir);
    let t0 = Instant::now();
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut spec = LayerSpec::new(0);
    for f in &files {
        let (digest, size) = Digest::of_file(f).expect("digesting a file");
        let rel = f.strip_prefix(root).unwrap().to_string_lossy();
        spec.file(
            &format!("/data/{rel}"),
            Content::Host(f.clone()),
            size,
            digest,
            0o644,
        )
        .expect("adding a file");
    }
    let digest_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let (layer, lookup) = LayerCache::new(Path::new(cache))
        .get_or_write(&spec)
        .expect("writing the layer");
    let hit = lookup == kiln::layer::cache::Lookup::Hit;
    let write_ms = t1.elapsed().as_secs_f64() * 1e3;
    println!(
        "{{\"files\":{},\"digest_ms\":{digest_ms:.1},\"write_ms\":{write_ms:.1},\"cache_hit\":{hit},\
         \"digest\":\"{}\",\"diff_id\":\"{}\",\"compressed_size\":{},\"uncompressed_size\":{}}}",
        files.len(),
        layer.digest,
        layer.diff_id,
        layer.compressed_size,
        layer.uncompressed_size
    );
}
