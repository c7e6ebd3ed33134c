//! SARIF 2.1.0 for code-scanning dashboards (GitHub, GitLab): one run, one rule per
//! vulnerability id, one result per (image, package, vulnerability). Allowlisted findings are
//! kept as results with an external suppression carrying the reason, so the dashboard shows the
//! decision instead of losing the finding. `security-severity` is the CVSS score (or the
//! rating's lower bound) as GitHub expects to rank alerts. No time or absolute path appears.

use serde_json::{json, Value};

use super::cvss::Severity;
use super::Report;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

fn security_severity(score: Option<f64>, s: Severity) -> String {
    let v = score.unwrap_or(match s {
        Severity::Critical => 9.0,
        Severity::High => 7.0,
        Severity::Medium => 4.0,
        Severity::Low => 0.1,
        _ => 0.0,
    });
    format!("{v:.1}")
}

pub fn document(report: &Report) -> Value {
    let mut rules: std::collections::BTreeMap<String, Value> = Default::default();
    let mut results = Vec::new();
    for img in &report.images {
        // One image per platform: say which, and keep fingerprints apart.
        let (shown, key) = match &img.platform {
            Some(p) => (
                format!("{} ({p})", img.service),
                format!("{}@{p}", img.service),
            ),
            None => (img.service.clone(), img.service.clone()),
        };
        for f in &img.findings {
            rules.entry(f.id.clone()).or_insert_with(|| {
                json!({
                    "id": f.id,
                    "shortDescription": { "text": if f.summary.is_empty() { f.id.clone() } else { f.summary.clone() } },
                    "helpUri": format!("https://osv.dev/vulnerability/{}", f.id),
                    "properties": {
                        "security-severity": security_severity(f.score, f.severity),
                        "tags": ["security", "vulnerability", "debian"],
                    },
                })
            });
            let fix = match &f.fixed {
                Some(v) => format!("fixed in {v}"),
                None => "no fix available".into(),
            };
            let mut r = json!({
                "ruleId": f.id,
                "level": level(f.severity),
                "message": { "text": format!(
                    "{} {} ({} {}) in image {}: {} {}, {fix}",
                    f.package.name, f.package.version, f.package.source, f.package.source_version,
                    shown, f.severity.as_str(), f.id,
                ) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": img.sbom } },
                    "logicalLocations": [{ "name": f.package.name, "fullyQualifiedName": format!("{key}/{}", f.package.name), "kind": "package" }],
                }],
                "partialFingerprints": { "kiln/v1": format!("{key}/{}/{}", f.package.name, f.id) },
            });
            if let Some(a) = &f.allowed {
                r["suppressions"] = json!([{ "kind": "external", "status": "accepted", "justification": format!("{} (until {})", a.reason, a.expires) }]);
            }
            results.push(r);
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.into_values().collect::<Vec<_>>(),
            } },
            "results": results,
        }],
    })
}
