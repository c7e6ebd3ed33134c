//! A kiln action as a canonical REAPI `Command` + `Action`; the Action's digest is the remote
//! cache key, so everything that decides an action's outputs must enter it, and nothing
//! machine-specific may (the same rule as [`crate::cache::key`]).
//!
//! | kiln                                      | REAPI                                          |
//! |-------------------------------------------|------------------------------------------------|
//! | `program` then `argv`                     | `Command.arguments` (as the templates, `$WS`)  |
//! | allow-listed environment (set ones only)  | `Command.environment_variables`, sorted by name|
//! | `working_directory` (`""` = workspace)    | `Command.working_directory`                    |
//! | input files with digests                  | `Action.input_root_digest` ([`super::merkle`]) |
//! | output paths                              | `Command.output_paths` (API ≥ 2.1) or `output_files`, sorted |
//! | toolchain fingerprint (host toolchains)   | platform property `kiln-toolchain`             |
//! | a Debian toolchain's root, for execution  | `kiln-toolchain-root` ([`super::toolchain_root`]) |
//! | extra platform properties                 | `Platform.properties`, sorted by name, value   |
//! | cache key version ([`crate::cache::key::KEY_VERSION`]) | `Action.salt`                     |
//!
//! The platform goes into both `Command.platform` and `Action.platform` (REAPI 2.2 moved it; old
//! and new servers each read one). No timeout and no `do_not_cache` are set, so they cannot
//! split the key.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use prost::Message;

use super::blob::BlobDigest;
use super::error::RemoteError;
use super::merkle::{self, InputFile, InputRoot};
use crate::digest::Digest;

/// Platform property naming the toolchain's fingerprint.
pub const TOOLCHAIN_PROPERTY: &str = "kiln-toolchain";

/// What the executor tells the remote cache about one action. Owned by this module so the
/// remote client does not depend on how the build plan is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAction {
    pub program: String,
    /// Arguments after the program.
    pub argv: Vec<String>,
    /// The allow-listed variables that are set, with their values.
    pub env: Vec<(String, String)>,
    /// Relative to the input root; empty for the root itself.
    pub working_directory: String,
    /// Every file the action reads, relative to the input root.
    pub inputs: Vec<InputFile>,
    /// What the action writes, relative to the working directory; results come back under
    /// these same strings.
    pub outputs: Vec<String>,
    /// The `kiln-toolchain` property: None for an action that names its toolchain another way
    /// (a Debian toolchain's root, [`super::toolchain_root`]).
    pub toolchain: Option<Digest>,
    pub platform: Vec<(String, String)>,
    pub salt: String,
    /// Blobs the action needs in the CAS besides its input root (a toolchain root's pins, named
    /// by a platform property): uploaded with it for execution.
    pub blobs: Vec<(BlobDigest, Vec<u8>)>,
}

/// The encoded messages and their digests.
#[derive(Clone, Debug)]
pub struct EncodedAction {
    pub digest: BlobDigest,
    pub action: Vec<u8>,
    pub command_digest: BlobDigest,
    pub command: Vec<u8>,
    pub input_root: InputRoot,
    /// `outputs`, sorted and deduplicated.
    pub outputs: Vec<String>,
}

