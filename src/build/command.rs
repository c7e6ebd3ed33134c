//! From an action's command-line template to the command that runs: the Ada binder's object
//! list filled in, `$OUT/` replaced by the action's staging directory and `$WS` by the
//! workspace's absolute path (see [`super::plan`] for why they are templates).

use std::path::PathBuf;

use super::plan::{self, Action};
use super::{io_ctx, ActionError, Executor};
use crate::debian::sandbox::WORKSPACE;
use crate::digest::Digest;
use crate::exec::Command;
use crate::toolchain::gnat;

impl Executor<'_> {
    /// The concrete command line, with the Ada binder's object list filled in.
    pub(super) fn argv(&self, action: &Action) -> Result<Vec<String>, ActionError> {
        let Some(binder) = &action.binder_file else {
            return Ok(action.argv.clone());
        };
        let text = std::fs::read_to_string(self.root.join(binder))
            .map_err(io_ctx(format!("reading {}", binder.display())))?;
        let list = gnat::binder_link_list(&text, plan::FROM_STAGING);
        let mut out = Vec::new();
        for a in &action.argv {
            if a == "@BINDER_LIST@" {
                out.extend(list.iter().cloned());
            } else {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    pub(super) fn staging(&self, action: &Action) -> PathBuf {
        // One directory per action identity; the workspace lock keeps two processes apart.
        let d = Digest::of(action.id.as_bytes());
        crate::workspace::OutDir::of(self.root)
            .tmp()
            .join(&d.hex()[..16])
    }

    pub(super) fn command_line(&self, action: &Action) -> Result<Command, ActionError> {
        let tc = &self.toolchains[&action.toolchain];
        let staging = self.staging(action);
        if let Some(root) = &tc.root {
            // Inside the toolchain root: the workspace is at /ws, so `$WS` is too, and the
            // staging directory (under out/) is the same relative path below it.
            let ws = WORKSPACE;
            let rel = staging.strip_prefix(self.root).unwrap_or(&staging);
            let out_prefix = if action.in_staging {
                String::new()
            } else {
                format!("{}/", rel.display())
            };
            let args: Vec<String> = self
                .argv(action)?
                .into_iter()
                .map(|a| a.replace("$OUT/", &out_prefix).replace("$WS", ws))
                .collect();
            let cwd = if action.in_staging {
                format!("{WORKSPACE}/{}", rel.display())
            } else {
                WORKSPACE.to_string()
            };
            let program = tc.program(&action.program).to_string_lossy().into_owned();
            return Ok(root.sandbox.command(&program, &args, &cwd).die_with_kiln());
        }
        let ws = self.root.to_string_lossy();
        let out_prefix = if action.in_staging {
            String::new()
        } else {
            format!(
                "{}/",
                staging
                    .strip_prefix(self.root)
                    .unwrap_or(&staging)
                    .display()
            )
        };
        let args = self
            .argv(action)?
            .into_iter()
            .map(|a| a.replace("$OUT/", &out_prefix).replace("$WS", &ws))
            .collect();
        Ok(Command {
            program: tc.program(&action.program).to_path_buf(),
            args,
            cwd: Some(if action.in_staging {
                staging
            } else {
                self.root.to_path_buf()
            }),
            die_with_kiln: true,
            ..Command::default()
        })
    }
}
