//! An in-process REAPI server (CAS, ActionCache, ByteStream, Capabilities, Execution) for the
//! faults a real server will not produce on demand: UNAVAILABLE, RESOURCE_EXHAUSTED, bytes that do not match their
//! digest, a ByteStream write dropped halfway, a small batch limit, and for `Execute` an
//! operation stream that breaks before its end, blobs evicted before the action runs, a result
//! whose output does not match its digest, a worker that cannot set up the toolchain root. It
//! checks what a real server checks (digests of uploads, batch sizes, write offsets, that every
//! blob an action needs is present before it runs) so a client bug fails here too.
//!
//! `Execute` runs the action with the test's [`Executor`] (kiln's own worker code, or a canned
//! result) on a thread of its own, outside the server's runtime.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::build::bazel::semver::SemVer;
use bazel_remote_apis::google::bytestream as bs;
use bazel_remote_apis::google::rpc;
use prost::Message;
use reapi::action_cache_server::{ActionCache, ActionCacheServer};
use reapi::capabilities_server::{Capabilities, CapabilitiesServer};
use reapi::content_addressable_storage_server::{
    ContentAddressableStorage, ContentAddressableStorageServer,
};
use reapi::execution_server::{Execution, ExecutionServer};
use sha2::{Digest as _, Sha256};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type Res<T> = Result<Response<T>, Status>;

#[derive(Default)]
pub struct State {
    pub batch_limit: i64,
    /// Every call answers UNAVAILABLE while set.
    pub unavailable: AtomicBool,
    /// This many calls answer RESOURCE_EXHAUSTED (a server over its concurrent-call limit).
    pub exhausted: AtomicUsize,
    /// The same, for ByteStream reads and writes only.
    pub exhausted_streams: AtomicUsize,
    /// Reads hand back bytes with one bit flipped while set.
    pub corrupt_reads: AtomicBool,
    /// This many ByteStream writes fail with UNAVAILABLE after their first chunk.
    pub drop_writes: AtomicUsize,
    /// UpdateActionResult answers PERMISSION_DENIED while set (a read-only credential on a
    /// server that advertises updates).
    pub refuse_updates: AtomicBool,
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    results: Mutex<HashMap<String, reapi::ActionResult>>,
    /// Runs an executed action; Execute answers UNIMPLEMENTED without one.
    pub executor: Mutex<Option<Executor>>,
    /// This many operation streams (Execute or WaitExecution) send one unfinished operation
    /// and then break with UNAVAILABLE; the finished operation waits for WaitExecution.
    pub drop_streams: AtomicUsize,
    /// This many Executes find the action's input files evicted from the CAS first, and answer
    /// FAILED_PRECONDITION with a MISSING violation for each.
    pub evict_inputs: AtomicUsize,
    /// Results name, for their first output, a digest whose bytes in the CAS differ.
    pub corrupt_results: AtomicBool,
    /// Executes answer FAILED_PRECONDITION with a violation no upload cures (kiln's worker's
    /// when it cannot materialise the toolchain root).
    pub fail_roots: AtomicBool,
    /// Finished operations by name, for WaitExecution.
    operations: Mutex<HashMap<String, bazel_remote_apis::google::longrunning::Operation>>,
    /// Committed bytes of unfinished uploads, by resource name.
    partial: Mutex<HashMap<String, Vec<u8>>>,
    /// Resource names of finished uploads.
    finished: Mutex<Vec<String>>,
    pub log: Mutex<Log>,
}

#[derive(Default, Clone, Debug)]
pub struct Log {
    pub batch_updates: usize,
    pub largest_batch: usize,
    pub find_missing: usize,
    pub query_write_status: usize,
    /// `write_offset` of the first message of each ByteStream write call.
    pub write_starts: Vec<i64>,
    pub authorization: Vec<String>,
    pub instance_names: Vec<String>,
    pub executes: usize,
    /// Calls answered RESOURCE_EXHAUSTED.
    pub exhausted: usize,
    pub wait_executions: usize,
    /// FAILED_PRECONDITION answers to Execute.
    pub preconditions: usize,
    /// Digests of the Actions the executor ran.
    pub executed: Vec<String>,
    /// Blobs written to the CAS (batches and ByteStream), and their bytes.
    pub blobs_received: usize,
    pub bytes_received: u64,
}

