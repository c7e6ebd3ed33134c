//! Where a build's remote cache is configured, most specific first:
//!
//! 1. `kiln build --remote-cache URL [--remote-instance NAME]` (`--no-remote-cache` turns it off);
//! 2. the `[remote]` table of the workspace's `kiln.toml`;
//! 3. the `[remote]` table of the user's `$XDG_CONFIG_HOME/kiln/config.toml`
//!    (`~/.config/kiln/config.toml`).
//!
//! ```toml
//! [remote]
//! cache = "grpcs://remote.example.com:443"   # grpc:// or http:// for plaintext
//! exec = "grpc://buildgrid.internal:50051"   # remote execution (its CAS/AC are the cache)
//! instance = "main"                          # REAPI instance name; default ""
//! ca_file = "certs/remote-ca.pem"            # extra CA for a TLS URL, relative to this file
//! ```
//!
//! Each key is taken from the most specific place that sets it. Credentials never sit in these
//! files: they come from `KILN_REMOTE_TOKEN` / `KILN_REMOTE_HEADER` ([`super::config`]). A bad key
//! or value is an error at `FILE:LINE:COLUMN`, read with the recipes' [`TableReader`].

use std::path::{Path, PathBuf};

use super::config::RemoteConfig;
use super::error::RemoteError;
use crate::diag::Diagnostic;
use crate::recipe::reader::{Source, TableReader};

/// The workspace's configuration file, at its root.
pub const WORKSPACE_FILE: &str = "kiln.toml";

/// What the command line says.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub cache: Option<String>,
    pub instance: Option<String>,
    /// `--remote-exec URL`.
    pub exec: Option<String>,
    /// `--no-remote-cache`: ignore every file.
    pub disabled: bool,
}

/// The `[remote]` keys of one place, each possibly unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteSettings {
    pub cache: Option<String>,
    pub instance: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The remote-execution server.
    pub exec: Option<String>,
}

