//! `kiln push` and `kiln login`.

use std::process::ExitCode;

use super::{jobs, Error};
use crate::build::Progress;
use crate::cli::output::{self, Lines, Quiet};
use crate::driver::{self, BuildOptions};
use crate::exec::ProcessRunner;
use crate::recipe::Kind;
use crate::registry::{self, PushImage, PushOptions};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Services to push (default: all).
    pub services: Vec<String>,
    /// Destination: REGISTRY[:PORT]/PREFIX; each image goes to PREFIX/<service>.
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    pub to: String,
    /// Tags to push (default: the recipe's version and the git short revision).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Also tag `latest`.
    #[arg(long)]
    pub latest: bool,
    /// Parallel uploads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Build jobs for the build that precedes the push.
    #[arg(short = 'j', value_name = "N")]
    pub build_jobs: Option<usize>,
    /// Allow plain HTTP to this registry (loopback registries always may).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    /// Trust this CA certificate (PEM) for the registry.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not attach SBOMs and provenance as referrers.
    #[arg(long)]
    pub no_attach: bool,
    #[arg(long)]
    pub json: bool,
    /// Scan the images against this OSV database first and push nothing if the scan fails.
    #[arg(long, value_name = "PATH")]
    pub scan_db: Option<std::path::PathBuf>,
    /// The scan's --fail-on (with --scan-db).
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = super::scan::parse_severity)]
    pub scan_fail_on: crate::scan::cvss::Severity,
    /// The scan's --allowlist (with --scan-db).
    #[arg(long, value_name = "FILE")]
    pub scan_allowlist: Option<std::path::PathBuf>,
    /// After a successful push, rewrite kiln://SERVICE in these YAML files (or a directory of
    /// them) to the digests just pushed, as `kiln resolve -i` does.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub resolve: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port].
    pub registry: String,
    #[arg(short = 'u', long)]
    pub username: String,
    /// Read the password from standard input (the only way: it never appears in argv).
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// `REGISTRY[:PORT]/PREFIX` into its two parts.
pub fn split_destination(to: &str) -> Result<(String, String), String> {
    let to = to.trim_end_matches('/');
    let (registry, prefix) = to.split_once('/').unwrap_or((to, ""));
    if registry.is_empty()
        || !(registry.contains('.') || registry.contains(':') || registry == "localhost")
    {
        return Err(format!("--to {to:?} must start with a registry host (REGISTRY[:PORT]/PREFIX), for example 127.0.0.1:5000/team"));
    }
    Ok((registry.to_string(), prefix.to_string()))
}

