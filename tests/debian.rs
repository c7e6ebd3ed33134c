//! The Debian toolchain foundation against a real (small, local) archive: .debs made by
//! dpkg-deb, indexes by apt-ftparchive, InRelease signed by a throw-away gpg key and checked by
//! the real gpgv, all served over loopback HTTP.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use kiln::debian::extract::ExtractError;
use kiln::debian::http::{HttpError, ReqwestHttp};
use kiln::debian::index::IndexError;
use kiln::debian::locked::LockedPackage;
use kiln::debian::resolve::ResolveError;
use kiln::debian::signature::SignatureError;
use kiln::debian::store::{DownloadError, Downloads};
use kiln::debian::{extract, Archive, DebianError};
use kiln::digest::Digest;
use kiln::exec::ProcessRunner;
use support::file_server::FileServer;
use support::kiln::{Kiln, Run};
use support::local_archive::{archive, copy_mirror};
use support::ports::free_port;

fn with_archive<T>(mirror: &str, keyring: &Path, cache: &Path, f: impl FnOnce(&Archive) -> T) -> T {
    let http = ReqwestHttp::new().unwrap();
    let a = Archive {
        http: &http,
        cas: None,
        runner: &ProcessRunner,
        keyring: keyring.to_path_buf(),
        downloads: Downloads::new(cache),
        mirrors: BTreeMap::from([
            ("stable".to_string(), mirror.to_string()),
            ("hashed".to_string(), mirror.to_string()),
        ]),
        component: "main".into(),
        architecture: "amd64".into(),
        now: unix_now(),
    };
    f(&a)
}

fn resolve(
    server: &FileServer,
    keyring: &Path,
    cache: &Path,
    roots: &[&str],
) -> Result<Vec<LockedPackage>, DebianError> {
    let roots: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    with_archive(&server.url, keyring, cache, |a| {
        a.resolve(&["stable".into()], &roots, false)
    })
}

/// The error chain as the CLI would print it, for assertions on what a user reads.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!("\ncaused by: {c}"));
        cur = c.source();
    }
    s
}

#[test]
fn resolves_alternatives_virtual_packages_and_version_constraints() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(&server, &archive().keyring, cache.path(), &["app"]).unwrap();
    let names: Vec<String> = got
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    // libgood 2.0, not 1.0 (>= 2) and not libalt (first satisfiable alternative); provider for
    // virt-thing; base-lib from Pre-Depends; the Essential must-have is not implied.
    assert_eq!(
        names,
        ["app 1.0", "base-lib 1.0", "libgood 2.0", "provider 1.0"]
    );
    for p in &got {
        let deb = archive().mirror.join(&p.filename);
        let (digest, size) = Digest::of_file(&deb).unwrap();
        assert_eq!((p.sha256, p.size), (digest, size), "{}", p.name);
        assert_eq!(
            (p.architecture.as_str(), p.suite.as_str()),
            ("amd64", "stable")
        );
    }
    let base = got.iter().find(|p| p.name == "base-lib").unwrap();
    assert_eq!(
        (base.source.as_str(), base.source_version.as_str()),
        ("base-src", "0.9-1")
    );
    // The Packages.xz is cached by digest: a second resolve fetches only InRelease.
    resolve(&server, &archive().keyring, cache.path(), &["app"]).unwrap();
    assert_eq!(server.requests("/dists/stable/InRelease"), 2);
    assert_eq!(
        server.requests("/dists/stable/main/binary-amd64/Packages.xz"),
        1
    );
}

#[test]
fn unknown_names_get_the_nearest_and_unsatisfiable_ones_the_chain() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let e = resolve(&server, &archive().keyring, cache.path(), &["libgod"]).unwrap_err();
    let DebianError::Resolve(ResolveError::Unknown { suggestions, .. }) = &e else {
        panic!("{}", chain(&e))
    };
    assert_eq!(suggestions, &["libgood"]);
    let e = resolve(&server, &archive().keyring, cache.path(), &["needs-new"]).unwrap_err();
    assert!(
        chain(&e).contains("needs-new 1.0 needs libgood (>= 3), which nothing satisfies (the index has libgood 2.0 (amd64), libgood 1.0 (amd64))"),
        "{}",
        chain(&e)
    );
}

