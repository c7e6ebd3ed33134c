//! One lease's action: fetch, materialise, run, upload (see [`super`]).

use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::protobuf::Any;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use prost::Message;

use super::Roots;
use crate::debian::sandbox::{Sandbox, WORKSPACE};
use crate::digest::Digest;
use crate::exec::{Command, Env, Runner};
use crate::remote::action::TOOLCHAIN_PROPERTY;
use crate::remote::precondition;
use crate::remote::toolchain_root::{CONTAINER_IMAGE_PROPERTY, ROOT_PROPERTY};
use crate::remote::{BlobDigest, RemoteCache, RemoteError};

/// Deepest input tree a worker accepts, and most files.
const MAX_DEPTH: usize = 64;
const MAX_FILES: usize = 100_000;

/// Why a lease could not be run (the lease's status, not the action's exit code).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The action asks for what this worker does not have or cannot do.
    #[error("{0}")]
    Precondition(String),
    /// A blob the action needs is not in the CAS (a server that lost it, say in a restart);
    /// the client uploads it again when told.
    #[error("blob {} ({} bytes) is not in the CAS", .0.digest, .0.size)]
    Missing(BlobDigest),
    /// The action's toolchain root cannot be had here.
    #[error(transparent)]
    Root(#[from] super::root::RootError),
    /// The sandbox an action of a toolchain root runs in cannot run here.
    #[error("cannot run the sandbox: {0}")]
    Sandbox(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LeaseError {
    /// The status the lease is completed with. What the client can act on is a
    /// `FAILED_PRECONDITION` with a violation saying what: a `MISSING` blob (upload it again),
    /// or a root or sandbox this worker cannot have (run the action elsewhere); `bot_id` names
    /// the worker in the message.
    pub fn status(&self, bot_id: &str) -> RpcStatus {
        let message = format!("kiln worker {bot_id}: {}", crate::error::chain(self));
        let code = match self {
            LeaseError::Missing(b) => {
                let subject = format!("blobs/{}/{}", b.digest.hex(), b.size);
                return precondition::status(precondition::MISSING, &subject, message);
            }
            LeaseError::Root(e) => {
                let subject = format!("blobs/{}", e.property);
                return precondition::status(precondition::TOOLCHAIN_ROOT, &subject, message);
            }
            LeaseError::Sandbox(_) => {
                return precondition::status(precondition::SANDBOX, "bwrap", message);
            }
            LeaseError::Precondition(_) => tonic::Code::FailedPrecondition,
            LeaseError::Remote(_) => tonic::Code::Unavailable,
            LeaseError::Io { .. } => tonic::Code::Internal,
        };
        RpcStatus {
            code: code as i32,
            message,
            details: Vec::new(),
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LeaseError {
    let context = context.into();
    move |source| LeaseError::Io { context, source }
}

/// The Action a lease's payload names: packed whole, or as its digest.
pub fn action_of(remote: &RemoteCache, payload: &Any) -> Result<reapi::Action, LeaseError> {
    let bad = |e: prost::DecodeError| LeaseError::Precondition(format!("bad payload: {e}"));
    if payload
        .type_url
        .ends_with("build.bazel.remote.execution.v2.Action")
    {
        return reapi::Action::decode(payload.value.as_slice()).map_err(bad);
    }
    if payload
        .type_url
        .ends_with("build.bazel.remote.execution.v2.Digest")
    {
        let d = reapi::Digest::decode(payload.value.as_slice()).map_err(bad)?;
        let bytes = read_one(remote, Some(&d), "the lease's action")?;
        return reapi::Action::decode(bytes.as_slice()).map_err(bad);
    }
    Err(LeaseError::Precondition(format!(
        "unknown payload type {}",
        payload.type_url
    )))
}

fn read_one(
    remote: &RemoteCache,
    d: Option<&reapi::Digest>,
    what: &str,
) -> Result<Vec<u8>, LeaseError> {
    let b = BlobDigest::from_proto(d, what)?;
    let mut m = read(remote, &[b])?;
    Ok(m.remove(&b).unwrap_or_default())
}

/// `blobs` from the CAS; one it lacks is [`LeaseError::Missing`].
fn read(
    remote: &RemoteCache,
    blobs: &[BlobDigest],
) -> Result<std::collections::HashMap<BlobDigest, Vec<u8>>, LeaseError> {
    remote.read_blobs(blobs).map_err(|e| match e {
        RemoteError::BlobMissing { digest, .. } => LeaseError::Missing(
            blobs
                .iter()
                .copied()
                .find(|b| b.digest == digest)
                .unwrap_or(BlobDigest { digest, size: 0 }),
        ),
        e => LeaseError::Remote(e),
    })
}

/// Runs `action` in a fresh directory under `work_dir`; the result with its blobs uploaded.
pub fn execute(
    remote: &RemoteCache,
    runner: &dyn Runner,
    toolchains: &[Digest],
    roots: Option<&Roots>,
    work_dir: &Path,
    action: &reapi::Action,
) -> Result<reapi::ActionResult, LeaseError> {
    let command_bytes = read_one(remote, action.command_digest.as_ref(), "the command")?;
    let command = reapi::Command::decode(command_bytes.as_slice())
        .map_err(|e| LeaseError::Precondition(format!("bad command: {e}")))?;
    #[allow(deprecated)] // Command.platform: where clients before REAPI 2.2 put it.
    let platform = action.platform.as_ref().or(command.platform.as_ref());
    let property = |name: &str| {
        platform
            .and_then(|p| p.properties.iter().find(|p| p.name == name))
            .map(|p| p.value.clone())
    };
    let root_property = property(ROOT_PROPERTY);
    let container_image = property(CONTAINER_IMAGE_PROPERTY);
    if let Some(p) = platform {
        for prop in p.properties.iter().filter(|p| p.name == TOOLCHAIN_PROPERTY) {
            if !toolchains.iter().any(|t| t.to_string() == prop.value) {
                return Err(LeaseError::Precondition(format!(
                    "this worker does not have the toolchain {}",
                    prop.value
                )));
            }
        }
    }
    let Some((program, args)) = command.arguments.split_first() else {
        return Err(LeaseError::Precondition("the command is empty".into()));
    };
    // Before anything is fetched for the input root: a root this worker cannot have fails fast.
    let toolchain_root = match &root_property {
        Some(v) => {
            let blob = super::root::pins_blob(v)?;
            let bytes = read(remote, &[blob])?.remove(&blob).unwrap_or_default();
            Some(super::root::materialise(
                runner,
                roots,
                v,
                &bytes,
                container_image.as_deref(),
                Some(&super::root::CasDebs(remote)),
            )?)
        }
        None => None,
    };
    std::fs::create_dir_all(work_dir).map_err(io(format!("creating {}", work_dir.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("kiln-worker-")
        .tempdir_in(work_dir)
        .map_err(io("creating the input root"))?;
    let root = dir.path().join("root");
    materialise(remote, action.input_root_digest.as_ref(), &root)?;
    let root_str = root.to_string_lossy().into_owned();
    let cwd = root.join(&command.working_directory);
    #[allow(deprecated)] // output_files: older clients still send them.
    let outputs: Vec<String> = if command.output_paths.is_empty() {
        command.output_files.clone()
    } else {
        command.output_paths.clone()
    };
    for o in &outputs {
        if let Some(parent) = cwd.join(o).parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
    }
    std::fs::create_dir_all(&cwd).map_err(io(format!("creating {}", cwd.display())))?;
    let timeout = action
        .timeout
        .as_ref()
        .filter(|t| t.seconds > 0)
        .map(|t| std::time::Duration::from_secs(t.seconds as u64));
    let mut sandbox = None;
    let cmd = match &toolchain_root {
        Some((dir, roots)) => {
            // As kiln runs it locally: the root at /, the input root at /ws, exactly the
            // Command's environment (set after the sandbox's own, so it wins).
            let env: Vec<(&str, &str)> = command
                .environment_variables
                .iter()
                .map(|e| (e.name.as_str(), e.value.as_str()))
                .collect();
            let sb = Sandbox::with_bwrap(roots.bwrap.clone(), dir, &root, 0).with_env(&env);
            let inside = if command.working_directory.is_empty() {
                WORKSPACE.to_string()
            } else {
                format!("{WORKSPACE}/{}", command.working_directory)
            };
            let cmd = Command {
                timeout,
                ..sb.command(program, args, &inside).die_with_kiln()
            };
            sandbox = Some(sb);
            cmd
        }
        None => {
            let mut env: Vec<(String, String)> = command
                .environment_variables
                .iter()
                .map(|e| (e.name.clone(), e.value.replace("$WS", &root_str)))
                .collect();
            if !env.iter().any(|(k, _)| k == "PATH") {
                if let Ok(path) = std::env::var("PATH") {
                    env.push(("PATH".into(), path));
                }
            }
            Command {
                program: PathBuf::from(program),
                args: args.iter().map(|a| a.replace("$WS", &root_str)).collect(),
                cwd: Some(cwd.clone()),
                env: Env::Exactly(env),
                timeout,
                die_with_kiln: true,
                ..Command::default()
            }
        }
    };
    let out = match &sandbox {
        // bubblewrap's own failure (missing, namespaces refused) is this worker's, not the
        // action's: reported as a precondition, so the client runs the action itself at once.
        Some(sb) => sb
            .run_command(runner, program, &cmd)
            .map_err(|e| LeaseError::Sandbox(crate::error::chain(&e)))?,
        None => runner
            .run(&cmd)
            .map_err(io(format!("running {}", cmd.program.display())))?,
    };
    let mut blobs = Vec::new();
    let mut result = reapi::ActionResult {
        exit_code: out.code.unwrap_or(if out.success { 0 } else { 128 }),
        ..Default::default()
    };
    if out.timed_out && result.exit_code == 0 {
        result.exit_code = 124;
    }
    if result.exit_code == 0 {
        for o in &outputs {
            use std::os::unix::fs::PermissionsExt;
            let path = cwd.join(o);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(format!("reading output {o}")))?;
            let b = BlobDigest::of(&bytes);
            result.output_files.push(reapi::OutputFile {
                path: o.clone(),
                digest: Some(b.to_proto()),
                is_executable: meta.permissions().mode() & 0o100 != 0,
                ..Default::default()
            });
            blobs.push((b, bytes));
        }
    }
    if !out.stdout.is_empty() {
        let b = BlobDigest::of(&out.stdout);
        result.stdout_digest = Some(b.to_proto());
        blobs.push((b, out.stdout));
    }
    if !out.stderr.is_empty() {
        let b = BlobDigest::of(&out.stderr);
        result.stderr_digest = Some(b.to_proto());
        blobs.push((b, out.stderr));
    }
    remote.upload_blobs(blobs)?;
    Ok(result)
}

/// Writes the input tree under `root`: every Directory and file fetched and verified.
fn materialise(
    remote: &RemoteCache,
    digest: Option<&reapi::Digest>,
    root: &Path,
) -> Result<(), LeaseError> {
    let mut files: Vec<(PathBuf, BlobDigest, bool)> = Vec::new();
    let mut pending = vec![(
        root.to_path_buf(),
        BlobDigest::from_proto(digest, "the input root")?,
        0,
    )];
    while let Some((dir, d, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(LeaseError::Precondition(
                "the input root is too deep".into(),
            ));
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let bytes = read(remote, &[d])?.remove(&d).unwrap_or_default();
        let msg = reapi::Directory::decode(bytes.as_slice())
            .map_err(|e| LeaseError::Precondition(format!("bad Directory {}: {e}", d.digest)))?;
        for f in &msg.files {
            check_name(&f.name)?;
            let b = BlobDigest::from_proto(f.digest.as_ref(), &f.name)?;
            files.push((dir.join(&f.name), b, f.is_executable));
        }
        for sub in &msg.directories {
            check_name(&sub.name)?;
            let b = BlobDigest::from_proto(sub.digest.as_ref(), &sub.name)?;
            pending.push((dir.join(&sub.name), b, depth + 1));
        }
        if files.len() > MAX_FILES {
            return Err(LeaseError::Precondition(
                "the input root has too many files".into(),
            ));
        }
    }
    let wanted: Vec<BlobDigest> = files.iter().map(|f| f.1).collect();
    let blobs = read(remote, &wanted)?;
    for (path, b, executable) in files {
        use std::os::unix::fs::PermissionsExt;
        let bytes = blobs.get(&b).map(Vec::as_slice).unwrap_or_default();
        std::fs::write(&path, bytes).map_err(io(format!("writing {}", path.display())))?;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", path.display())))?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), LeaseError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(LeaseError::Precondition(format!(
            "input name {name:?} is not a plain file name"
        )));
    }
    Ok(())
}
