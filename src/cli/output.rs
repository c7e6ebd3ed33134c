//! How kiln talks to a person: a progress bar on a terminal, plain lines otherwise (or when `CI`
//! is set), nothing on stdout but the requested document in `--json` mode.

use std::io::IsTerminal;
use std::sync::Mutex;

use crate::build::plan::Action;
use crate::build::{ActionReport, Outcome, Progress};

/// `println!` for kiln's standard output. A reader that went away (`kiln graph | head -1`) ends
/// kiln as it ends `cat`: quietly, with the status a shell gives a process SIGPIPE killed (141),
/// instead of the panic `println!` gives. kiln keeps SIGPIPE ignored, as Rust sets it, so a
/// child's closed stdin or a dropped socket stays an error it handles.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for kiln's standard output; see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!($($arg)*))
    };
}

pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("kiln: error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

pub fn print_error(e: &dyn std::error::Error) {
    eprintln!("kiln: error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
}

pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Plain progress lines on stderr, one per action that did work.
pub struct Lines;

impl Progress for Lines {
    fn finished(&self, action: &Action, report: &ActionReport, done: usize, total: usize) {
        let word = match report.outcome {
            Outcome::Ran => "built",
            Outcome::Cached => "cached",
            Outcome::Remote => "remote",
            Outcome::RemoteExec => "exec",
            Outcome::Failed => "FAILED",
            Outcome::Fresh | Outcome::Skipped => return,
        };
        eprintln!("[{done}/{total}] {word:6} {}", action.id);
    }
}

/// An indicatif bar for terminals.
pub struct Bar {
    bar: indicatif::ProgressBar,
    started: Mutex<()>,
}

impl Bar {
    pub fn new(total: u64) -> Bar {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar {
            bar,
            started: Mutex::new(()),
        }
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn started(&self, action: &Action) {
        let _g = self.started.lock();
        self.bar.set_message(action.id.clone());
    }
    fn finished(&self, action: &Action, report: &ActionReport, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if report.outcome == Outcome::Failed {
            self.bar.println(format!("FAILED {}", action.id));
        }
    }
}

/// Silent progress for `--json`.
pub struct Quiet;
impl Progress for Quiet {}
