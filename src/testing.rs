//! `kiln test`: build test targets, run them through the cache, write JUnit XML.
//!
//! A test result is cached (only when it passed) under a key over the test binary, the workspace
//! shared libraries it loads, its arguments and framework; an unchanged test is not rerun unless
//! asked. Each test writes `out/test-results/<name>.xml`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cache::key::KeyBuilder;
use crate::cache::Cache;
use crate::debian::sandbox::{Sandbox, WORKSPACE};
use crate::digest::Digest;
use crate::exec::{Command, Env, Runner};
use crate::recipe::{Kind, TestFramework};
use crate::workspace::Workspace;
use crate::{build::plan, graph};

/// A test that runs longer than this is killed and fails.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    /// Served from the cache instead of run.
    pub cached: bool,
    pub tests: u32,
    pub failures: u32,
    pub output: String,
    pub junit: PathBuf,
}

/// Runs test target `i` (already built) through `runner`, unless a passing result is cached.
/// A test built with a Debian toolchain runs in its `sandbox`, over the root it was linked
/// against (with a cleared environment but for `KILN_TEST`), never over this machine's libraries.
/// A test built for another platform (`kiln test --platform linux/arm64`) runs under qemu-user
/// with the root as its `-L` prefix, so its loader and libraries are the root's arm64 ones.
pub fn run_test(
    runner: &dyn Runner,
    ws: &Workspace,
    i: usize,
    cache: &Cache,
    rerun: bool,
    sandbox: Option<&Sandbox>,
) -> std::io::Result<TestResult> {
    let r = &ws.recipes[i];
    assert_eq!(r.kind, Kind::Test);
    let bin = ws.root.join(plan::product_path(r));
    let mut k = KeyBuilder::new("test-run");
    k.input(
        &plan::product_path(r).to_string_lossy(),
        &Digest::of_file(&bin)?.0,
    );
    for j in graph::link_closure(&ws.graph(), i) {
        if ws.recipes[j].shared {
            let p = plan::product_path(&ws.recipes[j]);
            k.input(&p.to_string_lossy(), &Digest::of_file(&ws.root.join(&p))?.0);
        }
    }
    k.argv(&r.test.args);
    k.argv(&[format!("{:?}", r.test.framework)]);
    if let Some(sb) = sandbox {
        k.argv(&[format!("sandbox over {}", sb.root().display())]);
    }
    let key = k.finish();
    let results_dir = ws.out().test_results();
    std::fs::create_dir_all(&results_dir)?;
    let junit = results_dir.join(format!("{}.xml", r.name));
    let memo = cache
        .root()
        .join("tests")
        .join(format!("{}.json", key.hex()));

    if !rerun {
        if let Some((res, xml)) = std::fs::read(&memo)
            .ok()
            .and_then(|b| serde_json::from_slice::<(TestResult, Digest)>(&b).ok())
            .and_then(|(res, d)| cache.get_bytes(&d).ok().map(|x| (res, x)))
        {
            crate::cache::atomic_write(&junit, &xml)?;
            return Ok(TestResult {
                cached: true,
                ..res
            });
        }
    }

    let staging = tempfile::tempdir_in(ws.out().path())?;
    let gtest_xml = staging.path().join("gtest.xml");
    let mut cmd = Command::new(&bin)
        .args(r.test.args.iter().cloned())
        .cwd(&ws.root)
        // A test sees the user's environment, as it would run by hand, and its own name.
        .env(Env::Inherited(vec![(
            "KILN_TEST".into(),
            r.name.clone().into(),
        )]))
        .timeout(TEST_TIMEOUT)
        .die_with_kiln();
    if r.test.framework == TestFramework::Gtest {
        cmd = cmd.arg(format!("--gtest_output=xml:{}", gtest_xml.display()));
    }
    let foreign = r.platform.filter(|p| !p.is_default());
    if let (Some(p), Some(sb)) = (foreign, sandbox) {
        // Another machine's binary runs under qemu-user over the root it was linked against:
        // `-L` makes the root its loader's and libraries' `/`.
        let qemu = crate::toolchain::which(p.qemu).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} is not installed; a {p} test runs under it (apt-get install qemu-user, or run scripts/setup)",
                p.qemu
            ))
        })?;
        let mut args = vec![
            "-L".to_string(),
            sb.root().to_string_lossy().into_owned(),
            bin.to_string_lossy().into_owned(),
        ];
        args.extend(cmd.args.iter().cloned());
        cmd.args = args;
        cmd.program = qemu;
    } else if let Some(sb) = sandbox {
        let mut binds = Vec::new();
        let program = sb.map_path(&bin, &mut binds);
        let mut args: Vec<String> = r.test.args.clone();
        if r.test.framework == TestFramework::Gtest {
            args.push(format!(
                "--gtest_output=xml:{}",
                sb.map_path(&gtest_xml, &mut binds)
            ));
        }
        let mut wrapped = sb
            .with_env(&[("KILN_TEST", &r.name)])
            .command_with_binds(&program, &args, WORKSPACE, &binds);
        wrapped.timeout = cmd.timeout;
        wrapped.die_with_kiln = true;
        cmd = wrapped;
    }
    let (code, output, elapsed) = run_bounded(runner, &cmd)?;
    let passed = code == Some(0);
    let (xml, tests, failures) = if r.test.framework == TestFramework::Gtest && gtest_xml.is_file()
    {
        let xml = std::fs::read_to_string(&gtest_xml)?;
        let tests = attr(&xml, "tests").unwrap_or(1);
        let failures = attr(&xml, "failures").unwrap_or(u32::from(!passed))
            + attr(&xml, "errors").unwrap_or(0);
        (xml, tests, if passed { failures } else { failures.max(1) })
    } else {
        (
            junit_for_executable(&r.name, passed, &output, elapsed),
            1,
            u32::from(!passed),
        )
    };
    crate::cache::atomic_write(&junit, xml.as_bytes())?;
    let res = TestResult {
        name: r.name.clone(),
        passed,
        cached: false,
        tests,
        failures,
        output,
        junit: junit.strip_prefix(&ws.root).unwrap_or(&junit).to_path_buf(),
    };
    if passed {
        let d = cache.put_bytes(xml.as_bytes())?;
        crate::cache::atomic_write(
            &memo,
            &serde_json::to_vec(&(&res, d)).map_err(std::io::Error::other)?,
        )?;
    }
    Ok(res)
}

