//! Running a program inside a toolchain root with bubblewrap: the root as `/` (read-only), the
//! workspace at `/ws`, fresh `/proc`, `/dev` and `/tmp`, every namespace unshared (no network),
//! and an environment of only `PATH`, `LC_ALL=C` and `SOURCE_DATE_EPOCH`. The command goes
//! through `exec::Runner` like every other process kiln starts.
//!
//! There is no fallback to the host: without bubblewrap, or on a kernel that refuses the
//! namespaces, the error says so and how to fix it, because silently compiling with the host's
//! tools is exactly what a toolchain root exists to prevent.

use std::io;
use std::path::{Path, PathBuf};

use crate::exec::{Command, Output, Runner};

/// Where the workspace appears inside the sandbox.
pub const WORKSPACE: &str = "/ws";

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "bubblewrap (bwrap) is not installed: run `apt-get install bubblewrap` (or scripts/setup)"
    )]
    MissingBwrap,
    #[error("bubblewrap cannot create namespaces here: {detail} (allow unprivileged user namespaces: `sysctl kernel.unprivileged_userns_clone=1`, and on AppArmor kernels `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)")]
    Namespaces { detail: String },
    #[error("running {program} in the sandbox")]
    Run {
        program: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Sandbox {
    bwrap: PathBuf,
    root: PathBuf,
    workspace: PathBuf,
    source_date_epoch: u64,
    /// Set after kiln's own variables (see [`Sandbox::with_env`]).
    env: Vec<(String, String)>,
}

/// `bwrap` on `path_var` (a PATH value), if any.
pub fn find_bwrap(path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

impl Sandbox {
    /// A sandbox over `root` with `workspace` at [`WORKSPACE`]; finds bwrap on PATH.
    pub fn new(
        root: &Path,
        workspace: &Path,
        source_date_epoch: u64,
    ) -> Result<Sandbox, SandboxError> {
        let bwrap =
            find_bwrap(std::env::var_os("PATH").as_deref()).ok_or(SandboxError::MissingBwrap)?;
        Ok(Sandbox::with_bwrap(
            bwrap,
            root,
            workspace,
            source_date_epoch,
        ))
    }

    pub fn with_bwrap(
        bwrap: PathBuf,
        root: &Path,
        workspace: &Path,
        source_date_epoch: u64,
    ) -> Sandbox {
        Sandbox {
            bwrap,
            root: root.to_path_buf(),
            workspace: workspace.to_path_buf(),
            source_date_epoch,
            env: Vec::new(),
        }
    }

    /// The root mounted as `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This sandbox with `vars` set in its environment too (a test's `KILN_TEST`).
    pub fn with_env(&self, vars: &[(&str, &str)]) -> Sandbox {
        let mut s = self.clone();
        s.env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s
    }

    /// The environment a command in this sandbox gets, in the order it is set (a later
    /// variable of the same name wins): what a remote worker must give the same command.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("PATH".to_string(), PATH.to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
            (
                "SOURCE_DATE_EPOCH".to_string(),
                self.source_date_epoch.to_string(),
            ),
        ];
        v.extend(self.env.iter().cloned());
        v
    }

    /// The bwrap command running `program` (a path inside the root) with `args` in `cwd` (a
    /// path inside the sandbox, usually under [`WORKSPACE`]).
    pub fn command(&self, program: &str, args: &[String], cwd: &str) -> Command {
        self.command_with_binds(program, args, cwd, &[])
    }

    /// [`Sandbox::command`] with more host directories bound (read-write) at paths under
    /// `/tmp` (a tmpfs, so the mount points need not exist in the read-only root).
    pub fn command_with_binds(
        &self,
        program: &str,
        args: &[String],
        cwd: &str,
        binds: &[(PathBuf, String)],
    ) -> Command {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let root = self.root.display().to_string();
        let ws = self.workspace.display().to_string();
        push(&["--ro-bind", &root, "/"]);
        push(&["--bind", &ws, WORKSPACE]);
        push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        for (host, inside) in binds {
            push(&["--bind", &host.display().to_string(), inside]);
        }
        push(&["--unshare-all", "--die-with-parent", "--new-session"]);
        // --clearenv first: bwrap applies its options in order, so the --setenv after it stay.
        push(&["--clearenv"]);
        push(&["--setenv", "PATH", PATH, "--setenv", "LC_ALL", "C"]);
        push(&[
            "--setenv",
            "SOURCE_DATE_EPOCH",
            &self.source_date_epoch.to_string(),
        ]);
        for (k, v) in &self.env {
            push(&["--setenv", k, v]);
        }
        push(&["--chdir", cwd, "--", program]);
        a.extend(args.iter().cloned());
        Command {
            program: self.bwrap.clone(),
            args: a,
            cwd: Some(self.workspace.clone()),
            ..Command::default()
        }
    }

    /// Where `path` (a file on this machine) is seen inside the sandbox: under [`WORKSPACE`]
    /// when it is in the workspace, else in its parent directory bound at `/tmp/kiln-N` (added
    /// to `binds` once per directory).
    pub fn map_path(&self, path: &Path, binds: &mut Vec<(PathBuf, String)>) -> String {
        if let Ok(rel) = path.strip_prefix(&self.workspace) {
            return format!("{WORKSPACE}/{}", rel.display());
        }
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d.to_path_buf(), n.to_string_lossy().into_owned()),
            _ => return path.display().to_string(),
        };
        let inside = match binds.iter().find(|(h, _)| *h == dir) {
            Some((_, i)) => i.clone(),
            None => {
                let i = format!("/tmp/kiln-{}", binds.len());
                binds.push((dir, i.clone()));
                i
            }
        };
        format!("{inside}/{name}")
    }

    /// Runs `program` in the sandbox; bwrap's own failure to set up namespaces becomes
    /// [`SandboxError::Namespaces`] instead of looking like the program's failure.
    pub fn run(
        &self,
        runner: &dyn Runner,
        program: &str,
        args: &[String],
        cwd: &str,
    ) -> Result<Output, SandboxError> {
        self.run_command(runner, program, &self.command(program, args, cwd))
    }

    /// Runs a command made by [`Sandbox::command_with_binds`] (see [`Sandbox::run`]).
    pub fn run_command(
        &self,
        runner: &dyn Runner,
        program: &str,
        command: &Command,
    ) -> Result<Output, SandboxError> {
        let out = runner.run(command).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                SandboxError::MissingBwrap
            } else {
                SandboxError::Run {
                    program: program.to_string(),
                    source,
                }
            }
        })?;
        if !out.success {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if let Some(line) = stderr.lines().find(|l| is_namespace_failure(l)) {
                return Err(SandboxError::Namespaces {
                    detail: line.trim().to_string(),
                });
            }
        }
        Ok(out)
    }
}

