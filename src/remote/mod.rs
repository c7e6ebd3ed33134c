//! A client of the Remote Execution API v2 (REAPI), the protocol of Bazel, Buck2 and BuildStream
//! that BuildGrid, Buildbarn, BuildBuddy and NativeLink serve; here, its remote cache.
//!
//! The executor calls three blocking functions ([`RemoteCache`]):
//!
//! ```text
//! let remote = RemoteCache::connect(&RemoteConfig::new(url).with_env_headers()?)?;
//! match remote.lookup(&action)? { Some(verified) => write outputs, None => run locally }
//! remote.upload(&action, &LocalRun { outputs, stdout, stderr })?;   // after a local success
//! ```
//!
//! Any `Err` means "the remote failed": fall back to local execution with one warning. No
//! result reaches the caller whose outputs did not hash to their digests.
//!
//! How a kiln action becomes a [`RemoteAction`] (the executor fills it; see [`action`] for how
//! it is encoded):
//! - `program` and `argv`: the action's command line *as templates* (`$WS`, `$OUT/` unexpanded),
//!   the same strings kiln's own key hashes, so two clones share results.
//! - `env`: the variables of [`crate::cache::key::ENV_ALLOWLIST`] that are set, with values.
//! - `working_directory`: `""` (the workspace) or, for actions run in their staging directory,
//!   a stable name for it such as `$OUT` — never the staging path itself, which differs per run.
//! - `inputs`: every file the action reads, workspace-relative, with digest and size: the
//!   sources and, for compiles, the dependencies discovered by an earlier run (the same set the
//!   full key covers). System headers are covered by the toolchain fingerprint instead.
//! - `outputs`: the staging names of the action's outputs (`ActionOutput::name`); results come
//!   back under the same names.
//! - `toolchain`: the toolchain fingerprint; `salt`: [`crate::cache::key::KEY_VERSION`].
//!
//! Layout: [`config`] (URL, instance, TLS, headers from the environment), [`client`] (channel,
//! runtime, headers), [`capabilities`], [`cas`] (blobs), [`action_cache`], [`merkle`] (input
//! root), [`action`] (Command + Action), [`blob`] (REAPI digests), [`cache`] (the facade),
//! [`execute`] (remote execution: `Execute`, `WaitExecution`, retries after
//! `FAILED_PRECONDITION`), [`workers`] (the Remote Workers API messages `kiln worker` uses),
//! [`settings`] (flags, `kiln.toml` and the user's config naming the remote for a build),
//! [`toolchain_root`] (a Debian toolchain's root as pins in the CAS, named by a platform
//! property), [`precondition`] (what a `FAILED_PRECONDITION` says was not met).
//!
//! The executor's side (what it looks up and uploads, and the fallback) is
//! `crate::build::remote`.

pub mod action;
pub mod action_cache;
pub mod blob;
pub mod cache;
pub mod capabilities;
pub mod cas;
pub mod client;
pub mod config;
pub mod error;
pub mod execute;
pub mod merkle;
pub mod precondition;
pub mod settings;
pub mod toolchain_root;
pub mod workers;

pub use action::RemoteAction;
pub use blob::BlobDigest;
pub use cache::{LocalOutput, LocalRun, RemoteCache, RemoteOutput, RemoteResult, Uploaded};
pub use capabilities::Capabilities;
pub use cas::Transfer;
pub use config::RemoteConfig;
pub use error::RemoteError;
pub use execute::Executed;
pub use merkle::InputFile;
