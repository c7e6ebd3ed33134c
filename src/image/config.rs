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
    /// `v8` for arm64; absent for amd64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
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
pub fn image_config(
    req: &ImageRequest,
    platform: &crate::platform::Platform,
    layers: &[(Digest, String)],
) -> ImageConfig {
    let created = crate::rfc3339::rfc3339(req.source_date_epoch);
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
        architecture: platform.architecture.into(),
        os: platform.os().into(),
        variant: platform.variant.map(str::to_string),
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
