//! `kiln verify`: rebuild in a fresh copy with an empty cache and compare every blob
//! (filled in by the reproducibility work).

use crate::workspace::Workspace;

#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    pub services: Vec<String>,
    /// Human-readable description of each mismatch; empty when reproducible.
    pub mismatches: Vec<String>,
}

pub fn verify(_ws: &Workspace, services: &[String], _jobs: usize) -> Result<VerifyReport, String> {
    Ok(VerifyReport {
        services: services.to_vec(),
        mismatches: vec!["kiln verify is not implemented yet".into()],
    })
}
