//! Recipes: one TOML file per library, service or test in `recipes/`, read into typed values.
//!
//! The format is documented in docs/recipes.md. Validation that needs only one file (keys, types,
//! globs, paths) happens here; validation across files (unknown dependencies, cycles) happens in
//! [`crate::graph`]. Every error carries the file, line and column.

pub mod deploy;
pub use crate::diag;
pub mod reader;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub use deploy::DeploySection;
pub use diag::Diagnostic;
use reader::{Source, Spanned, TableReader};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Library,
    Service,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Library => "library",
            Kind::Service => "service",
            Kind::Test => "test",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Language {
    #[serde(rename = "c++")]
    Cxx,
    #[serde(rename = "ada")]
    Ada,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Cxx => "c++",
            Language::Ada => "ada",
        }
    }
}

/// A system library requested by a recipe.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SystemLib {
    /// `wx:base,net`: flags from `wx-config`.
    Wx(Vec<String>),
    /// `pkg:NAME`: flags from `pkg-config`.
    Pkg(String),
    /// `lib:NAME`: `-lNAME`.
    Lib(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    pub src: PathBuf,
    pub dst: String,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ns: Option<u64>,
    pub timeout_ns: Option<u64>,
    pub start_period_ns: Option<u64>,
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSection {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub workdir: Option<String>,
    pub budget: Option<u64>,
    pub ca_certificates: bool,
    pub stop_signal: Option<String>,
    pub files: Vec<ImageFile>,
    pub libraries: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    /// Write a Docker v2 schema 2 manifest instead of an OCI one.
    pub docker_format: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestFramework {
    Gtest,
    #[default]
    ExitCode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestSection {
    pub framework: TestFramework,
    pub args: Vec<String>,
}

/// One recipe, validated on its own. Paths are relative to the workspace root.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: String,
    /// `recipes/<name>.toml`
    pub file: String,
    pub kind: Kind,
    pub language: Language,
    pub toolchain: Spanned<String>,
    pub version: String,
    pub description: String,
    pub license: String,
    /// Expanded, sorted, de-duplicated.
    pub sources: Vec<PathBuf>,
    pub include_dirs: Vec<PathBuf>,
    pub source_dirs: Vec<PathBuf>,
    pub defines: Vec<String>,
    pub cflags: Vec<String>,
    pub ldflags: Vec<String>,
    pub system_libs: Vec<SystemLib>,
    pub deps: Vec<Spanned<String>>,
    pub main: Option<String>,
    pub output: String,
    pub shared: bool,
    pub image: ImageSection,
    pub depends_on: Vec<Spanned<String>>,
    pub test: TestSection,
    /// `[deploy]`: replicas, resources, autoscaling and ingress for `kiln k8s`.
    pub deploy: DeploySection,
    /// The file's text, kept to render errors found later (unknown deps, cycles).
    pub source_text: String,
}

impl Recipe {
    pub fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        msg: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(&self.file, &self.source_text, span, msg)
    }
}

const TOP_KEYS: &[&str] = &[
    "kind",
    "language",
    "toolchain",
    "version",
    "description",
    "license",
    "sources",
    "include_dirs",
    "source_dirs",
    "defines",
    "cflags",
    "ldflags",
    "system_libs",
    "deps",
    "main",
    "output",
    "shared",
    "image",
    "service",
    "test",
    "deploy",
];
const IMAGE_KEYS: &[&str] = &[
    "entrypoint",
    "cmd",
    "env",
    "ports",
    "workdir",
    "budget",
    "ca_certificates",
    "stop_signal",
    "files",
    "libraries",
    "labels",
    "healthcheck",
    "format",
];
const HEALTH_KEYS: &[&str] = &["test", "interval", "timeout", "start_period", "retries"];
const FILE_KEYS: &[&str] = &["src", "dst", "mode"];
const SERVICE_KEYS: &[&str] = &["depends_on"];
const TEST_KEYS: &[&str] = &["framework", "args"];

/// Reads `recipes/<name>.toml` from the workspace `root`.
pub fn load(root: &Path, rel_file: &str) -> Result<Recipe, Diagnostic> {
    let text = std::fs::read_to_string(root.join(rel_file))
        .map_err(|e| Diagnostic::at(rel_file, "", None, format!("cannot read recipe: {e}")))?;
    let name = Path::new(rel_file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    parse(root, rel_file, &name, text)
}

fn one_of<T: Copy>(
    r: &TableReader,
    key: &str,
    choices: &[(&'static str, T)],
    default: Option<T>,
) -> Result<T, Diagnostic> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    match r.string(key)? {
        None => default.ok_or_else(|| {
            r.source().error(
                r.table_span().or(Some(0..0)),
                format!("missing required key `{key}` (one of {})", quoted(&names)),
            )
        }),
        Some(s) => choices
            .iter()
            .find(|(n, _)| *n == s.value)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                r.source()
                    .error(
                        s.span.clone(),
                        format!(
                            "`{key}` must be one of {}, found \"{}\"",
                            quoted(&names),
                            s.value
                        ),
                    )
                    .with_help(diag::did_you_mean(&s.value, names.iter().copied()))
            }),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn parse(root: &Path, rel_file: &str, name: &str, text: String) -> Result<Recipe, Diagnostic> {
    let src = Source {
        file: rel_file.to_string(),
        text,
    };
    let doc = src.parse()?;
    let r = TableReader::new(&src, doc.as_table(), "", TOP_KEYS);
    r.finish()?;

    let kind = one_of(
        &r,
        "kind",
        &[
            ("library", Kind::Library),
            ("service", Kind::Service),
            ("test", Kind::Test),
        ],
        None,
    )?;
    let language = one_of(
        &r,
        "language",
        &[("c++", Language::Cxx), ("ada", Language::Ada)],
        None,
    )?;
    let toolchain = r.string("toolchain")?.unwrap_or(Spanned {
        value: match language {
            Language::Cxx => "gcc".into(),
            Language::Ada => "gnat".into(),
        },
        span: None,
    });

    let include_dirs = dirs(&r, root, "include_dirs")?;
    let source_dirs = dirs(&r, root, "source_dirs")?;
    let sources = if r.has("sources") {
        expand_globs(&r, root, "sources")?
    } else if language == Language::Ada && !source_dirs.is_empty() {
        crate::ada::sources_in(root, &source_dirs)
    } else {
        Vec::new()
    };
    let sources = if language == Language::Ada {
        ada_units(&src, &r, root, &sources)?
    } else {
        sources
    };
    if sources.is_empty() {
        return Err(src.error(
            r.key_span("sources")
                .or(r.key_span("source_dirs"))
                .or(Some(0..0)),
            "a recipe needs source files: set `sources` (or `source_dirs` for Ada)",
        ));
    }
    if language == Language::Cxx {
        if let Some(span) = r.key_span("source_dirs") {
            return Err(src.error(
                Some(span),
                "`source_dirs` is for Ada recipes; C++ recipes use `include_dirs`",
            ));
        }
    }

    let system_libs = r
        .strings("system_libs")?
        .into_iter()
        .map(|s| parse_system_lib(&src, &s))
        .collect::<Result<Vec<_>, _>>()?;

    let main = r.string("main")?.map(|s| s.value.to_lowercase());
    if language == Language::Ada && kind != Kind::Library && main.is_none() {
        return Err(src.error(
            r.table_span().or(Some(0..0)),
            format!(
                "an Ada {} needs `main`, the name of its main unit",
                kind.as_str()
            ),
        ));
    }
    let shared = r.bool("shared")?.unwrap_or(false);
    if shared && (kind != Kind::Library || language != Language::Cxx) {
        return Err(src.error(
            r.key_span("shared"),
            "`shared` applies to C++ libraries only",
        ));
    }

    let image = match r.table("image", IMAGE_KEYS)? {
        Some(t) => {
            if kind != Kind::Service {
                return Err(src.error(r.key_span("image"), "only services have an [image] section"));
            }
            read_image(&t, root)?
        }
        None => ImageSection::default(),
    };
    let depends_on = match r.table("service", SERVICE_KEYS)? {
        Some(t) => {
            t.finish()?;
            t.strings("depends_on")?
        }
        None => Vec::new(),
    };
    let deploy = match r.table("deploy", deploy::DEPLOY_KEYS)? {
        Some(t) if kind != Kind::Service => {
            return Err(src.error(
                t.table_span().or(r.key_span("deploy")),
                "only services have a [deploy] section",
            ))
        }
        Some(t) => deploy::read(&t)?,
        None => DeploySection::default(),
    };
    let test = match r.table("test", TEST_KEYS)? {
        Some(t) => {
            t.finish()?;
            let framework = one_of(
                &t,
                "framework",
                &[
                    ("gtest", TestFramework::Gtest),
                    ("exit-code", TestFramework::ExitCode),
                ],
                Some(TestFramework::ExitCode),
            )?;
            TestSection {
                framework,
                args: t.strings("args")?.into_iter().map(|s| s.value).collect(),
            }
        }
        None => TestSection::default(),
    };

    let output = r
        .string("output")?
        .map(|s| s.value)
        .unwrap_or_else(|| name.to_string());
    if output.is_empty() || output.contains('/') {
        return Err(src.error(r.key_span("output"), "`output` must be a plain file name"));
    }

    let strings = |key: &str| -> Result<Vec<String>, Diagnostic> {
        Ok(r.strings(key)?.into_iter().map(|s| s.value).collect())
    };
    Ok(Recipe {
        name: name.to_string(),
        file: rel_file.to_string(),
        kind,
        language,
        toolchain,
        version: r
            .string("version")?
            .map(|s| s.value)
            .unwrap_or_else(|| "0.0.0".into()),
        description: r
            .string("description")?
            .map(|s| s.value)
            .unwrap_or_default(),
        license: r
            .string("license")?
            .map(|s| s.value)
            .unwrap_or_else(|| "NOASSERTION".into()),
        sources,
        include_dirs,
        source_dirs,
        defines: strings("defines")?,
        cflags: strings("cflags")?,
        ldflags: strings("ldflags")?,
        system_libs,
        deps: r.strings("deps")?,
        main,
        output,
        shared,
        image,
        depends_on,
        test,
        deploy,
        source_text: src.text.clone(),
    })
}

fn parse_system_lib(src: &Source, s: &Spanned<String>) -> Result<SystemLib, Diagnostic> {
    let bad = |msg: &str| src.error(s.span.clone(), msg.to_string());
    match s.value.split_once(':') {
        Some(("wx", libs)) => {
            let libs: Vec<String> = libs
                .split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if libs.is_empty() {
                return Err(bad(
                    "`wx:` needs at least one wxWidgets library, for example \"wx:base\"",
                ));
            }
            Ok(SystemLib::Wx(libs))
        }
        Some(("pkg", name)) if !name.is_empty() => Ok(SystemLib::Pkg(name.to_string())),
        Some(("lib", name)) if !name.is_empty() => Ok(SystemLib::Lib(name.to_string())),
        _ => Err(bad(
            "system library must be \"wx:LIBS\", \"pkg:NAME\" or \"lib:NAME\"",
        )),
    }
}

/// Checks that a recipe path is relative and stays inside the workspace.
fn workspace_path(src: &Source, s: &Spanned<String>) -> Result<PathBuf, Diagnostic> {
    let p = Path::new(&s.value);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(src.error(
            s.span.clone(),
            format!(
                "path \"{}\" must be relative to the workspace and stay inside it",
                s.value
            ),
        ));
    }
    Ok(p.components().collect())
}

fn dirs(r: &TableReader, root: &Path, key: &str) -> Result<Vec<PathBuf>, Diagnostic> {
    r.strings(key)?
        .into_iter()
        .map(|s| {
            let p = workspace_path(r.source(), &s)?;
            if !root.join(&p).is_dir() {
                return Err(r.source().error(
                    s.span.clone(),
                    format!("directory \"{}\" does not exist", s.value),
                ));
            }
            Ok(p)
        })
        .collect()
}

fn expand_globs(r: &TableReader, root: &Path, key: &str) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out = Vec::new();
    for pat in r.strings(key)? {
        workspace_path(r.source(), &pat)?;
        let full = root.join(&pat.value);
        let entries = glob::glob(&full.to_string_lossy()).map_err(|e| {
            r.source().error(
                pat.span.clone(),
                format!("invalid glob \"{}\": {}", pat.value, e.msg),
            )
        })?;
        let mut matched = 0;
        for entry in entries.flatten() {
            if entry.is_file() {
                if let Ok(rel) = entry.strip_prefix(root) {
                    out.push(rel.to_path_buf());
                    matched += 1;
                }
            }
        }
        if matched == 0 {
            return Err(r.source().error(
                pat.span.clone(),
                format!("glob \"{}\" matches no file", pat.value),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The Ada files among `files` that are compilation units of their own ([`crate::ada`]);
/// errors inside an Ada file point there, the others at the recipe's `sources` or
/// `source_dirs`.
fn ada_units(
    src: &Source,
    r: &TableReader,
    root: &Path,
    files: &[PathBuf],
) -> Result<Vec<PathBuf>, Diagnostic> {
    use crate::ada::DiscoverError;
    crate::ada::compilation_units(root, files).map_err(|e| {
        let at = r.key_span("sources").or(r.key_span("source_dirs"));
        match e {
            DiscoverError::Source(d) => *d,
            DiscoverError::Read { path, source } => src.error(
                at,
                format!("cannot read Ada source `{}`: {source}", path.display()),
            ),
            other => src.error(at, other.to_string()),
        }
    })
}

fn read_image(t: &TableReader, root: &Path) -> Result<ImageSection, Diagnostic> {
    t.finish()?;
    let src = t.source();
    let mut ports = Vec::new();
    for p in t.integers("ports")? {
        let port = u16::try_from(p.value)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| src.error(p.span.clone(), "port must be between 1 and 65535"))?;
        ports.push(port);
    }
    let budget = match t.string("budget")? {
        Some(s) => Some(parse_size(&s.value).ok_or_else(|| {
            src.error(
                s.span.clone(),
                format!(
                    "budget \"{}\" is not a size such as \"100MB\" or \"6MiB\"",
                    s.value
                ),
            )
        })?),
        None => None,
    };
    let mut files = Vec::new();
    for (i, ft) in t.tables("files", FILE_KEYS)?.iter().enumerate() {
        let fr = ft.reader(src, &format!("image.files[{i}]"));
        fr.finish()?;
        let s = fr.string("src")?.ok_or_else(|| {
            src.error(
                fr.table_span().or(t.key_span("files")),
                "a file needs `src`",
            )
        })?;
        let d = fr.string("dst")?.ok_or_else(|| {
            src.error(
                fr.table_span().or(t.key_span("files")),
                "a file needs `dst`",
            )
        })?;
        let rel = workspace_path(src, &s)?;
        if std::fs::symlink_metadata(root.join(&rel)).is_err() {
            return Err(src.error(
                s.span.clone(),
                format!("file \"{}\" does not exist", s.value),
            ));
        }
        if !d.value.starts_with('/')
            || Path::new(&d.value)
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(src.error(
                d.span.clone(),
                format!(
                    "destination \"{}\" must be an absolute path inside the image, without `..`",
                    d.value
                ),
            ));
        }
        let mode = match fr.integer("mode")? {
            Some(m) if (0..=0o7777).contains(&m.value) => Some(m.value as u32),
            Some(m) => return Err(src.error(m.span.clone(), "mode must be between 0 and 0o7777")),
            None => None,
        };
        files.push(ImageFile {
            src: rel,
            dst: d.value,
            mode,
        });
    }
    let healthcheck = match t.table("healthcheck", HEALTH_KEYS)? {
        Some(h) => {
            h.finish()?;
            let dur = |key: &str| -> Result<Option<u64>, Diagnostic> {
                match h.string(key)? {
                    Some(s) => parse_duration_ns(&s.value).map(Some).ok_or_else(|| {
                        src.error(
                            s.span.clone(),
                            format!(
                                "`{key}` \"{}\" is not a duration such as \"10s\" or \"500ms\"",
                                s.value
                            ),
                        )
                    }),
                    None => Ok(None),
                }
            };
            let test: Vec<String> = h.strings("test")?.into_iter().map(|s| s.value).collect();
            if !matches!(
                test.first().map(String::as_str),
                Some("CMD" | "CMD-SHELL" | "NONE")
            ) {
                return Err(src.error(
                    h.key_span("test").or(h.table_span()),
                    "healthcheck `test` must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                ));
            }
            Some(Healthcheck {
                test,
                interval_ns: dur("interval")?,
                timeout_ns: dur("timeout")?,
                start_period_ns: dur("start_period")?,
                retries: match h.integer("retries")? {
                    Some(n) => Some(u32::try_from(n.value).map_err(|_| {
                        src.error(n.span.clone(), "retries must be a small positive number")
                    })?),
                    None => None,
                },
            })
        }
        None => None,
    };
    let opt_strings = |key: &str| -> Result<Option<Vec<String>>, Diagnostic> {
        Ok(if t.has(key) {
            Some(t.strings(key)?.into_iter().map(|s| s.value).collect())
        } else {
            None
        })
    };
    Ok(ImageSection {
        entrypoint: opt_strings("entrypoint")?,
        cmd: opt_strings("cmd")?.unwrap_or_default(),
        env: t.string_map("env")?,
        ports,
        workdir: t.string("workdir")?.map(|s| s.value),
        budget,
        ca_certificates: t.bool("ca_certificates")?.unwrap_or(false),
        stop_signal: t.string("stop_signal")?.map(|s| s.value),
        files,
        libraries: t
            .strings("libraries")?
            .into_iter()
            .map(|s| s.value)
            .collect(),
        labels: t.string_map("labels")?,
        healthcheck,
        docker_format: match t.string("format")? {
            None => false,
            Some(f) if f.value == "oci" => false,
            Some(f) if f.value == "docker" => true,
            Some(f) => {
                return Err(src
                    .error(
                        f.span.clone(),
                        format!(
                            "`image.format` must be \"oci\" or \"docker\", found \"{}\"",
                            f.value
                        ),
                    )
                    .with_help(diag::did_you_mean(&f.value, ["oci", "docker"])))
            }
        },
    })
}

/// `"100MB"`, `"6MiB"`, `"512kB"`, `"1000"` (bytes). Decimal units are powers of 1000.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

/// `"10s"`, `"500ms"`, `"1m"`, `"2m30s"` into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("6MiB"), Some(6 * 1024 * 1024));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration_ns("2m30s"), Some(150_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_ns("10"), None);
    }
}