#[test]
fn an_inrelease_with_a_bad_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = copy_mirror(dir.path());
    let inrelease = mirror.join("dists/stable/InRelease");
    let text = fs::read_to_string(&inrelease).unwrap();
    // Change one signed byte (the codename), keeping the signature.
    fs::write(
        &inrelease,
        text.replacen("Codename: kiln-test", "Codename: kiln-tesT", 1),
    )
    .unwrap();
    let server = FileServer::start(mirror.clone());
    let e = resolve(
        &server,
        &archive().keyring,
        &dir.path().join("cache"),
        &["app"],
    )
    .unwrap_err();
    let DebianError::Index(IndexError::Signature {
        source: SignatureError::Bad { detail, .. },
        ..
    }) = &e
    else {
        panic!("{}", chain(&e))
    };
    assert!(detail.starts_with("BADSIG"), "{detail}");
    // Nothing past the signature was fetched.
    assert_eq!(
        server.requests("/dists/stable/main/binary-amd64/Packages.xz"),
        0
    );
}

#[test]
fn an_inrelease_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = FileServer::start(archive().mirror.clone());
    // Debian's own keyring does not hold the test key.
    let debian = Path::new(kiln::debian::signature::DEBIAN_KEYRING);
    let e = resolve(&server, debian, dir.path(), &["app"]).unwrap_err();
    assert!(
        chain(&e).contains("is not signed by a key in"),
        "{}",
        chain(&e)
    );
    assert!(chain(&e).contains("NO_PUBKEY"), "{}", chain(&e));
}

#[test]
fn a_packages_file_that_does_not_match_the_signed_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = copy_mirror(dir.path());
    let packages = mirror.join("dists/stable/main/binary-amd64/Packages.xz");
    let mut bytes = fs::read(&packages).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&packages, bytes).unwrap();
    let server = FileServer::start(mirror);
    let e = resolve(
        &server,
        &archive().keyring,
        &dir.path().join("cache"),
        &["app"],
    )
    .unwrap_err();
    let DebianError::Index(IndexError::Download { source, .. }) = &e else {
        panic!("{}", chain(&e))
    };
    assert!(
        matches!(**source, DownloadError::Mismatch { .. }),
        "{}",
        chain(&e)
    );
    // Refused, and nothing stored under the digest it claimed.
    assert!(fs::read_dir(dir.path().join("cache/debian/blobs"))
        .into_iter()
        .flatten()
        .flatten()
        .all(|d| fs::read_dir(d.path()).unwrap().next().is_none()));
}

#[test]
fn by_hash_indexes_are_fetched_by_hash_and_expired_ones_refused() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let release = fs::read_to_string(archive().mirror.join("dists/hashed/Release")).unwrap();
    assert!(release.contains("Acquire-By-Hash: yes"), "{release}");
    let got = with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        a.resolve(&["hashed".into()], &["app".into()], false)
    })
    .unwrap();
    assert_eq!(got.len(), 4);
    let hex = release
        .lines()
        .skip_while(|l| !l.starts_with("SHA256:"))
        .find(|l| l.ends_with(" main/binary-amd64/Packages.xz"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let by_hash = format!("/dists/hashed/main/binary-amd64/by-hash/SHA256/{hex}");
    assert_eq!(server.requests(&by_hash), 1);
    assert_eq!(
        server.requests("/dists/hashed/main/binary-amd64/Packages.xz"),
        0
    );

    // Two days on, the signed index has expired (Valid-Until is one day after its Date).
    let http = ReqwestHttp::new().unwrap();
    let later = Archive {
        http: &http,
        cas: None,
        runner: &ProcessRunner,
        keyring: archive().keyring.clone(),
        downloads: Downloads::new(cache.path()),
        mirrors: BTreeMap::from([("hashed".to_string(), server.url.clone())]),
        component: "main".into(),
        architecture: "amd64".into(),
        now: unix_now() + 2 * 86_400,
    };
    let e = later
        .resolve(&["hashed".into()], &["app".into()], false)
        .unwrap_err();
    assert!(
        matches!(e, DebianError::Index(IndexError::Stale { .. })),
        "{}",
        chain(&e)
    );
    assert!(chain(&e).contains("stale or replayed"), "{}", chain(&e));
}

#[test]
fn an_unreachable_mirror_gives_a_clear_error() {
    // A port that was free a moment ago and that nothing listens on.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let e = with_archive(&url, &archive().keyring, cache.path(), |a| {
        a.resolve(&["stable".into()], &["app".into()], false)
    })
    .unwrap_err();
    let DebianError::Index(IndexError::Fetch {
        source: HttpError::Unreachable { url: u, .. },
        ..
    }) = &e
    else {
        panic!("{}", chain(&e))
    };
    assert_eq!(u, &format!("{url}/dists/stable/InRelease"));
    assert!(chain(&e).contains("KILN_DEBIAN_MIRROR"), "{}", chain(&e));
}

