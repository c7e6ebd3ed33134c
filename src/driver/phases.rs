//! Phase timings on stderr when `KILN_TIMINGS` is set: where a build's time goes, for
//! benchmarks and for users asking why a no-op build is slow.

use std::cell::Cell;
use std::time::Instant;

pub struct Phases {
    start: Option<Instant>,
    last: Cell<Option<Instant>>,
}

impl Phases {
    pub fn start() -> Phases {
        let start = std::env::var_os("KILN_TIMINGS").map(|_| Instant::now());
        Phases {
            start,
            last: Cell::new(start),
        }
    }

    pub fn mark(&self, phase: &str) {
        if let (Some(start), Some(last)) = (self.start, self.last.get()) {
            let now = Instant::now();
            eprintln!(
                "kiln: timing: {phase:12} {:>8.2} ms (total {:.2} ms)",
                (now - last).as_secs_f64() * 1e3,
                (now - start).as_secs_f64() * 1e3
            );
            self.last.set(Some(now));
        }
    }
}
