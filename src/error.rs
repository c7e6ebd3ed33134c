//! Errors as text where a message must travel inside a report (an action's stderr, an image's
//! problem line) rather than up to the CLI, which prints each cause on its own line instead.

use std::error::Error;

/// `e` and each of its causes, joined by `: `, every cause once.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading out/state")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_appears_once_in_order() {
        let e = Outer {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(chain(&e), "reading out/state: gone");
    }
}
