//! kiln: a daemonless build system and OCI image builder for C++ and Ada services.
//!
//! The library holds everything; `main.rs` only turns the outcome into an exit code.
//! See ARCHITECTURE.md for how data flows from a recipe to a pushed image.

pub mod ada;
pub mod build;
pub mod cache;
pub mod cli;
pub mod closure;
pub mod debian;
pub mod deploy;
pub mod diag;
pub mod digest;
pub mod dpkg;
pub mod driver;
pub mod error;
pub mod exec;
pub mod graph;
pub mod image;
pub mod layer;
pub mod lock;
pub mod lockfile;
pub mod oci;
pub mod platform;
pub mod publish;
pub mod recipe;
pub mod registry;
pub mod relpath;
pub mod remote;
pub mod rfc3339;
pub mod sbom;
pub mod scan;
pub mod testing;
pub mod toolchain;
pub mod vcs;
pub mod verify;
pub mod worker;
pub mod workspace;
