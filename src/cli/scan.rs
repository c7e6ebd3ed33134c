//! `kiln scan` and the scan gate of `kiln push --scan-db`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Error;
use crate::driver;
use crate::recipe::Kind;
use crate::scan::{self, allowlist::Allowlist, cvss::Severity, osv, Policy, Report};
use crate::workspace::Workspace;

pub const DEFAULT_MAX_DB_AGE_DAYS: i64 = 7;

#[derive(clap::Args, Debug, Clone)]
pub struct ScanOptions {
    /// OSV records for Debian:12: a directory of *.json files or a zip of them.
    #[arg(long = "db", value_name = "PATH")]
    pub db: PathBuf,
    /// Fail when a finding at or above this severity has a fix: low, medium, high, critical.
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = parse_severity)]
    pub fail_on: Severity,
    /// Accepted findings, with reasons and expiry dates (TOML, see docs/recipes.md).
    #[arg(long, value_name = "FILE")]
    pub allowlist: Option<PathBuf>,
    /// Warn when the newest record in the database is older than this many days (`7d`).
    #[arg(long, value_name = "DAYS", default_value = "7d", value_parser = parse_days)]
    pub max_db_age: i64,
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Services whose images to scan (default: all).
    pub services: Vec<String>,
    #[command(flatten)]
    pub opts: ScanOptions,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_severity(s: &str) -> Result<Severity, String> {
    match Severity::parse(s) {
        Some(sev @ (Severity::Low | Severity::Medium | Severity::High | Severity::Critical)) => {
            Ok(sev)
        }
        _ => Err(format!("`{s}` is not one of low, medium, high, critical")),
    }
}

fn parse_days(s: &str) -> Result<i64, String> {
    s.strip_suffix('d')
        .unwrap_or(s)
        .parse::<i64>()
        .ok()
        .filter(|d| *d >= 0)
        .ok_or_else(|| format!("`{s}` is not a number of days such as 7d"))
}

/// Scans the named services' images; prints findings on stderr (unless `quiet`) and writes
/// out/scan/. Returns the report.
pub fn gate(
    ws: &Workspace,
    names: &[String],
    opts: &ScanOptions,
    quiet: bool,
) -> Result<Report, Error> {
    let db = osv::load(&opts.db).map_err(|e| Error::Scan(e.into()))?;
    let allow = match &opts.allowlist {
        Some(p) => Allowlist::load(p).map_err(|d| Error::Scan(scan::ScanError::Allowlist(d)))?,
        None => Allowlist::default(),
    };
    let today = scan::date::today();
    if let Some(newest) = db.newest_days() {
        let age = today - newest;
        if age > opts.max_db_age {
            eprintln!(
                "kiln: warning: the vulnerability database {} is {age} days old (newest record); --max-db-age is {} days",
                opts.db.display(),
                opts.max_db_age
            );
        }
    }
    let policy = Policy {
        fail_on: opts.fail_on,
        today,
    };
    // A workspace that builds several platforms has one image per platform of each service.
    let views: Vec<(Option<String>, Workspace)> = if ws.splits_platforms() {
        ws.platforms
            .iter()
            .map(|p| (Some(p.to_string()), ws.for_platform(*p)))
            .collect()
    } else {
        vec![(None, ws.clone())]
    };
    let outs: Vec<_> = views.iter().map(|(_, v)| v.out()).collect();
    let targets: Vec<scan::Target> = views
        .iter()
        .zip(&outs)
        .map(|((platform, _), out)| scan::Target {
            out,
            platform: platform.clone(),
        })
        .collect();
    let report = scan::scan(&ws.root, &targets, names, &db, &allow, &policy)?;
    for e in &report.expired {
        eprintln!(
            "kiln: warning: allowlist entry for {} expired on {}; the finding counts again",
            e.id, e.expires
        );
    }
    let written = scan::write_outputs(&ws.root, &report)?;
    if !quiet {
        for img in &report.images {
            let platform = img
                .platform
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            eprintln!(
                "kiln: scan: {}{platform}: {} package(s), {} finding(s)",
                img.service,
                img.packages,
                img.findings.len()
            );
            for f in &img.findings {
                let fix = f
                    .fixed
                    .as_deref()
                    .map_or("no fix".to_string(), |v| format!("fixed in {v}"));
                let note = match (&f.allowed, f.fails) {
                    (Some(a), _) => format!("  allowed until {}: {}", a.expires, a.reason),
                    (None, true) => "  FAILS".to_string(),
                    _ => String::new(),
                };
                eprintln!(
                    "  {:8} {:>4} {} {} ({} {}) {fix}{note}",
                    f.severity.as_str(),
                    f.score.map_or("-".to_string(), |s| format!("{s:.1}")),
                    f.id,
                    f.package.name,
                    f.package.source,
                    f.package.source_version,
                );
            }
        }
        eprintln!("kiln: scan: wrote {}", written.join(", "));
    }
    Ok(report)
}

pub fn run(ws: &Workspace, args: &ScanArgs) -> Result<ExitCode, Error> {
    let names = driver::select_kind(ws, &args.services, Kind::Service)?;
    let report = gate(ws, &names, &args.opts, false)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if report.failed() {
        eprintln!(
            "kiln: scan: failed: a finding at or above {} has a fix available",
            args.opts.fail_on.as_str()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
