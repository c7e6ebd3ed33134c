//! `kiln scan`: every Debian package in each service image checked against an OSV database the
//! user supplies (see `osv.rs`), with findings written as text, JSON and SARIF.
//!
//! What an image holds comes from its CycloneDX SBOM (`out/sbom/<service>.cdx.json`), which the
//! image build writes from the same inventory as the image's dpkg records: binary name and
//! version, and the source package and version (`kiln:deb:source*` properties). Debian's OSV
//! records name source packages, so a record matches on the source name and the source version;
//! a record naming the binary package also matches, for databases that do.
//!
//! The gate: a finding *fails* the scan when its severity is at or above `--fail-on` and a fixed
//! version exists (an unfixable finding is reported but cannot be acted on by rebuilding), unless
//! a live allowlist entry covers it. Outputs hold no time and are sorted, so the same images and
//! database give the same bytes.

pub mod allowlist;
pub mod cvss;
pub mod date;
pub mod osv;
pub mod sarif;

use std::path::Path;

use crate::debian::version::Version as DebVersion;
use crate::workspace::OutDir;
use cvss::Severity;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("`{service}` has no SBOM at {path}: build its image first (`kiln build {service}`)")]
    NoSbom { service: String, path: String },
    #[error("reading the SBOM {path}")]
    Sbom {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Db(#[from] osv::DbError),
    #[error("{0}")]
    Allowlist(crate::recipe::Diagnostic),
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A Debian package in an image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub source: String,
    pub source_version: String,
}

/// The Debian packages of a service's image, from its CycloneDX SBOM.
pub fn image_packages(root: &Path, out: &OutDir, service: &str) -> Result<Vec<Package>, ScanError> {
    let path = out.cyclonedx(service);
    let rel = relative(root, &path);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScanError::NoSbom {
                service: service.into(),
                path: rel,
            })
        }
        Err(e) => {
            return Err(ScanError::Sbom {
                path: rel,
                source: e.into(),
            })
        }
    };
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| ScanError::Sbom {
        path: rel.clone(),
        source: e.into(),
    })?;
    let mut out = Vec::new();
    for c in doc["components"].as_array().into_iter().flatten() {
        let prop = |name: &str| {
            c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["value"].as_str())
                .map(String::from)
        };
        let (Some(source), Some(source_version)) =
            (prop("kiln:deb:source"), prop("kiln:deb:source-version"))
        else {
            continue;
        };
        out.push(Package {
            name: c["name"].as_str().unwrap_or_default().into(),
            version: c["version"].as_str().unwrap_or_default().into(),
            source,
            source_version,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Allowed {
    pub reason: String,
    pub expires: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    pub image: String,
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub package: Package,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The lowest version that fixes it, when the database knows one.
    pub fixed: Option<String>,
    /// The allowlist entry that accepts this finding, if one is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Allowed>,
    /// Whether this finding alone fails the scan.
    pub fails: bool,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub fail_on: Severity,
    /// Today, in days since the epoch (expiry of allowlist entries).
    pub today: i64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub images: Vec<ImageReport>,
    /// Allowlist entries that matched a finding but have expired.
    pub expired: Vec<allowlist::Entry>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageReport {
    pub service: String,
    /// The image's platform (`linux/arm64`) when the workspace builds several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The SBOM the packages were read from, relative to the workspace.
    pub sbom: String,
    pub packages: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.images
            .iter()
            .flat_map(|i| &i.findings)
            .any(|f| f.fails)
    }
}

/// Matches one image's packages against the database.
pub fn scan_image(
    service: &str,
    packages: &[Package],
    db: &osv::Database,
    allow: &allowlist::Allowlist,
    policy: &Policy,
    expired: &mut Vec<allowlist::Entry>,
) -> ImageReport {
    let mut findings = Vec::new();
    for p in packages {
        let (src_v, bin_v) = (
            p.source_version.parse::<DebVersion>().ok(),
            p.version.parse::<DebVersion>().ok(),
        );
        for vuln in &db.vulnerabilities {
            for a in &vuln.affected {
                let version = if a.package == p.source {
                    src_v.as_ref()
                } else if a.package == p.name {
                    bin_v.as_ref()
                } else {
                    continue;
                };
                let Some(v) = version.filter(|v| a.affects(v)) else {
                    continue;
                };
                let fixed = a.fixed_after(v).map(|f| {
                    if f.epoch() > 0 {
                        format!("{}:{}", f.epoch(), join(&f))
                    } else {
                        join(&f)
                    }
                });
                let mut ids: Vec<&str> = vec![vuln.id.as_str()];
                ids.extend(vuln.aliases.iter().map(String::as_str));
                let entry = allow.find(&ids, &[p.source.as_str(), p.name.as_str()]);
                let allowed = match entry {
                    Some(e) if e.expires_days > policy.today => Some(Allowed {
                        reason: e.reason.clone(),
                        expires: e.expires.clone(),
                    }),
                    Some(e) => {
                        if !expired.contains(e) {
                            expired.push(e.clone());
                        }
                        None
                    }
                    None => None,
                };
                let fails = allowed.is_none()
                    && fixed.is_some()
                    && a.severity != Severity::Unknown
                    && a.severity >= policy.fail_on;
                findings.push(Finding {
                    image: service.into(),
                    id: vuln.id.clone(),
                    aliases: vuln.aliases.clone(),
                    summary: vuln.summary.clone(),
                    package: p.clone(),
                    severity: a.severity,
                    score: a.score,
                    fixed,
                    allowed,
                    fails,
                });
            }
        }
    }
    // Worst first, then stable by id and package, so reports diff cleanly.
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.name.cmp(&b.package.name))
    });
    findings.dedup_by(|a, b| a.id == b.id && a.package.name == b.package.name);
    ImageReport {
        service: service.into(),
        platform: None,
        sbom: OutDir::relative()
            .cyclonedx(service)
            .to_string_lossy()
            .into_owned(),
        packages: packages.len(),
        findings,
    }
}