impl RemoteAction {
    /// Encodes the action; `output_paths` chooses the REAPI 2.1 field (see
    /// [`super::capabilities::Capabilities::output_paths`]).
    pub fn encode(&self, output_paths: bool) -> Result<EncodedAction, RemoteError> {
        let mut env = self.env.clone();
        env.sort();
        for w in env.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(RemoteError::DuplicateEnv {
                    name: w[0].0.clone(),
                });
            }
        }
        let mut outputs = self.outputs.clone();
        for o in &outputs {
            merkle::components(o, |reason| RemoteError::OutputPath {
                path: o.clone(),
                reason,
            })?;
        }
        outputs.sort();
        outputs.dedup();
        if !self.working_directory.is_empty() {
            merkle::components(&self.working_directory, |reason| RemoteError::InputPath {
                path: self.working_directory.clone(),
                reason,
            })?;
        }
        let mut properties = self.platform.clone();
        if let Some(t) = &self.toolchain {
            properties.push((TOOLCHAIN_PROPERTY.to_string(), t.to_string()));
        }
        properties.sort();
        let platform = reapi::Platform {
            properties: properties
                .into_iter()
                .map(|(name, value)| reapi::platform::Property { name, value })
                .collect(),
        };
        #[allow(deprecated)] // output_files: read by servers before REAPI 2.1.
        let command = reapi::Command {
            arguments: std::iter::once(self.program.clone())
                .chain(self.argv.iter().cloned())
                .collect(),
            environment_variables: env
                .into_iter()
                .map(|(name, value)| reapi::command::EnvironmentVariable { name, value })
                .collect(),
            output_files: if output_paths {
                Vec::new()
            } else {
                outputs.clone()
            },
            output_paths: if output_paths {
                outputs.clone()
            } else {
                Vec::new()
            },
            platform: Some(platform.clone()),
            working_directory: self.working_directory.clone(),
            ..Default::default()
        };
        let command = command.encode_to_vec();
        let command_digest = BlobDigest::of(&command);
        let input_root = merkle::input_root(&self.inputs)?;
        let action = reapi::Action {
            command_digest: Some(command_digest.to_proto()),
            input_root_digest: Some(input_root.digest.to_proto()),
            salt: self.salt.clone().into_bytes(),
            platform: Some(platform),
            ..Default::default()
        }
        .encode_to_vec();
        Ok(EncodedAction {
            digest: BlobDigest::of(&action),
            action,
            command_digest,
            command,
            input_root,
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> RemoteAction {
        RemoteAction {
            program: "g++".into(),
            argv: vec!["-c".into(), "a.cpp".into(), "-o".into(), "$OUT/a.o".into()],
            env: vec![("CPATH".into(), "/x".into())],
            working_directory: String::new(),
            inputs: vec![InputFile {
                path: "src/a.cpp".into(),
                blob: BlobDigest::of(b"int main(){}"),
                executable: false,
            }],
            outputs: vec!["a.o".into()],
            toolchain: Some(Digest::of(b"gcc-12")),
            platform: vec![],
            salt: "kiln-action-key-v2".into(),
            blobs: vec![],
        }
    }

    fn key(a: &RemoteAction) -> BlobDigest {
        a.encode(true).unwrap().digest
    }

    #[test]
    fn every_input_class_changes_the_action_digest() {
        let reference = key(&action());
        type Change = Box<dyn Fn(&mut RemoteAction)>;
        let cases: Vec<(&str, Change)> = vec![
            ("program", Box::new(|a| a.program = "clang++".into())),
            ("argv", Box::new(|a| a.argv.push("-O2".into()))),
            ("env", Box::new(|a| a.env[0].1 = "/y".into())),
            (
                "working directory",
                Box::new(|a| a.working_directory = "src".into()),
            ),
            (
                "input contents",
                Box::new(|a| a.inputs[0].blob = BlobDigest::of(b"x")),
            ),
            (
                "input path",
                Box::new(|a| a.inputs[0].path = "src/b.cpp".into()),
            ),
            ("outputs", Box::new(|a| a.outputs.push("a.d".into()))),
            (
                "toolchain",
                Box::new(|a| a.toolchain = Some(Digest::of(b"gcc-13"))),
            ),
            ("no toolchain property", Box::new(|a| a.toolchain = None)),
            (
                "platform",
                Box::new(|a| a.platform.push(("OSFamily".into(), "linux".into()))),
            ),
            ("salt", Box::new(|a| a.salt = "kiln-action-key-v3".into())),
        ];
        for (what, change) in cases {
            let mut a = action();
            change(&mut a);
            assert_ne!(key(&a), reference, "{what} ignored");
        }
    }

    #[test]
    fn order_of_env_and_outputs_does_not_change_the_digest() {
        let mut a = action();
        a.env.push(("ADA_INCLUDE_PATH".into(), "/a".into()));
        a.outputs.push("a.d".into());
        let mut b = a.clone();
        b.env.reverse();
        b.outputs.reverse();
        assert_eq!(key(&a), key(&b));
        let enc = a.encode(true).unwrap();
        let cmd = reapi::Command::decode(enc.command.as_slice()).unwrap();
        let names: Vec<_> = cmd.environment_variables.iter().map(|e| &e.name).collect();
        assert_eq!(names, ["ADA_INCLUDE_PATH", "CPATH"]);
        assert_eq!(cmd.output_paths, ["a.d", "a.o"]);
        assert_eq!(cmd.arguments[0], "g++");
    }

    #[test]
    fn older_servers_get_output_files() {
        let enc = action().encode(false).unwrap();
        let cmd = reapi::Command::decode(enc.command.as_slice()).unwrap();
        #[allow(deprecated)]
        let files = cmd.output_files;
        assert_eq!(files, ["a.o"]);
        assert!(cmd.output_paths.is_empty());
    }

    #[test]
    fn bad_actions_are_refused() {
        let mut a = action();
        a.env.push(("CPATH".into(), "/z".into()));
        assert!(matches!(
            a.encode(true),
            Err(RemoteError::DuplicateEnv { .. })
        ));
        let mut a = action();
        a.outputs.push("../escape".into());
        assert!(matches!(
            a.encode(true),
            Err(RemoteError::OutputPath { .. })
        ));
    }
}
