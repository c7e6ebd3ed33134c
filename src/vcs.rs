//! What the workspace's git checkout says about the source: revision and commit time.
//!
//! `SOURCE_DATE_EPOCH` from the environment wins (the reproducible-builds convention); else the
//! commit time of HEAD; else 0. Never the current time. Likewise `KILN_REVISION` wins over HEAD's
//! hash, so a tree without `.git` (a release tarball, `kiln verify`'s copy) can be built with the
//! revision it came from and give the same image labels.

use std::path::Path;
use std::process::Command;

#[derive(Clone, Debug)]
pub struct Meta {
    /// Full commit hash, or "unknown".
    pub revision: String,
    pub short_revision: String,
    pub source_date_epoch: i64,
    /// Where the source lives, for the image's source label.
    pub source: String,
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Meta {
    pub fn of(root: &Path) -> Meta {
        let pinned = std::env::var("KILN_REVISION")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        // One git process for revision and commit time: a no-op build has no time for more.
        let head = git(root, &["log", "-1", "--format=%H %ct"]);
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
        let sde = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .or(head_time)
            .unwrap_or(0);
        let source = std::env::var("KILN_SOURCE_URL").unwrap_or_else(|_| {
            git(root, &["config", "--get", "remote.origin.url"])
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
    use super::normalise_remote;

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
