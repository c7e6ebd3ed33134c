//! Reading one recipe file into a [`Recipe`]: the top-level keys, the checks that need only this
//! file, and the `[service]` and `[test]` tables. The `[image]` table is [`super::image`]'s,
//! `[deploy]` is [`super::deploy`]'s, and finding the source files is [`super::sources`]'s.

use std::path::Path;

use super::deploy::{self, DeploySection};
use super::diag::{self, Diagnostic};
use super::image::{read_image, IMAGE_KEYS};
use super::model::{ImageSection, Kind, Language, Recipe, SystemLib, TestFramework, TestSection};
use super::reader::{Source, Spanned, TableReader};
use super::sources::{ada_units, dirs, expand_globs};

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
        platform: None,
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