/// What runs an action for the fake's Execute.
pub type Executor =
    Arc<dyn Fn(&reapi::Action) -> Result<reapi::ActionResult, rpc::Status> + Send + Sync>;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Clone)]
struct Svc(Arc<State>);

impl Svc {
    fn check<T>(&self, req: &Request<T>, instance: &str) -> Result<(), Status> {
        let mut log = self.0.log.lock().unwrap();
        if let Some(a) = req.metadata().get("authorization") {
            log.authorization.push(a.to_str().unwrap_or("").to_string());
        }
        log.instance_names.push(instance.to_string());
        if self.0.unavailable.load(Ordering::SeqCst) {
            return Err(Status::unavailable("fake server is down"));
        }
        if take_one(&self.0.exhausted) {
            log.exhausted += 1;
            return Err(Status::resource_exhausted(
                "fake server: too many calls at once",
            ));
        }
        Ok(())
    }

    fn exhausted_stream(&self) -> Result<(), Status> {
        if take_one(&self.0.exhausted_streams) {
            self.0.log.lock().unwrap().exhausted += 1;
            return Err(Status::resource_exhausted(
                "fake server: too many streams at once",
            ));
        }
        Ok(())
    }

    fn read_blob(&self, hash: &str) -> Option<Vec<u8>> {
        let mut b = self.0.blobs.lock().unwrap().get(hash).cloned()?;
        if self.0.corrupt_reads.load(Ordering::SeqCst) && !b.is_empty() {
            b[0] ^= 1;
        }
        Some(b)
    }

    fn store(&self, d: &reapi::Digest, data: Vec<u8>) -> Result<(), Status> {
        if hex(&data) != d.hash || data.len() as i64 != d.size_bytes {
            return Err(Status::invalid_argument("upload does not match its digest"));
        }
        {
            let mut log = self.0.log.lock().unwrap();
            log.blobs_received += 1;
            log.bytes_received += data.len() as u64;
        }
        self.0.blobs.lock().unwrap().insert(d.hash.clone(), data);
        Ok(())
    }
}

fn ok() -> Option<rpc::Status> {
    Some(rpc::Status::default())
}

