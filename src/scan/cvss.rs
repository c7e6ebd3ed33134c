//! CVSS v3.0 and v3.1 base scores, computed as the specification (FIRST, "CVSS v3.1
//! Specification Document", section 7) defines them.
//!
//! Only the base metrics count: OSV records carry the NVD-style vector, and a temporal or
//! environmental metric in it is accepted and ignored, as the base score ignores it. v3.0 and
//! v3.1 share the weights and formulas; they differ only in `Roundup` (v3.1 rounds on integers to
//! avoid floating-point artefacts such as 4.000000001 becoming 4.1).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The qualitative rating of a base score (spec section 5).
    pub fn of_score(score: f64) -> Severity {
        match score {
            s if s <= 0.0 => Severity::None,
            s if s < 4.0 => Severity::Low,
            s if s < 7.0 => Severity::Medium,
            s if s < 9.0 => Severity::High,
            _ => Severity::Critical,
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" | "UNIMPORTANT" => Severity::Unknown,
            "NONE" | "NEGLIGIBLE" => Severity::None,
            "LOW" => Severity::Low,
            "MEDIUM" | "MODERATE" => Severity::Medium,
            "HIGH" | "IMPORTANT" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::None => "NONE",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    #[error("`{0}` is not a CVSS v3 vector (it must start with CVSS:3.0/ or CVSS:3.1/)")]
    NotV3(String),
    #[error("CVSS vector `{vector}`: {problem}")]
    Invalid { vector: String, problem: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V30,
    V31,
}

/// Spec 7.4's `Roundup` for v3.1: the smallest number with one decimal place that is equal to
/// or higher than its input, computed on integers.
fn roundup_31(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// v3.0's `Roundup`: round up to one decimal place.
fn roundup_30(x: f64) -> f64 {
    (x * 10.0).ceil() / 10.0
}

/// The base score of a v3.0 or v3.1 vector.
pub fn base_score(vector: &str) -> Result<f64, CvssError> {
    let invalid = |problem: String| CvssError::Invalid {
        vector: vector.to_string(),
        problem,
    };
    let (version, rest) = if let Some(r) = vector.strip_prefix("CVSS:3.1/") {
        (Version::V31, r)
    } else if let Some(r) = vector.strip_prefix("CVSS:3.0/") {
        (Version::V30, r)
    } else {
        return Err(CvssError::NotV3(vector.to_string()));
    };
    let mut m: BTreeMap<&str, &str> = BTreeMap::new();
    for part in rest.split('/') {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| invalid(format!("`{part}` is not METRIC:VALUE")))?;
        if m.insert(k, v).is_some() {
            return Err(invalid(format!("metric {k} appears twice")));
        }
    }
    let get = |k: &str, table: &[(&str, f64)]| -> Result<f64, CvssError> {
        let v = m
            .get(k)
            .ok_or_else(|| invalid(format!("the base metric {k} is missing")))?;
        table
            .iter()
            .find(|(n, _)| n == v)
            .map(|(_, w)| *w)
            .ok_or_else(|| invalid(format!("{k}:{v} is not a valid value")))
    };
    let scope_changed = match m.get("S") {
        Some(&"U") => false,
        Some(&"C") => true,
        Some(v) => return Err(invalid(format!("S:{v} is not a valid value"))),
        None => return Err(invalid("the base metric S is missing".into())),
    };
    let av = get("AV", &[("N", 0.85), ("A", 0.62), ("L", 0.55), ("P", 0.2)])?;
    let ac = get("AC", &[("L", 0.77), ("H", 0.44)])?;
    let pr = if scope_changed {
        get("PR", &[("N", 0.85), ("L", 0.68), ("H", 0.5)])?
    } else {
        get("PR", &[("N", 0.85), ("L", 0.62), ("H", 0.27)])?
    };
    let ui = get("UI", &[("N", 0.85), ("R", 0.62)])?;
    let cia = [("H", 0.56), ("L", 0.22), ("N", 0.0)];
    let (c, i, a) = (get("C", &cia)?, get("I", &cia)?, get("A", &cia)?);

    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    let roundup = match version {
        Version::V31 => roundup_31,
        Version::V30 => roundup_30,
    };
    Ok(if scope_changed {
        roundup((1.08 * (impact + exploitability)).min(10.0))
    } else {
        roundup((impact + exploitability).min(10.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_the_specification_examples() {
        // "CVSS v3.1 Examples" (FIRST): vector and the base score the document gives.
        for (vector, score) in [
            ("AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1), // CVE-2013-1937 phpMyAdmin XSS
            ("AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4), // CVE-2013-0375 MySQL
            ("AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1), // CVE-2014-3566 POODLE
            ("AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9), // CVE-2012-1516 VMware
            ("AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L", 4.2), // CVE-2009-0783 Tomcat
            ("AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8), // CVE-2012-0384 Cisco IOS
            ("AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8), // CVE-2015-1098 Apple iWork
            ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5), // CVE-2014-0160 Heartbleed
            ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), // CVE-2014-6271 Shellshock
            ("AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8), // CVE-2008-1447 DNS
            ("AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8), // CVE-2014-2005 Sophos
            ("AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8), // CVE-2010-0467 Joomla
            ("AV:A/AC:L/PR:N/UI:N/S:C/C:N/I:H/A:H", 9.3), // CVE-2013-6014 Juniper
            ("AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.4), // CVE-2014-9253 Joomla XSS
            ("AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8), // CVE-2011-1265 Bluetooth
            ("AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8), // CVE-2016-1645 Chrome
        ] {
            for prefix in ["CVSS:3.1/", "CVSS:3.0/"] {
                let v = format!("{prefix}{vector}");
                assert_eq!(base_score(&v).unwrap(), score, "{v}");
            }
        }
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N").unwrap(),
            0.0
        );
        // Temporal metrics do not change the base score.
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N/E:U/RL:O").unwrap(),
            7.5
        );
    }

    #[test]
    fn the_two_roundups_differ_where_the_spec_says() {
        // Spec 7.4: 4.000000001 (floating-point noise for 4.0) must stay 4.0 in v3.1.
        assert_eq!(roundup_31(4.000_000_000_1), 4.0);
        assert_eq!(roundup_31(4.02), 4.1);
        assert_eq!(roundup_30(4.02), 4.1);
        assert_eq!(roundup_31(4.0), 4.0);
    }

    #[test]
    fn bad_vectors_say_what_is_wrong() {
        assert!(matches!(
            base_score("CVSS:2.0/AV:N"),
            Err(CvssError::NotV3(_))
        ));
        let e = base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H").unwrap_err();
        assert!(e.to_string().contains("base metric A is missing"), "{e}");
        let e = base_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap_err();
        assert!(e.to_string().contains("AV:X is not a valid value"), "{e}");
        let e = base_score("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn ratings() {
        assert_eq!(Severity::of_score(0.0), Severity::None);
        assert_eq!(Severity::of_score(3.9), Severity::Low);
        assert_eq!(Severity::of_score(4.0), Severity::Medium);
        assert_eq!(Severity::of_score(7.0), Severity::High);
        assert_eq!(Severity::of_score(9.0), Severity::Critical);
        assert!(Severity::High > Severity::Medium && Severity::Unknown < Severity::Low);
    }
}
