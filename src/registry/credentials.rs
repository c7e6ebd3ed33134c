//! Where registry credentials come from, and how `kiln login` stores them.
//!
//! Lookup order (first hit wins), matching what users of docker and podman expect:
//! 1. `KILN_REGISTRY_USERNAME` / `KILN_REGISTRY_PASSWORD` (CI systems inject these);
//! 2. docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//!    `credHelpers[host]`, then `credsStore`, both by running `docker-credential-<name> get`,
//!    then `auths[host].auth` (base64 `user:password`);
//! 3. containers' `auth.json` (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`,
//!    then `~/.config/containers/auth.json`), same `auths` shape.
//!
//! The environment is read once into [`CredentialSources`]; everything after works on explicit
//! paths so tests never race on process-wide variables. Helpers run through the sources'
//! [`Runner`], so tests can script a helper instead of installing one.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;

use super::reference::DOCKER_HUB_API;
use crate::exec::{Command, Env, Output, ProcessRunner, Runner};

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// The user name docker and its credential helpers use to say "the secret is an OAuth2 refresh
/// token" (config.json's `identitytoken`): it is exchanged at the token service, never sent as a
/// password.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credential {
    pub fn identity_token(token: &str) -> Credential {
        Credential {
            username: IDENTITY_TOKEN_USER.to_string(),
            password: token.to_string(),
        }
    }

    /// The refresh token, when this credential is one.
    pub fn refresh_token(&self) -> Option<&str> {
        (self.username == IDENTITY_TOKEN_USER).then_some(self.password.as_str())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"REDACTED")
            .finish()
    }
}

/// Clone so that one failed lookup can be reported on every image of a push.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("running docker-credential-{helper} {action} for {host}")]
    HelperSpawn {
        helper: String,
        action: &'static str,
        host: String,
        source: Arc<io::Error>,
    },
    #[error("docker-credential-{helper} {action} for {host} failed: {message}")]
    Helper {
        helper: String,
        action: &'static str,
        host: String,
        message: String,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: Arc<io::Error>,
    },
}

/// Every place credentials may come from, resolved from the environment once.
#[derive(Clone, Debug)]
pub struct CredentialSources {
    pub env: Option<Credential>,
    /// docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// containers' `auth.json` files, in lookup order.
    pub containers_auth: Vec<PathBuf>,
    /// `PATH` used to find `docker-credential-*` helpers; `None` inherits the process's.
    pub helper_path: Option<OsString>,
    /// Runs the helpers: the real [`ProcessRunner`] unless a test scripts one. Shared, because
    /// the sources travel inside push and login options rather than alongside them.
    pub runner: Arc<dyn Runner>,
}

/// Nowhere to look, with helpers run as real processes.
impl Default for CredentialSources {
    fn default() -> CredentialSources {
        CredentialSources {
            env: None,
            docker_config: None,
            containers_auth: Vec::new(),
            helper_path: None,
            runner: Arc::new(ProcessRunner),
        }
    }
}

impl CredentialSources {
    pub fn from_env() -> CredentialSources {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = dirs::home_dir();
        let env = match (
            std::env::var("KILN_REGISTRY_USERNAME"),
            std::env::var("KILN_REGISTRY_PASSWORD"),
        ) {
            (Ok(username), Ok(password)) if !username.is_empty() => {
                Some(Credential { username, password })
            }
            _ => None,
        };
        let docker_config = docker_config_path();
        let containers_auth = match var("REGISTRY_AUTH_FILE") {
            Some(f) => vec![PathBuf::from(f)],
            None => {
                let mut v = Vec::new();
                if let Some(x) = var("XDG_RUNTIME_DIR") {
                    v.push(PathBuf::from(x).join("containers/auth.json"));
                }
                if let Some(h) = &home {
                    v.push(h.join(".config/containers/auth.json"));
                }
                v
            }
        };
        CredentialSources {
            env,
            docker_config,
            containers_auth,
            ..CredentialSources::default()
        }
    }

