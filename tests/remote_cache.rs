//! The remote cache (src/remote) against a real BuildGrid, and against an in-process fake REAPI
//! server for the faults BuildGrid does not produce on demand.

#[path = "remote_cache/buildgrid.rs"]
mod buildgrid;
#[path = "remote_cache/fake.rs"]
mod fake;

use std::path::Path;
use std::sync::atomic::Ordering;

use buildgrid::BuildGrid;
use fake::FakeServer;
use kiln::digest::Digest;
use kiln::remote::{
    BlobDigest, InputFile, LocalOutput, LocalRun, RemoteAction, RemoteCache, RemoteConfig, Uploaded,
};

fn action(tag: &str, outputs: &[&str]) -> RemoteAction {
    RemoteAction {
        program: "g++".into(),
        argv: vec!["-c".into(), "src/main.cpp".into(), tag.into()],
        env: vec![("CPATH".into(), "/opt/include".into())],
        working_directory: String::new(),
        inputs: vec![InputFile {
            path: "src/main.cpp".into(),
            blob: BlobDigest::of(b"int main() { return 0; }\n"),
            executable: false,
        }],
        outputs: outputs.iter().map(|o| o.to_string()).collect(),
        toolchain: Some(Digest::of(b"gcc 12.2.0")),
        platform: vec![],
        salt: "kiln-action-key-v2".into(),
        blobs: vec![],
    }
}

/// Deterministic bytes that do not compress into one repeated chunk.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 * 2 + 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn run(dir: &Path, files: &[(&str, Vec<u8>, bool)], stderr: &[u8]) -> LocalRun {
    LocalRun {
        outputs: files
            .iter()
            .map(|(name, content, executable)| {
                let file = dir.join(name);
                std::fs::write(&file, content).unwrap();
                LocalOutput {
                    path: name.to_string(),
                    file,
                    executable: *executable,
                    known: None,
                }
            })
            .collect(),
        stdout: Vec::new(),
        stderr: stderr.to_vec(),
    }
}

fn stored(u: Uploaded) -> kiln::remote::Transfer {
    match u {
        Uploaded::Stored(t) => t,
        Uploaded::ReadOnly => panic!("the server refused action-cache updates"),
    }
}

mod buildgrid_server {
    use super::*;

    #[test]
    fn capabilities_are_read_from_buildgrid() {
        let bg = BuildGrid::start();
        let remote = RemoteCache::connect(&bg.config()).unwrap();
        let caps = remote.capabilities();
        assert!(caps.sha256, "{caps:?}");
        assert!(caps.action_cache_updates, "{caps:?}");
        assert!(
            !caps.execution,
            "no execution service is configured: {caps:?}"
        );
        assert!(caps.high_api_version >= (2, 0), "{caps:?}");
        assert!(caps.batch_limit() > 0);
        assert!(caps.missing().contains(&"remote execution"), "{caps:?}");
    }

    #[test]
    fn an_uploaded_result_comes_back_verified_on_a_fresh_client() {
        let bg = BuildGrid::start();
        let first = RemoteCache::connect(&bg.config()).unwrap();
        let limit = first.capabilities().batch_limit() as usize;
        let small = bytes(300, 1);
        let large = bytes(limit + (256 << 10), 2);
        let dir = tempfile::tempdir().unwrap();
        let a = action("one", &["main.o", "main"]);
        let local = run(
            dir.path(),
            &[
                ("main.o", small.clone(), false),
                ("main", large.clone(), true),
            ],
            b"warning: unused variable\n",
        );
        assert_eq!(first.lookup(&a).unwrap(), None, "empty cache hit");
        let t = stored(first.upload(&a, &local).unwrap());
        assert_eq!(
            t.streamed, 1,
            "the blob over the batch limit goes over ByteStream: {t:?}"
        );
        assert!(t.batches >= 1, "{t:?}");

        let fresh = RemoteCache::connect(&bg.config()).unwrap();
        let hit = fresh
            .lookup(&a)
            .unwrap()
            .expect("uploaded result not found");
        assert_eq!(hit.outputs.len(), 2);
        let main = hit.outputs.iter().find(|o| o.path == "main").unwrap();
        let obj = hit.outputs.iter().find(|o| o.path == "main.o").unwrap();
        assert!(main.bytes == large && main.executable);
        assert_eq!(main.digest, Digest::of(&large));
        assert!(obj.bytes == small && !obj.executable);
        assert_eq!(hit.stderr, b"warning: unused variable\n");

        // Another action (one argument differs) is not served this result.
        assert_eq!(
            fresh.lookup(&action("two", &["main.o", "main"])).unwrap(),
            None
        );
    }

