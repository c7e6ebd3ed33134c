//! The `[deploy]` table of a service recipe: how `kiln k8s` sizes the service in a cluster.
//!
//! Quantities are kept as the Kubernetes strings the user wrote (`"250m"`, `"128Mi"`) after a
//! check against the API's quantity grammar, so a typo fails here with a position rather than
//! at `kubectl apply` time. Defaults are documented in docs/recipes.md and live only here.

use super::diag::Diagnostic;
use super::reader::TableReader;

pub const DEPLOY_KEYS: &[&str] = &[
    "replicas",
    "cpu",
    "memory",
    "cpu_limit",
    "memory_limit",
    "ingress",
    "hpa",
];
const HPA_KEYS: &[&str] = &["min", "max", "target_cpu"];

pub const DEFAULT_CPU: &str = "100m";
pub const DEFAULT_MEMORY: &str = "64Mi";
pub const DEFAULT_CPU_LIMIT: &str = "500m";
pub const DEFAULT_MEMORY_LIMIT: &str = "128Mi";

/// A HorizontalPodAutoscaler on CPU utilisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hpa {
    pub min: u32,
    pub max: u32,
    /// Average CPU utilisation, percent of the request.
    pub target_cpu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploySection {
    pub replicas: u32,
    pub cpu: String,
    pub memory: String,
    pub cpu_limit: String,
    pub memory_limit: String,
    /// Whether the namespace's ingress controller may reach this service.
    pub ingress: bool,
    pub hpa: Option<Hpa>,
}

impl Default for DeploySection {
    fn default() -> Self {
        DeploySection {
            replicas: 1,
            cpu: DEFAULT_CPU.into(),
            memory: DEFAULT_MEMORY.into(),
            cpu_limit: DEFAULT_CPU_LIMIT.into(),
            memory_limit: DEFAULT_MEMORY_LIMIT.into(),
            ingress: false,
            hpa: None,
        }
    }
}

/// CPU: whole cores (`"2"`, `"0.5"`) or millicores (`"250m"`).
fn is_cpu(s: &str) -> bool {
    let n = s.strip_suffix('m').unwrap_or(s);
    is_decimal(n) && (s.ends_with('m') && !n.contains('.') || !s.ends_with('m'))
}

/// Memory: bytes with an optional binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`)
/// suffix, the spellings Kubernetes accepts.
fn is_memory(s: &str) -> bool {
    let n = ["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"]
        .iter()
        .find_map(|u| s.strip_suffix(u))
        .unwrap_or(s);
    is_decimal(n)
}

fn is_decimal(n: &str) -> bool {
    let mut parts = n.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.map_or(true, |f| {
            !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())
        })
}

fn positive(t: &TableReader, key: &str, default: u32, max: u32) -> Result<u32, Diagnostic> {
    match t.integer(key)? {
        None => Ok(default),
        Some(n) => u32::try_from(n.value)
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                t.source().error(
                    n.span.clone(),
                    format!("`{}.{key}` must be between 1 and {max}", t.path()),
                )
            }),
    }
}

fn quantity(
    t: &TableReader,
    key: &str,
    default: &str,
    valid: fn(&str) -> bool,
    example: &str,
) -> Result<String, Diagnostic> {
    match t.string(key)? {
        None => Ok(default.to_string()),
        Some(s) if valid(&s.value) => Ok(s.value),
        Some(s) => Err(t.source().error(
            s.span.clone(),
            format!(
                "`{}.{key}` \"{}\" is not a Kubernetes quantity such as \"{example}\"",
                t.path(),
                s.value
            ),
        )),
    }
}

pub fn read(t: &TableReader) -> Result<DeploySection, Diagnostic> {
    t.finish()?;
    let hpa = match t.table("hpa", HPA_KEYS)? {
        Some(h) => {
            h.finish()?;
            let min = positive(&h, "min", 1, 1000)?;
            let max = positive(&h, "max", min.max(2), 1000)?;
            if max < min {
                return Err(h.source().error(
                    h.integer("max")?.and_then(|m| m.span),
                    format!("`deploy.hpa.max` ({max}) is below `deploy.hpa.min` ({min})"),
                ));
            }
            Some(Hpa {
                min,
                max,
                target_cpu: positive(&h, "target_cpu", 80, 100)?,
            })
        }
        None => None,
    };
    Ok(DeploySection {
        replicas: positive(t, "replicas", 1, 1000)?,
        cpu: quantity(t, "cpu", DEFAULT_CPU, is_cpu, "250m")?,
        memory: quantity(t, "memory", DEFAULT_MEMORY, is_memory, "128Mi")?,
        cpu_limit: quantity(t, "cpu_limit", DEFAULT_CPU_LIMIT, is_cpu, "500m")?,
        memory_limit: quantity(t, "memory_limit", DEFAULT_MEMORY_LIMIT, is_memory, "256Mi")?,
        ingress: t.bool("ingress")?.unwrap_or(false),
        hpa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::reader::Source;

    fn parse(text: &str) -> Result<DeploySection, Diagnostic> {
        let src = Source {
            file: "recipes/x.toml".into(),
            text: text.into(),
        };
        let doc = src.parse()?;
        let top = TableReader::new(&src, doc.as_table(), "", &["deploy"]);
        let t = top.table("deploy", DEPLOY_KEYS)?.expect("a [deploy] table");
        read(&t)
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("[deploy]\n").unwrap(), DeploySection::default());
        let d = parse(
            "[deploy]\nreplicas = 3\ncpu = \"0.25\"\nmemory = \"96Mi\"\ningress = true\n\
             [deploy.hpa]\nmin = 2\nmax = 6\ntarget_cpu = 70\n",
        )
        .unwrap();
        assert_eq!(d.replicas, 3);
        assert_eq!(d.cpu, "0.25");
        assert_eq!(d.memory, "96Mi");
        assert!(d.ingress);
        assert_eq!(
            d.hpa,
            Some(Hpa {
                min: 2,
                max: 6,
                target_cpu: 70
            })
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let e = parse("[deploy]\ncpu = \"lots\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        assert!(e.message.contains("not a Kubernetes quantity"), "{e}");
        let e = parse("[deploy]\nmemory = \"1.5m\"\n").unwrap_err();
        assert!(e.message.contains("deploy.memory"), "{e}");
        let e = parse("[deploy]\nreplicas = 0\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 12), "{e}");
        let e = parse("[deploy.hpa]\nmin = 4\nmax = 2\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[deploy]\nreplica = 2\n").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `replicas`?"), "{e:?}");
    }

    #[test]
    fn quantity_grammar() {
        for ok in ["1", "250m", "0.5", "2.25"] {
            assert!(is_cpu(ok), "{ok}");
        }
        for bad in ["", "m", "1.5m", "-1", "1 m", "1k"] {
            assert!(!is_cpu(bad), "{bad}");
        }
        for ok in ["64Mi", "1Gi", "1000", "1.5G", "512k"] {
            assert!(is_memory(ok), "{ok}");
        }
        for bad in ["64MB", "Mi", "1.Mi", "lots"] {
            assert!(!is_memory(bad), "{bad}");
        }
    }
}
