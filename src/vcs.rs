//! What the workspace's git checkout says about the source: revision and commit time.
//!
//! `SOURCE_DATE_EPOCH` from the environment wins (the reproducible-builds convention); else the
//! commit time of HEAD; else 0. Never the current time. Likewise `KILN_REVISION` wins over HEAD's
//! hash, so a tree without `.git` (a release tarball, `kiln verify`'s copy) can be built with the
//! revision it came from and give the same image labels.

use std::path::Path;

use crate::exec::{Command, Env, Runner};

#[derive(Clone, Debug)]
pub struct Meta {
    /// Full commit hash, or "unknown".
    pub revision: String,
    pub short_revision: String,
    pub source_date_epoch: i64,
    /// Where the source lives, for the image's source label.
    pub source: String,
}

/// What `git <args>` in `root` printed, trimmed; `None` when git is missing, fails (not a
/// checkout, no commits) or prints nothing, which every caller treats as "unknown".
fn git(runner: &dyn Runner, root: &Path, args: &[&str]) -> Option<String> {
    // git reads the user's config (safe.directory, includes), so it keeps kiln's environment.
    let cmd = Command::new("git")
        .args(args.iter().copied())
        .cwd(root)
        .env(Env::inherited());
    let out = runner.run(&cmd).ok()?;
    out.success
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Meta {
    /// The metadata of the workspace at `root`, asking git through `runner`.
    pub fn of(runner: &dyn Runner, root: &Path) -> Meta {
        Meta::with_env(runner, root, &|k| std::env::var(k).ok())
    }

    /// [`Meta::of`] with the environment variables read through `var`.
    fn with_env(runner: &dyn Runner, root: &Path, var: &dyn Fn(&str) -> Option<String>) -> Meta {
        let pinned = var("KILN_REVISION")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        // One git process for revision and commit time: a no-op build has no time for more.
        let head = git(runner, root, &["log", "-1", "--format=%H %ct"]);
        let (head_rev, head_time) = match head.as_deref().and_then(|h| h.split_once(' ')) {
            Some((rev, time)) => (Some(rev.to_string()), time.parse::<i64>().ok()),
            None => (None, None),
        };
        let revision = pinned.or(head_rev).unwrap_or_else(|| "unknown".into());
        let short_revision = if revision == "unknown" {
            revision.clone()
        } else {
            revision.chars().take(12).collect()
        };
        let sde = var("SOURCE_DATE_EPOCH")
            .and_then(|s| s.trim().parse().ok())
            .or(head_time)
            .unwrap_or(0);
        let source = var("KILN_SOURCE_URL").unwrap_or_else(|| {
            git(runner, root, &["config", "--get", "remote.origin.url"])
                .filter(|u| !u.starts_with('/') && !u.starts_with("file:"))
                .map(|u| normalise_remote(&u))
                .unwrap_or_else(|| "unknown".into())
        });
        Meta {
            revision,
            short_revision,
            source_date_epoch: sde,
            source,
        }
    }
}

/// One spelling per repository for the image's source label, so clones made over SSH and over
/// HTTPS (or with a token in the URL) label their images alike and no credential reaches an
/// image: `git@host:o/r.git` and `https://user:token@host/o/r.git` both become
/// `https://host/o/r`.
pub fn normalise_remote(url: &str) -> String {
    let url = url.trim();
    let rest = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git") {
            return url.to_string();
        }
        rest.to_string()
    } else if let Some((host, path)) = url.split_once(':') {
        // scp-like `[user@]host:path`.
        format!("{host}/{path}")
    } else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    // An SSH port is not the HTTPS port.
    let host = host.split(':').next().unwrap_or(host);
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("https://{host}/{path}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{normalise_remote, Meta};
    use crate::exec::scripted::{self, Scripted};
    use crate::exec::{Command, Env};

    /// A checkout whose HEAD is `abcdef0123456789` from 1700000000, cloned from GitHub over SSH.
    fn checkout(cmd: &Command) -> std::io::Result<crate::exec::Output> {
        Ok(match cmd.args.first().map(String::as_str) {
            Some("log") => scripted::ok("abcdef0123456789 1700000000\n"),
            Some("config") => scripted::ok("git@github.com:acme/kiln.git\n"),
            _ => scripted::failed(129, "unknown command"),
        })
    }

    #[test]
    fn revision_time_and_source_come_from_git_in_the_workspace() {
        let runner = Scripted::new(checkout);
        let meta = Meta::with_env(&runner, Path::new("/ws"), &|_| None);
        assert_eq!(meta.revision, "abcdef0123456789");
        assert_eq!(meta.short_revision, "abcdef012345");
        assert_eq!(meta.source_date_epoch, 1_700_000_000);
        assert_eq!(meta.source, "https://github.com/acme/kiln");
        let calls = runner.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        for c in &calls {
            assert_eq!(c.program, Path::new("git"));
            assert_eq!(c.cwd.as_deref(), Some(Path::new("/ws")));
            // git needs the user's config, so it must not get the compilers' scrubbed env.
            assert_eq!(c.env, Env::inherited());
        }
        assert_eq!(calls[0].args, ["log", "-1", "--format=%H %ct"]);
        assert_eq!(calls[1].args, ["config", "--get", "remote.origin.url"]);
    }

    #[test]
    fn failing_or_missing_git_means_unknown_and_epoch_zero_never_the_clock() {
        let failing = scripted::replying(scripted::failed(
            128,
            "fatal: not a git repository (or any of the parent directories): .git",
        ));
        let missing = Scripted::new(scripted::not_found);
        for meta in [
            Meta::with_env(&failing, Path::new("/ws"), &|_| None),
            Meta::with_env(&missing, Path::new("/ws"), &|_| None),
        ] {
            assert_eq!(meta.revision, "unknown");
            assert_eq!(meta.short_revision, "unknown");
            assert_eq!(meta.source_date_epoch, 0);
            assert_eq!(meta.source, "unknown");
        }
    }

    #[test]
    fn pinned_variables_win_over_git() {
        let runner = Scripted::new(checkout);
        let env = |k: &str| match k {
            "KILN_REVISION" => Some(" 1234567890abcdef1234 ".to_string()),
            "SOURCE_DATE_EPOCH" => Some("42".to_string()),
            "KILN_SOURCE_URL" => Some("https://example.org/src".to_string()),
            _ => None,
        };
        let meta = Meta::with_env(&runner, Path::new("/ws"), &env);
        assert_eq!(meta.revision, "1234567890abcdef1234");
        assert_eq!(meta.short_revision, "1234567890ab");
        assert_eq!(meta.source_date_epoch, 42);
        assert_eq!(meta.source, "https://example.org/src");
        // The source URL is pinned, so git is not asked for the remote.
        assert_eq!(runner.calls().len(), 1);
    }

    #[test]
    fn ssh_https_and_credentials_give_one_label() {
        for u in [
            "git@github.com:acme/kiln.git",
            "ssh://git@github.com:22/acme/kiln.git",
            "https://user:token@github.com/acme/kiln.git",
            "https://github.com/acme/kiln/",
        ] {
            assert_eq!(normalise_remote(u), "https://github.com/acme/kiln", "{u}");
        }
        assert_eq!(normalise_remote("weird"), "weird");
    }
}