#[tonic::async_trait]
impl Capabilities for Svc {
    async fn get_capabilities(
        &self,
        req: Request<reapi::GetCapabilitiesRequest>,
    ) -> Res<reapi::ServerCapabilities> {
        self.check(&req, &req.get_ref().instance_name)?;
        let v = |minor| SemVer {
            major: 2,
            minor,
            ..Default::default()
        };
        Ok(Response::new(reapi::ServerCapabilities {
            cache_capabilities: Some(reapi::CacheCapabilities {
                digest_functions: vec![reapi::digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                max_batch_total_size_bytes: self.0.batch_limit,
                ..Default::default()
            }),
            low_api_version: Some(v(0)),
            high_api_version: Some(v(3)),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Svc {
    async fn get_action_result(
        &self,
        req: Request<reapi::GetActionResultRequest>,
    ) -> Res<reapi::ActionResult> {
        self.check(&req, &req.get_ref().instance_name)?;
        let key = req.get_ref().action_digest.clone().unwrap_or_default().hash;
        match self.0.results.lock().unwrap().get(&key) {
            Some(r) => Ok(Response::new(r.clone())),
            None => Err(Status::not_found("no such action result")),
        }
    }

    async fn update_action_result(
        &self,
        req: Request<reapi::UpdateActionResultRequest>,
    ) -> Res<reapi::ActionResult> {
        self.check(&req, &req.get_ref().instance_name)?;
        if self.0.refuse_updates.load(Ordering::SeqCst) {
            return Err(Status::permission_denied("this credential may only read"));
        }
        let r = req.into_inner();
        let result = r.action_result.unwrap_or_default();
        let key = r.action_digest.unwrap_or_default().hash;
        self.0.results.lock().unwrap().insert(key, result.clone());
        Ok(Response::new(result))
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for Svc {
    async fn find_missing_blobs(
        &self,
        req: Request<reapi::FindMissingBlobsRequest>,
    ) -> Res<reapi::FindMissingBlobsResponse> {
        self.check(&req, &req.get_ref().instance_name)?;
        self.0.log.lock().unwrap().find_missing += 1;
        let blobs = self.0.blobs.lock().unwrap();
        Ok(Response::new(reapi::FindMissingBlobsResponse {
            missing_blob_digests: req
                .into_inner()
                .blob_digests
                .into_iter()
                .filter(|d| !blobs.contains_key(&d.hash))
                .collect(),
        }))
    }

    async fn batch_update_blobs(
        &self,
        req: Request<reapi::BatchUpdateBlobsRequest>,
    ) -> Res<reapi::BatchUpdateBlobsResponse> {
        self.check(&req, &req.get_ref().instance_name)?;
        let len = req.get_ref().encoded_len();
        {
            let mut log = self.0.log.lock().unwrap();
            log.batch_updates += 1;
            log.largest_batch = log.largest_batch.max(len);
        }
        if len as i64 > self.0.batch_limit {
            return Err(Status::invalid_argument("batch over the server's limit"));
        }
        let mut responses = Vec::new();
        for r in req.into_inner().requests {
            let d = r.digest.unwrap_or_default();
            self.store(&d, r.data)?;
            responses.push(reapi::batch_update_blobs_response::Response {
                digest: Some(d),
                status: ok(),
            });
        }
        Ok(Response::new(reapi::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        req: Request<reapi::BatchReadBlobsRequest>,
    ) -> Res<reapi::BatchReadBlobsResponse> {
        self.check(&req, &req.get_ref().instance_name)?;
        let responses = req
            .into_inner()
            .digests
            .into_iter()
            .map(|d| {
                let data = self.read_blob(&d.hash);
                reapi::batch_read_blobs_response::Response {
                    status: match data {
                        Some(_) => ok(),
                        None => Some(rpc::Status {
                            code: tonic::Code::NotFound as i32,
                            ..Default::default()
                        }),
                    },
                    data: data.unwrap_or_default(),
                    digest: Some(d),
                    compressor: 0,
                }
            })
            .collect();
        Ok(Response::new(reapi::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = Boxed<reapi::GetTreeResponse>;
    async fn get_tree(&self, _: Request<reapi::GetTreeRequest>) -> Res<Self::GetTreeStream> {
        Err(Status::unimplemented("fake"))
    }
    async fn split_blob(
        &self,
        _: Request<reapi::SplitBlobRequest>,
    ) -> Res<reapi::SplitBlobResponse> {
        Err(Status::unimplemented("fake"))
    }
    type GetChunkMappingStream = Boxed<reapi::GetChunkMappingResponse>;
    async fn get_chunk_mapping(
        &self,
        _: Request<reapi::GetChunkMappingRequest>,
    ) -> Res<Self::GetChunkMappingStream> {
        Err(Status::unimplemented("fake"))
    }
    async fn splice_blob(
        &self,
        _: Request<reapi::SpliceBlobRequest>,
    ) -> Res<reapi::SpliceBlobResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_chunk_mapping(
        &self,
        _: Request<Streaming<reapi::RegisterChunkMappingRequest>>,
    ) -> Res<reapi::RegisterChunkMappingResponse> {
        Err(Status::unimplemented("fake"))
    }
}

/// `[instance/]uploads/<uuid>/blobs/<hash>/<size>` or `[instance/]blobs/<hash>/<size>`.
fn blob_of(resource: &str) -> Option<(String, i64)> {
    let parts: Vec<&str> = resource.split('/').collect();
    let i = parts.iter().rposition(|p| *p == "blobs")?;
    Some((
        parts.get(i + 1)?.to_string(),
        parts.get(i + 2)?.parse().ok()?,
    ))
}

#[tonic::async_trait]
impl bs::byte_stream_server::ByteStream for Svc {
    type ReadStream = Boxed<bs::ReadResponse>;
    async fn read(&self, req: Request<bs::ReadRequest>) -> Res<Self::ReadStream> {
        self.check(&req, "")?;
        self.exhausted_stream()?;
        let r = req.into_inner();
        let (hash, _) =
            blob_of(&r.resource_name).ok_or_else(|| Status::invalid_argument("name"))?;
        let data = self
            .read_blob(&hash)
            .ok_or_else(|| Status::not_found("no such blob"))?;
        let chunks: Vec<Result<bs::ReadResponse, Status>> = data[r.read_offset as usize..]
            .chunks(64 << 10)
            .map(|c| Ok(bs::ReadResponse { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn write(&self, req: Request<Streaming<bs::WriteRequest>>) -> Res<bs::WriteResponse> {
        self.check(&req, "")?;
        self.exhausted_stream()?;
        let mut stream = req.into_inner();
        let mut resource = String::new();
        let mut first = true;
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if first {
                resource = msg.resource_name.clone();
                self.0
                    .log
                    .lock()
                    .unwrap()
                    .write_starts
                    .push(msg.write_offset);
            }
            let mut partial = self.0.partial.lock().unwrap();
            let buf = partial.entry(resource.clone()).or_default();
            if msg.write_offset != buf.len() as i64 {
                return Err(Status::invalid_argument(
                    "write_offset is not the committed size",
                ));
            }
            buf.extend_from_slice(&msg.data);
            if msg.finish_write {
                let data = partial.remove(&resource).unwrap_or_default();
                drop(partial);
                let (hash, size) =
                    blob_of(&resource).ok_or_else(|| Status::invalid_argument("name"))?;
                let committed = data.len() as i64;
                self.store(
                    &reapi::Digest {
                        hash,
                        size_bytes: size,
                    },
                    data,
                )?;
                self.0.finished.lock().unwrap().push(resource);
                return Ok(Response::new(bs::WriteResponse {
                    committed_size: committed,
                }));
            }
            drop(partial);
            if first {
                let drops = &self.0.drop_writes;
                if drops.load(Ordering::SeqCst) > 0 {
                    drops.fetch_sub(1, Ordering::SeqCst);
                    return Err(Status::unavailable("fake server dropped the write"));
                }
            }
            first = false;
        }
        Err(Status::invalid_argument("write ended without finish_write"))
    }

    async fn query_write_status(
        &self,
        req: Request<bs::QueryWriteStatusRequest>,
    ) -> Res<bs::QueryWriteStatusResponse> {
        self.check(&req, "")?;
        self.0.log.lock().unwrap().query_write_status += 1;
        let name = req.into_inner().resource_name;
        if let Some(buf) = self.0.partial.lock().unwrap().get(&name) {
            return Ok(Response::new(bs::QueryWriteStatusResponse {
                committed_size: buf.len() as i64,
                complete: false,
            }));
        }
        if self.0.finished.lock().unwrap().contains(&name) {
            let size = blob_of(&name).map_or(0, |b| b.1);
            return Ok(Response::new(bs::QueryWriteStatusResponse {
                committed_size: size,
                complete: true,
            }));
        }
        Err(Status::not_found("no such upload"))
    }
}

/// The server on a free loopback port; stopped when dropped (its runtime goes with it).
pub struct FakeServer {
    pub state: Arc<State>,
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

impl FakeServer {
    pub fn start(batch_limit: i64) -> FakeServer {
        let state = Arc::new(State {
            batch_limit,
            ..Default::default()
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("grpc://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let svc = Svc(Arc::clone(&state));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(CapabilitiesServer::new(svc.clone()))
                .add_service(ActionCacheServer::new(svc.clone()))
                .add_service(ContentAddressableStorageServer::new(svc.clone()))
                .add_service(ExecutionServer::new(svc.clone()))
                .add_service(bs::byte_stream_server::ByteStreamServer::new(svc))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        FakeServer {
            state,
            url,
            _runtime: runtime,
        }
    }

    pub fn log(&self) -> Log {
        self.state.log.lock().unwrap().clone()
    }

    /// Execute runs actions with `executor` from now on.
    pub fn execute_with(&self, executor: Executor) {
        *self.state.executor.lock().unwrap() = Some(executor);
    }
}

const MISSING: &str = "MISSING";

/// `google.rpc.PreconditionFailure` (field numbers of `google/rpc/error_details.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<Violation>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Violation {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    subject: String,
    #[prost(string, tag = "3")]
    description: String,
}

fn precondition(violations: Vec<Violation>) -> rpc::Status {
    rpc::Status {
        code: tonic::Code::FailedPrecondition as i32,
        message: format!("{} precondition(s) failed", violations.len()),
        details: vec![prost_types_any(
            "type.googleapis.com/google.rpc.PreconditionFailure",
            PreconditionFailure { violations }.encode_to_vec(),
        )],
    }
}

fn prost_types_any(type_url: &str, value: Vec<u8>) -> bazel_remote_apis::google::protobuf::Any {
    bazel_remote_apis::google::protobuf::Any {
        type_url: type_url.to_string(),
        value,
    }
}

impl Svc {
    /// Blobs `action` needs that the CAS lacks: its Command, every Directory of its input root
    /// and every file in them.
    fn missing_for(&self, action: &reapi::Action) -> Vec<reapi::Digest> {
        let blobs = self.0.blobs.lock().unwrap();
        let mut missing = Vec::new();
        for d in action.command_digest.iter() {
            if !blobs.contains_key(&d.hash) {
                missing.push(d.clone());
            }
        }
        let mut pending: Vec<reapi::Digest> = action.input_root_digest.iter().cloned().collect();
        // Bounded like the worker's walk: a malformed tree cannot loop the fake.
        for _ in 0..100_000 {
            let Some(d) = pending.pop() else { break };
            let Some(bytes) = blobs.get(&d.hash) else {
                missing.push(d);
                continue;
            };
            let Ok(dir) = reapi::Directory::decode(bytes.as_slice()) else {
                continue;
            };
            for f in &dir.files {
                if let Some(fd) = &f.digest {
                    if !blobs.contains_key(&fd.hash) {
                        missing.push(fd.clone());
                    }
                }
            }
            pending.extend(dir.directories.iter().filter_map(|s| s.digest.clone()));
        }
        missing
    }

    /// Removes the input root's files from the CAS (an eviction between upload and run).
    fn evict_files(&self, action: &reapi::Action) {
        let mut blobs = self.0.blobs.lock().unwrap();
        let mut pending: Vec<reapi::Digest> = action.input_root_digest.iter().cloned().collect();
        for _ in 0..100_000 {
            let Some(d) = pending.pop() else { break };
            let Some(dir) = blobs
                .get(&d.hash)
                .and_then(|b| reapi::Directory::decode(b.as_slice()).ok())
            else {
                continue;
            };
            for f in &dir.files {
                if let Some(fd) = &f.digest {
                    blobs.remove(&fd.hash);
                }
            }
            pending.extend(dir.directories.iter().filter_map(|s| s.digest.clone()));
        }
    }

    /// The ExecuteResponse for `action` (run, or refused for a fault).
    async fn respond(
        &self,
        action_digest: &reapi::Digest,
    ) -> Result<reapi::ExecuteResponse, Status> {
        let bytes = self
            .read_blob(&action_digest.hash)
            .ok_or_else(|| Status::failed_precondition("the Action is not in the CAS"))?;
        let action = reapi::Action::decode(bytes.as_slice())
            .map_err(|e| Status::invalid_argument(format!("bad Action: {e}")))?;
        let status = |s| reapi::ExecuteResponse {
            status: Some(s),
            ..Default::default()
        };
        if self.0.fail_roots.load(Ordering::SeqCst) {
            self.0.log.lock().unwrap().preconditions += 1;
            return Ok(status(precondition(vec![Violation {
                r#type: "kiln-toolchain-root".into(),
                subject: "blobs/00/0".into(),
                description: "the fake's worker has no root".into(),
            }])));
        }
        if take_one(&self.0.evict_inputs) {
            self.evict_files(&action);
        }
        let missing = self.missing_for(&action);
        if !missing.is_empty() {
            self.0.log.lock().unwrap().preconditions += 1;
            return Ok(status(precondition(
                missing
                    .iter()
                    .map(|d| Violation {
                        r#type: MISSING.into(),
                        subject: format!("blobs/{}/{}", d.hash, d.size_bytes),
                        description: String::new(),
                    })
                    .collect(),
            )));
        }
        let executor = self
            .0
            .executor
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| Status::unimplemented("the fake has no executor"))?;
        // The executor may block on calls back into this server: off its runtime, on a thread.
        let run = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || executor(&action))
                .join()
                .map_err(|_| Status::internal("the executor panicked"))
        })
        .await
        .map_err(|_| Status::internal("the executor's thread failed"))??;
        self.0
            .log
            .lock()
            .unwrap()
            .executed
            .push(action_digest.hash.clone());
        let mut result = match run {
            Ok(r) => r,
            Err(s) => return Ok(status(s)),
        };
        if self.0.corrupt_results.load(Ordering::SeqCst) {
            if let Some(o) = result.output_files.first_mut() {
                // A digest the CAS holds other bytes under.
                let claimed = b"what the output should have been".to_vec();
                let d = reapi::Digest {
                    hash: hex(&claimed),
                    size_bytes: claimed.len() as i64,
                };
                let mut stored = claimed;
                stored[0] ^= 1;
                self.0.blobs.lock().unwrap().insert(d.hash.clone(), stored);
                o.digest = Some(d);
            }
        }
        Ok(reapi::ExecuteResponse {
            result: Some(result),
            status: ok(),
            ..Default::default()
        })
    }

    /// The operation stream for `op`: whole, or one unfinished operation then UNAVAILABLE.
    fn stream(
        &self,
        op: bazel_remote_apis::google::longrunning::Operation,
    ) -> Boxed<bazel_remote_apis::google::longrunning::Operation> {
        use bazel_remote_apis::google::longrunning::Operation;
        if take_one(&self.0.drop_streams) {
            let unfinished = Operation {
                name: op.name.clone(),
                done: false,
                ..Default::default()
            };
            return Box::pin(tokio_stream::iter(vec![
                Ok(unfinished),
                Err(Status::unavailable("the fake dropped the operation stream")),
            ]));
        }
        Box::pin(tokio_stream::iter(vec![Ok(op)]))
    }
}

/// Decrements `counter` if it is above zero; whether it was.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[tonic::async_trait]
impl Execution for Svc {
    type ExecuteStream = Boxed<bazel_remote_apis::google::longrunning::Operation>;
    type WaitExecutionStream = Boxed<bazel_remote_apis::google::longrunning::Operation>;

    async fn execute(&self, req: Request<reapi::ExecuteRequest>) -> Res<Self::ExecuteStream> {
        self.check(&req, &req.get_ref().instance_name)?;
        let r = req.into_inner();
        let digest = r
            .action_digest
            .ok_or_else(|| Status::invalid_argument("no action digest"))?;
        let n = {
            let mut log = self.0.log.lock().unwrap();
            log.executes += 1;
            log.executes
        };
        let response = self.respond(&digest).await?;
        let op = bazel_remote_apis::google::longrunning::Operation {
            name: format!("operations/{n}"),
            done: true,
            result: Some(
                bazel_remote_apis::google::longrunning::operation::Result::Response(
                    prost_types_any(
                        "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse",
                        response.encode_to_vec(),
                    ),
                ),
            ),
            ..Default::default()
        };
        self.0
            .operations
            .lock()
            .unwrap()
            .insert(op.name.clone(), op.clone());
        Ok(Response::new(self.stream(op)))
    }

    async fn wait_execution(
        &self,
        req: Request<reapi::WaitExecutionRequest>,
    ) -> Res<Self::WaitExecutionStream> {
        self.check(&req, "")?;
        self.0.log.lock().unwrap().wait_executions += 1;
        let op = self
            .0
            .operations
            .lock()
            .unwrap()
            .get(&req.get_ref().name)
            .cloned()
            .ok_or_else(|| Status::not_found("no such operation"))?;
        Ok(Response::new(self.stream(op)))
    }
}