#[test]
fn a_corrupted_deb_is_refused_and_fetched_again() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(&server, &archive().keyring, cache.path(), &["libalt"]).unwrap();
    let p = &pkgs[0];
    let url_path = format!("/{}", p.filename);
    with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        // The mirror serves a damaged file twice in a row: refused, nothing stored.
        server.corrupt(&url_path, 2);
        let e = a.fetch(p).unwrap_err();
        assert!(
            chain(&e).starts_with("fetching libalt 1.0 (amd64)\ncaused by: "),
            "{}",
            chain(&e)
        );
        assert!(
            chain(&e).contains(&format!("expected {} bytes with {}", p.size, p.sha256)),
            "{}",
            chain(&e)
        );
        assert!(!a.downloads.blob_path(&p.sha256).exists());
        // Damaged once: the retry gets the good copy.
        server.corrupt(&url_path, 1);
        let path = a.fetch(p).unwrap();
        assert_eq!(Digest::of_file(&path).unwrap().0, p.sha256);
        assert_eq!(server.requests(&url_path), 4);
        // Truncated in the cache (a full disk, a crash): refused and fetched again.
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() / 2]).unwrap();
        let again = a.fetch(p).unwrap();
        assert_eq!(fs::read(&again).unwrap(), full);
        assert_eq!(server.requests(&url_path), 5);
        // Intact in the cache: no request.
        a.fetch(p).unwrap();
        assert_eq!(server.requests(&url_path), 5);
    });
}

#[test]
fn an_edited_lock_entry_is_caught_naming_the_package() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(&server, &archive().keyring, cache.path(), &["libgood"]).unwrap();
    with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        // A version edited by hand: the .deb's own control data disagrees.
        let mut edited = pkgs.clone();
        edited[0].version = "2.1".into();
        let e = a.trees(&edited).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the lock says libgood has Version \"2.1\", but its .deb (sha256 as locked) says \"2.0\""
        );
        // A sha256 edited by hand: the download does not match it, and the package is named.
        let mut edited = pkgs.clone();
        edited[0].sha256 = Digest::of(b"something else");
        let e = a.trees(&edited).unwrap_err();
        assert!(
            chain(&e).starts_with("fetching libgood 2.0 (amd64)\n"),
            "{}",
            chain(&e)
        );
        assert!(!a.downloads.blob_path(&edited[0].sha256).exists());
        // The untouched entry still works.
        assert_eq!(a.trees(&pkgs).unwrap()[0].control.version, "2.0");
    });
}

#[test]
fn trees_are_usr_merged_and_keep_the_debs_control_data() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(&server, &archive().keyring, cache.path(), &["base-lib"]).unwrap();
    let trees = with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        a.trees(&pkgs)
    })
    .unwrap();
    let t = &trees[0];
    let root = t.root();
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/libbase.so.1")).unwrap(),
        "not really a library\n"
    );
    assert_eq!(
        fs::read_link(root.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        fs::read_link(root.join("usr/lib/libbase.so")).unwrap(),
        Path::new("../../lib/libbase.so.1")
    );
    // The symlink resolves inside the tree through the usr-merge link.
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/libbase.so")).unwrap(),
        "not really a library\n"
    );
    assert_eq!(
        (
            t.control.package.as_str(),
            t.control.version.as_str(),
            t.control.architecture.as_str()
        ),
        ("base-lib", "1.0", "amd64")
    );
    assert_eq!(
        (t.control.source.as_str(), t.control.source_version.as_str()),
        ("base-src", "0.9-1")
    );
    let md5 = md5_of(b"not really a library\n");
    assert_eq!(t.control.md5sums.get("lib/libbase.so.1"), Some(&md5));
    // Files are stored read-only: every root hardlinks the same inode.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root.join("usr/lib/libbase.so.1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "{mode:o}");
}

