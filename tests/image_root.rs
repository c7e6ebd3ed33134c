//! Images whose runtime comes from a toolchain root (a directory of pinned packages with its own
//! dpkg database) instead of this machine's `/`: the closure is resolved inside the root, files
//! are read from it, and packages and versions come from the root's database.
//!
//! The root here is made by hand from copies of this machine's libraries, re-labelled as packages
//! the machine does not have, so a result that leaked to the host would show the host's names.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::image::strip::Binutils;
use kiln::image::{assemble_in, Family, ImageContext, ImageRequest, ManifestFormat, Origin};

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// A root with the loader, libc, libm, libgcc_s and libstdc++ as two fake packages. The loader
/// link is absolute, as Debian ships it: followed naively it would leave the root.
fn fake_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join(LIBDIR)).unwrap();
    fs::create_dir_all(root.join("usr/lib64")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("usr/lib64", root.join("lib64")).unwrap();
    let copy = |name: &str| {
        fs::copy(
            Path::new("/").join(LIBDIR).join(name),
            root.join(LIBDIR).join(name),
        )
        .unwrap();
    };
    for lib in [
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libstdc++.so.6.0.30",
    ] {
        copy(lib);
    }
    symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    symlink(
        "libstdc++.so.6.0.30",
        root.join(LIBDIR).join("libstdc++.so.6"),
    )
    .unwrap();
    let dpkg = root.join("var/lib/dpkg");
    fs::create_dir_all(dpkg.join("info")).unwrap();
    fs::write(
        dpkg.join("status"),
        "Package: pinned-libc\nStatus: install ok installed\nVersion: 9.9-1\n\
         Architecture: amd64\nSource: glibc (9.9-1)\n\n\
         Package: pinned-libstdcxx\nStatus: install ok installed\nVersion: 7.7-2\n\
         Architecture: amd64\nSource: gcc-pinned\n\n",
    )
    .unwrap();
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("/{LIBDIR}/{n}\n"))
            .collect::<String>()
    };
    fs::write(
        dpkg.join("info/pinned-libc:amd64.list"),
        list(&["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6"]),
    )
    .unwrap();
    fs::write(
        dpkg.join("info/pinned-libstdcxx:amd64.list"),
        list(&["libgcc_s.so.1", "libstdc++.so.6.0.30", "libstdc++.so.6"]),
    )
    .unwrap();
    root
}

fn hello(dir: &Path) -> PathBuf {
    let src = dir.join("hello.cpp");
    fs::write(
        &src,
        "#include <iostream>\nint main() { std::cout << \"hello\\n\"; }\n",
    )
    .unwrap();
    let bin = dir.join("hello");
    let st = Command::new("g++")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    bin
}

fn request(dir: &Path, binary: PathBuf) -> ImageRequest {
    ImageRequest {
        service: "hello".into(),
        family: Family::Cxx,
        version: "1.0.0".into(),
        description: String::new(),
        licenses: String::new(),
        revision: "r".into(),
        source: String::new(),
        binary,
        binary_name: "hello".into(),
        workspace_libs: vec![],
        library_paths: vec![],
        extra_files: vec![],
        extra_libraries: vec![],
        entrypoint: vec!["/usr/local/bin/hello".into()],
        cmd: vec![],
        env: BTreeMap::new(),
        ports: vec![],
        workdir: "/".into(),
        labels: BTreeMap::new(),
        healthcheck: None,
        stop_signal: "SIGTERM".into(),
        ca_certificates: false,
        format: ManifestFormat::Oci,
        source_date_epoch: 0,
        budget: 100_000_000,
        layout_dir: dir.join("out/images/hello"),
        debug_dir: dir.join("out/debug"),
        cache_dir: dir.join("cache/layers"),
    }
}

#[test]
fn the_runtime_comes_from_the_root_and_its_packages_not_from_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fake_root(tmp.path());
    let req = request(tmp.path(), hello(tmp.path()));
    let cx = ImageContext::new(&req.cache_dir, Binutils::default(), &root);
    let img = assemble_in(&cx, &kiln::exec::ProcessRunner, &req).unwrap();

    let packages: Vec<(&str, &str)> = img
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        packages,
        [("pinned-libc", "9.9-1"), ("pinned-libstdcxx", "7.7-2")],
        "only the root's packages, with the root's versions"
    );
    let by_path: BTreeMap<&str, &Origin> = img
        .files
        .iter()
        .map(|f| (f.path.as_str(), &f.origin))
        .collect();
    for (path, package) in [
        (
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "pinned-libc",
        ),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "pinned-libc"),
        (
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            "pinned-libstdcxx",
        ),
    ] {
        let origin = by_path
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", by_path.keys()));
        assert!(
            matches!(origin, Origin::Package { name, .. } if name == package),
            "{path}: {origin:?}"
        );
    }
    assert!(
        img.files
            .iter()
            .all(|f| !matches!(&f.origin, Origin::Host { .. })),
        "nothing from the host: {:?}",
        img.files
    );
    // The base layer takes glibc by the root's Source field; libstdc++ goes to the runtime layer.
    let layer_of = |path: &str| img.files.iter().find(|f| f.path == path).map(|f| f.layer);
    assert_eq!(layer_of("/usr/lib/x86_64-linux-gnu/libc.so.6"), Some(0));
    assert_eq!(
        layer_of("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"),
        Some(1)
    );
}

#[test]
fn a_library_the_root_lacks_is_an_error_even_when_the_host_has_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fake_root(tmp.path());
    fs::remove_file(root.join(LIBDIR).join("libstdc++.so.6.0.30")).unwrap();
    let req = request(tmp.path(), hello(tmp.path()));
    let cx = ImageContext::new(&req.cache_dir, Binutils::default(), &root);
    let err = assemble_in(&cx, &kiln::exec::ProcessRunner, &req).unwrap_err();
    let text = kiln::error::chain(&err);
    assert!(text.contains("libstdc++.so.6"), "{text}");
    assert!(!req.layout_dir.exists(), "nothing written");
}
