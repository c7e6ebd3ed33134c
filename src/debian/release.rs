//! Freshness of a signed Release: a mirror (or an attacker in front of one) can replay an old,
//! validly signed InRelease to hide security updates. A Release with `Valid-Until` is refused
//! once that time has passed, like apt does; the time comes from the caller (the clock is a
//! side effect, so it is a parameter, and tests pass their own).
//!
//! Dates are RFC 2822 as the archive writes them: `Sat, 10 Jun 2023 08:51:33 UTC` (also
//! `+0000`; apt ignores the weekday and so does this).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "{url} expired at {valid_until} (Valid-Until): the mirror serves a stale or replayed index"
    )]
    Expired { url: String, valid_until: String },
    #[error("{url}: cannot read the date {text:?}")]
    Date { url: String, text: String },
}

/// Seconds since the Unix epoch of an archive date, or None if it is not one.
pub fn parse_date(text: &str) -> Option<i64> {
    let rest = text.trim();
    let rest = rest.split_once(',').map_or(rest, |(_, r)| r).trim();
    let w: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, zone] = w[..] else {
        return None;
    };
    if !matches!(zone, "UTC" | "GMT" | "+0000" | "Z") {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = t[..] else { return None };
    if !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    Some(crate::rfc3339::days_from_civil(year, month, day)? * 86_400 + h * 3600 + m * 60 + s)
}

/// Refuses a Release whose `Valid-Until` is before `now` (seconds since the epoch).
pub fn check_fresh(valid_until: Option<&str>, now: i64, url: &str) -> Result<(), ReleaseError> {
    let Some(text) = valid_until else {
        return Ok(());
    };
    let until = parse_date(text).ok_or_else(|| ReleaseError::Date {
        url: url.to_string(),
        text: text.to_string(),
    })?;
    if now > until {
        return Err(ReleaseError::Expired {
            url: url.to_string(),
            valid_until: text.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_archive_dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        // bookworm 12.0's Release date, checked with `date -u -d ... +%s`.
        assert_eq!(
            parse_date("Sat, 10 Jun 2023 08:51:33 UTC"),
            Some(1_686_387_093)
        );
        assert_eq!(
            parse_date("Tue, 29 Feb 2028 23:59:59 +0000"),
            Some(1_835_481_599)
        );
        assert_eq!(parse_date("10 Jun 2023 08:51:33 UTC"), Some(1_686_387_093));
        assert_eq!(parse_date("Sat, 10 Jun 2023 08:51:33 CEST"), None);
        assert_eq!(parse_date("Sat, 10 Foo 2023 08:51:33 UTC"), None);
        assert_eq!(parse_date("Sat, 10 Jun 2023 25:51:33 UTC"), None);
    }

    #[test]
    fn expired_releases_are_refused() {
        let until = "Sat, 10 Jun 2023 08:51:33 UTC";
        assert_eq!(check_fresh(Some(until), 1_686_387_093, "u"), Ok(()));
        assert!(matches!(
            check_fresh(Some(until), 1_686_387_094, "u"),
            Err(ReleaseError::Expired { .. })
        ));
        assert_eq!(check_fresh(None, i64::MAX, "u"), Ok(()));
        assert!(matches!(
            check_fresh(Some("soon"), 0, "u"),
            Err(ReleaseError::Date { .. })
        ));
    }
}