/// md5 by the system tool, so the expected value does not come from kiln's own reading.
fn md5_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, bytes).unwrap();
    let out = std::process::Command::new("md5sum")
        .arg(&f)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn trees_unpack_from_xz_zstd_and_gzip_members() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(
        &server,
        &archive().keyring,
        cache.path(),
        &["libgood", "libalt", "provider"],
    )
    .unwrap();
    let trees = with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        a.trees(&pkgs)
    })
    .unwrap();
    for (p, t) in pkgs.iter().zip(&trees) {
        let deb = archive().mirror.join(&p.filename);
        let members = std::process::Command::new("ar")
            .arg("t")
            .arg(&deb)
            .output()
            .unwrap();
        let readme = t.root().join(format!("usr/share/doc/{}/README", p.name));
        assert_eq!(
            fs::read_to_string(&readme).unwrap(),
            format!("{} {}\n", p.name, p.version),
            "{}",
            String::from_utf8_lossy(&members.stdout)
        );
    }
    let member = |name: &str| {
        let p = pkgs.iter().find(|p| p.name == name).unwrap();
        let out = std::process::Command::new("ar")
            .arg("t")
            .arg(archive().mirror.join(&p.filename))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(member("libalt").contains("data.tar.zst"));
    assert!(member("provider").contains("data.tar.gz"));
    assert!(member("libgood").contains("data.tar.xz"));
}

#[test]
fn the_root_stacks_trees_once_and_repairs_an_interrupted_build() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(&server, &archive().keyring, cache.path(), &["app"]).unwrap();
    let downloads = Downloads::new(cache.path());
    // What a kill -9 half-way through leaves: a staging root of a process that is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = downloads.tmp_dir().join(format!("root-{dead}-abc123"));
    fs::create_dir_all(stale.join("root/usr/share")).unwrap();
    let (set, root) = with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        a.root(&pkgs)
    })
    .unwrap();
    assert!(
        !stale.exists(),
        "the dead process's staging directory is swept"
    );
    assert_eq!(root, kiln::debian::root::root_dir(&downloads, &set));
    for p in [
        "usr/lib/libbase.so.1",
        "usr/share/doc/app/README",
        "usr/share/doc/provider/README",
    ] {
        assert!(root.join(p).is_file(), "{p}");
    }
    for d in ["proc", "dev", "tmp", "ws"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    // The root's dpkg database is what the image code reads: owners and versions come from the
    // pinned packages' own control data.
    let db = kiln::dpkg::Database::load(&root).unwrap();
    let base = pkgs.iter().find(|p| p.name == "base-lib").unwrap();
    let owner = db
        .owner("/usr/lib/libbase.so.1")
        .expect("the library has an owner");
    assert_eq!(
        (owner.name.as_str(), owner.version.as_str()),
        ("base-lib", base.version.as_str())
    );
    assert!(db.owner("/usr/lib/not-shipped.so").is_none());
    use std::os::unix::fs::MetadataExt;
    let tree = extract::tree_dir(
        &downloads,
        &pkgs.iter().find(|p| p.name == "base-lib").unwrap().sha256,
    );
    assert_eq!(
        fs::metadata(root.join("usr/lib/libbase.so.1"))
            .unwrap()
            .ino(),
        fs::metadata(tree.join("root/usr/lib/libbase.so.1"))
            .unwrap()
            .ino(),
        "files are hard links into the package trees"
    );
    // Already materialised: no network at all, even with the mirror gone.
    let debs_fetched: usize = pkgs
        .iter()
        .map(|p| server.requests(&format!("/{}", p.filename)))
        .sum();
    assert_eq!(debs_fetched, pkgs.len());
    drop(server);
    let (_, again) = with_archive(
        "http://127.0.0.1:9",
        &archive().keyring,
        cache.path(),
        |a| a.root(&pkgs),
    )
    .unwrap();
    assert_eq!(again, root);
}

