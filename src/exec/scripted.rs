//! A [`Runner`] for tests that starts nothing: it answers each [`Command`] with a reply function
//! and records every command it was given, so a test can pin both what kiln asked for and how it
//! handles what came back (a failing tool, garbled output) without the tool installed.

use std::io;
use std::sync::Mutex;

use super::{Command, Output, Runner};

pub struct Scripted<F> {
    reply: F,
    calls: Mutex<Vec<Command>>,
}

impl<F> Scripted<F>
where
    F: Fn(&Command) -> io::Result<Output> + Send + Sync,
{
    pub fn new(reply: F) -> Scripted<F> {
        Scripted {
            reply,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every command run so far, in the order the runner was called.
    pub fn calls(&self) -> Vec<Command> {
        self.calls.lock().unwrap().clone()
    }
}

/// A runner that gives every command the same reply.
pub fn replying(out: Output) -> Scripted<impl Fn(&Command) -> io::Result<Output> + Send + Sync> {
    Scripted::new(move |_: &Command| Ok(out.clone()))
}

impl<F> Runner for Scripted<F>
where
    F: Fn(&Command) -> io::Result<Output> + Send + Sync,
{
    fn run(&self, cmd: &Command) -> io::Result<Output> {
        self.calls.lock().unwrap().push(cmd.clone());
        (self.reply)(cmd)
    }
}

/// A process that exited 0 after printing `stdout`.
pub fn ok(stdout: impl Into<Vec<u8>>) -> Output {
    Output {
        success: true,
        code: Some(0),
        stdout: stdout.into(),
        ..Output::default()
    }
}

/// A process that exited with `code` after printing `stderr`.
pub fn failed(code: i32, stderr: impl Into<Vec<u8>>) -> Output {
    Output {
        success: false,
        code: Some(code),
        stderr: stderr.into(),
        ..Output::default()
    }
}

/// What a runner says when the program is not installed.
pub fn not_found(_: &Command) -> io::Result<Output> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "No such file or directory (os error 2)",
    ))
}
