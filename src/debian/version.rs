//! Debian version numbers and their ordering (Debian Policy §5.6.12, dpkg's `verrevcmp`).
//!
//! A version is `[epoch:]upstream[-revision]`. The epoch is compared as a number (absent = 0),
//! then upstream, then revision (absent = "0"), each by the same rule: alternate runs of
//! non-digits and digits; non-digit runs compare character by character with letters before
//! every other character, `~` before everything (even the end of the string, so `1.0~rc1 <
//! 1.0`), and digit runs compare as numbers of any length. Equality is by that ordering, not by
//! text: `1.0` and `0:1.0-0` are the same version.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Clone)]
pub struct Version {
    text: String,
    epoch: u64,
    /// Byte ranges of upstream and revision inside `text`.
    upstream: (usize, usize),
    revision: Option<(usize, usize)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("version {0:?} is empty")]
    Empty(String),
    #[error("version {0:?} has an epoch that is not a number")]
    Epoch(String),
    #[error("version {0:?} has an upstream part that does not start with a digit")]
    Upstream(String),
    #[error("version {text:?} contains {bad:?}, which Debian versions cannot contain")]
    Character { text: String, bad: char },
}

impl Version {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    pub fn revision(&self) -> Option<&str> {
        self.revision.map(|(a, b)| &self.text[a..b])
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Version, VersionError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(VersionError::Empty(s.to_string()));
        }
        let (epoch, start) = match text.find(':') {
            Some(i) => {
                let e = &text[..i];
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::Epoch(text.to_string()));
                }
                let epoch = e
                    .parse()
                    .map_err(|_| VersionError::Epoch(text.to_string()))?;
                (epoch, i + 1)
            }
            None => (0, 0),
        };
        let (upstream, revision) = match text[start..].rfind('-') {
            Some(i) => ((start, start + i), Some((start + i + 1, text.len()))),
            None => ((start, text.len()), None),
        };
        let up = &text[upstream.0..upstream.1];
        if !up.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(VersionError::Upstream(text.to_string()));
        }
        // Colons after the epoch and hyphens before the revision are allowed in upstream.
        let allowed_up = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if let Some(bad) = up.chars().find(|&c| !allowed_up(c)) {
            return Err(VersionError::Character {
                text: text.to_string(),
                bad,
            });
        }
        if let Some((a, b)) = revision {
            let rev = &text[a..b];
            let allowed_rev = |c: char| c.is_ascii_alphanumeric() || ".+~".contains(c);
            if let Some(bad) = rev.chars().find(|&c| !allowed_rev(c)) {
                return Err(VersionError::Character {
                    text: text.to_string(),
                    bad,
                });
            }
        }
        Ok(Version {
            text: text.to_string(),
            epoch,
            upstream,
            revision,
        })
    }
}

/// The weight of one character of a non-digit run: `~` first, then the end of the run, then
/// letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let wb = weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit run, compared as a number of any length: skip leading zeros, then the longer
        // run is larger, then the first differing digit decides.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (na, nb) = (&a[si..i], &b[sj..j]);
        match na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| {
                compare_part(
                    self.revision().unwrap_or("0"),
                    other.revision().unwrap_or("0"),
                )
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn assert_lt(a: &str, b: &str) {
        assert!(v(a) < v(b), "{a} < {b}");
        assert!(v(b) > v(a), "{b} > {a}");
    }

    #[test]
    fn splits_epoch_upstream_and_revision_at_the_last_hyphen() {
        let x = v("1:2.36-9+deb12u4");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (1, "2.36", Some("9+deb12u4"))
        );
        let y = v("1.2-3-4");
        assert_eq!((y.upstream(), y.revision()), ("1.2-3", Some("4")));
        let z = v("12.2.0");
        assert_eq!((z.epoch(), z.revision()), (0, None));
    }

    #[test]
    fn tilde_sorts_before_everything_even_the_end() {
        assert_lt("1.0~rc1", "1.0");
        assert_lt("1.0~~", "1.0~");
        assert_lt("1.0~~a", "1.0~");
        assert_lt("1.0~", "1.0");
        assert_lt("1.0", "1.0a");
        assert_lt("2.36-9~bpo1", "2.36-9");
    }

    #[test]
    fn letters_sort_before_other_characters() {
        assert_lt("1.0a", "1.0+");
        assert_lt("1.0a", "1.0.");
        assert_lt("1.0z", "1.0+");
    }

    #[test]
    fn digit_runs_compare_as_numbers_of_any_length() {
        assert_lt("1.9", "1.10");
        assert_lt("1.09", "1.10");
        assert_lt("99999999999999999999999", "100000000000000000000000");
        assert_eq!(v("1.001"), v("1.1"));
    }

    #[test]
    fn epoch_outranks_everything_else() {
        assert_lt("9.9-9", "1:0.1");
        assert_eq!(v("0:1.0"), v("1.0"));
    }

    #[test]
    fn missing_revision_equals_revision_zero() {
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_lt("1.0", "1.0-1");
        assert_lt("1.0-1", "1.0-1.1");
        assert_lt("12.2.0-14", "12.2.0-14+deb12u1");
    }

    #[test]
    fn orders_real_bookworm_versions() {
        assert_lt("2.36-9+deb12u4", "2.36-9+deb12u10");
        assert_lt("2.40-2", "2.40.1-1");
        assert_lt("1:3.2.2+dfsg-1", "1:3.2.4+dfsg-1");
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        assert!(matches!("".parse::<Version>(), Err(VersionError::Empty(_))));
        assert!(matches!(
            "a:1.0".parse::<Version>(),
            Err(VersionError::Epoch(_))
        ));
        assert!(matches!(
            "abc".parse::<Version>(),
            Err(VersionError::Upstream(_))
        ));
        assert!(matches!(
            "1.0 beta".parse::<Version>(),
            Err(VersionError::Character { bad: ' ', .. })
        ));
        assert!(matches!(
            "1:1.0-a:b".parse::<Version>(),
            Err(VersionError::Character { bad: ':', .. })
        ));
    }

    #[test]
    fn orders_pairs_as_dpkg_does() {
        use std::cmp::Ordering::*;
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
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
        }
    }

    /// The same pairs through dpkg itself, where it is installed (it is on every Debian).
    #[test]
    fn agrees_with_dpkg_itself() {
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
                ("lt", std::cmp::Ordering::Less),
                ("eq", std::cmp::Ordering::Equal),
                ("gt", std::cmp::Ordering::Greater),
            ] {
                let Ok(st) = std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                else {
                    return;
                };
                assert_eq!(
                    st.success(),
                    v(a).cmp(&v(b)) == want,
                    "dpkg says {a} {op} {b} is {}",
                    st.success()
                );
            }
        }
    }
}
