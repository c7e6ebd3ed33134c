//! The image phase assembles images side by side: with `-j2` and two services, the second
//! image's assembly starts while the first is still running. A regression here (a worker pool
//! that holds its queue's lock through each assembly) changes no output, only the wall clock,
//! so it is checked by behaviour rather than time: the runner makes the first `strip` of the
//! build wait until a second one arrives. Built in parallel, the second arrives at once; built
//! one at a time, it cannot arrive until the first gives up waiting, and the test says so.

mod support;

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use kiln::build::NoProgress;
use kiln::driver::{self, BuildOptions};
use kiln::exec::{Command, Output, ProcessRunner, Runner};
use support::workspace::Workspace;

/// Far longer than any strip on a loaded machine; only reached when the images are serial.
const PATIENCE: Duration = Duration::from_secs(120);

/// Runs everything for real; the first strip waits (bounded) for a second strip to start.
struct Rendezvous {
    /// (strips started, the first one gave up waiting)
    state: Mutex<(usize, bool)>,
    arrived: Condvar,
}

impl Runner for Rendezvous {
    fn run(&self, cmd: &Command) -> io::Result<Output> {
        if cmd.program.file_name().is_some_and(|f| f == "strip") {
            let mut s = self.state.lock().unwrap();
            s.0 += 1;
            if s.0 == 1 {
                let (s2, wait) = self
                    .arrived
                    .wait_timeout_while(s, PATIENCE, |s| s.0 < 2)
                    .unwrap();
                s = s2;
                s.1 = wait.timed_out();
            } else {
                self.arrived.notify_all();
            }
        }
        ProcessRunner.run(cmd)
    }
}

#[test]
fn two_images_are_assembled_at_the_same_time() {
    let ws = Workspace::engine();
    let workspace = kiln::workspace::Workspace::load(ws.root()).unwrap();
    let runner = Rendezvous {
        state: Mutex::new((0, false)),
        arrived: Condvar::new(),
    };
    let opts = BuildOptions {
        targets: vec!["hello".into(), "geometry".into()],
        jobs: 2,
        images: true,
        cache_dir: ws.cache().to_path_buf(),
        keep_going: false,
    };
    let outcome = driver::build(&workspace, &opts, &runner, &NoProgress).unwrap();
    assert!(!outcome.failed, "the build failed");
    assert!(
        outcome.image_errors.is_empty(),
        "{:?}",
        outcome.image_errors
    );
    assert_eq!(outcome.images.len(), 2);
    let (strips, gave_up) = *runner.state.lock().unwrap();
    assert!(strips >= 2, "only {strips} strip ran");
    assert!(
        !gave_up,
        "the second image's assembly did not start while the first was running: images are built one at a time"
    );
}
