//! SLSA v1 provenance in an in-toto v1 Statement (`out/provenance/<service>.intoto.json`).
//!
//! The subject is the image: the service name and the manifest digest. The predicate says how it
//! was built:
//! - `buildType`: [`BUILD_TYPE`], versioned; its external parameters are what a user chose
//!   (service, version, source revision), its internal parameters what kiln chose (toolchain
//!   fingerprints, SOURCE_DATE_EPOCH).
//! - `resolvedDependencies`: the source revision, each recipe file by digest, each Debian package
//!   in the image by purl.
//! - `runDetails.byproducts`: the two SBOMs by digest, binding them to this statement.
//!
//! No `runDetails.metadata`: its `startedOn`/`finishedOn` are wall-clock times, which would make
//! the statement differ on every rebuild of a bit-identical image, and an `invocationId` would
//! too; all are optional. SOURCE_DATE_EPOCH is recorded as an internal parameter instead.
//! The statement is unsigned: signing (DSSE) belongs to whoever holds the key, after the build.

use serde_json::{json, Map, Value};

use super::inventory::{Inventory, Kind};
use super::SbomInput;
use crate::digest::Digest;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Changes when the meaning of the parameters below changes.
pub const BUILD_TYPE: &str = "https://kiln.dev/build/image/v1";

pub struct Byproduct {
    pub name: String,
    pub media_type: &'static str,
    pub digest: Digest,
}

fn sha256(d: &Digest) -> Value {
    json!({ "sha256": d.hex() })
}

pub fn statement(input: &SbomInput, inv: &Inventory, byproducts: &[Byproduct]) -> Value {
    let meta = input.meta;
    let known_revision = meta.revision != "unknown";
    let known_source = meta.source != "unknown";

    let mut source = Map::new();
    if known_source {
        source.insert("uri".into(), json!(meta.source));
    }
    source.insert("revision".into(), json!(meta.revision));

    let mut toolchains = input.toolchains.clone();
    toolchains.sort();
    let toolchains: Map<String, Value> = toolchains
        .iter()
        .map(|(name, fp)| (name.clone(), json!(fp.to_string())))
        .collect();

    let mut deps = Vec::new();
    let mut src = Map::new();
    src.insert("name".into(), json!("source"));
    if known_source {
        let uri = if known_revision {
            format!("git+{}@{}", meta.source, meta.revision)
        } else {
            format!("git+{}", meta.source)
        };
        src.insert("uri".into(), json!(uri));
    }
    if known_revision {
        src.insert("digest".into(), json!({ "gitCommit": meta.revision }));
    } else {
        src.insert("annotations".into(), json!({ "revision": meta.revision }));
    }
    deps.push(Value::Object(src));

    let mut recipes = input.recipes.clone();
    recipes.sort();
    for (file, digest) in &recipes {
        deps.push(json!({ "name": file, "uri": format!("file:{file}"), "digest": sha256(digest) }));
    }
    for c in &inv.components {
        if let (
            Kind::Package {
                architecture,
                source,
                source_version,
            },
            Some(purl),
        ) = (&c.kind, &c.purl)
        {
            deps.push(json!({
                "name": c.name,
                "uri": purl,
                "annotations": {
                    "version": c.version,
                    "architecture": architecture,
                    "source": source,
                    "sourceVersion": source_version,
                },
            }));
        }
    }

    let byproducts: Vec<Value> = byproducts
        .iter()
        .map(|b| json!({ "name": b.name, "mediaType": b.media_type, "digest": sha256(&b.digest) }))
        .collect();

    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": inv.service, "digest": sha256(&inv.image_digest) }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "service": inv.service,
                    "version": inv.version,
                    "source": source,
                },
                "internalParameters": {
                    "toolchains": toolchains,
                    "sourceDateEpoch": meta.source_date_epoch,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": format!("https://kiln.dev/builder@{}", env!("CARGO_PKG_VERSION")),
                    "version": { "kiln": env!("CARGO_PKG_VERSION") },
                },
                "byproducts": byproducts,
            },
        },
    })
}
