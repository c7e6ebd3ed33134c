//! `kiln test`: build test targets, run them through the cache, write JUnit XML.
//!
//! A test result is cached (only when it passed) under a key over the test binary, the workspace
//! shared libraries it loads, its arguments and framework; an unchanged test is not rerun unless
//! asked. Each test writes `out/test-results/<name>.xml`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cache::key::KeyBuilder;
use crate::cache::Cache;
use crate::digest::Digest;
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

pub fn run_test(
    ws: &Workspace,
    i: usize,
    cache: &Cache,
    rerun: bool,
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
    let key = k.finish();
    let results_dir = ws.root.join("out/test-results");
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

    let staging = tempfile::tempdir_in(ws.root.join("out"))?;
    let gtest_xml = staging.path().join("gtest.xml");
    let mut cmd = Command::new(&bin);
    cmd.args(&r.test.args)
        .current_dir(&ws.root)
        .env("KILN_TEST", r.name.as_str());
    if r.test.framework == TestFramework::Gtest {
        cmd.arg(format!("--gtest_output=xml:{}", gtest_xml.display()));
    }
    let (code, output, elapsed) = run_bounded(cmd, TEST_TIMEOUT)?;
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

/// Runs a test process with a time limit, capturing its combined output.
fn run_bounded(
    mut cmd: Command,
    limit: Duration,
) -> std::io::Result<(Option<i32>, String, Duration)> {
    use std::io::Read;
    let start = Instant::now();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut output = out_thread.join().unwrap_or_default();
    output.push_str(&err_thread.join().unwrap_or_default());
    if status.is_none() {
        output.push_str(&format!("\nkiln: test killed after {}s\n", limit.as_secs()));
    }
    Ok((status.and_then(|s| s.code()), output, start.elapsed()))
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