    /// Credentials for `registry` (`host[:port]`), or `None` to go anonymous.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(c) = &self.env {
            return Ok(Some(c.clone()));
        }
        if let Some(path) = &self.docker_config {
            if let Some(config) = read_json(path)? {
                if let Some(c) = self.lookup_docker_config(path, &config, registry)? {
                    return Ok(Some(c));
                }
            }
        }
        for path in &self.containers_auth {
            if let Some(config) = read_json(path)? {
                if let Some(c) = from_auths(path, &config, registry)? {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    fn lookup_docker_config(
        &self,
        path: &Path,
        config: &serde_json::Value,
        registry: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.as_object())
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| same_registry(k, registry))
                    .map(|(_, v)| v)
            })
            .or_else(|| config.get("credsStore"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        if let Some(helper) = helper {
            if let Some(c) = self.helper_get(helper, registry)? {
                return Ok(Some(c));
            }
        }
        from_auths(path, config, registry)
    }

    /// Runs `docker-credential-<helper> <action>` with `input` on stdin. Helpers keep kiln's
    /// environment (they reach keyrings through it); only PATH may be replaced.
    fn run_helper(
        &self,
        helper: &str,
        action: &'static str,
        registry: &str,
        input: Vec<u8>,
    ) -> Result<Output, CredentialError> {
        let path = self
            .helper_path
            .iter()
            .map(|p| ("PATH".to_string(), p.clone()));
        let cmd = Command::new(format!("docker-credential-{helper}"))
            .arg(action)
            .env(Env::Inherited(path.collect()))
            .stdin(input);
        self.runner
            .run(&cmd)
            .map_err(|source| CredentialError::HelperSpawn {
                helper: helper.to_string(),
                action,
                host: registry.to_string(),
                source: Arc::new(source),
            })
    }

    fn helper_get(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let server = server_url(registry);
        let out = self.run_helper(helper, "get", registry, server.into_bytes())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.success {
            // The helper protocol reports a missing entry as a failure with this text on stdout.
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            return Err(CredentialError::Helper {
                helper: helper.to_string(),
                action: "get",
                host: registry.to_string(),
                // Helpers print their own diagnostics, never the secret, on failure.
                message: format!(
                    "{} {}",
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        #[derive(serde::Deserialize)]
        struct HelperOut {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let parsed: HelperOut =
            serde_json::from_slice(&out.stdout).map_err(|e| CredentialError::Helper {
                helper: helper.to_string(),
                action: "get",
                host: registry.to_string(),
                message: format!("output is not the helper JSON: {e}"),
            })?;
        if parsed.username.is_empty() && parsed.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential {
            username: parsed.username,
            password: parsed.secret,
        }))
    }

    /// Stores credentials the way `docker login` does: through the configured helper if any,
    /// else as base64 in `auths` of `config.json`.
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<PathBuf, CredentialError> {
        let path = self
            .docker_config
            .clone()
            .ok_or_else(|| CredentialError::Write {
                path: PathBuf::from("~/.docker/config.json"),
                source: Arc::new(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no home directory and DOCKER_CONFIG is unset",
                )),
            })?;
        let mut config = read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
        if !config.is_object() {
            config = serde_json::json!({});
        }
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .or_else(|| config.get("credsStore"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(helper) = helper {
            self.helper_store(&helper, registry, cred)?;
            return Ok(path);
        }
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.password));
        let obj = config.as_object_mut().expect("checked above");
        let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
        if !auths.is_object() {
            *auths = serde_json::json!({});
        }
        auths
            .as_object_mut()
            .expect("object")
            .insert(server_url(registry), serde_json::json!({ "auth": auth }));
        let bytes = serde_json::to_vec_pretty(&config).expect("JSON values serialize");
        write_private_atomically(&path, &bytes).map_err(|e| CredentialError::Write {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        Ok(path)
    }

    fn helper_store(
        &self,
        helper: &str,
        registry: &str,
        cred: &Credential,
    ) -> Result<(), CredentialError> {
        let input = serde_json::json!({
            "ServerURL": server_url(registry),
            "Username": cred.username,
            "Secret": cred.password,
        });
        let out = self.run_helper(helper, "store", registry, input.to_string().into_bytes())?;
        if !out.success {
            return Err(CredentialError::Helper {
                helper: helper.to_string(),
                action: "store",
                host: registry.to_string(),
                message: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            });
        }
        Ok(())
    }
}

pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("config.json")),
        None => dirs::home_dir().map(|h| h.join(".docker/config.json")),
    }
}

/// The key docker uses for a registry in `auths` and with helpers. Docker Hub is keyed by its
/// historical v1 index URL, which every docker client still writes.
pub fn server_url(registry: &str) -> String {
    if registry == DOCKER_HUB_API || registry == "docker.io" || registry == "index.docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// Config keys may be `host`, `https://host` or `https://host/v1/`; compare by host[:port].
fn same_registry(key: &str, registry: &str) -> bool {
    let norm = |s: &str| -> String {
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let host = s.split('/').next().unwrap_or(s);
        match host {
            "index.docker.io" | "docker.io" | DOCKER_HUB_API => DOCKER_HUB_API.to_string(),
            h => h.to_string(),
        }
    };
    norm(key) == norm(registry)
}

/// The `auths` entry for `registry` in the bytes of a docker `config.json` or containers
/// `auth.json` (`path` names the file in errors). Helpers are not consulted.
pub fn parse_auth_file(
    path: &Path,
    bytes: &[u8],
    registry: &str,
) -> Result<Option<Credential>, CredentialError> {
    let config = parse_json(path, bytes)?;
    from_auths(path, &config, registry)
}

fn parse_json(path: &Path, bytes: &[u8]) -> Result<serde_json::Value, CredentialError> {
    serde_json::from_slice(bytes).map_err(|e| CredentialError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, CredentialError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_json(path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CredentialError::Read {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }),
    }
}

fn from_auths(
    path: &Path,
    config: &serde_json::Value,
    registry: &str,
) -> Result<Option<Credential>, CredentialError> {
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let Some((_, entry)) = auths.iter().find(|(k, _)| same_registry(k, registry)) else {
        return Ok(None);
    };
    let parse_err = |message: String| CredentialError::Parse {
        path: path.to_path_buf(),
        message,
    };
    // `docker login` against an OAuth2 token service stores a refresh token here instead of a
    // password; it beats `auth`, which then holds only the user name or nothing.
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::identity_token(token)));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| parse_err(format!("auths[{registry:?}].auth is not base64")))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| parse_err(format!("auths[{registry:?}].auth is not UTF-8")))?;
        let (username, password) = raw
            .split_once(':')
            .ok_or_else(|| parse_err(format!("auths[{registry:?}].auth is not user:password")))?;
        return Ok(Some(Credential {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credential { username, password })),
        _ => Ok(None),
    }
}

