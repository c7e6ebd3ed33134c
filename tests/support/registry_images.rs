//! Small runnable OCI image layouts built with umoci: a shared base with two seeded-random
//! layers (one above the 16 MiB chunking threshold), and per-service images adding a statically
//! linked program that prints a known line. Built once per test process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::registry_server::run;

pub struct TestImages {
    _dir: tempfile::TempDir,
    pub api: PathBuf,
    pub worker: PathBuf,
}

pub fn line_for(service: &str) -> String {
    format!("kiln says hello from {service}")
}

/// Seeded xorshift bytes: incompressible (so gzip keeps the layer big) yet reproducible.
fn write_seeded(path: &Path, len: usize, mut seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        buf.extend_from_slice(&seed.to_le_bytes());
    }
    buf.truncate(len);
    f.write_all(&buf).unwrap();
}

fn umoci(args: &[&str], extra: &[&Path]) {
    let mut c = Command::new("umoci");
    c.args(args);
    for p in extra {
        c.arg(p);
    }
    run(&mut c);
}

fn service_image(dir: &Path, base: &Path, service: &str) -> PathBuf {
    let layout = dir.join(service);
    run(Command::new("cp").arg("-a").arg(base).arg(&layout));
    let src = dir.join(format!("{service}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\nint main(void) {{ puts(\"{}\"); return 0; }}\n",
            line_for(service)
        ),
    )
    .unwrap();
    let bin = dir.join(format!("{service}.bin"));
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src));
    let image = format!("{}:t", layout.display());
    umoci(&["insert", "--image", &image], &[&bin, Path::new("/hello")]);
    umoci(
        &["config", "--image", &image, "--config.entrypoint", "/hello"],
        &[],
    );
    umoci(&["gc", "--layout", layout.to_str().unwrap()], &[]);
    layout
}

pub fn images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let base_s = base.to_str().unwrap().to_string();
        umoci(&["init", "--layout", &base_s], &[]);
        umoci(&["new", "--image", &format!("{base_s}:t")], &[]);
        for (name, len, seed) in [("big", 17 << 20, 0x5eed_u64), ("small", 3 << 20, 0xbeef)] {
            let f = dir.path().join(name);
            write_seeded(&f, len, seed);
            umoci(
                &["insert", "--image", &format!("{base_s}:t")],
                &[&f, &Path::new("/data").join(name)],
            );
        }
        let api = service_image(dir.path(), &base, "api");
        let worker = service_image(dir.path(), &base, "worker");
        TestImages {
            _dir: dir,
            api,
            worker,
        }
    })
}