#[test]
fn two_packages_with_one_path_and_different_contents_conflict() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(
        &server,
        &archive().keyring,
        cache.path(),
        &["libgood", "libalt"],
    )
    .unwrap();
    let mut trees = with_archive(&server.url, &archive().keyring, cache.path(), |a| {
        a.trees(&pkgs)
    })
    .unwrap();
    // Give both trees' READMEs the same path by pretending libalt's tree is libgood's package.
    let good = trees
        .iter()
        .find(|t| t.control.package == "libgood")
        .unwrap()
        .clone();
    let mut fake = good.clone();
    fake.control.package = "zz-impostor".into();
    let staged = tempfile::tempdir().unwrap();
    fake.dir = staged.path().to_path_buf();
    fs::create_dir_all(staged.path().join("root/usr/share/doc/libgood")).unwrap();
    fs::write(
        staged.path().join("root/usr/share/doc/libgood/README"),
        "different\n",
    )
    .unwrap();
    trees.push(fake);
    let downloads = Downloads::new(cache.path());
    let e =
        kiln::debian::root::materialise(&downloads, &Digest::of(b"conflict"), &trees).unwrap_err();
    assert_eq!(
        e.to_string(),
        "usr/share/doc/libgood/README is shipped by both libgood:amd64 and zz-impostor:amd64 with different contents"
    );
    assert!(!kiln::debian::root::root_dir(&downloads, &Digest::of(b"conflict")).exists());
}

/// A .deb written by hand (ar + tar), for archives dpkg-deb would never produce.
fn hand_made_deb(path: &Path, data: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }
    let control = tar_gz(|b| {
        let text = b"Package: evil\nVersion: 1\nArchitecture: amd64\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "./control", &text[..]).unwrap();
    });
    let data = tar_gz(data);
    let mut ar = ar::Builder::new(fs::File::create(path).unwrap());
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.gz", control),
        ("data.tar.gz", data),
    ] {
        ar.append(
            &ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64),
            &bytes[..],
        )
        .unwrap();
    }
}

fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    body: &[u8],
) {
    let mut h = tar::Header::new_old();
    // Written into the header directly: tar's own path setters refuse `..`, which is the point.
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, body).unwrap();
}

type TarBody = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;

#[test]
fn unsafe_paths_in_a_deb_are_refused_and_leave_nothing_behind() {
    let cases: [(&str, TarBody, &str); 4] = [
        (
            "dotdot",
            Box::new(|b| raw_entry(b, "./usr/../../escape", tar::EntryType::Regular, None, b"x")),
            "contains `..`",
        ),
        (
            "absolute",
            Box::new(|b| raw_entry(b, "/etc/cron.d/evil", tar::EntryType::Regular, None, b"x")),
            "is absolute",
        ),
        (
            "through-symlink",
            Box::new(|b| {
                raw_entry(b, "./usr/x", tar::EntryType::Symlink, Some("/etc"), b"");
                raw_entry(b, "./usr/x/passwd", tar::EntryType::Regular, None, b"x");
            }),
            "goes through a symlink or file",
        ),
        (
            "climbing-symlink",
            Box::new(|b| {
                raw_entry(
                    b,
                    "./usr/up",
                    tar::EntryType::Symlink,
                    Some("../../.."),
                    b"",
                )
            }),
            "symlink points outside the tree",
        ),
    ];
    let cache = tempfile::tempdir().unwrap();
    let downloads = Downloads::new(cache.path());
    for (name, build, problem) in cases {
        let deb = cache.path().join(format!("{name}.deb"));
        hand_made_deb(&deb, build);
        let (digest, _) = Digest::of_file(&deb).unwrap();
        let e = extract::tree_for(&downloads, &deb, &digest).unwrap_err();
        let ExtractError::Unsafe { problem: p, .. } = &e else {
            panic!("{name}: {e}")
        };
        assert_eq!(*p, problem, "{name}");
        assert!(!extract::tree_dir(&downloads, &digest).exists(), "{name}");
    }
    assert!(!cache.path().join("escape").exists());
    assert_eq!(
        fs::read_dir(downloads.tmp_dir()).unwrap().count(),
        0,
        "staging removed"
    );
}

