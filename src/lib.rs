//! kiln: a daemonless build system and OCI image builder for C++ and Ada services.
//!
//! The library holds everything; `main.rs` only turns the outcome into an exit code.
//! See ARCHITECTURE.md for how data flows from a recipe to a pushed image.

pub mod closure;
pub mod digest;
pub mod dpkg;
pub mod image;
pub mod layer;
pub mod registry;
