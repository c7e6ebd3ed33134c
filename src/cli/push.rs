//! `kiln push` and `kiln login`: arguments in, results printed; the push policy itself is
//! [`crate::publish`].

use std::process::ExitCode;

use super::{jobs, Error};
use crate::build::Progress;
use crate::cli::output::{self, Lines, Quiet};
use crate::driver::{self, BuildOptions};
use crate::exec::ProcessRunner;
use crate::publish::{self, Destination, Policy};
use crate::recipe::Kind;
use crate::registry::{self, PushOptions};
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

pub fn run(ws: &Workspace, args: &PushArgs) -> Result<ExitCode, Error> {
    let usage = |m: String| Error::Driver(driver::DriverError::Usage(m));
    let dest = Destination::parse(&args.to).map_err(|e| usage(e.to_string()))?;
    let names = driver::select_kind(ws, &args.services, Kind::Service)?;

    // Push what the sources say now: build first (a no-op when nothing changed).
    let opts = BuildOptions {
        targets: names.clone(),
        jobs: jobs(args.build_jobs),
        images: true,
        cache_dir: crate::cache::default_dir(),
        keep_going: false,
    };
    let progress: &dyn Progress = if args.json { &Quiet } else { &Lines };
    let Some((images, built_meta)) = build_images(ws, &opts, progress)? else {
        return Ok(ExitCode::from(1));
    };

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
    let meta = built_meta.unwrap_or_else(|| crate::vcs::Meta::of(&ProcessRunner, &ws.root));
    let mut popts = PushOptions::new(&dest.registry);
    popts.prefix = dest.prefix.clone();
    popts.jobs = args.jobs.max(1);
    popts.insecure_registries = args.insecure.clone();
    popts.ca_file = args.ca_file.clone();
    popts.holders_file = Some(publish::holders_file(
        &crate::cache::default_dir(),
        &dest.registry,
    ));
    let policy = Policy {
        tags: args.tags.clone(),
        latest: args.latest,
        attach: !args.no_attach,
    };
    let services: Vec<&crate::recipe::Recipe> = names.iter().filter_map(|n| ws.recipe(n)).collect();
    let published = publish::publish(ws, &popts, &policy, &services, &images, &meta);

    let mut reports = Vec::new();
    let mut failed = false;
    for p in published {
        match p.pushed {
            Ok(rep) => {
                match p.attached {
                    Some(Ok(n)) if n > 0 && !args.json => {
                        eprintln!("kiln: attached {n} artifact(s) to {}", rep.reference)
                    }
                    Some(Err(e)) => {
                        failed = true;
                        output::print_error(&e);
                    }
                    _ => {}
                }
                if !args.json {
                    outln!("{} {}", rep.service, rep.reference);
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
        outln!(
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

type BuiltImages = (
    std::collections::BTreeMap<String, crate::image::ImageResult>,
    Option<crate::vcs::Meta>,
);

/// Builds what is to be pushed: the images, or in a multi-platform workspace each service's
/// image index (`out/images/<service>`, whose digest the tags then name). `None` when the
/// build failed (its errors already printed).
fn build_images(
    ws: &Workspace,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Option<BuiltImages>, Error> {
    if !ws.splits_platforms() {
        let outcome = driver::build(ws, opts, &ProcessRunner, progress)?;
        super::build::report_failures(&outcome);
        if outcome.failed || !outcome.image_errors.is_empty() {
            return Ok(None);
        }
        return Ok(Some((outcome.images, outcome.meta)));
    }
    let all = driver::build_platforms(
        ws,
        &ws.platforms,
        opts,
        &ProcessRunner,
        progress,
        None,
        None,
    )?;
    for (_, outcome) in &all.builds {
        super::build::report_failures(outcome);
    }
    for (service, e) in &all.index_errors {
        output::print_error(e);
        eprintln!("kiln: error: no image index for `{service}`");
    }
    if all.failed() {
        return Ok(None);
    }
    let Some((_, first)) = all.builds.first() else {
        return Ok(None);
    };
    let mut images = std::collections::BTreeMap::new();
    for (service, digest) in &all.indexes {
        let mut img = first.images[service].clone();
        img.layout = crate::workspace::OutDir::of(&ws.root).image(service);
        img.digest = *digest;
        images.insert(service.clone(), img);
    }
    Ok(Some((images, first.meta.clone())))
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
