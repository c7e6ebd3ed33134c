//! Image manifests (also artifact manifests) and image indexes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Descriptor;

/// An image manifest. An artifact manifest is the same object with `artifactType` and `subject`
/// set; both are left out of an image's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// Pretty JSON with a trailing newline: readable in `cat`, and stable because the structs are.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("OCI structs serialise");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::oci::media_type;

    fn manifest() -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: media_type::IMAGE_MANIFEST.into(),
            artifact_type: None,
            config: Descriptor::new(media_type::EMPTY, Digest::of(b"{}"), 2),
            layers: vec![],
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn an_image_manifest_leaves_out_the_artifact_fields() {
        let bytes = serde_json::to_vec(&manifest()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\"schemaVersion\":2,\"mediaType\":"));
        assert!(!text.contains("artifactType") && !text.contains("subject"));
        assert!(!text.contains("annotations") && !text.contains("platform"));
    }

    #[test]
    fn an_artifact_manifest_puts_its_fields_where_the_spec_lists_them() {
        let mut m = manifest();
        m.artifact_type = Some(media_type::SPDX.into());
        m.subject = Some(Descriptor::new(
            media_type::IMAGE_MANIFEST,
            Digest::of(b"x"),
            1,
        ));
        let text = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        let order = [
            "schemaVersion",
            "mediaType",
            "artifactType",
            "config",
            "layers",
            "subject",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