    #[test]
    fn find_missing_blobs_avoids_uploading_again() {
        let bg = BuildGrid::start();
        let dir = tempfile::tempdir().unwrap();
        let outputs = [("main.o", bytes(5000, 3), false)];
        let local = run(dir.path(), &outputs, b"");
        let a = action("one", &["main.o"]);

        let first = RemoteCache::connect(&bg.config()).unwrap();
        let t = stored(first.upload(&a, &local).unwrap());
        assert_eq!(t.blobs, 3, "action, command and one output: {t:?}");
        // The same client remembers; a fresh one asks FindMissingBlobs.
        assert_eq!(stored(first.upload(&a, &local).unwrap()).blobs, 0);
        let fresh = RemoteCache::connect(&bg.config()).unwrap();
        assert_eq!(stored(fresh.upload(&a, &local).unwrap()).blobs, 0);
        // A different action producing the same bytes sends only its Action and Command.
        let t = stored(fresh.upload(&action("two", &["main.o"]), &local).unwrap());
        assert_eq!(t.blobs, 2, "{t:?}");
    }
}

mod fake_server {
    use super::*;

    fn config(server: &FakeServer) -> RemoteConfig {
        RemoteConfig::new(server.url.clone())
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let server = FakeServer::start(64 << 10);
        let dir = tempfile::tempdir().unwrap();
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        // One output read by BatchReadBlobs, one (over the limit) by ByteStream.
        let batched = action("batched", &["a.o"]);
        let streamed = action("streamed", &["big"]);
        stored(
            remote
                .upload(
                    &batched,
                    &run(dir.path(), &[("a.o", bytes(100, 4), false)], b""),
                )
                .unwrap(),
        );
        stored(
            remote
                .upload(
                    &streamed,
                    &run(dir.path(), &[("big", bytes(200 << 10, 5), false)], b""),
                )
                .unwrap(),
        );
        assert!(remote.lookup(&batched).unwrap().is_some());

        server.state.corrupt_reads.store(true, Ordering::SeqCst);
        for a in [&batched, &streamed] {
            let fresh = RemoteCache::connect(&config(&server)).unwrap();
            let err = fresh.lookup(a).unwrap_err();
            assert!(err.is_integrity(), "{err:?}");
        }
    }

    #[test]
    fn unavailable_is_an_error_not_a_miss() {
        let server = FakeServer::start(1 << 20);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        server.state.unavailable.store(true, Ordering::SeqCst);
        let a = action("one", &["a.o"]);
        let err = remote.lookup(&a).unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
        let dir = tempfile::tempdir().unwrap();
        let err = remote
            .upload(&a, &run(dir.path(), &[("a.o", bytes(10, 6), false)], b""))
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
        let err = RemoteCache::connect(&config(&server))
            .err()
            .expect("connected to a down server");
        assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
    }