fn join(v: &DebVersion) -> String {
    match v.revision() {
        None | Some("") => v.upstream().to_string(),
        Some(r) => format!("{}-{r}", v.upstream()),
    }
}

/// The images of one platform to scan: where its outputs are and, when the workspace builds
/// several platforms, its name.
pub struct Target<'a> {
    pub out: &'a OutDir,
    pub platform: Option<String>,
}

/// Scans every service in `services` (names of built images), on each target platform.
pub fn scan(
    root: &Path,
    targets: &[Target],
    services: &[String],
    db: &osv::Database,
    allow: &allowlist::Allowlist,
    policy: &Policy,
) -> Result<Report, ScanError> {
    let mut report = Report::default();
    for t in targets {
        for s in services {
            let packages = image_packages(root, t.out, s)?;
            let mut r = scan_image(s, &packages, db, allow, policy, &mut report.expired);
            r.platform = t.platform.clone();
            r.sbom = relative(root, &t.out.cyclonedx(s));
            report.images.push(r);
        }
    }
    // An expired entry matches on every platform's image: name it once.
    report
        .expired
        .sort_by(|a, b| (&a.id, &a.package).cmp(&(&b.id, &b.package)));
    report
        .expired
        .dedup_by(|a, b| a.id == b.id && a.package == b.package);
    Ok(report)
}

/// `path` relative to the workspace `root`, as reports name it.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Writes `out/scan/scan.json` and `out/scan/scan.sarif` (temp file + rename each).
pub fn write_outputs(root: &Path, report: &Report) -> Result<Vec<String>, ScanError> {
    let dir = OutDir::of(root).scan();
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| ScanError::Write { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(werr(&dir))?;
    let json = serde_json::to_string_pretty(report).unwrap_or_default() + "\n";
    let sarif = serde_json::to_string_pretty(&sarif::document(report)).unwrap_or_default() + "\n";
    let mut written = Vec::new();
    for (name, text) in [("scan.json", json), ("scan.sarif", sarif)] {
        let path = dir.join(name);
        let mut tmp = crate::cache::new_temp_file_in(&dir).map_err(werr(&dir))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(werr(&path))?;
        tmp.persist(&path).map_err(|e| werr(&path)(e.error))?;
        written.push(relative(root, &path));
    }
    Ok(written)
}
