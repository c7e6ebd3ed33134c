//! SPDX 2.3 JSON documents (`out/sbom/<service>.spdx.json`).
//!
//! Shape: the document DESCRIBES one package, the image (purpose CONTAINER, checksum = manifest
//! digest). The image CONTAINS the service, the workspace libraries and the Debian packages,
//! each of which CONTAINS its files; files kiln wrote itself are CONTAINED by the image directly.
//! The service DEPENDS_ON the workspace libraries it links.
//!
//! Constraints from the spec that shape the output:
//! - A package that contains files must say `filesAnalyzed: true` and then needs a
//!   `packageVerificationCode`, which is defined over SHA1s; files must carry SHA1 as well.
//!   Hence the SHA1 next to every SHA256.
//! - SPDX identifiers allow only `[A-Za-z0-9.-]`; ids are derived from names and paths and made
//!   unique by a numeric suffix in document order, so they are stable across rebuilds.
//! - `documentNamespace` must be unique per document: it is derived from the image digest and
//!   the service, so rebuilding the same image gives the same namespace.
//! - Debian license names that are not SPDX become `LicenseRef-Debian-*` with an
//!   `hasExtractedLicensingInfos` entry, as the spec requires for every LicenseRef used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Map, Value};
use sha1::{Digest as _, Sha1};

use super::inventory::{File, Inventory, Kind};
use super::license::License;
use super::SbomError;

const NOASSERTION: &str = "NOASSERTION";

/// Hands out unique SPDX ids (`SPDXRef-<prefix>-<sanitized name>[-N]`).
#[derive(Default)]
struct Ids {
    used: BTreeSet<String>,
}

