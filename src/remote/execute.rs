//! Remote execution (REAPI `Execute`): the action's blobs go to the CAS, the server runs it on a
//! worker, and the outputs come back verified like a cache hit's.
//!
//! 1. The Action, the Command, every Directory of the input root and every input file the
//!    server lacks (`FindMissingBlobs`, then batches or ByteStream: [`super::cas`]); file bytes
//!    are read only for the blobs that are missing.
//! 2. `Execute`, then the operation stream is followed until an operation is `done`. A stream
//!    that ends early or breaks (`UNAVAILABLE`, a deadline, a connection cut) is picked up again
//!    with `WaitExecution` on the operation's name, at most [`MAX_WAITS`] times, pausing after
//!    each failure (100 ms, doubling to 2 s), so a server restart of up to about a minute is
//!    ridden out: its scheduler still knows the operation, and a worker that finds the inputs
//!    gone from a restarted CAS reports them missing (step 3).
//! 3. A `FAILED_PRECONDITION` answer (the server lost or never got a blob) uploads every blob
//!    again without trusting what the client remembered, and executes again, at most
//!    [`MAX_ATTEMPTS`] times in all; one whose detail names only violations an upload cannot
//!    cure (a worker that cannot materialise the toolchain root: [`precondition`]) is the
//!    caller's error at once.
//! 4. The `ActionResult`'s outputs are fetched and verified ([`RemoteCache::fetch_outputs`]).
//!
//! Every loop is bounded; any other error is returned for the caller's fallback.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::longrunning::{operation, Operation};
use prost::Message;

use super::action::RemoteAction;
use super::blob::BlobDigest;
use super::cache::{RemoteCache, RemoteResult};
use super::client::Client;
use super::error::{RemoteError, Status};
use super::precondition;

/// `Execute` attempts for one action (the first and the retries after `FAILED_PRECONDITION`).
pub const MAX_ATTEMPTS: usize = 3;
/// `WaitExecution` calls after a broken operation stream, per attempt.
pub const MAX_WAITS: usize = 30;
/// Pause before a `WaitExecution` that follows a failure, doubled after each failure in a row
/// up to [`MAX_PAUSE`]: together about a minute, long enough for a server to restart.
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the worker's run left: its exit code, and when it succeeded, the verified outputs.
#[derive(Clone, Debug)]
pub enum Executed {
    /// Exit code 0 and every declared output present and verified.
    Succeeded(RemoteResult),
    /// The command ran and failed (or left an output out): its exit code and stderr.
    Failed { exit_code: i32, stderr: Vec<u8> },
}

/// How one `Execute` attempt ended.
enum Attempt {
    Done(Box<reapi::ExecuteResponse>),
    /// A precondition was not met; `reupload` when the server lacks blobs (or did not say what
    /// it lacks), so uploading everything again may cure it.
    Precondition {
        status: Status,
        reupload: bool,
    },
}

impl RemoteCache {
    /// Runs `action` on the server's workers. `read` gives the bytes of an input file by its
    /// path in the input root (called only for the files the server lacks).
    pub fn execute(
        &self,
        action: &RemoteAction,
        read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<Executed, RemoteError> {
        self.execute_leaving(action, read, &[])
    }

    /// [`RemoteCache::execute`], fetching none of the outputs named in `leave` (see
    /// [`RemoteCache::lookup_leaving`]).
    pub fn execute_leaving(
        &self,
        action: &RemoteAction,
        read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
        leave: &[String],
    ) -> Result<Executed, RemoteError> {
        let enc = self.encode(action)?;
        let (client, cas, _) = self.parts();
        let mut last = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                cas.forget_all();
            }
            let mut blobs = vec![
                (enc.digest, enc.action.clone()),
                (enc.command_digest, enc.command.clone()),
            ];
            blobs.extend(enc.input_root.directories.iter().cloned());
            blobs.extend(action.blobs.iter().cloned());
            let files: Vec<BlobDigest> = action.inputs.iter().map(|f| f.blob).collect();
            let missing = cas.find_missing(client, &files)?;
            for f in &action.inputs {
                if missing.contains(&f.blob) && !blobs.iter().any(|(d, _)| *d == f.blob) {
                    let bytes = read(&f.path).map_err(|source| RemoteError::ReadOutput {
                        path: f.path.clone().into(),
                        source,
                    })?;
                    f.blob.verify(&format!("input {}", f.path), &bytes)?;
                    blobs.push((f.blob, bytes));
                }
            }
            cas.upload(client, blobs)?;
            match run(client, enc.digest)? {
                Attempt::Done(resp) => {
                    let result = resp.result.unwrap_or_default();
                    if result.exit_code != 0 {
                        let stderr = if result.stderr_raw.is_empty() {
                            match BlobDigest::from_proto(result.stderr_digest.as_ref(), "stderr") {
                                Ok(d) if d.size > 0 => cas
                                    .read(client, &[d])
                                    .ok()
                                    .and_then(|mut m| m.remove(&d))
                                    .unwrap_or_default(),
                                _ => Vec::new(),
                            }
                        } else {
                            result.stderr_raw.clone()
                        };
                        return Ok(Executed::Failed {
                            exit_code: result.exit_code,
                            stderr,
                        });
                    }
                    return match self.fetch_outputs(&enc, &result, leave)? {
                        Some(r) => Ok(Executed::Succeeded(r)),
                        None => Ok(Executed::Failed {
                            exit_code: 0,
                            stderr: b"the remote result lacks a declared output".to_vec(),
                        }),
                    };
                }
                Attempt::Precondition { status, reupload } => {
                    last = Some(status);
                    if !reupload {
                        break;
                    }
                }
            }
        }
        Err(RemoteError::Rpc {
            method: "Execute",
            url: client.url().to_string(),
            source: last.unwrap_or(Status {
                code: tonic::Code::FailedPrecondition,
                message: String::new(),
            }),
        })
    }
}