    #[test]
    fn resource_exhausted_is_waited_out_and_only_then_an_error() {
        let server = FakeServer::start(1 << 20);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        let a = action("busy", &["a.o"]);
        let dir = tempfile::tempdir().unwrap();
        let local = run(dir.path(), &[("a.o", bytes(10, 7), false)], b"");
        // A server over its limit for a few calls: the calls are made again, and succeed.
        server.state.exhausted.store(3, Ordering::SeqCst);
        remote.upload(&a, &local).unwrap();
        server.state.exhausted.store(3, Ordering::SeqCst);
        let hit = remote.lookup(&a).unwrap().expect("the upload is served");
        assert_eq!(hit.outputs[0].bytes, bytes(10, 7));
        assert_eq!(server.log().exhausted, 6);
        // One that stays over it is an error after a bounded number of attempts.
        let attempts = kiln::remote::client::EXHAUSTED_ATTEMPTS as usize;
        server.state.exhausted.store(attempts, Ordering::SeqCst);
        let err = remote.lookup(&a).unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted), "{err:?}");
        assert_eq!(server.log().exhausted, 6 + attempts);
    }

    #[test]
    fn resource_exhausted_is_waited_out_on_bytestream_transfers_too() {
        // A batch limit smaller than the output: it goes through ByteStream Write and Read.
        let server = FakeServer::start(1024);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        let a = action("busy-stream", &["big.o"]);
        let dir = tempfile::tempdir().unwrap();
        let local = run(dir.path(), &[("big.o", bytes(64 * 1024, 3), false)], b"");
        server.state.exhausted_streams.store(2, Ordering::SeqCst);
        remote.upload(&a, &local).unwrap();
        assert_eq!(server.log().exhausted, 2, "the write was turned away twice");
        server.state.exhausted_streams.store(2, Ordering::SeqCst);
        let fresh = RemoteCache::connect(&config(&server)).unwrap();
        let hit = fresh.lookup(&a).unwrap().expect("served");
        assert_eq!(hit.outputs[0].bytes, bytes(64 * 1024, 3));
        assert_eq!(server.log().exhausted, 4, "and the read twice");
    }

    #[test]
    fn a_server_that_is_not_there_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = RemoteCache::connect(&RemoteConfig::new(format!("grpc://127.0.0.1:{port}")))
            .err()
            .expect("connected to a closed port");
        assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
    }

    #[test]
    fn an_interrupted_bytestream_write_resumes_where_the_server_stopped() {
        let server = FakeServer::start(64 << 10);
        server.state.drop_writes.store(1, Ordering::SeqCst);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        let big = bytes(3 << 20, 7);
        let dir = tempfile::tempdir().unwrap();
        let a = action("big", &["big"]);
        let t = stored(
            remote
                .upload(&a, &run(dir.path(), &[("big", big.clone(), false)], b""))
                .unwrap(),
        );
        assert_eq!((t.streamed, t.resumed), (1, 1), "{t:?}");
        let log = server.log();
        assert!(log.query_write_status >= 1, "{log:?}");
        assert_eq!(log.write_starts.len(), 2, "{log:?}");
        assert!(log.write_starts[1] > 0, "resumed from the start: {log:?}");

        let fresh = RemoteCache::connect(&config(&server)).unwrap();
        let hit = fresh.lookup(&a).unwrap().unwrap();
        assert!(hit.outputs[0].bytes == big);
    }

    #[test]
    fn batches_stay_under_the_servers_limit() {
        let limit = 64 << 10;
        let server = FakeServer::start(limit);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("o{i}.o")).collect();
        let files: Vec<(&str, Vec<u8>, bool)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), bytes(5 << 10, i as u8), false))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let outs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = action("many", &outs);
        let t = stored(remote.upload(&a, &run(dir.path(), &files, b"")).unwrap());
        assert_eq!((t.blobs, t.streamed), (42, 0), "{t:?}");
        let log = server.log();
        assert!(log.batch_updates >= 4, "{log:?}");
        assert!(log.largest_batch as i64 <= limit, "{log:?}");
        let hit = RemoteCache::connect(&config(&server))
            .unwrap()
            .lookup(&a)
            .unwrap()
            .unwrap();
        assert_eq!(hit.outputs.len(), 40);
    }

    #[test]
    fn one_client_serves_several_threads() {
        fn shared<T: Send + Sync>(_: &T) {}
        let server = FakeServer::start(64 << 10);
        let remote = RemoteCache::connect(&config(&server)).unwrap();
        shared(&remote);
        let dir = tempfile::tempdir().unwrap();
        let actions: Vec<RemoteAction> =
            (0..8).map(|i| action(&format!("a{i}"), &["x.o"])).collect();
        for (i, a) in actions.iter().enumerate() {
            let content = bytes(if i % 2 == 0 { 100 } else { 100 << 10 }, i as u8);
            stored(
                remote
                    .upload(a, &run(dir.path(), &[("x.o", content, false)], b""))
                    .unwrap(),
            );
        }
        std::thread::scope(|s| {
            for (i, a) in actions.iter().enumerate() {
                let remote = &remote;
                s.spawn(move || {
                    let hit = remote.lookup(a).unwrap().expect("miss");
                    let want = bytes(if i % 2 == 0 { 100 } else { 100 << 10 }, i as u8);
                    assert!(
                        hit.outputs[0].bytes == want,
                        "action {i} got another's output"
                    );
                });
            }
        });
    }

    #[test]
    fn the_token_and_instance_name_reach_the_server() {
        let server = FakeServer::start(1 << 20);
        let mut cfg = config(&server)
            .with_headers_from(|k| (k == "KILN_REMOTE_TOKEN").then(|| "t0ken".to_string()))
            .unwrap();
        cfg.instance_name = "main".into();
        let remote = RemoteCache::connect(&cfg).unwrap();
        assert_eq!(remote.lookup(&action("one", &["a.o"])).unwrap(), None);
        let log = server.log();
        assert!(!log.authorization.is_empty());
        assert!(
            log.authorization.iter().all(|a| a == "Bearer t0ken"),
            "{log:?}"
        );
        assert!(log.instance_names.iter().any(|i| i == "main"), "{log:?}");
    }
}

