//! The bot session loop (see [`super`]).

use std::sync::mpsc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::protobuf::Any;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use prost::Message;

use super::run::{self, LeaseError};
use super::{WorkerError, WorkerOptions, HEARTBEAT, MAX_FAILURES};
use crate::exec::Runner;
use crate::remote::action::TOOLCHAIN_PROPERTY;
use crate::remote::toolchain_root::{SANDBOX_BWRAP, SANDBOX_PROPERTY};
use crate::remote::workers::{
    lease_state, type_url, BotSession, BotsClient, CreateBotSessionRequest, Device, FieldMask,
    Lease, Property, UpdateBotSessionRequest, Worker, BOT_OK,
};
use crate::remote::RemoteCache;

/// Deadline of one `UpdateBotSession`; the server long-polls for work within it.
const POLL: Duration = Duration::from_secs(15);

/// What the lease thread reports when its action is done.
struct Finished {
    lease_id: String,
    result: Result<reapi::ActionResult, LeaseError>,
}

fn worker_description(opts: &WorkerOptions) -> Worker {
    let mut properties = vec![Property {
        key: "OSFamily".into(),
        value: "linux".into(),
    }];
    for t in &opts.toolchains {
        properties.push(Property {
            key: TOOLCHAIN_PROPERTY.into(),
            value: t.to_string(),
        });
    }
    if opts.roots.is_some() {
        properties.push(Property {
            key: SANDBOX_PROPERTY.into(),
            value: SANDBOX_BWRAP.into(),
        });
    }
    Worker {
        devices: vec![Device {
            handle: opts.bot_id.clone(),
            properties,
        }],
        ..Worker::default()
    }
}

/// Runs the worker until `max_leases` are done (forever without it), or the server stays away
/// for [`MAX_FAILURES`] calls in a row.
pub fn serve(opts: &WorkerOptions, runner: &dyn Runner) -> Result<(), WorkerError> {
    let remote = RemoteCache::connect(&opts.server).map_err(WorkerError::Remote)?;
    let work_dir = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut session = create(&remote, opts)?;
    let mut done = 0usize;
    let mut failures = 0usize;
    let (tx, rx) = mpsc::channel::<Finished>();
    std::thread::scope(|scope| -> Result<(), WorkerError> {
        // The lease being run, by id.
        let mut running: Option<String> = None;
        loop {
            if running.is_none() && opts.max_leases.is_some_and(|m| done >= m) {
                return Ok(());
            }
            // A finished action: report its lease COMPLETED.
            if let Ok(f) = rx.try_recv() {
                running = None;
                done += 1;
                complete(&mut session, &opts.bot_id, f);
            }
            // Accept what the server offers, if free. BuildGrid 0.9 hands leases out already
            // ACTIVE (the spec's PENDING step is done by its assigner), so any lease that is
            // not the one running and not completed is new work.
            let mut start = None;
            for lease in &mut session.leases {
                let offered =
                    lease.state == lease_state::PENDING || lease.state == lease_state::ACTIVE;
                if offered && running.is_none() && start.is_none() {
                    lease.state = lease_state::ACTIVE;
                    start = Some(lease.clone());
                }
            }
            session
                .leases
                .retain(|l| l.state != lease_state::PENDING && l.state != lease_state::CANCELLED);
            let idle = running.is_none() && start.is_none();
            match update(&remote, &session, idle) {
                Ok(s) => {
                    failures = 0;
                    session = s;
                }
                Err(e) => {
                    eprintln!("kiln: worker: {}", crate::error::chain(&e));
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        return Err(WorkerError::Remote(e));
                    }
                    let code = e.code();
                    if matches!(
                        code,
                        Some(tonic::Code::NotFound) | Some(tonic::Code::InvalidArgument)
                    ) {
                        // The server forgot the session (restart, expiry): a new one.
                        if let Ok(s) = create(&remote, opts) {
                            session = s;
                            running = None;
                        }
                    }
                    std::thread::sleep(HEARTBEAT);
                    continue;
                }
            }
            if let Some(lease) = start {
                let still_ours = session
                    .leases
                    .iter()
                    .any(|l| l.id == lease.id && l.state == lease_state::ACTIVE);
                if still_ours {
                    // One line per lease taken: what an operator (and tests) can watch.
                    eprintln!("kiln: worker {}: running lease {}", opts.bot_id, lease.id);
                    running = Some(lease.id.clone());
                    let tx = tx.clone();
                    let remote = &remote;
                    let work_dir = &work_dir;
                    scope.spawn(move || {
                        let result = lease
                            .payload
                            .as_ref()
                            .ok_or_else(|| LeaseError::Precondition("no payload".into()))
                            .and_then(|p| run::action_of(remote, p))
                            .and_then(|a| {
                                run::execute(
                                    remote,
                                    runner,
                                    &opts.toolchains,
                                    opts.roots.as_ref(),
                                    work_dir,
                                    &a,
                                )
                            });
                        let _ = tx.send(Finished {
                            lease_id: lease.id,
                            result,
                        });
                    });
                }
            }
            if running.is_some() {
                // Report the running lease every heartbeat, or sooner when it is done.
                if let Ok(f) = rx.recv_timeout(HEARTBEAT) {
                    running = None;
                    done += 1;
                    complete(&mut session, &opts.bot_id, f);
                }
            }
        }
    })
}

