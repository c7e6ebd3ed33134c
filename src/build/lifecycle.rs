//! One action's way through the cache: its key from the command line and input contents, then
//! *fresh* (the outputs in `out/` are the ones recorded for this key), *cached* (restored from an
//! action-cache entry whose discovered dependencies still match), *remote* (fetched from the
//! remote cache into the local one, then restored the same way; see [`super::remote`]), or *run*
//! (in its staging directory; outputs stored in the CAS, recorded in the action cache, uploaded
//! to the remote cache, then renamed into `out/`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::plan::{Action, Discover};
use super::state::State;
use super::{io_ctx, ActionError, Executor, Outcome};
use crate::cache::key::{allowed_env, full_key, KeyBuilder};
use crate::cache::{ActionEntry, OutputEntry, RestoreError};
use crate::debian::sandbox::WORKSPACE;
use crate::digest::Digest;
use crate::toolchain::{gcc, gnat};

impl Executor<'_> {
    pub(super) fn digest(&self, path: &Path) -> Result<Digest, ActionError> {
        if let Some(d) = self.left_digest(path) {
            return Ok(d);
        }
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        };
        self.stat
            .digest(&full)
            .map_err(io_ctx(format!("reading {}", path.display())))
    }

    pub(super) fn base_key_for(
        &self,
        action: &Action,
        argv: &[String],
    ) -> Result<Digest, ActionError> {
        self.base_key(action, argv)
    }

    fn base_key(&self, action: &Action, argv: &[String]) -> Result<Digest, ActionError> {
        let tc = &self.toolchains[&action.toolchain];
        let mut k = KeyBuilder::new(action.kind);
        k.toolchain(&tc.fingerprint);
        k.argv(std::slice::from_ref(&action.program));
        k.argv(argv);
        k.env(&allowed_env());
        for input in &action.inputs {
            let d = self.digest(input)?;
            k.input(&input.to_string_lossy(), &d);
        }
        Ok(k.finish())
    }

    /// The full key the recorded dependencies give with their current contents (None when one
    /// is gone).
    fn current_full_key(&self, base: &Digest, paths: &[String]) -> Option<Digest> {
        let deps: Option<Vec<(String, Digest)>> = paths
            .iter()
            .map(|p| self.digest(Path::new(p)).ok().map(|d| (p.clone(), d)))
            .collect();
        Some(full_key(base, &deps?))
    }

    pub(super) fn deps_match(&self, deps: &[(String, Digest)]) -> bool {
        deps.iter()
            .all(|(p, d)| self.digest(Path::new(p)).map(|c| c == *d).unwrap_or(false))
    }

    pub(super) fn execute(
        &self,
        action: &Action,
        state: &Mutex<State>,
    ) -> Result<(Outcome, String, String), ActionError> {
        let argv = self.argv(action)?;
        let base = self.base_key(action, &argv)?;

        // 1. Fresh?
        let prior = {
            let st = state.lock().unwrap();
            st.actions
                .get(&action.id)
                .map(|a| (a.clone(), st.dep_paths(a)))
        };
        if let Some((prev, dep_paths)) = &prior {
            if prev.base == base
                && prev
                    .outputs
                    .iter()
                    .all(|(p, d)| self.digest(p).map(|c| c == *d).unwrap_or(false))
                && self.current_full_key(&base, dep_paths).as_ref() == Some(&prev.full)
            {
                return Ok((Outcome::Fresh, String::new(), String::new()));
            }
        }

        // 2. Cached?
        for (full, entry) in self.cache.entries(&base) {
            if entry.outputs.len() != action.outputs.len() || !self.deps_match(&entry.deps) {
                continue;
            }
            if !entry.outputs.iter().all(|o| self.cache.has_blob(&o.digest)) {
                continue;
            }
            self.cache.touch_entry(&base, &full);
            if let Some(outputs) = self.restore(action, &base, &full, &entry)? {
                state
                    .lock()
                    .unwrap()
                    .record(&action.id, base, &entry.deps, outputs);
                return Ok((Outcome::Cached, entry.stderr, String::new()));
            }
        }

        // 3. Remote cache?
        if let Some(stderr) = self.remote_restore(action, &argv, &base, state)? {
            return Ok((Outcome::Remote, stderr, String::new()));
        }

        // 4. Run.
        let cmd = self.command_line(action)?;
        let staging = self.staging(action);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(io_ctx(format!("creating {}", staging.display())))?;
        for o in &action.outputs {
            if let Some(parent) = self.root.join(&o.dest).parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_ctx(format!("creating {}", parent.display())))?;
            }
        }
        // 4a. On a remote worker, whose outputs land in the staging directory as a local run's.
        let (stderr, left, outcome) = match self.remote_execute(action, &argv, &staging, state)? {
            Some((stderr, left)) => (stderr, left, Outcome::RemoteExec),
            None => {
                self.fetch_left_inputs(action, state)?;
                (self.run_locally(&cmd, &staging)?, Vec::new(), Outcome::Ran)
            }
        };
        self.finish_run(action, &argv, base, &cmd, &staging, stderr, &left, state)
            .map(|(stderr, display)| (outcome, stderr, display))
    }

    /// The command run here; its stderr and stdout, or its failure.
    pub(super) fn run_locally(
        &self,
        cmd: &crate::exec::Command,
        staging: &Path,
    ) -> Result<String, ActionError> {
        let out = self
            .runner
            .run(cmd)
            .map_err(io_ctx(format!("running {}", cmd.program.display())))?;
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.success {
            let _ = std::fs::remove_dir_all(staging);
            let status = out
                .code
                .map_or("a signal".to_string(), |c| format!("status {c}"));
            return Err(ActionError::Failed(format!(
                "{}\n`{}` exited with {status}",
                stderr.trim_end(),
                cmd.display()
            )));
        }
        Ok(stderr)
    }

    /// What follows a successful run (local or remote) whose outputs are in `staging`, but for
    /// those a remote run `left` in the CAS ([`super::lazy`]): the discovered dependencies, the
    /// CAS and action cache (no local entry when outputs were left: their blobs are not here),
    /// the remote upload, `out/`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_run(
        &self,
        action: &Action,
        argv: &[String],
        base: Digest,
        cmd: &crate::exec::Command,
        staging: &Path,
        stderr: String,
        left: &[super::lazy::LeftName],
        state: &Mutex<State>,
    ) -> Result<(String, String), ActionError> {
        let deps = self.discover(action, staging)?;
        if let Discover::Ali(name, _) = &action.discover {
            scrub_ali(&staging.join(name)).map_err(io_ctx(format!("rewriting {name}")))?;
        }
        let mut entry_outputs = Vec::new();
        for o in &action.outputs {
            if let Some(l) = left.iter().find(|l| l.name == o.name) {
                self.leave_output(action, o, l.blob);
                entry_outputs.push(OutputEntry {
                    name: o.name.clone(),
                    digest: l.blob.digest,
                    executable: o.executable,
                });
                continue;
            }
            let produced = staging.join(&o.name);
            if !produced.is_file() {
                return Err(ActionError::Failed(format!(
                    "`{}` succeeded but did not produce {}",
                    cmd.display(),
                    o.name
                )));
            }
            let digest = self
                .cache
                .put_file(&produced)
                .map_err(io_ctx(format!("storing {} in the cache", o.name)))?;
            entry_outputs.push(OutputEntry {
                name: o.name.clone(),
                digest,
                executable: o.executable,
            });
        }
        let full = full_key(&base, &deps);
        let entry = ActionEntry {
            deps: deps.clone(),
            outputs: entry_outputs.clone(),
            stderr: stderr.clone(),
        };
        if left.is_empty() {
            self.cache
                .put_entry(&base, &full, &entry)
                .map_err(io_ctx("writing the action cache"))?;
        }

        self.remote_store(action, argv, &entry, staging)?;

        let mut outputs = Vec::new();
        for (spec, o) in action.outputs.iter().zip(&entry_outputs) {
            if left.iter().any(|l| l.name == spec.name) {
                outputs.push((spec.dest.clone(), o.digest));
                continue;
            }
            let produced = staging.join(&spec.name);
            let dest = self.root.join(&spec.dest);
            use std::os::unix::fs::PermissionsExt;
            let mode = if o.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&produced, std::fs::Permissions::from_mode(mode))
                .map_err(io_ctx(format!("chmod {}", spec.name)))?;
            std::fs::rename(&produced, &dest)
                .map_err(io_ctx(format!("moving {} into place", spec.dest.display())))?;
            self.stat.forget(&dest);
            self.placed(&spec.dest);
            outputs.push((spec.dest.clone(), o.digest));
        }
        let _ = std::fs::remove_dir_all(staging);
        state
            .lock()
            .unwrap()
            .record(&action.id, base, &deps, outputs);
        Ok((stderr, cmd.display()))
    }

    /// Restores an entry's outputs into `out/`, each verified as it is copied. None when a blob
    /// is gone (collected meanwhile) or damaged (then the entry is deleted too): a miss.
    pub(super) fn restore(
        &self,
        action: &Action,
        base: &Digest,
        full: &Digest,
        entry: &ActionEntry,
    ) -> Result<Option<Vec<(PathBuf, Digest)>>, ActionError> {
        let mut outputs = Vec::new();
        for (spec, o) in action.outputs.iter().zip(&entry.outputs) {
            let dest = self.root.join(&spec.dest);
            match self.cache.restore(&o.digest, &dest, o.executable) {
                Ok(()) => {}
                Err(RestoreError::Missing(_)) => return Ok(None),
                Err(RestoreError::Damaged(_)) => {
                    self.cache.remove_entry(base, full);
                    return Ok(None);
                }
                Err(RestoreError::Io { source, .. }) => {
                    return Err(ActionError::Io {
                        context: format!("restoring {} from the cache", spec.dest.display()),
                        source,
                    })
                }
            }
            self.stat.forget(&dest);
            self.placed(&spec.dest);
            outputs.push((spec.dest.clone(), o.digest));
        }
        Ok(Some(outputs))
    }

    /// Dependencies the compiler reported, as (workspace-relative or absolute path, digest).
    fn discover(
        &self,
        action: &Action,
        staging: &Path,
    ) -> Result<Vec<(String, Digest)>, ActionError> {
        let paths: Vec<PathBuf> = match &action.discover {
            Discover::None => Vec::new(),
            Discover::Depfile(name) => {
                let text = std::fs::read_to_string(staging.join(name))
                    .map_err(io_ctx(format!("reading depfile {name}")))?;
                gcc::parse_depfile(&text)
                    .into_iter()
                    .map(PathBuf::from)
                    .collect()
            }
            Discover::Ali(name, dirs) => {
                let text = std::fs::read_to_string(staging.join(name))
                    .map_err(io_ctx(format!("reading {name}")))?;
                gnat::ali_dependencies(&text)
                    .iter()
                    .filter_map(|f| gnat::resolve_source(f, dirs, self.root))
                    .collect()
            }
        };
        let hermetic = self.toolchains[&action.toolchain].root.is_some();
        let mut out = Vec::new();
        for p in paths {
            let p = if p.is_absolute() {
                match p.strip_prefix(self.root) {
                    Ok(rel) => rel.to_path_buf(),
                    // Seen from inside the sandbox, the workspace is at /ws.
                    Err(_) if hermetic => match p.strip_prefix(WORKSPACE) {
                        Ok(rel) => rel.to_path_buf(),
                        // A file of the toolchain root: its set digest, in the key, covers it.
                        Err(_) => continue,
                    },
                    Err(_) => p,
                }
            } else {
                p
            };
            if action.inputs.contains(&p) {
                continue;
            }
            let d = self.digest(&p)?;
            out.push((p.to_string_lossy().into_owned(), d));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// GNAT records every compiler switch in the ALI file's `A` lines, the prefix map included, and
/// that one holds the workspace's absolute path. It is only a record (gnatbind does not compare
/// it), so it is dropped to keep ALI files, and everything keyed on them, path-independent.
fn scrub_ali(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| {
            !(l.starts_with("A -ffile-prefix-map=") || l.starts_with("A -fdebug-prefix-map="))
        })
        .collect();
    if kept.len() != text.len() {
        std::fs::write(path, kept)?;
    }
    Ok(())
}
