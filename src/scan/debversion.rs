//! Debian version comparison, as deb-version(7) and dpkg's `verrevcmp` define it.
//!
//! A version is `[epoch:]upstream[-revision]`: the epoch (default 0) compares as a number; then
//! upstream and revision each compare by alternating runs: a run of non-digits compared
//! character by character where `~` sorts before everything (even the end of the string),
//! letters before non-letters; then a run of digits compared as a number. So
//! `1.0~rc1 < 1.0 < 1.0+deb12u1` and `1:0.9 > 2.0`.

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebVersion {
    pub epoch: u64,
    pub upstream: String,
    pub revision: String,
}

impl DebVersion {
    /// Parses a version; `None` for an empty upstream part or a non-numeric epoch.
    pub fn parse(s: &str) -> Option<DebVersion> {
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (e.parse().ok()?, rest),
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        Some(DebVersion {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// The sort weight of one character in a non-digit run (dpkg's `order`).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run: skip leading zeros, then the longer run is larger, else the first
        // differing digit decides.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        DebVersion::parse(a)
            .unwrap()
            .cmp(&DebVersion::parse(b).unwrap())
    }

    #[test]
    fn orders_as_dpkg_does() {
        use Ordering::*;
        // Each pair checked against `dpkg --compare-versions` on Debian 12.
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0+deb12u1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1:0.9", "2.0", Greater),
            ("0:2.0", "2.0", Equal),
            ("2.36-9+deb12u14", "2.36-9+deb12u9", Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1", Less),
            ("10.42-1+deb12u2", "10.42-1", Greater),
            ("1.001", "1.1", Equal),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("3.2.2+dfsg-2", "3.2.2+dfsg-2~deb12u1", Greater),
            ("1.2-3-4", "1.2-3-5", Less),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// The same pairs through dpkg itself, where it is installed (it is on every Debian).
    #[test]
    fn agrees_with_dpkg() {
        let pairs = [
            ("1.0~rc1", "1.0"),
            ("1.0a", "1.0+"),
            ("1:0.9", "2.0"),
            ("2.36-9+deb12u4", "2.36-9+deb12u10"),
            ("1.0-1~bpo12+1", "1.0-1"),
            ("1.001", "1.1"),
            ("3.2.2+dfsg-2", "3.2.2+dfsg-2~deb12u1"),
        ];
        for (a, b) in pairs {
            for (op, want) in [
                ("lt", Ordering::Less),
                ("eq", Ordering::Equal),
                ("gt", Ordering::Greater),
            ] {
                let Ok(st) = std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                else {
                    return;
                };
                assert_eq!(
                    st.success(),
                    cmp(a, b) == want,
                    "dpkg says {a} {op} {b} is {}",
                    st.success()
                );
            }
        }
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        assert!(DebVersion::parse("").is_none());
        assert!(DebVersion::parse("x:1.0").is_none());
        assert!(DebVersion::parse("abc").is_none());
        assert_eq!(DebVersion::parse("1.2-3-4").unwrap().upstream, "1.2-3");
    }
}
