//! Fixture programs for the image tests, compiled once per test run with the real toolchains,
//! and helpers to build requests and run the real container tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kiln::image::{Family, ImageRequest};

pub const EPOCH: i64 = 1_700_000_000;

pub struct Programs {
    /// A layer cache shared by the tests, so each distinct layer is compressed once per run.
    pub cache: PathBuf,
    /// C++ with wxBase, prints "hello from wx A".
    pub cxx_a: PathBuf,
    /// Same libraries, prints "hello from wx B".
    pub cxx_b: PathBuf,
    /// C++ linked against the workspace library libgreet.so.1 (RUNPATH $ORIGIN/../lib).
    pub cxx_ws: PathBuf,
    pub libgreet: PathBuf,
    pub ada: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh(dir: &Path, script: &str) {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

pub fn programs() -> &'static Programs {
    static P: OnceLock<Programs> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("kiln-image-fixtures-").tempdir().unwrap().keep();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/image/src");
        sh(
            &dir,
            &format!(
                "cp {src}/* .
                 WX=\"$(wx-config --cxxflags base)\"; WXL=\"$(wx-config --libs base)\"
                 g++ -g -O1 -DGREETING='\"A\"' $WX hello.cpp $WXL -o hello_a
                 g++ -g -O1 -DGREETING='\"B\"' $WX hello.cpp $WXL -o hello_b
                 mkdir -p lib bin
                 g++ -g -shared -fPIC -Wl,-soname,libgreet.so.1 greet.cpp -o lib/libgreet.so.1.0
                 ln -sf libgreet.so.1.0 lib/libgreet.so.1; ln -sf libgreet.so.1 lib/libgreet.so
                 g++ -g ws.cpp -Llib -lgreet -Wl,-rpath,'$ORIGIN/../lib' -o bin/ws
                 gcc -c hello_ada.adb && gnatbind -x -shared hello_ada.ali && gnatlink hello_ada.ali -o hello_ada",
                src = src.display()
            ),
        );
        Programs {
            cxx_a: dir.join("hello_a"),
            cxx_b: dir.join("hello_b"),
            cxx_ws: dir.join("bin/ws"),
            libgreet: dir.join("lib/libgreet.so.1.0"),
            ada: dir.join("hello_ada"),
            cache: dir.join("cache/layers"),
        }
    })
}

/// A request for `binary` writing its layout and debug file under `out` (layers go to the
/// shared cache).
pub fn request(service: &str, family: Family, binary: &Path, out: &Path) -> ImageRequest {
    ImageRequest {
        service: service.into(),
        family,
        version: "1.2.3".into(),
        description: format!("{service} test service"),
        licenses: "Apache-2.0".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        source: "https://example.invalid/kiln".into(),
        binary: binary.into(),
        binary_name: service.into(),
        workspace_libs: vec![],
        library_paths: vec![],
        extra_files: vec![],
        extra_libraries: vec![],
        entrypoint: vec![format!("/usr/local/bin/{service}")],
        cmd: vec![],
        env: BTreeMap::from([("PORT".to_string(), "8080".to_string())]),
        ports: vec![8080],
        workdir: "/".into(),
        labels: BTreeMap::from([("com.example.team".to_string(), "widgets".to_string())]),
        healthcheck: Some(kiln::image::Healthcheck {
            test: vec![
                "CMD".into(),
                format!("/usr/local/bin/{service}"),
                "--probe".into(),
            ],
            interval_ns: Some(10_000_000_000),
            timeout_ns: Some(2_000_000_000),
            start_period_ns: None,
            retries: Some(3),
        }),
        stop_signal: "SIGTERM".into(),
        ca_certificates: false,
        format: Default::default(),
        source_date_epoch: EPOCH,
        budget: 100_000_000,
        layout_dir: out.join("images").join(service),
        debug_dir: out.join("debug"),
        cache_dir: programs().cache.clone(),
    }
}

pub fn tool_output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman` configured for this machine: the default ulimits and runtime do not work here.
pub fn podman(scratch: &Path) -> Command {
    let conf = scratch.join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf)
        .arg("--runtime")
        .arg("/usr/sbin/runc");
    cmd
}
