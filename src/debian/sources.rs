//! Which mirror serves a suite: `KILN_DEBIAN_MIRROR` when set (one mirror for every suite, e.g. a
//! local mirror or a test archive), else the machine's apt sources — deb822 files in
//! `/etc/apt/sources.list.d/*.sources` and one-line entries in `/etc/apt/sources.list` and
//! `sources.list.d/*.list`. Files are read in name order and the first `deb` entry that lists
//! the suite wins, as apt would list them; `deb-src` entries and disabled ones (`Enabled: no`)
//! are ignored.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::control;

pub const MIRROR_ENV: &str = "KILN_DEBIAN_MIRROR";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// Where the source was declared (`FILE:LINE`), for messages.
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no apt source in {} lists suite {suite:?} (set {MIRROR_ENV} to a mirror URL, or add the suite to the apt sources)", dir.display())]
    NoMirror { suite: String, dir: PathBuf },
    #[error("{origin}: {problem}")]
    Syntax { origin: String, problem: String },
}

/// The mirror for `suite`, without a trailing slash.
pub fn mirror_for(
    suite: &str,
    env_mirror: Option<&str>,
    apt_dir: &Path,
) -> Result<String, SourcesError> {
    if let Some(m) = env_mirror.filter(|m| !m.is_empty()) {
        return Ok(m.trim_end_matches('/').to_string());
    }
    let sources = read_apt_sources(apt_dir)?;
    let listing = |name: &str| {
        sources
            .iter()
            .find(|s| s.suites.iter().any(|x| x == name))
            .map(|s| s.uri.trim_end_matches('/').to_string())
    };
    if let Some(m) = listing(suite) {
        return Ok(m);
    }
    // A minimal system (debootstrap, some images) lists only its release: `-updates` and
    // `-backports` are served by the release's own mirror, `-security` by Debian's security
    // archive, as on every Debian installation that does list them.
    match suite.split_once('-') {
        Some((_, "security")) => Some(SECURITY_MIRROR.to_string()),
        Some((base, "updates" | "backports")) => listing(base),
        _ => None,
    }
    .ok_or_else(|| SourcesError::NoMirror {
        suite: suite.to_string(),
        dir: apt_dir.to_path_buf(),
    })
}

/// Debian's security archive, for a `-security` suite the apt sources do not list.
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// Every `deb` source under `apt_dir` (normally `/etc/apt`).
pub fn read_apt_sources(apt_dir: &Path) -> Result<Vec<AptSource>, SourcesError> {
    let mut files = vec![apt_dir.join("sources.list")];
    if let Ok(dir) = fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut names: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names);
    }
    let mut out = Vec::new();
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str());
        let is_list = path.file_name().is_some_and(|n| n == "sources.list") || ext == Some("list");
        if !is_list && ext != Some("sources") {
            continue;
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SourcesError::Read { path, source }),
        };
        let name = path.display().to_string();
        if is_list {
            out.extend(parse_one_line(&text, &name));
        } else {
            out.extend(parse_deb822(&text, &name)?);
        }
    }
    Ok(out)
}

fn parse_deb822(text: &str, name: &str) -> Result<Vec<AptSource>, SourcesError> {
    let paragraphs = control::parse(text, name).map_err(|e| SourcesError::Syntax {
        origin: format!("{name}:{}", e.line),
        problem: e.problem,
    })?;
    let words = |p: &control::Paragraph, f: &str| -> Vec<String> {
        p.get(f)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let mut out = Vec::new();
    for p in paragraphs {
        if !words(&p, "Types").iter().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled")
            .is_some_and(|e| e.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        for uri in words(&p, "URIs") {
            out.push(AptSource {
                uri,
                suites: words(&p, "Suites"),
                components: words(&p, "Components"),
                origin: format!("{name}:{}", p.line),
            });
        }
    }
    Ok(out)
}

/// `deb [options] URI SUITE COMPONENT...`; lines that are not `deb` lines are skipped.
fn parse_one_line(text: &str, name: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut rest = line.trim();
        let Some(r) = rest
            .strip_prefix("deb ")
            .or_else(|| rest.strip_prefix("deb\t"))
        else {
            continue;
        };
        rest = r.trim_start();
        if let Some(r) = rest.strip_prefix('[') {
            rest = r.split_once(']').map_or("", |(_, r)| r);
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            origin: format!("{name}:{}", i + 1),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sources.list.d")).unwrap();
        fs::write(
            d.path().join("sources.list.d/debian.sources"),
            "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm-security\nComponents: main\n\n\
             Types: deb\nURIs: http://deb.debian.org/debian-security/\nSuites: bookworm-security\nComponents: main\n",
        )
        .unwrap();
        fs::write(
            d.path().join("sources.list.d/off.sources"),
            "Enabled: no\nTypes: deb\nURIs: http://off.example\nSuites: trixie\nComponents: main\n",
        )
        .unwrap();
        fs::write(
            d.path().join("sources.list"),
            "# old style\ndeb [arch=amd64 signed-by=/k.gpg] http://old.example/debian sid main contrib\ndeb-src http://x y z\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn finds_each_suite_in_deb822_and_one_line_sources() {
        let d = apt_dir();
        assert_eq!(
            mirror_for("bookworm-updates", None, d.path()).unwrap(),
            "http://deb.debian.org/debian"
        );
        assert_eq!(
            mirror_for("bookworm-security", None, d.path()).unwrap(),
            "http://deb.debian.org/debian-security"
        );
        assert_eq!(
            mirror_for("sid", None, d.path()).unwrap(),
            "http://old.example/debian"
        );
        let all = read_apt_sources(d.path()).unwrap();
        assert_eq!(
            all[0].origin,
            format!("{}:2", d.path().join("sources.list").display())
        );
        assert_eq!(all[0].components, ["main", "contrib"]);
    }

    #[test]
    fn disabled_sources_and_unknown_suites_give_a_clear_error() {
        let d = apt_dir();
        let e = mirror_for("trixie", None, d.path()).unwrap_err();
        assert!(matches!(e, SourcesError::NoMirror { .. }));
        assert!(e.to_string().contains(MIRROR_ENV), "{e}");
    }

    #[test]
    fn the_environment_overrides_every_suite() {
        let d = apt_dir();
        assert_eq!(
            mirror_for("trixie", Some("http://127.0.0.1:9/m/"), d.path()).unwrap(),
            "http://127.0.0.1:9/m"
        );
    }

    #[test]
    fn updates_and_security_default_when_only_the_release_is_listed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("sources.list"),
            "deb http://mirror.example/debian bookworm main\n",
        )
        .unwrap();
        let m = |s: &str| mirror_for(s, None, d.path());
        assert_eq!(
            m("bookworm-updates").unwrap(),
            "http://mirror.example/debian"
        );
        assert_eq!(m("bookworm-security").unwrap(), SECURITY_MIRROR);
        assert!(matches!(
            m("trixie-updates"),
            Err(SourcesError::NoMirror { .. })
        ));
        assert!(matches!(m("trixie"), Err(SourcesError::NoMirror { .. })));
    }
}