impl RemoteSettings {
    /// `self`, with what it leaves unset taken from `less`.
    fn over(self, less: RemoteSettings) -> RemoteSettings {
        RemoteSettings {
            cache: self.cache.or(less.cache),
            instance: self.instance.or(less.instance),
            ca_file: self.ca_file.or(less.ca_file),
            exec: self.exec.or(less.exec),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    File(Diagnostic),
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the remote cache is not usable")]
    Remote(#[source] RemoteError),
}

/// The user's configuration file: `$XDG_CONFIG_HOME/kiln/config.toml`, else
/// `~/.config/kiln/config.toml`.
pub fn user_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("kiln").join("config.toml"))
}

/// The remote cache for a build in `workspace`, or None when none is configured; headers come
/// from the process environment.
pub fn resolve(workspace: &Path, flags: &Flags) -> Result<Option<RemoteConfig>, SettingsError> {
    resolve_with(
        &workspace.join(WORKSPACE_FILE),
        user_file().as_deref(),
        flags,
        |k| std::env::var(k).ok(),
    )
}

/// [`resolve`] with the files and the environment given, for tests.
pub fn resolve_with(
    workspace_file: &Path,
    user_file: Option<&Path>,
    flags: &Flags,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<RemoteConfig>, SettingsError> {
    if flags.disabled {
        return Ok(None);
    }
    let from_flags = RemoteSettings {
        cache: flags.cache.clone(),
        instance: flags.instance.clone(),
        ca_file: None,
        exec: flags.exec.clone(),
    };
    let mut merged = from_flags.over(read(workspace_file)?);
    if let Some(user) = user_file {
        merged = merged.over(read(user)?);
    }
    let exec = merged.exec.filter(|u| !u.trim().is_empty());
    // Execution needs the server's own CAS and action cache, so its URL is the cache's too.
    let Some(url) = exec
        .clone()
        .or(merged.cache.filter(|u| !u.trim().is_empty()))
    else {
        return Ok(None);
    };
    let mut cfg = RemoteConfig::new(url.trim());
    cfg.execute = exec.is_some();
    cfg.instance_name = merged.instance.unwrap_or_default();
    cfg.ca_file = merged.ca_file;
    // A malformed URL is a usage error now, not a warning per build.
    cfg.endpoint_url().map_err(SettingsError::Remote)?;
    cfg.with_headers_from(env)
        .map(Some)
        .map_err(SettingsError::Remote)
}

/// The `[remote]` table of one file; a missing file sets nothing.
pub fn read(path: &Path) -> Result<RemoteSettings, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemoteSettings::default()),
        Err(source) => {
            return Err(SettingsError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let src = Source {
        file: path.display().to_string(),
        text,
    };
    parse(&src, path.parent().unwrap_or(Path::new("."))).map_err(SettingsError::File)
}

fn parse(src: &Source, dir: &Path) -> Result<RemoteSettings, Diagnostic> {
    let doc = src.parse()?;
    // `platforms` is the workspace's (crate::workspace::platforms), read there.
    let top = TableReader::new(src, doc.as_table(), "", &["remote", "platforms"]);
    top.finish()?;
    let Some(r) = top.table("remote", &["cache", "exec", "instance", "ca_file"])? else {
        return Ok(RemoteSettings::default());
    };
    r.finish()?;
    let cache = r.string("cache")?;
    if let Some(c) = &cache {
        let cfg = RemoteConfig::new(c.value.trim());
        if let Err(e) = cfg.endpoint_url() {
            return Err(src.error(c.span.clone(), format!("`remote.cache`: {e}")));
        }
    }
    let exec = r.string("exec")?;
    if let Some(c) = &exec {
        let cfg = RemoteConfig::new(c.value.trim());
        if let Err(e) = cfg.endpoint_url() {
            return Err(src.error(c.span.clone(), format!("`remote.exec`: {e}")));
        }
    }
    Ok(RemoteSettings {
        exec: exec.map(|c| c.value),
        cache: cache.map(|c| c.value),
        instance: r.string("instance")?.map(|i| i.value),
        ca_file: r.string("ca_file")?.map(|f| dir.join(f.value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_win_over_the_workspace_which_wins_over_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("kiln.toml");
        let user = dir.path().join("config.toml");
        std::fs::write(&ws, "[remote]\ncache = \"grpc://ws:1\"\n").unwrap();
        std::fs::write(
            &user,
            "[remote]\ncache = \"grpc://user:1\"\ninstance = \"u\"\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        let got = resolve_with(&ws, Some(&user), &Flags::default(), no_env)
            .unwrap()
            .unwrap();
        assert_eq!(got.url, "grpc://ws:1");
        assert_eq!(got.instance_name, "u", "unset keys come from the user file");
        assert_eq!(got.ca_file, Some(dir.path().join("ca.pem")));
        let flags = Flags {
            cache: Some("grpc://flag:1".into()),
            instance: Some("f".into()),
            exec: None,
            disabled: false,
        };
        let got = resolve_with(&ws, Some(&user), &flags, no_env)
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.url.as_str(), got.instance_name.as_str()),
            ("grpc://flag:1", "f")
        );
        let off = Flags {
            disabled: true,
            ..flags
        };
        assert!(resolve_with(&ws, Some(&user), &off, no_env)
            .unwrap()
            .is_none());
        let none = dir.path().join("absent.toml");
        assert!(resolve_with(&none, None, &Flags::default(), no_env)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_token_comes_from_the_environment() {
        let flags = Flags {
            cache: Some("grpc://h:1".into()),
            ..Flags::default()
        };
        let env = |k: &str| (k == super::super::config::TOKEN_VAR).then(|| "tok".to_string());
        let cfg = resolve_with(Path::new("/nonexistent/kiln.toml"), None, &flags, env)
            .unwrap()
            .unwrap();
        assert_eq!(cfg.headers.len(), 1);
        assert!(!format!("{cfg:?}").contains("tok\""));
    }

    #[test]
    fn a_bad_key_or_url_points_at_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("kiln.toml");
        std::fs::write(&ws, "[remote]\ncache = \"grpc://h:1\"\ninstanse = \"x\"\n").unwrap();
        let err = resolve_with(&ws, None, &Flags::default(), no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kiln.toml:3:1: unknown key `instanse` in [remote]"),
            "{err}"
        );
        assert!(err.contains("did you mean `instance`?"), "{err}");
        std::fs::write(&ws, "[remote]\ncache = \"ftp://h:1\"\n").unwrap();
        let err = resolve_with(&ws, None, &Flags::default(), no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kiln.toml:2:9: `remote.cache`"), "{err}");
        std::fs::write(&ws, "[remot]\ncache = \"grpc://h:1\"\n").unwrap();
        let err = resolve_with(&ws, None, &Flags::default(), no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kiln.toml:1:2: unknown key `remot`"), "{err}");
        let flags = Flags {
            cache: Some("h:1".into()),
            ..Flags::default()
        };
        let none = dir.path().join("absent.toml");
        assert!(resolve_with(&none, None, &flags, no_env).is_err());
    }

    #[test]
    fn exec_names_the_server_for_execution_and_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("kiln.toml");
        std::fs::write(&ws, "[remote]\nexec = \"grpc://exec:1\"\n").unwrap();
        let cfg = resolve_with(&ws, None, &Flags::default(), no_env)
            .unwrap()
            .unwrap();
        assert!(cfg.execute);
        assert_eq!(cfg.url, "grpc://exec:1");
        let cache_only = resolve_with(
            Path::new("/nonexistent/kiln.toml"),
            None,
            &Flags {
                cache: Some("grpc://c:1".into()),
                ..Flags::default()
            },
            no_env,
        )
        .unwrap()
        .unwrap();
        assert!(!cache_only.execute);
        std::fs::write(&ws, "[remote]\nexec = \"ftp://exec:1\"\n").unwrap();
        let err = resolve_with(&ws, None, &Flags::default(), no_env).unwrap_err();
        assert!(err.to_string().contains("`remote.exec`"), "{err}");
    }
}
