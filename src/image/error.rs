//! Everything that can stop an image from being assembled, inspected or exported.

use std::path::PathBuf;

use super::budget::Breakdown;
use crate::closure::ClosureError;
use crate::dpkg::DpkgError;
use crate::layer::LayerError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Closure(#[from] ClosureError),
    #[error("reading the dpkg database")]
    Dpkg(#[from] DpkgError),
    #[error("writing the {layer} layer")]
    Layer {
        layer: String,
        #[source]
        source: LayerError,
    },
    #[error("{tool} {args} could not start")]
    ToolStart {
        tool: String,
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} {args} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("image destination {dst:?} is not allowed: {reason}")]
    BadDestination { dst: String, reason: &'static str },
    #[error("extra file {src} (for {dst}) does not exist")]
    MissingExtraFile { src: PathBuf, dst: String },
    #[error("symlink {link} -> {target} cannot go into the image: {reason}")]
    UnsafeSymlink {
        link: PathBuf,
        target: String,
        reason: &'static str,
    },
    #[error("image {service} is {size} bytes compressed, over its budget of {budget} bytes\n{breakdown}")]
    OverBudget {
        service: String,
        size: u64,
        budget: u64,
        breakdown: Breakdown,
    },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] crate::oci::LayoutError),
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }
}