/// One `Execute` call followed to its end (with `WaitExecution` after a broken stream).
fn run(client: &Client, digest: BlobDigest) -> Result<Attempt, RemoteError> {
    let req = reapi::ExecuteRequest {
        instance_name: client.instance_name().to_string(),
        action_digest: Some(digest.to_proto()),
        digest_function: reapi::digest_function::Value::Sha256 as i32,
        ..Default::default()
    };
    let mut name: Option<String> = None;
    let mut first = Some(req);
    let mut last_error = None;
    let mut pause = FIRST_PAUSE;
    for _ in 0..=MAX_WAITS {
        if last_error.is_some() {
            // The server may be restarting: give it a moment, longer each time in a row.
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
        let stream = match (first.take(), &name) {
            (Some(req), _) => {
                client.unary(|| async { client.execution().execute(req.clone()).await })
            }
            (None, Some(n)) => {
                let req = reapi::WaitExecutionRequest { name: n.clone() };
                client.unary(|| async { client.execution().wait_execution(req.clone()).await })
            }
            (None, None) => break,
        };
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if broken(s.code()) && name.is_some() => {
                last_error = Some(s);
                continue;
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                return Ok(precondition_attempt(&s));
            }
            Err(s) => return Err(client.rpc_error("Execute", s)),
        };
        loop {
            match client.block_on(stream.message()) {
                Ok(Some(op)) => {
                    name = Some(op.name.clone());
                    last_error = None;
                    pause = FIRST_PAUSE;
                    if op.done {
                        return finish(client, op);
                    }
                }
                // Ended without a done operation, or broke: wait on it by name.
                Ok(None) => break,
                Err(s) if broken(s.code()) => {
                    last_error = Some(s);
                    break;
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    return Ok(precondition_attempt(&s));
                }
                Err(s) => return Err(client.rpc_error("Execute", s)),
            }
        }
        if name.is_none() {
            break;
        }
    }
    Err(client.rpc_error(
        "WaitExecution",
        last_error.unwrap_or_else(|| tonic::Status::unavailable("the operation never finished")),
    ))
}

/// A `FAILED_PRECONDITION` the server answered the call itself with.
fn precondition_attempt(s: &tonic::Status) -> Attempt {
    let details = bazel_remote_apis::google::rpc::Status::decode(s.details())
        .map(|d| d.details)
        .unwrap_or_default();
    Attempt::Precondition {
        status: Status::from(s.clone()),
        reupload: precondition::reupload_may_help(&details),
    }
}

/// Whether a call on a known operation failed in a way waiting on it again may cure: the
/// transient codes, and UNKNOWN, which is how tonic reports a connection a server going away
/// cut ("h2 protocol error") or refused ("transport error").
fn broken(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// A done operation's ExecuteResponse, or its error.
fn finish(client: &Client, op: Operation) -> Result<Attempt, RemoteError> {
    let resp = match op.result {
        Some(operation::Result::Response(any)) => {
            reapi::ExecuteResponse::decode(any.value.as_slice()).map_err(|e| {
                client.rpc_error(
                    "Execute",
                    tonic::Status::internal(format!("undecodable ExecuteResponse: {e}")),
                )
            })?
        }
        Some(operation::Result::Error(status)) => {
            return status_attempt(client, &status);
        }
        None => {
            return Err(client.rpc_error(
                "Execute",
                tonic::Status::internal("a done operation without a result"),
            ))
        }
    };
    if let Some(status) = resp.status.as_ref().filter(|s| s.code != 0) {
        return status_attempt(client, status);
    }
    Ok(Attempt::Done(Box::new(resp)))
}

fn status_attempt(
    client: &Client,
    status: &bazel_remote_apis::google::rpc::Status,
) -> Result<Attempt, RemoteError> {
    let reupload = precondition::reupload_may_help(&status.details);
    let status = Status::from_rpc(status);
    if status.code == tonic::Code::FailedPrecondition {
        return Ok(Attempt::Precondition { status, reupload });
    }
    Err(RemoteError::Rpc {
        method: "Execute",
        url: client.url().to_string(),
        source: status,
    })
}
