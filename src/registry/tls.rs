//! TLS trust and client identity for one registry, from the places docker and podman use:
//! an explicit CA file, and `certs.d/<host:port>/` holding `*.crt` (CAs to trust) and
//! `*.cert` + `*.key` pairs (a client certificate, for registries that require mutual TLS).
//! Files are taken in name order so the same directory always gives the same client.

use std::path::{Path, PathBuf};

use reqwest::blocking::ClientBuilder;

use super::error::{transport_message, RegistryError};

fn setup_err(what: String) -> RegistryError {
    RegistryError::Setup(what)
}

pub fn add_ca(builder: ClientBuilder, path: &Path) -> Result<ClientBuilder, RegistryError> {
    let pem = std::fs::read(path)
        .map_err(|e| setup_err(format!("reading CA file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        setup_err(format!(
            "parsing CA file {}: {}",
            path.display(),
            transport_message(e)
        ))
    })?;
    if certs.is_empty() {
        return Err(setup_err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// The client identity in `dir`: the first `X.cert` (name order) with its `X.key`. A certificate
/// without its key is an error, as in docker: silently connecting without it would only fail
/// later with a less helpful handshake error.
fn client_identity(dir: &Path) -> Result<Option<reqwest::Identity>, RegistryError> {
    let Some(cert) = files_with(dir, "cert").into_iter().next() else {
        return Ok(None);
    };
    let key = cert.with_extension("key");
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            setup_err(format!(
                "reading client {} {}: {e}",
                if p == key { "key" } else { "certificate" },
                p.display()
            ))
        })
    };
    if !key.exists() {
        return Err(setup_err(format!(
            "client certificate {} has no key {} beside it",
            cert.display(),
            key.display()
        )));
    }
    let mut pem = read(&cert)?;
    pem.push(b'\n');
    pem.extend(read(&key)?);
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|e| {
        setup_err(format!(
            "loading client certificate {} with key {}: {}",
            cert.display(),
            key.display(),
            transport_message(e)
        ))
    })
}

/// Adds the CAs and the client identity found under `<root>/<registry>/` for every root.
pub fn configure(
    mut builder: ClientBuilder,
    registry: &str,
    ca_file: Option<&Path>,
    certs_d: &[PathBuf],
) -> Result<ClientBuilder, RegistryError> {
    if let Some(ca) = ca_file {
        builder = add_ca(builder, ca)?;
    }
    let mut identity = None;
    for root in certs_d {
        let dir = root.join(registry);
        for crt in files_with(&dir, "crt") {
            builder = add_ca(builder, &crt)?;
        }
        // The first root that has one wins, like the CA search order.
        if identity.is_none() {
            identity = client_identity(&dir)?;
        }
    }
    if let Some(id) = identity {
        builder = builder.identity(id);
    }
    Ok(builder)
}
