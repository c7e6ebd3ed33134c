//! Image assembly against the real toolchains, dpkg database and container tools.

mod support;

use std::path::Path;
use std::process::Command;

use kiln::digest::Digest;
use kiln::exec::ProcessRunner;
use kiln::image::{assemble, ExtraFile, Family, ImageError, ImageResult, Origin};
use support::image::*;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-image-test-")
        .tempdir()
        .unwrap()
}

fn cxx(out: &Path) -> ImageResult {
    assemble(
        &ProcessRunner,
        &request("hello", Family::Cxx, &programs().cxx_a, out),
    )
    .unwrap()
}

mod runs {
    use super::*;

    #[test]
    fn cxx_image_with_workspace_lib_runs_under_podman_from_the_oci_layout() {
        let out = tmp();
        let p = programs();
        let mut req = request("ws", Family::Cxx, &p.cxx_ws, out.path());
        req.workspace_libs = vec![p.libgreet.clone()];
        let data = out.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a.txt"), "a").unwrap();
        std::os::unix::fs::symlink("sub/a.txt", data.join("link")).unwrap();
        req.extra_files = vec![ExtraFile {
            src: data,
            dst: "/usr/share/ws".into(),
            mode: None,
        }];
        let result = assemble(&ProcessRunner, &req).unwrap();
        assert_eq!(result.layers.len(), 4, "base, runtime, workspace, service");
        assert!(
            result.layers[2].description.contains("libgreet.so.1.0"),
            "{}",
            result.layers[2].description
        );

        // podman derives an image name from the layout path, which must be lowercase.
        let link = std::env::temp_dir().join(format!("kiln-podman-ws-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&req.layout_dir, &link).unwrap();
        let layout = format!("oci:{}:1.2.3", link.display());
        let skopeo = tool_output(Command::new("skopeo").args(["inspect", &layout]));
        let v: serde_json::Value = serde_json::from_str(&skopeo).unwrap();
        assert_eq!(v["Digest"], result.digest.to_string());
        assert_eq!(v["Layers"].as_array().unwrap().len(), 4);
        assert_eq!(v["Labels"]["org.opencontainers.image.version"], "1.2.3");

        let stdout =
            tool_output(podman(out.path()).args(["run", "--rm", "--network=host", &layout]));
        assert_eq!(stdout.trim(), "hello from libgreet");
        let stdout = tool_output(podman(out.path()).args([
            "run",
            "--rm",
            "--network=host",
            "--entrypoint",
            "/usr/local/bin/ws",
            &layout,
        ]));
        assert_eq!(stdout.trim(), "hello from libgreet");
        let _ = std::fs::remove_file(&link);
        let _ = podman(out.path())
            .args(["rmi", "-f", &format!("localhost{}:latest", link.display())])
            .output();
    }

    #[test]
    fn ada_image_loads_from_a_docker_archive_and_runs() {
        let out = tmp();
        let req = request("hello-ada", Family::Ada, &programs().ada, out.path());
        let result = assemble(&ProcessRunner, &req).unwrap();
        let runtime = &result.layers[1].description;
        assert!(
            runtime.starts_with("kiln: ada runtime (") && runtime.contains("libgnat-12"),
            "{runtime}"
        );
        let archive = out.path().join("hello-ada.tar");
        kiln::image::write_docker_archive(
            &req.layout_dir,
            "localhost/kiln-test/hello-ada:1.2.3",
            &archive,
        )
        .unwrap();
        tool_output(podman(out.path()).args(["load", "-i"]).arg(&archive));
        let stdout = tool_output(podman(out.path()).args([
            "run",
            "--rm",
            "--network=host",
            "localhost/kiln-test/hello-ada:1.2.3",
        ]));
        assert_eq!(stdout.trim(), "hello from ada");
        let _ = podman(out.path())
            .args(["rmi", "localhost/kiln-test/hello-ada:1.2.3"])
            .output();
    }

    #[test]
    fn umoci_unpacks_a_root_filesystem_with_the_loader_path_and_users() {
        let out = tmp();
        let mut req = request("hello", Family::Cxx, &programs().cxx_a, out.path());
        req.ca_certificates = true;
        let result = assemble(&ProcessRunner, &req).unwrap();
        assert!(result.layers[0].description.contains("CA certificates"));
        let bundle = out.path().join("bundle");
        tool_output(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:1.2.3", result.layout.display()))
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        assert!(
            rootfs.join("lib64/ld-linux-x86-64.so.2").exists(),
            "loader path from PT_INTERP resolves"
        );
        assert!(rootfs.join("usr/local/bin/hello").exists());
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(
            passwd.contains("nonroot:x:65532:65532::/home/nonroot")
                || passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot")
        );
        assert!(rootfs.join("var/lib/dpkg/status.d/libc6").exists());
        assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());
        // The unpacked tree is a working root: the loader finds wxBase and libstdc++ without
        // any help from the host.
        let stdout = tool_output(
            Command::new("chroot")
                .arg(&rootfs)
                .arg("/usr/local/bin/hello"),
        );
        assert_eq!(stdout.trim(), "hello from wx A");
    }
}

mod layout {
    use super::*;

    #[test]
    fn every_blob_matches_its_name_and_every_descriptor_its_blob() {
        let out = tmp();
        let result = cxx(out.path());
        let blobs = result.layout.join("blobs/sha256");
        for entry in std::fs::read_dir(&blobs).unwrap() {
            let path = entry.unwrap().path();
            let (digest, _) = Digest::of_file(&path).unwrap();
            assert_eq!(
                digest.hex(),
                path.file_name().unwrap().to_string_lossy(),
                "{}",
                path.display()
            );
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(result.layout.join("index.json")).unwrap())
                .unwrap();
        let check = |d: &serde_json::Value| -> Vec<u8> {
            let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
            let bytes = std::fs::read(blobs.join(digest.hex())).unwrap();
            assert_eq!(bytes.len() as u64, d["size"].as_u64().unwrap());
            bytes
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&check(&index["manifests"][0])).unwrap();
        check(&manifest["config"]);
        for l in manifest["layers"].as_array().unwrap() {
            check(l);
        }
        // oci-spec, an independent reader, accepts what kiln wrote.
        let m: oci_spec::image::ImageManifest =
            serde_json::from_slice(&check(&index["manifests"][0])).unwrap();
        assert_eq!(m.layers().len(), result.layers.len());
        let c: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&check(&manifest["config"])).unwrap();
        assert_eq!(c.rootfs().diff_ids().len(), result.layers.len());
        assert_eq!(
            std::fs::read_to_string(result.layout.join("oci-layout"))
                .unwrap()
                .trim(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
    }

    #[test]
    fn inspect_reports_layers_history_and_largest_files() {
        let out = tmp();
        let result = cxx(out.path());
        let inspection = kiln::image::inspect(&result.layout).unwrap();
        assert_eq!(inspection.digest, result.digest);
        assert_eq!(inspection.compressed_size, result.compressed_size);
        for (a, b) in inspection.layers.iter().zip(&result.layers) {
            assert_eq!(
                (a.digest, a.diff_id, a.uncompressed_size),
                (b.digest, b.diff_id, b.uncompressed_size)
            );
            assert_eq!(a.history, b.description);
        }
        assert!(inspection
            .largest_files
            .iter()
            .any(|f| f.path.contains("libwx_baseu")));
        let text = inspection.to_string();
        assert!(
            text.contains("kiln: c++ runtime (") && text.contains("largest files:"),
            "{text}"
        );
        let json = serde_json::to_value(&inspection).unwrap();
        assert_eq!(
            json["layers"].as_array().unwrap().len(),
            result.layers.len()
        );
    }
}

mod determinism {
    use super::*;

    #[test]
    fn assembling_twice_in_other_dirs_with_other_umask_and_tz_gives_the_same_digests() {
        let (a, b) = (tmp(), tmp());
        // Separate caches, so the second run really re-tars and re-compresses.
        let req = |out: &Path| {
            let mut r = request("hello", Family::Cxx, &programs().cxx_a, out);
            r.cache_dir = out.join("cache");
            r
        };
        let first = assemble(&ProcessRunner, &req(a.path())).unwrap();
        // SAFETY-free in edition 2021; the values only matter if kiln wrongly consulted them.
        std::env::set_var("TZ", "Pacific/Kiritimati");
        let old = unsafe { libc::umask(0o077) };
        let second = assemble(&ProcessRunner, &req(b.path()));
        unsafe { libc::umask(old) };
        std::env::remove_var("TZ");
        let second = second.unwrap();
        assert_eq!(first.digest, second.digest);
        let digests = |r: &ImageResult| {
            r.layers
                .iter()
                .map(|l| (l.digest, l.diff_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(&first), digests(&second));
        let debug_a = std::fs::read(&first.debug_file).unwrap();
        let debug_b = std::fs::read(&second.debug_file).unwrap();
        assert_eq!(debug_a, debug_b, "debug files are deterministic too");
    }

    #[test]
    fn siblings_share_lower_layers_and_only_the_binary_layer_differs() {
        let out = tmp();
        let p = programs();
        let a = assemble(
            &ProcessRunner,
            &request("svc", Family::Cxx, &p.cxx_a, out.path()),
        )
        .unwrap();
        let b = assemble(
            &ProcessRunner,
            &request("svc", Family::Cxx, &p.cxx_b, out.path()),
        )
        .unwrap();
        assert_eq!(a.layers.len(), b.layers.len());
        let n = a.layers.len();
        for i in 0..n - 1 {
            assert_eq!(
                a.layers[i].digest, b.layers[i].digest,
                "layer {i} ({})",
                a.layers[i].description
            );
        }
        assert_ne!(a.layers[n - 1].digest, b.layers[n - 1].digest);
        // Another service name with the same libraries still shares base and runtime.
        let other = tmp();
        let c = assemble(
            &ProcessRunner,
            &request("other", Family::Cxx, &p.cxx_b, other.path()),
        )
        .unwrap();
        assert_eq!(a.layers[0].digest, c.layers[0].digest);
        assert_eq!(a.layers[1].digest, c.layers[1].digest);
        // The Ada family shares the base layer with C++ (both need exactly libc and libm).
        let ada = assemble(
            &ProcessRunner,
            &request("svc", Family::Ada, &p.ada, out.path()),
        )
        .unwrap();
        assert_eq!(ada.layers[0].digest, a.layers[0].digest);
        assert_ne!(ada.layers[1].digest, a.layers[1].digest);
    }
}

mod errors {
    use super::*;

    fn err(req: &kiln::image::ImageRequest) -> ImageError {
        match assemble(&ProcessRunner, req) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_missing_library_names_the_library_and_the_binary() {
        let out = tmp();
        let p = programs();
        // Copied away from its ../lib, the binary's RUNPATH no longer finds libgreet.so.1.
        let bin = out.path().join("ws");
        std::fs::copy(&p.cxx_ws, &bin).unwrap();
        let e = err(&request("ws", Family::Cxx, &bin, out.path())).to_string();
        assert!(
            e.contains("libgreet.so.1") && e.contains(&bin.display().to_string()),
            "{e}"
        );
        assert!(
            !out.path().join("images/ws").exists(),
            "nothing half-done is written"
        );
    }

    #[test]
    fn bad_extra_files_are_refused_with_clear_errors() {
        let out = tmp();
        let p = programs();
        let mut req = request("hello", Family::Cxx, &p.cxx_a, out.path());
        req.extra_files = vec![ExtraFile {
            src: out.path().join("nope"),
            dst: "/x".into(),
            mode: None,
        }];
        assert!(matches!(err(&req), ImageError::MissingExtraFile { .. }));

        std::fs::write(out.path().join("f"), "x").unwrap();
        for dst in ["/usr/../etc/shadow", "relative/x"] {
            req.extra_files = vec![ExtraFile {
                src: out.path().join("f"),
                dst: dst.into(),
                mode: None,
            }];
            let e = err(&req);
            assert!(matches!(e, ImageError::BadDestination { .. }), "{dst}: {e}");
        }

        for (name, target) in [("up", "../../../etc/passwd"), ("abs", "/etc/passwd")] {
            let dir = out.path().join(format!("data-{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(target, dir.join("link")).unwrap();
            req.extra_files = vec![ExtraFile {
                src: dir,
                dst: "/data".into(),
                mode: None,
            }];
            let e = err(&req);
            assert!(
                matches!(e, ImageError::UnsafeSymlink { .. }),
                "{target}: {e}"
            );
            assert!(e.to_string().contains(target));
        }
    }

    #[test]
    fn over_budget_shows_largest_layers_files_and_what_grew() {
        let out = tmp();
        let p = programs();
        let mut req = request("hello", Family::Cxx, &p.cxx_a, out.path());
        let ok = assemble(&ProcessRunner, &req).unwrap();
        let big = out.path().join("big.bin");
        let noise: Vec<u8> = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&big, noise).unwrap();
        req.extra_files = vec![ExtraFile {
            src: big,
            dst: "/usr/share/hello/big.bin".into(),
            mode: None,
        }];
        req.budget = ok.compressed_size + 1000;
        let e = err(&req);
        let ImageError::OverBudget {
            size,
            budget,
            ref breakdown,
            ..
        } = e
        else {
            panic!("{e}")
        };
        assert!(size > budget);
        let text = e.to_string();
        assert!(
            text.contains("largest layers") && text.contains("kiln: c++ runtime"),
            "{text}"
        );
        assert!(
            text.contains("grew since the last build") && text.contains("/usr/share/hello/big.bin"),
            "{text}"
        );
        assert!(!breakdown.largest_files.is_empty());
        // The previous, within-budget layout is untouched.
        assert_eq!(
            kiln::image::inspect(&req.layout_dir).unwrap().digest,
            ok.digest
        );
    }
}

mod attribution {
    use super::*;
    use std::io::Read;

    /// The bytes of `path` in layer `layer` of the layout.
    fn layer_file(result: &ImageResult, layer: usize, path: &str) -> Option<String> {
        let blob = result
            .layout
            .join("blobs/sha256")
            .join(result.layers[layer].digest.hex());
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
        let mut archive = tar::Archive::new(gz);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if format!("/{}", e.path().unwrap().display()) == path {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                return Some(s);
            }
        }
        None
    }

    fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
        record
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    #[test]
    fn status_d_records_match_dpkg_and_sit_in_the_layer_with_the_package_files() {
        let out = tmp();
        let result = cxx(out.path());
        let names: Vec<&str> = result.packages.iter().map(|p| p.name.as_str()).collect();
        for want in ["libc6", "libstdc++6", "libgcc-s1", "libwxbase3.2-1"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // libwxbase3.2-1 ships a machine-readable copyright file; its license reaches the SBOM.
        let wx = result
            .packages
            .iter()
            .find(|p| p.name == "libwxbase3.2-1")
            .unwrap();
        assert!(
            wx.license
                .as_deref()
                .is_some_and(|l| l.contains("wxWindows")),
            "{:?}",
            wx.license
        );
        for pkg in &result.packages {
            let record_path = format!("/var/lib/dpkg/status.d/{}", pkg.name);
            let layers: Vec<usize> = result
                .files
                .iter()
                .filter(|f| matches!(&f.origin, Origin::Package { name, .. } if *name == pkg.name))
                .map(|f| f.layer)
                .collect();
            assert!(!layers.is_empty(), "{} has no files", pkg.name);
            for layer in layers {
                let record = layer_file(&result, layer, &record_path)
                    .unwrap_or_else(|| panic!("{record_path} not in layer {layer}"));
                let dpkg = tool_output(Command::new("dpkg-query").args([
                    "-W",
                    "-f",
                    "${Version} ${Architecture}",
                    &pkg.name,
                ]));
                let ours = format!(
                    "{} {}",
                    field(&record, "Version").unwrap(),
                    field(&record, "Architecture").unwrap()
                );
                assert_eq!(ours, dpkg, "{}", pkg.name);
                assert_eq!(field(&record, "Package"), Some(pkg.name.as_str()));
                assert_eq!(field(&record, "Status"), Some("install ok installed"));
            }
        }
    }

    #[test]
    fn every_file_has_an_origin_and_merged_usr_paths_attribute_to_their_package() {
        let out = tmp();
        let result = cxx(out.path());
        let find = |p: &str| {
            result
                .files
                .iter()
                .find(|f| f.path == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert!(
            matches!(&find("/usr/local/bin/hello").origin, Origin::Workspace { target } if target == "hello")
        );
        // libc6 lists /lib/x86_64-linux-gnu/libc.so.6; the image has the /usr spelling.
        assert!(
            matches!(&find("/usr/lib/x86_64-linux-gnu/libc.so.6").origin, Origin::Package { name, .. } if name == "libc6")
        );
        assert!(matches!(find("/etc/passwd").origin, Origin::Generated));
        assert_eq!(find("/usr/lib/x86_64-linux-gnu/libc.so.6").layer, 0);
        let wx = result
            .files
            .iter()
            .find(|f| f.path.contains("libwx_baseu-3.2.so"))
            .unwrap();
        assert_eq!(wx.layer, 1);
        let (d, size) = Digest::of_file(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        assert_eq!(
            (
                find("/usr/lib/x86_64-linux-gnu/libc.so.6").sha256,
                find("/usr/lib/x86_64-linux-gnu/libc.so.6").size
            ),
            (d, size)
        );
    }
}

mod golden {
    use super::*;

    /// Library versions differ between machines, so digests, sizes and the package lists in
    /// history texts are replaced by placeholders; everything kiln decides itself stays literal.
    fn normalise(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    match (k.as_str(), &*val) {
                        ("digest", _) => *val = "<digest>".into(),
                        ("size", _) => *val = 0.into(),
                        ("diff_ids", serde_json::Value::Array(a)) => {
                            *val = vec!["<diff_id>"; a.len()].into()
                        }
                        ("created_by", serde_json::Value::String(s)) => {
                            *val = s.split(" (").next().unwrap().to_string().into()
                        }
                        _ => normalise(val),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(normalise),
            _ => {}
        }
    }

    fn compare(name: &str, actual: &serde_json::Value) {
        compare_text(
            name,
            &(serde_json::to_string_pretty(actual).unwrap() + "\n"),
        );
    }

    /// Golden files are rewritten only when asked (`KILN_UPDATE_GOLDEN=1`); a missing one fails,
    /// so a test can never pass by comparing what it just wrote with itself.
    pub(crate) fn compare_text(name: &str, text: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/image/golden")
            .join(name);
        if std::env::var_os("KILN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "golden file {} unreadable ({e}); run with KILN_UPDATE_GOLDEN=1 to write it",
                path.display()
            )
        });
        assert_eq!(
            golden, text,
            "golden {name} (KILN_UPDATE_GOLDEN=1 rewrites)"
        );
    }

    #[test]
    fn config_index_and_manifest_match_the_golden_shape() {
        let out = tmp();
        let result = cxx(out.path());
        let read = |d: &str| -> serde_json::Value {
            let digest: Digest = d.parse().unwrap();
            serde_json::from_slice(
                &std::fs::read(result.layout.join("blobs/sha256").join(digest.hex())).unwrap(),
            )
            .unwrap()
        };
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(result.layout.join("index.json")).unwrap())
                .unwrap();
        let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
        let mut config = read(manifest["config"]["digest"].as_str().unwrap());
        normalise(&mut index);
        normalise(&mut manifest);
        normalise(&mut config);
        compare("index.json", &index);
        compare("manifest.json", &manifest);
        compare("config.json", &config);
    }
}

mod listing {
    use super::*;

    /// `type mode uid:gid mtime path[ -> target]` for every entry of a layer, in archive order.
    fn listing(result: &ImageResult, layer: usize) -> String {
        let blob = result
            .layout
            .join("blobs/sha256")
            .join(result.layers[layer].digest.hex());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(blob).unwrap(),
        ));
        let mut out = String::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Regular => '-',
                other => panic!("unexpected entry type {other:?}"),
            };
            assert_eq!(h.mtime().unwrap() as i64, EPOCH);
            assert_eq!(
                (h.username().unwrap(), h.groupname().unwrap()),
                (Some(""), Some(""))
            );
            let link = e
                .link_name()
                .unwrap()
                .map(|l| format!(" -> {}", l.display()))
                .unwrap_or_default();
            out.push_str(&format!(
                "{kind} {:04o} {}:{} {}{link}\n",
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                e.path().unwrap().display()
            ));
        }
        out
    }

    /// The base layer's listing holds only names Debian 12 amd64 fixes (loader, libc, libm and
    /// the generated files), so it is golden as is.
    #[test]
    fn base_and_service_layer_listings_match_the_golden_files() {
        let out = tmp();
        let result = cxx(out.path());
        for (layer, name) in [(0, "base-layer.txt"), (2, "service-layer.txt")] {
            super::golden::compare_text(name, &listing(&result, layer));
        }
    }
}

mod closure {
    use super::*;

    #[test]
    fn dlopened_libraries_come_with_their_own_closure_and_nothing_unneeded_is_copied() {
        let out = tmp();
        let mut req = request("hello", Family::Cxx, &programs().cxx_a, out.path());
        req.extra_libraries = vec!["libwx_baseu_net-3.2.so.0".into()];
        let result = assemble(&ProcessRunner, &req).unwrap();
        let paths: Vec<&str> = result.files.iter().map(|f| f.path.as_str()).collect();
        assert!(
            paths.iter().any(|p| p.contains("libwx_baseu_net-3.2.so.0")),
            "{paths:?}"
        );
        let plain = cxx(&out.path().join("plain"));
        let plain_paths: Vec<&str> = plain.files.iter().map(|f| f.path.as_str()).collect();
        assert!(!plain_paths.iter().any(|p| p.contains("libwx_baseu_net")));
        assert!(
            !plain_paths.iter().any(|p| p.contains("libwx_baseu_xml")),
            "only what the binary needs"
        );
        // Same base layer either way: the extra library is a runtime concern.
        assert_eq!(result.layers[0].digest, plain.layers[0].digest);
        assert_ne!(result.layers[1].digest, plain.layers[1].digest);
    }
}
