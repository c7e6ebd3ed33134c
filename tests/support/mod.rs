//! Everything integration tests share, one concept a module: a temporary [`workspace`] and the
//! [`kiln`] binary run in it, `fixtures/engine` pinned to kiln's built-in toolchains
//! ([`engine`]), the real registry ([`registry_server`]) and the loopback fronts that
//! misbehave in front of it ([`hostile_front`], [`registry_proxy`]), the images pushed to it
//! ([`registry_images`]), a Debian mirror ([`local_archive`] served by [`file_server`]), image
//! fixture programs ([`image`]), a NetworkPolicy evaluator ([`netpol_eval`]) and free loopback
//! [`ports`].
//!
//! Every file in tests/ is its own crate and pulls this in with `mod support;`; each uses only
//! some helpers, so the rest would warn as dead code in that crate.
#![allow(dead_code)]

pub mod engine;
pub mod file_server;
pub mod hostile_front;
pub mod image;
pub mod kiln;
pub mod local_archive;
pub mod netpol_eval;
pub mod ports;
pub mod registry_images;
pub mod registry_proxy;
pub mod registry_server;
pub mod workspace;
