//! CycloneDX 1.5 JSON documents (`out/sbom/<service>.cdx.json`).
//!
//! Shape: `metadata.component` is the image (type `container`, hash = manifest digest). The
//! top-level components are the service, the workspace libraries and the Debian packages; each
//! nests its files as components of type `file` (nesting is CycloneDX's "contains"). Files kiln
//! wrote itself are top-level `file` components, i.e. contained by the image directly. So "which
//! component holds /usr/lib/x" is answered by walking the tree, and every file appears exactly
//! once with its SHA-1 and SHA-256.
//!
//! Determinism: `serialNumber` is a name-based (v5) UUID of the service and image digest, not a
//! random one, and `metadata.timestamp` is SOURCE_DATE_EPOCH. `bom-ref`s are purls for Debian
//! packages and `kiln:<kind>:<name>` otherwise, unique within the document.

use serde_json::{json, Map, Value};
use sha1::{Digest as _, Sha1};

use super::inventory::{File, Inventory, Kind};
use super::license::License;

/// RFC 4122's namespace for URL names.
const URL_NAMESPACE: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// A version 5 (SHA-1, name-based) UUID.
pub fn uuid_v5(namespace: &[u8; 16], name: &str) -> String {
    let mut h = Sha1::new();
    h.update(namespace);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn licenses(l: &License) -> Option<Value> {
    match l {
        // An expression, not `license.id`: recipe licenses may be compound, and the schema
        // checks ids against its own license-list snapshot.
        License::Spdx(e) => Some(json!([{ "expression": e }])),
        License::Debian(name) => Some(json!([{ "license": { "name": name } }])),
        License::Unknown => None,
    }
}

fn property(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn file_component(f: &File) -> Value {
    let mut v = json!({
        "type": "file",
        "bom-ref": format!("kiln:file:{}", f.path),
        "name": f.path,
        "hashes": [
            { "alg": "SHA-1", "content": hex::encode(f.sha1) },
            { "alg": "SHA-256", "content": f.sha256.hex() },
        ],
    });
    if let Some(note) = &f.note {
        v["description"] = json!(note);
    }
    v
}

fn bom_ref(inv: &Inventory, i: usize) -> String {
    let c = &inv.components[i];
    match (&c.kind, &c.purl) {
        (Kind::Package { .. }, Some(purl)) => purl.clone(),
        (Kind::Service, _) => format!("kiln:service:{}", c.name),
        _ => format!("kiln:library:{}", c.name),
    }
}

pub fn document(inv: &Inventory) -> Value {
    let image_ref = format!("kiln:image:{}@{}", inv.service, inv.image_digest);
    let mut image = json!({
        "type": "container",
        "bom-ref": image_ref,
        "name": inv.service,
        "version": inv.version,
        "hashes": [{ "alg": "SHA-256", "content": inv.image_digest.hex() }],
    });
    if let Some(l) = licenses(&inv.components[0].license) {
        image["licenses"] = l;
    }
    image["purl"] = json!(inv.image_purl);

    let mut components = Vec::new();
    for (i, c) in inv.components.iter().enumerate() {
        let mut v = Map::new();
        let kind = if c.kind == Kind::Service {
            "application"
        } else {
            "library"
        };
        v.insert("type".into(), json!(kind));
        v.insert("bom-ref".into(), json!(bom_ref(inv, i)));
        if let Kind::Package { .. } = c.kind {
            v.insert("publisher".into(), json!("Debian"));
        }
        v.insert("name".into(), json!(c.name));
        v.insert("version".into(), json!(c.version));
        if !c.description.is_empty() {
            v.insert("description".into(), json!(c.description));
        }
        if let Some(sum) = &c.checksum {
            v.insert(
                "hashes".into(),
                json!([{ "alg": "SHA-256", "content": sum.hex() }]),
            );
        }
        if let Some(l) = licenses(&c.license) {
            v.insert("licenses".into(), l);
        }
        if let Some(purl) = &c.purl {
            v.insert("purl".into(), json!(purl));
        }
        let props = match &c.kind {
            Kind::Service => vec![],
            Kind::Library { shared } => vec![property(
                "kiln:library:linkage",
                if *shared { "shared" } else { "static" },
            )],
            Kind::Package {
                architecture,
                source,
                source_version,
            } => vec![
                property("kiln:deb:architecture", architecture),
                property("kiln:deb:source", source),
                property("kiln:deb:source-version", source_version),
            ],
        };
        if !props.is_empty() {
            v.insert("properties".into(), json!(props));
        }
        let files: Vec<Value> = inv.files_of(Some(i)).map(file_component).collect();
        if !files.is_empty() {
            v.insert("components".into(), json!(files));
        }
        components.push(Value::Object(v));
    }
    components.extend(inv.files_of(None).map(file_component));

    // The service needs the libraries it links and the packages whose shared objects the image
    // carries for it (the runtime closure).
    let needed: Vec<String> = (1..inv.components.len())
        .filter(|&i| match inv.components[i].kind {
            Kind::Package { .. } => inv.files_of(Some(i)).any(|f| f.path.contains(".so")),
            _ => true,
        })
        .map(|i| bom_ref(inv, i))
        .collect();
    let dependencies = json!([
        { "ref": image_ref, "dependsOn": [bom_ref(inv, 0)] },
        { "ref": bom_ref(inv, 0), "dependsOn": needed },
    ]);

    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!(
            "urn:uuid:{}",
            uuid_v5(
                &URL_NAMESPACE,
                &format!("https://kiln.dev/cyclonedx/{}/{}", inv.service, inv.image_digest.hex())
            )
        ),
        "version": 1,
        "metadata": {
            "timestamp": inv.created,
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "kiln",
                    "version": env!("CARGO_PKG_VERSION"),
                }],
            },
            "component": image,
        },
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_rfc_4122() {
        // The RFC's namespace with a well-known name, as computed by Python's uuid.uuid5.
        assert_eq!(
            uuid_v5(&URL_NAMESPACE, "https://www.python.org/"),
            "5406f80d-92e9-51cd-a176-77445955e733"
        );
    }
}
