//! Calendar dates as days since 1970-01-01: OSV `modified` times and allowlist expiry dates.
//! By hand, like `crate::rfc3339`, since it is all the date arithmetic the scan needs.

/// `YYYY-MM-DD`, optionally followed by `T…` (the time of day is ignored), to days since the
/// Unix epoch. `None` unless the date exists in the proleptic Gregorian calendar.
pub fn parse_days(s: &str) -> Option<i64> {
    let date = s.split('T').next()?;
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    crate::rfc3339::days_from_civil(y, m, d)
}

/// Today, from the clock: the one place the scan reads it (database age, allowlist expiry).
pub fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_the_sbom_formatter() {
        for days in [-1, 0, 59, 60, 365, 11_016, 19_782, 20_000, 47_482] {
            let text = crate::rfc3339::rfc3339(days * 86_400);
            assert_eq!(parse_days(&text), Some(days), "{text}");
        }
        assert_eq!(parse_days("2024-02-29"), Some(19_782));
        assert_eq!(parse_days("2023-02-29"), None);
        assert_eq!(parse_days("2024-13-01"), None);
        assert_eq!(parse_days("24-01-01"), None);
    }
}
