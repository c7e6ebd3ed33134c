//! `kiln build` and `kiln compile-commands`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::output::{self, Bar, Lines, Quiet};
use super::{jobs, BuildArgs, Error};
use crate::build::remote::Remote;
use crate::build::Progress;
use crate::debian::DebSource;
use crate::driver::{self, BuildOptions, BuildOutcome};
use crate::exec::ProcessRunner;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, args: &BuildArgs) -> Result<ExitCode, Error> {
    if ws.splits_platforms() || !args.platform.is_empty() {
        return run_platforms(ws, args);
    }
    let remote = remote_of(ws, args)?;
    if args.locked {
        crate::lock::check_with(ws, remote.as_ref().map(|r| r as &dyn DebSource))
            .map_err(|e| Error::Lock(Box::new(e)))?;
    }
    let opts = BuildOptions {
        targets: args.targets.clone(),
        jobs: jobs(args.jobs),
        images: !args.no_images,
        cache_dir: crate::cache::default_dir(),
        keep_going: args.keep_going,
    };
    let bar_ref = (!args.json && output::interactive()).then(|| Bar::new(0));
    let progress: &dyn Progress = match (&bar_ref, args.json) {
        (_, true) => &Quiet,
        (Some(b), false) => b,
        (None, false) => &Lines,
    };
    let outcome = driver::build_with_remote(ws, &opts, &ProcessRunner, progress, remote.as_ref())?;
    if let Some(b) = &bar_ref {
        b.finish();
    }
    report_failures(&outcome);
    report_cache(&outcome);
    if args.json {
        let doc = serde_json::json!({
            "targets": outcome.targets,
            "cache": {
                "damaged": outcome.damage.iter().map(|d| d.blob).collect::<Vec<_>>(),
                "gc": outcome.gc.as_ref().and_then(|g| g.as_ref().ok()),
            },
            "remote": outcome.remote,
        });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        summary(&outcome);
    }
    if outcome.failed || !outcome.image_errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    if let Some(path) = &args.docker_archive {
        let layouts = write_docker_archive(ws, &outcome, path)?;
        if !args.json {
            eprintln!(
                "kiln: wrote {} ({} image(s))",
                path.display(),
                layouts.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The remote cache (and execution) the flags, `kiln.toml` or the user's config name; a root
/// the lock check or the build materialises takes its .debs from it too.
fn remote_of(ws: &Workspace, args: &BuildArgs) -> Result<Option<Remote>, Error> {
    let flags = crate::remote::settings::Flags {
        cache: args.remote_cache.clone(),
        instance: args.remote_instance.clone(),
        exec: args.remote_exec.clone(),
        disabled: args.no_remote_cache,
    };
    Ok(crate::remote::settings::resolve(&ws.root, &flags)?.map(Remote::new))
}

/// `kiln build` over several platforms (or one that is not the default): each platform's
/// report under a `kiln: platform …` line, then the image indexes.
fn run_platforms(ws: &Workspace, args: &BuildArgs) -> Result<ExitCode, Error> {
    let platforms = driver::chosen_platforms(ws, &args.platform)?;
    if args.docker_archive.is_some() && platforms.len() > 1 {
        let names: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
        return Err(Error::Driver(driver::DriverError::Usage(format!(
            "--docker-archive holds one platform's images and this build is for {}; \
             add --platform OS/ARCH (one archive per platform)",
            names.join(", ")
        ))));
    }
    let remote = remote_of(ws, args)?;
    if args.locked {
        // Each platform's view checks its own toolchains and the workspace's other platforms'.
        for p in &platforms {
            crate::lock::check_with(
                &ws.for_platform(*p),
                remote.as_ref().map(|r| r as &dyn DebSource),
            )
            .map_err(|e| Error::Lock(Box::new(e)))?;
        }
    }
    let opts = BuildOptions {
        targets: args.targets.clone(),
        jobs: jobs(args.jobs),
        images: !args.no_images,
        cache_dir: crate::cache::default_dir(),
        keep_going: args.keep_going,
    };
    let progress: &dyn Progress = if args.json { &Quiet } else { &Lines };
    let all = driver::build_platforms(
        ws,
        &platforms,
        &opts,
        &ProcessRunner,
        progress,
        remote.as_ref(),
        None,
    )?;
    for (p, outcome) in &all.builds {
        if !args.json {
            eprintln!("kiln: platform {p}");
        }
        report_failures(outcome);
        report_cache(outcome);
        if !args.json {
            summary(outcome);
        }
    }
    for (service, e) in &all.index_errors {
        eprintln!(
            "kiln: error: image index for `{service}`: {}",
            crate::error::chain(e)
        );
    }
    if args.json {
        let doc = serde_json::json!({
            "platforms": all.builds.iter().map(|(p, o)| serde_json::json!({
                "platform": p.to_string(),
                "targets": o.targets,
            })).collect::<Vec<_>>(),
            "indexes": all.indexes,
            "removed_indexes": all.stale_indexes,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let mut lines = String::new();
        let built: Vec<String> = all.builds.iter().map(|(p, _)| p.to_string()).collect();
        for service in &all.stale_indexes {
            let _ = writeln!(
                lines,
                "kiln: image index {service}: removed, it named an image this build for {} \
                 replaced; a build of every platform writes it again",
                built.join(", ")
            );
        }
        for (service, digest) in &all.indexes {
            let _ = writeln!(
                lines,
                "kiln: image index {service}: {digest} ({} platforms)",
                all.builds.len()
            );
        }
        eprint!("{lines}");
    }
    if all.failed() {
        return Ok(ExitCode::from(1));
    }
    if let (Some(path), Some((_, outcome))) = (&args.docker_archive, all.builds.first()) {
        write_docker_archive(ws, outcome, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the build's images as one `docker load` archive at `path`, each tagged
/// `SERVICE:VERSION`; returns what it wrote.
fn write_docker_archive(
    ws: &Workspace,
    outcome: &BuildOutcome,
    path: &std::path::Path,
) -> Result<Vec<(String, std::path::PathBuf)>, Error> {
    let layouts: Vec<(String, std::path::PathBuf)> = outcome
        .images
        .iter()
        .map(|(name, img)| {
            let version = ws
                .recipe(name)
                .map(|r| r.version.clone())
                .unwrap_or_default();
            (format!("{name}:{version}"), img.layout.clone())
        })
        .collect();
    write_archive(&layouts, path)
        .map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))?;
    Ok(layouts)
}

/// One warning per damaged blob the build had to throw away, and what the automatic
/// collection did.
pub fn report_cache(outcome: &BuildOutcome) {
    for u in &outcome.upkeep {
        eprintln!("kiln: warning: {}", crate::error::chain(u));
    }
    for d in &outcome.damage {
        eprintln!("kiln: warning: {d}; removed it and rebuilt what it held");
    }
    // One line for the whole build: the first failure turned the remote (or its uploads) off.
    if let Some(failure) = outcome.remote.as_ref().and_then(|r| r.error.as_ref()) {
        eprintln!("kiln: warning: {failure}");
    }
    match &outcome.gc {
        Some(Ok(r)) => eprintln!(
            "kiln: cache over its limits: {}",
            super::cache::describe_gc(r)
        ),
        Some(Err(e)) => eprintln!("kiln: warning: {}", crate::error::chain(e)),
        None => {}
    }
}

/// Compiler diagnostics, once, under the target they belong to; with -k, also what was left
/// unbuilt because of them.
pub fn report_failures(outcome: &BuildOutcome) {
    let mut failed = 0;
    for t in &outcome.targets {
        for (id, rep) in &t.failures {
            failed += 1;
            eprintln!("kiln: error: target `{}` failed: {id}", t.name);
            for line in rep.stderr.lines() {
                eprintln!("  | {line}");
            }
        }
    }
    let blocked: Vec<&str> = outcome
        .targets
        .iter()
        .filter(|t| t.failures.is_empty() && t.skipped > 0)
        .map(|t| t.name.as_str())
        .collect();
    if failed > 1 || !blocked.is_empty() {
        let mut line = format!("kiln: {failed} action(s) failed");
        if !blocked.is_empty() {
            line.push_str(&format!(
                "; not built because of them: {}",
                blocked.join(", ")
            ));
        }
        eprintln!("{line}");
    }
    for (service, e) in &outcome.image_errors {
        eprintln!(
            "kiln: error: image for `{service}`: {}",
            crate::error::chain(e)
        );
    }
}

fn summary(outcome: &BuildOutcome) {
    let (mut run, mut cached, mut remote, mut fresh, mut exec) = (0, 0, 0, 0, 0);
    for t in &outcome.targets {
        run += t.actions_run;
        cached += t.actions_cached;
        remote += t.actions_remote;
        exec += t.actions_remote_exec;
        fresh += t.actions_fresh;
    }
    // One write for all the lines: stderr is unbuffered, and a no-op build is mostly this.
    let mut lines = String::new();
    for (name, img) in &outcome.images {
        let _ = writeln!(
            lines,
            "kiln: image {name}: {} ({:.1} MB of {:.0} MB budget)",
            img.digest,
            img.compressed_size as f64 / 1e6,
            img.budget as f64 / 1e6
        );
    }
    eprint!("{lines}");
    if !outcome.failed {
        eprintln!(
            "kiln: {} targets: {run} actions run, {cached} from cache, {remote} from remote cache, {fresh} up to date{}",
            outcome.targets.len(),
            // Only builds with remote execution name it, so the usual line stays as it was.
            if exec > 0 {
                format!(", {exec} run remotely")
            } else {
                String::new()
            }
        );
    }
}

pub fn compile_commands(ws: &Workspace) -> Result<ExitCode, Error> {
    let cache_dir = crate::cache::default_dir();
    let roots: Vec<usize> = (0..ws.recipes.len()).collect();
    let prepared = driver::prepare(&ProcessRunner, ws, &roots, &cache_dir, None)?;
    let root = ws.root.to_string_lossy();
    let ide = format!("{}/", crate::workspace::OutDir::relative().ide().display());
    let mut entries = Vec::new();
    for a in &prepared.plan.actions {
        if !a.kind.ends_with("compile") {
            continue;
        }
        let tc = &prepared.toolchains[&a.toolchain];
        let mut args = vec![tc.program(&a.program).to_string_lossy().into_owned()];
        args.extend(
            a.argv
                .iter()
                .map(|x| x.replace("$OUT/", &ide).replace("$WS", &root)),
        );
        entries.push(serde_json::json!({
            "directory": root,
            "file": a.inputs[0],
            "arguments": args,
            "output": a.outputs[0].dest,
        }));
    }
    let path = ws.root.join("compile_commands.json");
    let bytes = serde_json::to_vec_pretty(&entries).unwrap_or_default();
    crate::cache::atomic_write(&path, &bytes)
        .map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))?;
    eprintln!(
        "kiln: wrote compile_commands.json ({} entries)",
        entries.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_archive(
    layouts: &[(String, std::path::PathBuf)],
    path: &std::path::Path,
) -> Result<(), String> {
    let images: Vec<(std::path::PathBuf, String)> = layouts
        .iter()
        .map(|(tag, layout)| (layout.clone(), tag.clone()))
        .collect();
    crate::image::write_docker_archive_many(&images, path).map_err(|e| e.to_string())
}

pub fn inspect(ws: &Workspace, service: &str, json: bool) -> Result<ExitCode, Error> {
    let r = ws.recipe(service).ok_or_else(|| {
        let help = crate::diag::did_you_mean(service, ws.recipes.iter().map(|r| r.name.as_str()))
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        Error::Driver(driver::DriverError::Usage(format!(
            "no service named `{service}`{help}"
        )))
    })?;
    let layout = ws.out().image(&r.name);
    if !layout.join(crate::oci::layout::INDEX_FILE).is_file() {
        return Err(Error::Failed(format!(
            "no image for `{service}` in {}: run `kiln build {service}` first",
            layout.display()
        )));
    }
    let mut ins = crate::image::inspect(&layout)
        .map_err(|e| Error::Failed(format!("inspecting {}: {e}", layout.display())))?;
    ins.toolchain = ws.toolchains.get(&r.toolchain.value).map(|t| {
        let host = t.source == crate::toolchain::ToolchainSource::Host;
        crate::image::ToolchainLabel {
            name: r.toolchain.value.clone(),
            source: if host { "host" } else { "debian" }.to_string(),
            reproducible: !host,
        }
    });
    if json {
        outln!("{}", serde_json::to_string_pretty(&ins).unwrap_or_default());
    } else {
        out!("{ins}");
    }
    Ok(ExitCode::SUCCESS)
}