fn is_namespace_failure(line: &str) -> bool {
    line.starts_with("bwrap:")
        && ["namespace", "setting up uid map", "Operation not permitted"]
            .iter()
            .any(|k| line.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails(&'static str);
    impl Runner for Fails {
        fn run(&self, _: &Command) -> io::Result<Output> {
            Ok(Output {
                success: false,
                code: Some(1),
                stdout: vec![],
                stderr: self.0.as_bytes().to_vec(),
                ..Output::default()
            })
        }
    }

    fn sandbox() -> Sandbox {
        Sandbox::with_bwrap("/usr/bin/bwrap".into(), Path::new("/r"), Path::new("/w"), 7)
    }

    #[test]
    fn the_command_isolates_and_clears_the_environment_before_setting_it() {
        let c = sandbox().command("/usr/bin/g++-12", &["-c".into(), "a.cpp".into()], "/ws/src");
        let line = c.args.join(" ");
        assert!(
            line.starts_with(
                "--ro-bind /r / --bind /w /ws --proc /proc --dev /dev --tmpfs /tmp --unshare-all"
            ),
            "{line}"
        );
        let clear = c.args.iter().position(|a| a == "--clearenv").unwrap();
        let set = c.args.iter().position(|a| a == "--setenv").unwrap();
        assert!(clear < set);
        assert!(line.contains("--setenv SOURCE_DATE_EPOCH 7"), "{line}");
        assert!(
            line.ends_with("--chdir /ws/src -- /usr/bin/g++-12 -c a.cpp"),
            "{line}"
        );
    }

    #[test]
    fn env_vars_are_exactly_what_the_command_sets() {
        let s = sandbox().with_env(&[("KILN_TEST", "1")]);
        let c = s.command("/x", &[], "/ws");
        let set: Vec<(String, String)> = c
            .args
            .windows(3)
            .filter(|w| w[0] == "--setenv")
            .map(|w| (w[1].clone(), w[2].clone()))
            .collect();
        assert_eq!(set, s.env_vars());
    }

    #[test]
    fn namespace_refusal_is_named_with_the_fix() {
        let e = sandbox()
            .run(&Fails("bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.\n"), "/x", &[], "/ws")
            .unwrap_err();
        assert!(matches!(e, SandboxError::Namespaces { .. }));
        assert!(e.to_string().contains("unprivileged_userns_clone"), "{e}");
        // The program's own failure stays the program's.
        let out = sandbox()
            .run(&Fails("a.cpp:1: error\n"), "/x", &[], "/ws")
            .unwrap();
        assert!(!out.success);
    }

    #[test]
    fn missing_bwrap_names_the_package() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(find_bwrap(Some(d.path().as_os_str())), None);
        assert!(SandboxError::MissingBwrap
            .to_string()
            .contains("apt-get install bubblewrap"));
    }
}