fn kiln_resolve(server_url: &str, cache: &Path, packages: &[&str]) -> Run {
    debian_kiln(server_url, cache).run(toolchain_args("resolve", packages))
}

#[test]
fn kiln_toolchain_resolve_prints_the_pinned_set_and_names_unknown_packages() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let out = kiln_resolve(&server.url, cache.path(), &["app"]);
    out.assert_ok("kiln toolchain resolve");
    let doc: toml::Value = toml::from_str(&String::from_utf8(out.stdout.clone()).unwrap()).unwrap();
    let list = doc["debian"]["package"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app", "base-lib", "libgood", "provider"]);
    let base = &list[1];
    let deb = archive().mirror.join(base["filename"].as_str().unwrap());
    let (digest, size) = Digest::of_file(&deb).unwrap();
    assert_eq!(base["sha256"].as_str().unwrap(), digest.to_string());
    assert_eq!(base["size"].as_integer().unwrap() as u64, size);
    assert_eq!(base["source"].as_str(), Some("base-src"));
    assert_eq!(base["source_version"].as_str(), Some("0.9-1"));
    // Same inputs, same bytes.
    assert_eq!(
        kiln_resolve(&server.url, cache.path(), &["app"]).stdout,
        out.stdout
    );

    let bad = kiln_resolve(&server.url, cache.path(), &["libgod"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = bad.stderr_text();
    assert!(
        stderr.contains("no package named \"libgod\" in the index; nearest: libgood"),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty());
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// kiln with the test archive served at `server_url` as its Debian mirror.
fn debian_kiln(server_url: &str, cache: &Path) -> Kiln {
    Kiln::outside()
        .env("KILN_DEBIAN_MIRROR", server_url)
        .env("KILN_CACHE", cache)
}

/// `toolchain <cmd>` for `packages` of the test archive's `stable` suite, trusting its key.
fn toolchain_args(cmd: &str, packages: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["toolchain", cmd, "--suite", "stable", "--keyring"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(archive().keyring.clone().into());
    args.extend(packages.iter().map(OsString::from));
    args
}

#[test]
fn a_run_killed_mid_download_is_repaired_by_the_next() {
    let server = FileServer::start(archive().mirror.clone());
    let cache = tempfile::tempdir().unwrap();
    let pkgs = resolve(&server, &archive().keyring, cache.path(), &["app"]).unwrap();
    let path_of = |name: &str| {
        format!(
            "/{}",
            pkgs.iter().find(|p| p.name == name).unwrap().filename
        )
    };
    // Trees are made in name order: app and base-lib are complete when libgood's download hangs.
    let held = path_of("libgood");
    server.hold(&held);
    let mut child = debian_kiln(&server.url, cache.path())
        .command(toolchain_args("root", &["app"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = cache.path().join("debian/tmp");
    let staging = |pid: u32| {
        fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("fetch-{pid}-"))
            })
            .count()
    };
    let start = std::time::Instant::now();
    while (server.requests(&held) == 0 || staging(child.id()) == 0)
        && start.elapsed() < std::time::Duration::from_secs(120)
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln exited before the held download"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(staging(child.id()), 1, "kiln is mid-download");
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    child.wait().unwrap();
    assert_eq!(
        staging(pid),
        1,
        "the killed run left its half download behind"
    );
    server.release();

    let out = debian_kiln(&server.url, cache.path())
        .run(toolchain_args("root", &["app"]))
        .ok("kiln toolchain root");
    let root = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(root.join("usr/share/doc/libgood/README").is_file());
    assert_eq!(staging(pid), 0, "swept");
    assert!(
        fs::read_dir(&tmp).unwrap().next().is_none(),
        "nothing left in staging"
    );
    // Complete trees from the killed run were kept; only the interrupted .deb was fetched again.
    assert_eq!(server.requests(&path_of("app")), 1);
    assert_eq!(server.requests(&held), 2);
}
