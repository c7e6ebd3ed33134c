//! `kiln lock`: pins the toolchains and runtime packages the workspace builds with in kiln.lock.

use std::process::ExitCode;

use super::Error;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace) -> Result<ExitCode, Error> {
    let path = crate::lock::write(ws).map_err(|e| Error::Lock(Box::new(e)))?;
    eprintln!("kiln: wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