pub fn run(ws: &Workspace, args: &PushArgs) -> Result<ExitCode, Error> {
    let usage = |m: String| Error::Driver(driver::DriverError::Usage(m));
    let (registry_host, prefix) = split_destination(&args.to).map_err(usage)?;
    let selected = driver::select(ws, &args.services, |r| r.kind == Kind::Service)?;
    if let Some(&i) = selected
        .iter()
        .find(|&&i| ws.recipes[i].kind != Kind::Service)
    {
        return Err(usage(format!(
            "`{}` is a {}, not a service",
            ws.recipes[i].name,
            ws.recipes[i].kind.as_str()
        )));
    }
    let names: Vec<String> = selected
        .iter()
        .map(|&i| ws.recipes[i].name.clone())
        .collect();

    // Push what the sources say now: build first (a no-op when nothing changed).
    let opts = BuildOptions {
        targets: names.clone(),
        jobs: jobs(args.build_jobs),
        images: true,
        cache_dir: crate::cache::default_dir(),
        keep_going: false,
    };
    let progress: &dyn Progress = if args.json { &Quiet } else { &Lines };
    let outcome = driver::build(ws, &opts, &ProcessRunner, progress)?;
    super::build::report_failures(&outcome);
    if outcome.failed || !outcome.image_errors.is_empty() {
        return Ok(ExitCode::from(1));
    }

    // The gate: nothing goes up, not even the images that pass, when any image fails the scan,
    // so a release is either entirely scanned-clean or not published.
    if let Some(db) = &args.scan_db {
        let opts = super::scan::ScanOptions {
            db: db.clone(),
            fail_on: args.scan_fail_on,
            allowlist: args.scan_allowlist.clone(),
            max_db_age: super::scan::DEFAULT_MAX_DB_AGE_DAYS,
        };
        let report = super::scan::gate(ws, &names, &opts, false)?;
        if report.failed() {
            eprintln!(
                "kiln: push: nothing pushed: the scan found a fixable {} or worse finding",
                args.scan_fail_on.as_str()
            );
            return Ok(ExitCode::from(1));
        }
    }

    // The labels the build just used; the tags must agree with them.
    let meta = outcome
        .meta
        .clone()
        .unwrap_or_else(|| crate::vcs::Meta::of(&ProcessRunner, &ws.root));
    let images: Vec<PushImage> = selected
        .iter()
        .map(|&i| {
            let r = &ws.recipes[i];
            let mut tags = if args.tags.is_empty() {
                let mut t = vec![r.version.clone()];
                if meta.short_revision != "unknown" {
                    t.push(meta.short_revision.clone());
                }
                t
            } else {
                args.tags.clone()
            };
            if args.latest && !tags.iter().any(|t| t == "latest") {
                tags.push("latest".into());
            }
            PushImage {
                service: r.name.clone(),
                layout: outcome.images[&r.name].layout.clone(),
                tags,
            }
        })
        .collect();
    let mut popts = PushOptions::new(&registry_host);
    popts.prefix = prefix;
    popts.jobs = args.jobs.max(1);
    popts.insecure_registries = args.insecure.clone();
    popts.ca_file = args.ca_file.clone();
    let safe: String = registry_host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    popts.holders_file = Some(
        crate::cache::default_dir()
            .join("registries")
            .join(format!("{safe}.json")),
    );

    let results = registry::push_all(&popts, &images);
    // SBOMs and provenance go up as referrers, images in parallel (each over one connection).
    let attached: Vec<Option<Result<usize, String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .iter()
            .zip(&results)
            .map(|(img, res)| {
                let popts = &popts;
                scope.spawn(move || match res {
                    Ok(rep) if !args.no_attach => {
                        Some(attach(ws, popts, &img.service, rep).map_err(|e| error_chain(&*e)))
                    }
                    _ => None,
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    let mut reports = Vec::new();
    let mut failed = false;
    for (res, attach_result) in results.into_iter().zip(attached) {
        match res {
            Ok(rep) => {
                match attach_result {
                    Some(Ok(n)) if n > 0 && !args.json => {
                        eprintln!("kiln: attached {n} artifact(s) to {}", rep.reference)
                    }
                    Some(Err(e)) => {
                        failed = true;
                        eprintln!("kiln: error: {e}");
                    }
                    _ => {}
                }
                if !args.json {
                    println!("{} {}", rep.service, rep.reference);
                }
                reports.push(rep);
            }
            Err(e) => {
                failed = true;
                output::print_error(&e);
            }
        }
    }
    // What `kiln resolve --to` pins manifests to: only images that went up, failed ones keep
    // their previous entry.
    let pushed: Vec<(String, String)> = reports
        .iter()
        .map(|r| (r.service.clone(), r.reference.clone()))
        .collect();
    if let Err(e) = crate::deploy::resolve::record_pushes(&ws.root, &args.to, &pushed) {
        failed = true;
        output::print_error(&e);
    }
    if let (Some(path), false) = (&args.resolve, failed) {
        let resolved = super::k8s::resolve_in_place(ws, path, &args.to);
        if let Err(e) = resolved {
            failed = true;
            output::print_error(&e);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "images": reports }))
                .unwrap_or_default()
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An error and its causes on one line each, for errors gathered from worker threads.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    s
}

fn attach(
    ws: &Workspace,
    opts: &PushOptions,
    service: &str,
    rep: &registry::PushReport,
) -> Result<usize, Box<dyn std::error::Error>> {
    let artifacts = crate::sbom::artifacts(&ws.root, service)?;
    registry::push_referrers(opts, service, &rep.descriptor(), &artifacts)?;
    Ok(artifacts.len())
}

pub fn login(args: &LoginArgs) -> Result<ExitCode, Error> {
    if !args.password_stdin {
        return Err(Error::Driver(driver::DriverError::Usage(
            "kiln login reads the password from standard input: pass --password-stdin".into(),
        )));
    }
    let password = registry::read_password(std::io::stdin().lock())
        .map_err(|e| Error::Failed(format!("reading the password from standard input: {e}")))?;
    let opts = registry::LoginOptions {
        registry: args.registry.clone(),
        username: args.username.clone(),
        password,
        insecure_registries: args.insecure.clone(),
        ca_file: args.ca_file.clone(),
        credentials: None,
        certs_d: None,
        retry: Default::default(),
    };
    match registry::login(&opts) {
        Ok(path) => {
            eprintln!(
                "kiln: login succeeded; credentials stored in {}",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            output::print_error(&e);
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            split_destination("127.0.0.1:5000/team/svc").unwrap(),
            ("127.0.0.1:5000".into(), "team/svc".into())
        );
        assert_eq!(
            split_destination("localhost").unwrap(),
            ("localhost".into(), "".into())
        );
        assert!(split_destination("team/svc").is_err());
    }
}