// Remote execution's protocol against the fake's Execute faults: every answer is decided by
// the fake's counters, never by timing.

const SOURCE: &[u8] = b"int main() { return 0; }\n";

/// A fake whose Execute "runs" an action by naming `object` as its `a.o` (already in the CAS).
fn executing_fake(object: &[u8]) -> FakeServer {
    use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
    let server = FakeServer::start(1 << 20);
    let d = BlobDigest::of(object);
    server
        .state
        .blobs
        .lock()
        .unwrap()
        .insert(d.digest.hex(), object.to_vec());
    server.execute_with(std::sync::Arc::new(move |_| {
        Ok(reapi::ActionResult {
            output_files: vec![reapi::OutputFile {
                path: "a.o".into(),
                digest: Some(d.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        })
    }));
    server
}

fn execute(server: &FakeServer) -> Result<kiln::remote::Executed, kiln::remote::RemoteError> {
    let remote = RemoteCache::connect(&RemoteConfig::new(server.url.clone())).unwrap();
    let read = |p: &str| {
        assert_eq!(p, "src/main.cpp");
        Ok(SOURCE.to_vec())
    };
    remote.execute(&action("exec", &["a.o"]), &read)
}

fn object_of(e: kiln::remote::Executed) -> Vec<u8> {
    match e {
        kiln::remote::Executed::Succeeded(r) => {
            assert_eq!(r.outputs.len(), 1);
            assert_eq!(r.outputs[0].path, "a.o");
            r.outputs[0].bytes.clone()
        }
        other => panic!("not a success: {other:?}"),
    }
}

#[test]
fn a_dropped_operation_stream_is_followed_with_wait_execution() {
    let object = bytes(5000, 1);
    let server = executing_fake(&object);
    // The Execute stream and the first WaitExecution stream both break before the end.
    server.state.drop_streams.store(2, Ordering::SeqCst);
    assert_eq!(object_of(execute(&server).unwrap()), object);
    let log = server.log();
    assert_eq!(log.executes, 1, "{log:?}");
    assert_eq!(log.wait_executions, 2, "{log:?}");
}

#[test]
fn blobs_the_server_lost_are_uploaded_again_and_the_action_retried() {
    let object = bytes(5000, 2);
    let server = executing_fake(&object);
    server.state.evict_inputs.store(1, Ordering::SeqCst);
    assert_eq!(object_of(execute(&server).unwrap()), object);
    let log = server.log();
    assert_eq!((log.executes, log.preconditions), (2, 1), "{log:?}");
    assert_eq!(
        log.executed.len(),
        1,
        "ran once, after the re-upload: {log:?}"
    );
    let source = BlobDigest::of(SOURCE).digest.hex();
    assert!(server.state.blobs.lock().unwrap().contains_key(&source));
}

#[test]
fn a_server_that_keeps_losing_blobs_is_given_up_on_after_a_bounded_number_of_attempts() {
    let server = executing_fake(b"never used");
    server
        .state
        .evict_inputs
        .store(usize::MAX, Ordering::SeqCst);
    let e = execute(&server).unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
    let log = server.log();
    assert_eq!(log.executes, kiln::remote::execute::MAX_ATTEMPTS, "{log:?}");
    assert!(log.executed.is_empty());
}

#[test]
fn a_result_whose_output_does_not_verify_is_refused() {
    let server = executing_fake(&bytes(100, 3));
    server.state.corrupt_results.store(true, Ordering::SeqCst);
    let e = execute(&server).unwrap_err();
    assert!(e.is_integrity(), "{e}");
}

#[test]
fn a_precondition_no_upload_cures_is_not_retried() {
    let server = executing_fake(&bytes(100, 4));
    server.state.fail_roots.store(true, Ordering::SeqCst);
    let e = execute(&server).unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
    assert_eq!(server.log().executes, 1, "{:?}", server.log());
}
