//! A target platform (`linux/amd64`, `linux/arm64`): what a build's binaries run on, as OCI
//! spells it, and what follows from it — the Debian architecture of its packages, the ELF
//! machine of its binaries, the multiarch triplet of its library directories and the dynamic
//! loader the closure and the image use.
//!
//! `linux/amd64` is the default. A workspace that builds for it alone keeps its outputs where
//! they always were (`out/bin/…`); one that builds for several platforms (or for another one)
//! puts each platform's under `out/<os>-<arch>/`, and `out/images/<service>/` is then the
//! image index over them.

use std::fmt;

/// The platforms kiln can build for.
const KNOWN: [Platform; 2] = [Platform::LINUX_AMD64, Platform::LINUX_ARM64];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// OCI `architecture` (`amd64`, `arm64`).
    pub architecture: &'static str,
    /// OCI `variant` (`v8` for arm64, as `docker` and `podman` report it).
    pub variant: Option<&'static str>,
    /// Debian's architecture name for the platform's packages.
    pub debian: &'static str,
    /// The multiarch triplet: `/usr/lib/<triplet>`.
    pub triplet: &'static str,
    /// `e_machine` of the platform's ELF files.
    pub elf_machine: u16,
    /// The dynamic loader (`PT_INTERP`) its binaries name.
    pub interpreter: &'static str,
    /// qemu-user's name for it (`qemu-aarch64`), to run its binaries on another machine.
    pub qemu: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown platform {given:?}; kiln builds for {}", known())]
pub struct PlatformError {
    pub given: String,
}

fn known() -> String {
    KNOWN
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Platform {
    pub const LINUX_AMD64: Platform = Platform {
        architecture: "amd64",
        variant: None,
        debian: "amd64",
        triplet: "x86_64-linux-gnu",
        elf_machine: 62, // EM_X86_64
        interpreter: "/lib64/ld-linux-x86-64.so.2",
        qemu: "qemu-x86_64",
    };
    pub const LINUX_ARM64: Platform = Platform {
        architecture: "arm64",
        variant: Some("v8"),
        debian: "arm64",
        triplet: "aarch64-linux-gnu",
        elf_machine: 183, // EM_AARCH64
        interpreter: "/lib/ld-linux-aarch64.so.1",
        qemu: "qemu-aarch64",
    };

    pub fn os(&self) -> &'static str {
        "linux"
    }

    /// `linux/amd64`, `linux/arm64` (a variant is accepted: `linux/arm64/v8`).
    pub fn parse(text: &str) -> Result<Platform, PlatformError> {
        let t = text.trim();
        KNOWN
            .iter()
            .find(|p| {
                let base = format!("{}/{}", p.os(), p.architecture);
                t == base || p.variant.is_some_and(|v| t == format!("{base}/{v}"))
            })
            .copied()
            .ok_or_else(|| PlatformError {
                given: text.to_string(),
            })
    }

    /// The platform whose ELF machine is `machine`, if kiln knows it.
    pub fn of_elf_machine(machine: u16) -> Option<Platform> {
        KNOWN.iter().find(|p| p.elf_machine == machine).copied()
    }

    pub fn is_default(&self) -> bool {
        *self == Platform::LINUX_AMD64
    }

    /// The directory name of its outputs under `out/` (`linux-arm64`), when a build keeps
    /// platforms apart (see [`crate::workspace::OutDir::of_platform`]).
    pub fn out_subdir(&self) -> String {
        format!("{}-{}", self.os(), self.architecture)
    }

    /// The library directories the platform's loader searches by default, in its order.
    pub fn default_library_dirs(&self) -> Vec<String> {
        vec![
            format!("/lib/{}", self.triplet),
            format!("/usr/lib/{}", self.triplet),
            "/lib".to_string(),
            "/usr/lib".to_string(),
        ]
    }
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::LINUX_AMD64
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os(), self.architecture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_names_the_known_ones_otherwise() {
        for p in KNOWN {
            assert_eq!(Platform::parse(&p.to_string()), Ok(p));
        }
        assert_eq!(Platform::parse("linux/arm64/v8"), Ok(Platform::LINUX_ARM64));
        let e = Platform::parse("linux/riscv64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown platform \"linux/riscv64\"; kiln builds for linux/amd64, linux/arm64"
        );
        assert_eq!(Platform::LINUX_ARM64.out_subdir(), "linux-arm64");
        assert_eq!(Platform::of_elf_machine(183), Some(Platform::LINUX_ARM64));
    }
}