/// Writes a file readable only by its owner, replacing any old one atomically: a crash never
/// leaves a half-written config, and the secret is never readable by others even briefly.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.json"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn cred(u: &str, p: &str) -> Credential {
        Credential {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn env_beats_docker_config_beats_containers_auth() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        let containers = dir.path().join("auth.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"reg:5000":{{"auth":"{}"}}}}}}"#,
                b64("docker:d")
            ),
        )
        .unwrap();
        std::fs::write(
            &containers,
            format!(
                r#"{{"auths":{{"reg:5000":{{"auth":"{}"}},"other":{{"auth":"{}"}}}}}}"#,
                b64("podman:p"),
                b64("o:o")
            ),
        )
        .unwrap();
        let mut sources = CredentialSources {
            env: Some(cred("env", "e")),
            docker_config: Some(docker),
            containers_auth: vec![containers],
            ..Default::default()
        };
        assert_eq!(sources.lookup("reg:5000").unwrap(), Some(cred("env", "e")));
        sources.env = None;
        assert_eq!(
            sources.lookup("reg:5000").unwrap(),
            Some(cred("docker", "d"))
        );
        assert_eq!(
            sources.lookup("other").unwrap(),
            Some(cred("o", "o")),
            "falls through to auth.json"
        );
        assert_eq!(sources.lookup("nowhere").unwrap(), None);
    }

    #[test]
    fn auth_keys_with_scheme_and_path_match_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://reg.io/v1/":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
                b64("a:b"),
                b64("hub:h")
            ),
        )
        .unwrap();
        let sources = CredentialSources {
            docker_config: Some(docker),
            ..Default::default()
        };
        assert_eq!(sources.lookup("reg.io").unwrap(), Some(cred("a", "b")));
        assert_eq!(
            sources.lookup(DOCKER_HUB_API).unwrap(),
            Some(cred("hub", "h"))
        );
    }

    fn write_helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn cred_helpers_beat_creds_store_beats_auths() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // Helpers echo the host they were asked about, proving it was passed on stdin.
        write_helper(
            &bin,
            "per",
            r#"read h; printf '{"ServerURL":"%s","Username":"per-%s","Secret":"s1"}' "$h" "$h""#,
        );
        write_helper(
            &bin,
            "store",
            r#"read h; if [ "$h" = known ]; then printf '{"Username":"store","Secret":"s2"}'; else echo "credentials not found in native keychain"; exit 1; fi"#,
        );
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"credHelpers":{{"reg:1":"per"}},"credsStore":"store","auths":{{"fallback":{{"auth":"{}"}}}}}}"#,
                b64("f:f")
            ),
        )
        .unwrap();
        let sources = CredentialSources {
            docker_config: Some(docker),
            helper_path: Some(bin.into_os_string()),
            ..Default::default()
        };
        assert_eq!(
            sources.lookup("reg:1").unwrap(),
            Some(cred("per-reg:1", "s1"))
        );
        assert_eq!(sources.lookup("known").unwrap(), Some(cred("store", "s2")));
        assert_eq!(
            sources.lookup("fallback").unwrap(),
            Some(cred("f", "f")),
            "helper miss falls back to auths"
        );
    }

    #[test]
    fn store_keeps_other_keys_and_writes_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("sub/config.json");
        std::fs::create_dir_all(docker.parent().unwrap()).unwrap();
        std::fs::write(
            &docker,
            r#"{"psFormat":"table","auths":{"old":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let sources = CredentialSources {
            docker_config: Some(docker.clone()),
            ..Default::default()
        };
        sources.store("127.0.0.1:5000", &cred("u", "p:w")).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&docker).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table");
        assert_eq!(v["auths"]["old"]["auth"], "eDp5");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], b64("u:p:w"));
        let mode = std::fs::metadata(&docker).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            sources.lookup("127.0.0.1:5000").unwrap(),
            Some(cred("u", "p:w"))
        );
    }

    #[test]
    fn identity_tokens_beat_auth_and_are_marked_as_refresh_tokens() {
        let path = Path::new("config.json");
        let config = format!(
            r#"{{"auths":{{"https://reg.example/v1/":{{"auth":"{}","identitytoken":"refresh-xyz"}}}}}}"#,
            b64("someone:")
        );
        let c = parse_auth_file(path, config.as_bytes(), "reg.example")
            .unwrap()
            .unwrap();
        assert_eq!(c.refresh_token(), Some("refresh-xyz"));
        assert!(!format!("{c:?}").contains("refresh-xyz"));
        let plain = parse_auth_file(
            path,
            config
                .replace(r#","identitytoken":"refresh-xyz""#, "")
                .as_bytes(),
            "reg.example",
        )
        .unwrap()
        .unwrap();
        assert_eq!(plain, cred("someone", ""));
        assert_eq!(plain.refresh_token(), None);
    }

    /// Sources whose config.json sends every registry to the `vault` helper, which `reply`
    /// plays; the scripted runner is returned too, to read back what was run.
    fn scripted_helper<F>(
        dir: &Path,
        reply: F,
    ) -> (CredentialSources, Arc<crate::exec::scripted::Scripted<F>>)
    where
        F: Fn(&Command) -> io::Result<Output> + Send + Sync + 'static,
    {
        let docker = dir.join("config.json");
        std::fs::write(&docker, r#"{"credsStore":"vault"}"#).unwrap();
        let runner = Arc::new(crate::exec::scripted::Scripted::new(reply));
        let sources = CredentialSources {
            docker_config: Some(docker),
            helper_path: Some("/opt/helpers".into()),
            runner: runner.clone(),
            ..Default::default()
        };
        (sources, runner)
    }

    #[test]
    fn a_helper_is_asked_for_the_server_url_on_stdin_with_the_given_path() {
        use crate::exec::scripted;
        let dir = tempfile::tempdir().unwrap();
        let (sources, runner) = scripted_helper(dir.path(), |_: &Command| {
            Ok(scripted::ok(r#"{"Username":"hub","Secret":"s3"}"#))
        });
        assert_eq!(
            sources.lookup("docker.io").unwrap(),
            Some(cred("hub", "s3"))
        );
        let calls = runner.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].program, Path::new("docker-credential-vault"));
        assert_eq!(calls[0].args, ["get"]);
        assert_eq!(
            calls[0].stdin.as_deref(),
            Some(b"https://index.docker.io/v1/".as_slice())
        );
        // The user's environment (keyring sockets, HOME) with only PATH replaced.
        assert_eq!(
            calls[0].env,
            Env::Inherited(vec![("PATH".into(), "/opt/helpers".into())])
        );
    }

    #[test]
    fn a_helper_printing_something_other_than_its_json_is_a_clear_error() {
        use crate::exec::scripted;
        let dir = tempfile::tempdir().unwrap();
        let (sources, _) = scripted_helper(dir.path(), |_: &Command| {
            Ok(scripted::ok("Username: hub\n"))
        });
        let e = sources.lookup("reg:5000").unwrap_err();
        assert!(
            matches!(e, CredentialError::Helper { action: "get", .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "docker-credential-vault get for reg:5000 failed: output is not the helper JSON"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_helper_is_an_error_with_its_own_words_but_not_found_is_a_miss() {
        use crate::exec::scripted;
        let dir = tempfile::tempdir().unwrap();
        let (sources, _) = scripted_helper(dir.path(), |_: &Command| {
            Ok(Output {
                stdout: b"keychain locked".to_vec(),
                ..scripted::failed(1, "vault: run `vault unlock`")
            })
        });
        let e = sources.lookup("reg:5000").unwrap_err().to_string();
        assert_eq!(
            e,
            "docker-credential-vault get for reg:5000 failed: keychain locked vault: run `vault unlock`"
        );
        let (sources, _) = scripted_helper(dir.path(), |_: &Command| {
            Ok(Output {
                stdout: b"credentials not found in native keychain".to_vec(),
                ..scripted::failed(1, "")
            })
        });
        assert_eq!(sources.lookup("reg:5000").unwrap(), None);
    }

    #[test]
    fn a_missing_helper_is_named_with_the_cause_kept() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        let (sources, _) = scripted_helper(dir.path(), crate::exec::scripted::not_found);
        let e = sources.lookup("reg:5000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "running docker-credential-vault get for reg:5000"
        );
        let cause = e.source().expect("the spawn error is the cause");
        assert!(cause.to_string().contains("No such file"), "{cause}");
    }

    #[test]
    fn store_hands_the_helper_the_credential_as_json_on_stdin() {
        use crate::exec::scripted;
        let dir = tempfile::tempdir().unwrap();
        let (sources, runner) =
            scripted_helper(dir.path(), |_: &Command| Ok(scripted::ok(Vec::new())));
        sources.store("reg:5000", &cred("u", "p")).unwrap();
        let calls = runner.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].args, ["store"]);
        let sent: serde_json::Value =
            serde_json::from_slice(calls[0].stdin.as_deref().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"ServerURL": "reg:5000", "Username": "u", "Secret": "p"})
        );
        // config.json is left alone: the helper holds the secret.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
            r#"{"credsStore":"vault"}"#
        );
        let (sources, _) = scripted_helper(dir.path(), |_: &Command| Ok(scripted::failed(1, "")));
        let e = sources.store("reg:5000", &cred("u", "p")).unwrap_err();
        assert!(
            matches!(
                e,
                CredentialError::Helper {
                    action: "store",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        assert!(!format!("{:?}", cred("u", "hunter2")).contains("hunter2"));
    }
}
