//! Image references (`registry/repository[:tag][@digest]`) and the name rules of the OCI
//! distribution spec.
//!
//! The grammar is the distribution spec's: repository components are lowercase alphanumerics
//! joined by `.`, `_`, `__` or runs of `-`; tags are at most 128 word characters, dots and dashes,
//! not starting with either. Validating here means a bad `--prefix` fails before any network traffic
//! rather than as a registry's `NAME_INVALID` half-way through a push.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's API host; `docker.io` is only a name users type.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as used in URLs.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference {0:?} is empty")]
    Empty(String),
    #[error("repository {0:?} is not a valid OCI repository name (lowercase [a-z0-9] components joined by '.', '_', '__' or '-', separated by '/')")]
    Repository(String),
    #[error("tag {0:?} is not a valid OCI tag (up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')")]
    Tag(String),
    #[error("digest in reference {reference:?} is invalid")]
    Digest { reference: String },
}

impl Reference {
    /// The `repository` a service is pushed to under an optional prefix.
    pub fn repository_for(prefix: &str, service: &str) -> Result<String, ReferenceError> {
        let prefix = prefix.trim_matches('/');
        let repo = if prefix.is_empty() {
            service.to_string()
        } else {
            format!("{prefix}/{service}")
        };
        validate_repository(&repo)?;
        Ok(repo)
    }
}

/// A first path component names a registry only if it looks like a host: it has a dot or a port,
/// or is `localhost`. This is the rule docker uses, so `kiln` and `docker` agree on what
/// `team/app` means.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| ReferenceError::Digest {
                    reference: s.to_string(),
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A tag is the part after the last ':' only if no '/' follows it; otherwise the ':' was a
        // port separator.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if looks_like_host(first) => (first.to_string(), path.to_string()),
            _ => {
                let repo = if name.contains('/') {
                    name.to_string()
                } else {
                    format!("library/{name}")
                };
                (DOCKER_HUB_API.to_string(), repo)
            }
        };
        let registry = if registry == "docker.io" || registry == "index.docker.io" {
            DOCKER_HUB_API.to_string()
        } else {
            registry
        };
        validate_repository(&repository)?;
        if let Some(tag) = &tag {
            validate_tag(tag)?;
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // Separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        let sep = b[i];
        while i < b.len() && !is_alnum(b[i]) {
            if b[i] != sep {
                return false;
            }
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

pub fn validate_repository(repo: &str) -> Result<(), ReferenceError> {
    // 255 is the spec's recommended bound for the whole name, and registries enforce it.
    if repo.is_empty() || repo.len() > 255 || !repo.split('/').all(valid_component) {
        return Err(ReferenceError::Repository(repo.to_string()));
    }
    Ok(())
}

pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag(tag.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_repository_tag_and_digest_are_split() {
        let d = Digest::of(b"x");
        let r: Reference = format!("127.0.0.1:5000/team/api:v1@{d}").parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/api");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, Some(d));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/api:v1@{d}"));
    }

    #[test]
    fn a_port_is_not_mistaken_for_a_tag() {
        let r: Reference = "localhost:5000/api".parse().unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "api");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn short_names_go_to_docker_hub_like_docker_does() {
        let r: Reference = "busybox:1".parse().unwrap();
        assert_eq!(r.registry, DOCKER_HUB_API);
        assert_eq!(r.repository, "library/busybox");
        let r: Reference = "team/app".parse().unwrap();
        assert_eq!(r.repository, "team/app");
        let r: Reference = "docker.io/team/app".parse().unwrap();
        assert_eq!(r.registry, DOCKER_HUB_API);
    }

    #[test]
    fn invalid_names_and_tags_are_rejected() {
        assert!(matches!(
            "reg.io/Team/app".parse::<Reference>(),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(
            "reg.io/a..b".parse::<Reference>(),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(
            "reg.io/a___b".parse::<Reference>(),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(
            "reg.io/app:-x".parse::<Reference>(),
            Err(ReferenceError::Tag(_))
        ));
        assert!(matches!(
            "reg.io/app@sha256:zz".parse::<Reference>(),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(validate_repository("a__b/c-----d/e.f").is_ok());
        assert!(validate_tag(&"a".repeat(128)).is_ok());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn repository_for_joins_prefix_and_service() {
        assert_eq!(
            Reference::repository_for("/team/", "api").unwrap(),
            "team/api"
        );
        assert_eq!(Reference::repository_for("", "api").unwrap(), "api");
        assert!(Reference::repository_for("team", "API").is_err());
    }
}
