//! A small signed Debian archive built by the test itself with the real tools: dpkg-deb for
//! the .debs, apt-ftparchive for Packages and Release, xz, and gpg with a throw-away key (made
//! in a private GNUPGHOME, its agent stopped afterwards) for InRelease. The key's public half
//! is exported to `keyring.gpg`, which the tests pass instead of Debian's keyring.
//!
//! Packages (suite `stable`, component `main`, amd64):
//! - `app 1.0`: Pre-Depends `base-lib`; Depends `libgood (>= 2) | libalt`, `virt-thing`
//! - `libgood 1.0` and `libgood 2.0`; `libalt 1.0` (never chosen; data.tar.zst)
//! - `provider 1.0`: Provides `virt-thing` (data.tar.gz; the others use xz)
//! - `base-lib 1.0`: `Source: base-src (0.9-1)`, ships `/lib/libbase.so.1` (usr-merge) and a
//!   symlink `/usr/lib/libbase.so`
//! - `must-have 1.0`: Essential; `needs-new 1.0`: Depends `libgood (>= 3)` (unsatisfiable)
//!
//! Suite `hashed` lists the same packages, with `Acquire-By-Hash: yes` and a `Valid-Until`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct LocalArchive {
    /// The mirror directory (holds `dists/` and `pool/`).
    pub mirror: PathBuf,
    pub keyring: PathBuf,
    _dir: tempfile::TempDir,
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const BUILD: &str = r#"
deb() { # name version extra-control-lines [compression]
  local d="src/$1-$2"
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$1"
  printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: kiln <t@kiln.invalid>\nDescription: test package %s\n%b' \
    "$1" "$2" "$1" "$3" > "$d/DEBIAN/control"
  echo "$1 $2" > "$d/usr/share/doc/$1/README"
  (cd "$d" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum > DEBIAN/md5sums)
  mkdir -p mirror/pool/main
  dpkg-deb --root-owner-group "-Z${4:-xz}" --build "$d" "mirror/pool/main/$1_$2_amd64.deb" >/dev/null
}
mkdir -p src/base-lib-1.0/lib src/base-lib-1.0/usr/lib
echo 'not really a library' > src/base-lib-1.0/lib/libbase.so.1
ln -s ../../lib/libbase.so.1 src/base-lib-1.0/usr/lib/libbase.so
deb base-lib 1.0 'Source: base-src (0.9-1)\n'
deb app 1.0 'Pre-Depends: base-lib\nDepends: libgood (>= 2) | libalt, virt-thing\n'
deb libgood 1.0 ''
deb libgood 2.0 ''
deb libalt 1.0 '' zstd
deb provider 1.0 'Provides: virt-thing\n' gzip
deb must-have 1.0 'Essential: yes\n'
deb needs-new 1.0 'Depends: libgood (>= 3)\n'
cd mirror
mkdir -p dists/stable/main/binary-amd64
apt-ftparchive packages pool > dists/stable/main/binary-amd64/Packages
xz -k -9 dists/stable/main/binary-amd64/Packages
apt-ftparchive -o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=kiln-test \
  -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=main \
  release dists/stable > ../Release
mv ../Release dists/stable/Release
export GNUPGHOME="$PWD/../gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-gen-key 'kiln test archive <t@kiln.invalid>' ed25519 sign never
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --clearsign -o dists/stable/InRelease dists/stable/Release
# A second suite over the same pool, the way Debian publishes: files also by hash, and a
# Valid-Until one day after its Date.
mkdir -p dists/hashed/main/binary-amd64
cp dists/stable/main/binary-amd64/Packages* dists/hashed/main/binary-amd64/
apt-ftparchive -o APT::FTPArchive::DoByHash=true -o APT::FTPArchive::Release::Suite=hashed \
  -o APT::FTPArchive::Release::ValidTime=86400 release dists/hashed > ../Release
mv ../Release dists/hashed/Release
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --clearsign -o dists/hashed/InRelease dists/hashed/Release
gpg --batch --export > ../keyring.gpg
gpgconf --kill gpg-agent
"#;

/// The archive, built once per test binary; tests that change it work on a copy.
pub fn archive() -> &'static LocalArchive {
    static ARCHIVE: OnceLock<LocalArchive> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        sh(dir.path(), BUILD);
        LocalArchive {
            mirror: dir.path().join("mirror"),
            keyring: dir.path().join("keyring.gpg"),
            _dir: dir,
        }
    })
}

/// A private copy of the mirror directory, for tests that tamper with it.
pub fn copy_mirror(to: &Path) -> PathBuf {
    let dst = to.join("mirror");
    sh(
        to,
        &format!("cp -a '{}' '{}'", archive().mirror.display(), dst.display()),
    );
    dst
}