/// Puts a finished lease into the session as COMPLETED, with its result or status.
fn complete(session: &mut BotSession, bot_id: &str, f: Finished) {
    let (result, status) = match f.result {
        Ok(r) => (
            Some(Any {
                type_url: type_url("build.bazel.remote.execution.v2.ActionResult"),
                value: r.encode_to_vec(),
            }),
            RpcStatus::default(),
        ),
        Err(e) => (None, e.status(bot_id)),
    };
    let lease = Lease {
        id: f.lease_id.clone(),
        state: lease_state::COMPLETED,
        status: Some(status),
        result,
        ..Lease::default()
    };
    match session.leases.iter_mut().find(|l| l.id == f.lease_id) {
        Some(l) => *l = lease,
        None => session.leases.push(lease),
    }
}

fn create(remote: &RemoteCache, opts: &WorkerOptions) -> Result<BotSession, WorkerError> {
    let client = remote.client();
    let mut last = None;
    for _ in 0..MAX_FAILURES {
        let mut req = tonic::Request::new(CreateBotSessionRequest {
            parent: client.instance_name().to_string(),
            bot_session: Some(BotSession {
                bot_id: opts.bot_id.clone(),
                status: BOT_OK,
                worker: Some(worker_description(opts)),
                ..BotSession::default()
            }),
        });
        req.set_timeout(POLL);
        match client.block_on(BotsClient::new(client.transport()).create_bot_session(req)) {
            Ok(s) => return Ok(s),
            Err(s) => last = Some(client.rpc_error("CreateBotSession", s)),
        }
        std::thread::sleep(HEARTBEAT);
    }
    Err(WorkerError::Remote(last.expect("at least one attempt")))
}

fn update(
    remote: &RemoteCache,
    session: &BotSession,
    idle: bool,
) -> Result<BotSession, crate::remote::RemoteError> {
    let client = remote.client();
    let mut req = tonic::Request::new(UpdateBotSessionRequest {
        name: session.name.clone(),
        bot_session: Some(session.clone()),
        update_mask: Some(FieldMask {
            paths: vec!["leases".into(), "status".into()],
        }),
    });
    // An idle bot lets the server hold the call until work comes; a busy one only reports.
    req.set_timeout(if idle { POLL } else { HEARTBEAT * 2 });
    client
        .block_on(BotsClient::new(client.transport()).update_bot_session(req))
        .map_err(|s| client.rpc_error("UpdateBotSession", s))
}
