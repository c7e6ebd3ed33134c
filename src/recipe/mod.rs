//! Recipes: one TOML file per library, service or test in `recipes/`, read into typed values.
//!
//! The format is documented in docs/recipes.md. Validation that needs only one file (keys, types,
//! globs, paths) happens here; validation across files (unknown dependencies, cycles) happens in
//! [`crate::graph`]. Every error carries the file, line and column.
//!
//! Files: `model` (the typed values), `parse` (one file's keys and checks), `sources` (paths,
//! globs, Ada units), `image` (the `[image]` table), `deploy` (the `[deploy]` table), `reader`
//! (TOML with positions).

pub mod deploy;
pub use crate::diag;
mod image;
mod model;
mod parse;
pub mod reader;
mod sources;

pub use deploy::DeploySection;
pub use diag::Diagnostic;
pub use image::{parse_duration_ns, parse_size};
pub use model::{
    Healthcheck, ImageFile, ImageSection, Kind, Language, Recipe, SystemLib, TestFramework,
    TestSection,
};
pub use parse::{load, parse};
