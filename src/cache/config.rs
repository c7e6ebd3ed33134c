//! Cache limits: how large the cache may grow and how long an unused file may stay.
//!
//! They belong to the cache, not to a workspace (every workspace on the machine shares it), so
//! they live in `$KILN_CACHE/config.toml`:
//!
//! ```toml
//! max_size = "10GB"   # or "unlimited"; decimal (kB, MB, GB) or binary (KiB, MiB, GiB) units
//! max_age = "30d"     # optional: files unused for longer are removed; units s, m, h, d, w
//! ```
//!
//! `KILN_CACHE_MAX_SIZE` and `KILN_CACHE_MAX_AGE` override the file (CI jobs set them without
//! writing into the cache). Without either, `max_size` is [`DEFAULT_MAX_SIZE`], as in sccache.

use std::path::Path;
use std::time::Duration;

use crate::diag::Diagnostic;
use crate::recipe::parse_size;
use crate::recipe::reader::{Source, TableReader};

/// 10 GB: room for many workspaces' objects and layers on a laptop or a CI cache.
pub const DEFAULT_MAX_SIZE: u64 = 10_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// None: unlimited.
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: Some(DEFAULT_MAX_SIZE),
            max_age: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    File(Diagnostic),
    #[error("{var}={value:?} is not {expected}")]
    Env {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("reading {}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const SIZE_EXPECTED: &str = "a size such as \"10GB\", \"512MiB\" or \"unlimited\"";
const AGE_EXPECTED: &str = "a duration such as \"30d\", \"12h\" or \"1w2d\"";

/// The limits for the cache at `root`: its config file, then the environment.
pub fn load(root: &Path) -> Result<CacheConfig, ConfigError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    load_with(
        root,
        env("KILN_CACHE_MAX_SIZE").as_deref(),
        env("KILN_CACHE_MAX_AGE").as_deref(),
    )
}

/// [`load`] with the environment given, so tests need not change the process's.
pub fn load_with(
    root: &Path,
    env_size: Option<&str>,
    env_age: Option<&str>,
) -> Result<CacheConfig, ConfigError> {
    let mut cfg = CacheConfig::default();
    let path = root.join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => read_file(&path, text, &mut cfg)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ConfigError::Io { path, source }),
    }
    if let Some(v) = env_size {
        cfg.max_size = parse_limit(v).ok_or_else(|| ConfigError::Env {
            var: "KILN_CACHE_MAX_SIZE",
            value: v.to_string(),
            expected: SIZE_EXPECTED,
        })?;
    }
    if let Some(v) = env_age {
        cfg.max_age = Some(parse_age(v).ok_or_else(|| ConfigError::Env {
            var: "KILN_CACHE_MAX_AGE",
            value: v.to_string(),
            expected: AGE_EXPECTED,
        })?);
    }
    Ok(cfg)
}

fn read_file(path: &Path, text: String, cfg: &mut CacheConfig) -> Result<(), ConfigError> {
    let src = Source {
        file: path.display().to_string(),
        text,
    };
    let doc = src.parse().map_err(ConfigError::File)?;
    let r = TableReader::new(&src, doc.as_table(), "", &["max_size", "max_age"]);
    r.finish().map_err(ConfigError::File)?;
    if let Some(v) = r.string("max_size").map_err(ConfigError::File)? {
        cfg.max_size = parse_limit(&v.value).ok_or_else(|| {
            ConfigError::File(src.error(v.span, format!("`max_size` must be {SIZE_EXPECTED}")))
        })?;
    }
    if let Some(v) = r.string("max_age").map_err(ConfigError::File)? {
        cfg.max_age = Some(parse_age(&v.value).ok_or_else(|| {
            ConfigError::File(src.error(v.span, format!("`max_age` must be {AGE_EXPECTED}")))
        })?);
    }
    Ok(())
}

/// A size, or `unlimited` (None inside Some).
pub fn parse_limit(s: &str) -> Option<Option<u64>> {
    if s.trim() == "unlimited" {
        return Some(None);
    }
    parse_size(s).map(Some)
}

/// `"30d"`, `"12h"`, `"90m"`, `"45s"`, `"1w2d"`: whole numbers with a unit each.
pub fn parse_age(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut secs: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits == rest.len() {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest.as_bytes()[digits] {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            b'w' => 7 * 86_400,
            _ => return None,
        };
        secs = secs.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_limits_parse() {
        assert_eq!(parse_age("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("1w2d"), Some(Duration::from_secs(9 * 86_400)));
        assert_eq!(parse_age("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_age("0s"), Some(Duration::ZERO));
        assert_eq!(parse_age("30"), None);
        assert_eq!(parse_age("3x"), None);
        assert_eq!(parse_limit("unlimited"), Some(None));
        assert_eq!(parse_limit("2GB"), Some(Some(2_000_000_000)));
        assert_eq!(parse_limit("lots"), None);
    }

    #[test]
    fn the_file_sets_limits_and_the_environment_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_with(dir.path(), None, None).unwrap(),
            CacheConfig::default()
        );
        std::fs::write(
            dir.path().join("config.toml"),
            "max_size = \"5MB\"\nmax_age = \"2d\"\n",
        )
        .unwrap();
        let cfg = load_with(dir.path(), None, None).unwrap();
        assert_eq!(cfg.max_size, Some(5_000_000));
        assert_eq!(cfg.max_age, Some(Duration::from_secs(2 * 86_400)));
        let cfg = load_with(dir.path(), Some("unlimited"), Some("1h")).unwrap();
        assert_eq!(cfg.max_size, None);
        assert_eq!(cfg.max_age, Some(Duration::from_secs(3600)));
        let err = load_with(dir.path(), Some("big"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("KILN_CACHE_MAX_SIZE=\"big\" is not {SIZE_EXPECTED}")
        );
    }

    #[test]
    fn a_bad_value_points_at_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "max_age = \"2d\"\nmax_size = \"ten gigs\"\n",
        )
        .unwrap();
        let err = load_with(dir.path(), None, None).unwrap_err().to_string();
        assert!(
            err.contains("config.toml:2:12: `max_size` must be a size"),
            "{err}"
        );
        std::fs::write(dir.path().join("config.toml"), "max_sise = \"1GB\"\n").unwrap();
        let err = load_with(dir.path(), None, None).unwrap_err().to_string();
        assert!(
            err.contains("config.toml:1:1: unknown key `max_sise`"),
            "{err}"
        );
        assert!(err.contains("did you mean `max_size`?"), "{err}");
    }
}