impl Ids {
    fn make(&mut self, prefix: &str, name: &str) -> String {
        let base = format!(
            "SPDXRef-{prefix}-{}",
            sanitize(name.trim_start_matches('/'))
        );
        let mut id = base.clone();
        let mut n = 2;
        while !self.used.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// SPDX 2.3 §7.9: SHA1 over the sorted, concatenated lowercase hex SHA1s of the package's files.
fn verification_code<'a>(files: impl Iterator<Item = &'a File>) -> String {
    let mut sums: Vec<String> = files.map(|f| hex::encode(f.sha1)).collect();
    sums.sort();
    hex::encode(Sha1::digest(sums.concat().as_bytes()))
}

fn checksums(sha256: &crate::digest::Digest) -> Value {
    json!([{ "algorithm": "SHA256", "checksumValue": sha256.hex() }])
}

fn relationship(a: &str, kind: &str, b: &str) -> Value {
    json!({ "spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b })
}

/// Collects LicenseRefs as they are used, so the document can define each once.
#[derive(Default)]
struct Licenses {
    extracted: BTreeMap<String, String>,
}

impl Licenses {
    fn declared(&mut self, l: &License) -> String {
        match l {
            License::Spdx(e) => e.clone(),
            License::Unknown => NOASSERTION.to_string(),
            License::Debian(name) => {
                let id = format!("LicenseRef-Debian-{}", sanitize(name));
                self.extracted.insert(id.clone(), name.clone());
                id
            }
        }
    }

    fn infos(&self) -> Vec<Value> {
        self.extracted
            .iter()
            .map(|(id, name)| {
                json!({
                    "licenseId": id,
                    "name": name,
                    "extractedText": format!(
                        "License short name \"{name}\" from a Debian machine-readable copyright \
                         file; the full terms are in /usr/share/doc/<package>/copyright of the \
                         package."
                    ),
                })
            })
            .collect()
    }
}

pub fn document(inv: &Inventory) -> Value {
    let mut ids = Ids::default();
    let mut licenses = Licenses::default();
    let image_id = "SPDXRef-Image".to_string();
    ids.used.insert(image_id.clone());

    let mut packages = vec![json!({
        "name": inv.service,
        "SPDXID": image_id,
        "versionInfo": inv.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": true,
        "packageVerificationCode": { "packageVerificationCodeValue": verification_code(inv.files.iter()) },
        "checksums": checksums(&inv.image_digest),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": licenses.declared(&inv.components[0].license),
        "copyrightText": NOASSERTION,
        "comment": format!("OCI image, manifest {}", inv.image_digest),
        "externalRefs": [purl_ref(&inv.image_purl)],
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", &image_id)];
    let mut contains = Vec::new();
    let mut component_ids = Vec::new();

    for (i, c) in inv.components.iter().enumerate() {
        let (prefix, id_name, purpose) = match &c.kind {
            Kind::Service => ("Service", c.name.clone(), "APPLICATION"),
            Kind::Library { .. } => ("Library", c.name.clone(), "LIBRARY"),
            Kind::Package { architecture, .. } => {
                let shared_object = inv.files_of(Some(i)).any(|f| f.path.contains(".so"));
                (
                    "Package-deb",
                    format!("{}-{architecture}", c.name),
                    if shared_object { "LIBRARY" } else { "OTHER" },
                )
            }
        };
        let id = ids.make(prefix, &id_name);
        packages.push(package(inv, i, &id, purpose, &mut licenses));
        component_ids.push(id);
    }
    for (i, id) in component_ids.iter().enumerate() {
        relationships.push(relationship(&image_id, "CONTAINS", id));
        if let Kind::Library { shared } = inv.components[i].kind {
            let mut r = relationship(&component_ids[0], "DEPENDS_ON", id);
            r["comment"] = json!(if shared {
                "dynamically linked"
            } else {
                "statically linked into the service executable"
            });
            relationships.push(r);
        }
    }

    let mut files = Vec::new();
    for f in &inv.files {
        let id = ids.make("File", &f.path);
        let mut v = json!({
            "fileName": format!(".{}", f.path),
            "SPDXID": id,
            "checksums": [
                { "algorithm": "SHA1", "checksumValue": hex::encode(f.sha1) },
                { "algorithm": "SHA256", "checksumValue": f.sha256.hex() },
            ],
        });
        if let Some(note) = &f.note {
            v["comment"] = json!(note);
        }
        files.push(v);
        let parent = f.owner.map_or(&image_id, |i| &component_ids[i]);
        contains.push(relationship(parent, "CONTAINS", &id));
    }
    relationships.extend(contains);

    let mut doc = Map::new();
    doc.insert("spdxVersion".into(), json!("SPDX-2.3"));
    doc.insert("dataLicense".into(), json!("CC0-1.0"));
    doc.insert("SPDXID".into(), json!("SPDXRef-DOCUMENT"));
    doc.insert(
        "name".into(),
        json!(format!("{}-{}", inv.service, inv.version)),
    );
    doc.insert(
        "documentNamespace".into(),
        json!(format!(
            "https://kiln.dev/spdx/{}/{}-{}",
            inv.service,
            inv.version,
            inv.image_digest.hex()
        )),
    );
    doc.insert(
        "creationInfo".into(),
        json!({
            "created": inv.created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        }),
    );
    doc.insert("documentDescribes".into(), json!([image_id]));
    doc.insert("packages".into(), json!(packages));
    doc.insert("files".into(), json!(files));
    let infos = licenses.infos();
    if !infos.is_empty() {
        doc.insert("hasExtractedLicensingInfos".into(), json!(infos));
    }
    doc.insert("relationships".into(), json!(relationships));
    Value::Object(doc)
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

fn package(inv: &Inventory, i: usize, id: &str, purpose: &str, licenses: &mut Licenses) -> Value {
    let c = &inv.components[i];
    let mut p = Map::new();
    p.insert("name".into(), json!(c.name));
    p.insert("SPDXID".into(), json!(id));
    p.insert("versionInfo".into(), json!(c.version));
    if let Kind::Package { .. } = c.kind {
        p.insert("supplier".into(), json!("Organization: Debian"));
    }
    p.insert("downloadLocation".into(), json!(NOASSERTION));
    let mut owned = inv.files_of(Some(i)).peekable();
    let analyzed = owned.peek().is_some();
    p.insert("filesAnalyzed".into(), json!(analyzed));
    if analyzed {
        p.insert(
            "packageVerificationCode".into(),
            json!({ "packageVerificationCodeValue": verification_code(owned) }),
        );
    }
    if let Some(sum) = &c.checksum {
        p.insert("checksums".into(), checksums(sum));
    }
    if let Kind::Package {
        source,
        source_version,
        ..
    } = &c.kind
    {
        p.insert(
            "sourceInfo".into(),
            json!(format!(
                "built from Debian source package {source} {source_version}"
            )),
        );
    }
    p.insert("licenseConcluded".into(), json!(NOASSERTION));
    p.insert(
        "licenseDeclared".into(),
        json!(licenses.declared(&c.license)),
    );
    p.insert("copyrightText".into(), json!(NOASSERTION));
    if !c.description.is_empty() {
        p.insert("description".into(), json!(c.description));
    }
    if let Some(purl) = &c.purl {
        p.insert("externalRefs".into(), json!([purl_ref(purl)]));
    }
    p.insert("primaryPackagePurpose".into(), json!(purpose));
    Value::Object(p)
}

/// `creationInfo.created` of a written document, for the referrer annotation.
pub fn created_of(path: &Path) -> Result<String, SbomError> {
    let bytes =
        std::fs::read(path).map_err(super::io_err(format!("reading {}", path.display())))?;
    let malformed = |message: String| SbomError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    v["creationInfo"]["created"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| malformed("no creationInfo.created".into()))
}
