//! The `[image]` table of a service recipe: entrypoint, environment, ports, extra files,
//! healthcheck and format of the OCI image built for it, with the size and duration syntax its
//! values use.

use std::path::{Component, Path};

use super::diag::{self, Diagnostic};
use super::model::{Healthcheck, ImageFile, ImageSection};
use super::reader::TableReader;
use super::sources::workspace_path;

pub(super) const IMAGE_KEYS: &[&str] = &[
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

pub(super) fn read_image(t: &TableReader, root: &Path) -> Result<ImageSection, Diagnostic> {
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
