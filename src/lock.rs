//! `kiln.lock`: the toolchains a release was built with. Placeholder until the lock issue lands.

use crate::workspace::Workspace;

pub fn check(_ws: &Workspace) -> Result<(), String> {
    Ok(())
}
