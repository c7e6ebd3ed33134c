//! The OCI image configuration (`application/vnd.oci.image.config.v1+json`) kiln writes.
//!
//! Written with kiln's own serde structs rather than oci-spec's builders because the bytes are
//! hashed into the image digest: struct fields serialise in declaration order and maps are
//! `BTreeMap`s, so the JSON is byte-stable, and the Docker `Healthcheck` extension (not part of
//! the OCI spec, read by Docker and Podman) has a place. Durations are nanoseconds, as Docker
//! expects. Reordering fields here changes every image digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageRequest;
use crate::digest::Digest;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub user: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
}

/// `{}` in JSON (the value of an exposed port).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub created: String,
    pub created_by: String,
}

/// Builds the configuration for `req` with the layers' diff_ids and history texts, in order.
pub fn image_config(req: &ImageRequest, layers: &[(Digest, String)]) -> ImageConfig {
    let created = rfc3339(req.source_date_epoch);
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("SERVICE_VERSION".into(), req.version.clone()),
        ("SERVICE_REVISION".into(), req.revision.clone()),
    ];
    for (k, v) in &req.env {
        // A recipe value replaces kiln's default in place instead of adding a second entry
        // whose precedence differs between runtimes.
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("title", &req.service),
        ("version", &req.version),
        ("revision", &req.revision),
        ("source", &req.source),
        ("created", &created),
        ("licenses", &req.licenses),
        ("description", &req.description),
    ] {
        labels.insert(format!("org.opencontainers.image.{k}"), v.clone());
    }
    labels.extend(req.labels.clone());
    ImageConfig {
        created: created.clone(),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: ContainerConfig {
            user: format!("{0}:{0}", super::base::NONROOT),
            exposed_ports: req
                .ports
                .iter()
                .map(|p| (format!("{p}/tcp"), Empty {}))
                .collect(),
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint: req.entrypoint.clone(),
            cmd: req.cmd.clone(),
            working_dir: if req.workdir.is_empty() {
                "/".into()
            } else {
                req.workdir.clone()
            },
            labels,
            stop_signal: if req.stop_signal.is_empty() {
                "SIGTERM".into()
            } else {
                req.stop_signal.clone()
            },
            healthcheck: req.healthcheck.as_ref().map(|h| Healthcheck {
                test: h.test.clone(),
                interval: h.interval_ns,
                timeout: h.timeout_ns,
                start_period: h.start_period_ns,
                retries: h.retries,
            }),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|(d, _)| *d).collect(),
        },
        history: layers
            .iter()
            .map(|(_, text)| History {
                created: created.clone(),
                created_by: text.clone(),
            })
            .collect(),
    }
}

/// `secs` since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`), independent of TZ.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_points() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
