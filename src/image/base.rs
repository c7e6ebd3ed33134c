//! The generated part of the base layer: users, name-service config, writable dirs, OS identity.
//!
//! Everything here is the same for every service (except the optional CA bundle), which is what
//! lets all images on a machine share one base layer.

use crate::dpkg::Database;

use super::planned::PlannedLayer;
use super::ImageError;

/// uid and gid of the `nonroot` user every service runs as (the distroless convention).
pub const NONROOT: u32 = 65532;

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";
// glibc 2.34+ has files and dns built in, so no libnss_* module has to be in the closure.
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Scanners identify the distribution from os-release before they read dpkg records.
const OS_RELEASE: &str = "/usr/lib/os-release";

/// The files kiln writes itself, and the two it takes from the system `db` describes (the OS
/// release and, when asked, the CA bundle).
pub fn add_generated(
    layer: &mut PlannedLayer,
    db: &Database,
    ca_certificates: bool,
) -> Result<(), ImageError> {
    layer.generated("/etc/passwd", PASSWD.as_bytes().to_vec())?;
    layer.generated("/etc/group", GROUP.as_bytes().to_vec())?;
    layer.generated("/etc/nsswitch.conf", NSSWITCH.as_bytes().to_vec())?;
    layer.dir("/tmp", 0o1777, 0)?;
    layer.dir("/root", 0o700, 0)?;
    layer.dir("/home/nonroot", 0o755, NONROOT)?;
    let os_release = db.host_path(OS_RELEASE);
    if os_release.exists() {
        layer.host_file(OS_RELEASE, &os_release, None)?;
        layer.symlink("/etc/os-release", "../usr/lib/os-release")?;
    }
    if ca_certificates {
        layer.host_file(CA_BUNDLE, &db.host_path(CA_BUNDLE), Some(0o644))?;
    }
    // Debian 12 is merged-/usr: the loader path in PT_INTERP and old-style library paths go
    // through these links to the real files under /usr.
    layer.symlink("/lib", "usr/lib")?;
    layer.symlink("/lib64", "usr/lib64")?;
    Ok(())
}