fn attr(xml: &str, name: &str) -> Option<u32> {
    let start = xml.find("<testsuites")?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    tag[at..].split('"').next()?.parse().ok()
}

/// Runs a test process (with its time limit), giving its exit code, its stdout followed by its
/// stderr, and how long it ran.
fn run_bounded(
    runner: &dyn Runner,
    cmd: &Command,
) -> std::io::Result<(Option<i32>, String, Duration)> {
    let start = Instant::now();
    let out = runner.run(cmd)?;
    let elapsed = start.elapsed();
    // A stream that is not UTF-8 is dropped whole, as reading it to a String always did.
    let mut output = String::from_utf8(out.stdout).unwrap_or_default();
    output.push_str(&String::from_utf8(out.stderr).unwrap_or_default());
    if out.timed_out {
        let limit = cmd.timeout.unwrap_or_default();
        output.push_str(&format!("\nkiln: test killed after {}s\n", limit.as_secs()));
    }
    Ok((out.code, output, elapsed))
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML for an executable judged by its exit status: one suite, one case.
pub fn junit_for_executable(name: &str, passed: bool, output: &str, elapsed: Duration) -> String {
    let secs = format!("{:.3}", elapsed.as_secs_f64());
    let failure = if passed {
        String::new()
    } else {
        format!(
            "      <failure message=\"exited with non-zero status\">{}</failure>\n",
            xml_escape(output)
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"1\" failures=\"{f}\">\n  <testsuite name=\"{n}\" tests=\"1\" failures=\"{f}\" time=\"{secs}\">\n    <testcase classname=\"{n}\" name=\"{n}\" time=\"{secs}\">\n{failure}      <system-out>{out}</system-out>\n    </testcase>\n  </testsuite>\n</testsuites>\n",
        f = u32::from(!passed),
        n = xml_escape(name),
        out = xml_escape(output)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scripted::{self, Scripted};
    use crate::exec::Output;

    #[test]
    fn a_test_output_is_its_stdout_then_its_stderr() {
        let runner = scripted::replying(Output {
            stdout: b"[ RUN ] a_test\n".to_vec(),
            ..scripted::failed(1, "FAILED a_test\n")
        });
        let cmd = Command::new("/ws/out/bin/t").timeout(TEST_TIMEOUT);
        let (code, output, _) = run_bounded(&runner, &cmd).unwrap();
        assert_eq!(code, Some(1));
        assert_eq!(output, "[ RUN ] a_test\nFAILED a_test\n");
        assert_eq!(runner.calls(), [cmd]);
    }

    #[test]
    fn a_killed_test_says_so_after_what_it_printed() {
        let runner = scripted::replying(Output {
            stdout: b"waiting\n".to_vec(),
            timed_out: true,
            ..Output::default()
        });
        let cmd = Command::new("t").timeout(Duration::from_secs(7));
        let (code, output, _) = run_bounded(&runner, &cmd).unwrap();
        assert_eq!(code, None);
        assert_eq!(output, "waiting\n\nkiln: test killed after 7s\n");
    }

    #[test]
    fn a_test_binary_that_cannot_start_is_an_error_not_a_failure() {
        let runner = Scripted::new(scripted::not_found);
        let e = run_bounded(&runner, &Command::new("t")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
