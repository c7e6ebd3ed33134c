//! `kiln test`.

use std::process::ExitCode;

use super::output::{Lines, Quiet};
use super::Error;
use crate::build::Progress;
use crate::cache::Cache;
use crate::driver::{self, BuildOptions};
use crate::exec::ProcessRunner;
use crate::recipe::Kind;
use crate::testing;
use crate::workspace::Workspace;

pub fn run(
    ws: &Workspace,
    targets: &[String],
    jobs: usize,
    rerun: bool,
    json: bool,
    keep_going: bool,
) -> Result<ExitCode, Error> {
    let names = driver::select_kind(ws, targets, Kind::Test)?;
    let cache_dir = crate::cache::default_dir();
    let opts = BuildOptions {
        targets: names.clone(),
        jobs,
        images: false,
        cache_dir: cache_dir.clone(),
        keep_going,
    };
    let progress: &dyn Progress = if json { &Quiet } else { &Lines };
    let outcome = build_tests(ws, &opts, progress)?;
    super::build::report_failures(&outcome);
    super::build::report_cache(&outcome);
    if outcome.failed && !keep_going {
        return Ok(ExitCode::from(1));
    }
    // With -k, the tests whose binaries were built still run.
    let built: std::collections::BTreeSet<&str> = outcome
        .targets
        .iter()
        .filter(|t| t.failures.is_empty() && t.skipped == 0)
        .map(|t| t.name.as_str())
        .collect();
    let cache =
        Cache::open(cache_dir).map_err(|e| Error::Failed(format!("opening the cache: {e}")))?;
    let mut results = Vec::new();
    for name in &names {
        let Some(i) = ws.index(name).filter(|_| built.contains(name.as_str())) else {
            continue;
        };
        let sandbox = outcome
            .toolchains
            .get(&ws.recipes[i].toolchain.value)
            .and_then(|t| t.root.as_ref())
            .map(|r| &r.sandbox);
        let res = testing::run_test(&ProcessRunner, ws, i, &cache, rerun, sandbox)
            .map_err(|e| Error::Failed(format!("running test `{}`: {e}", ws.recipes[i].name)))?;
        if !json {
            let word = match (res.passed, res.cached) {
                (true, true) => "PASS (cached)",
                (true, false) => "PASS",
                (false, _) => "FAIL",
            };
            eprintln!("{word:14} {} ({} tests)", res.name, res.tests);
            if !res.passed {
                for line in res.output.lines() {
                    eprintln!("  | {line}");
                }
            }
        }
        results.push(res);
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tests": results }))
                .unwrap_or_default()
        );
    } else {
        outln!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 && !outcome.failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn build_tests(
    ws: &Workspace,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<driver::BuildOutcome, Error> {
    Ok(driver::build_selected(
        ws,
        opts,
        &ProcessRunner,
        progress,
        true,
    )?)
}
