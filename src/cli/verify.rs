//! `kiln verify`: rebuilds the services' images independently and says whether every byte
//! matches, explaining the first difference when one does not.

use std::process::ExitCode;

use super::Error;
use crate::driver::DriverError;
use crate::verify::VerifyError;
use crate::workspace::Workspace;

pub fn run(
    ws: &Workspace,
    services: &[String],
    platforms: &[String],
    jobs: usize,
    json: bool,
) -> Result<ExitCode, Error> {
    let report = crate::verify::verify(&crate::exec::ProcessRunner, ws, services, platforms, jobs)
        .map_err(|e| match e {
            VerifyError::Usage(m) => Error::Driver(DriverError::Usage(m)),
            VerifyError::Driver(d) => Error::Driver(d),
            VerifyError::Workspace(w) => Error::Workspace(w),
            e => Error::Verify(Box::new(e)),
        })?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if report.mismatches.is_empty() {
        if report.indexes.is_empty() {
            eprintln!(
                "kiln: verify: {} service image(s) rebuilt bit for bit",
                report.services.len()
            );
        } else {
            eprintln!(
                "kiln: verify: {} service image(s) and {} image index(es) rebuilt bit for bit",
                report.services.len(),
                report.indexes.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for m in &report.mismatches {
        eprintln!("kiln: verify: {m}");
    }
    if let Some(kept) = &report.kept {
        eprintln!("kiln: verify: the rebuild is kept in {}", kept.display());
    }
    Ok(ExitCode::from(1))
}
