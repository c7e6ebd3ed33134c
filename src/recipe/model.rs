//! What a recipe is once read: the typed values every later stage (graph, planning, images,
//! deploy) works from. Reading and validating them is [`super::parse`]'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::deploy::DeploySection;
use super::diag::Diagnostic;
use super::reader::Spanned;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Library,
    Service,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Library => "library",
            Kind::Service => "service",
            Kind::Test => "test",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Language {
    #[serde(rename = "c++")]
    Cxx,
    #[serde(rename = "ada")]
    Ada,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Cxx => "c++",
            Language::Ada => "ada",
        }
    }
}

/// A system library requested by a recipe.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SystemLib {
    /// `wx:base,net`: flags from `wx-config`.
    Wx(Vec<String>),
    /// `pkg:NAME`: flags from `pkg-config`.
    Pkg(String),
    /// `lib:NAME`: `-lNAME`.
    Lib(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    pub src: PathBuf,
    pub dst: String,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ns: Option<u64>,
    pub timeout_ns: Option<u64>,
    pub start_period_ns: Option<u64>,
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSection {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub workdir: Option<String>,
    pub budget: Option<u64>,
    pub ca_certificates: bool,
    pub stop_signal: Option<String>,
    pub files: Vec<ImageFile>,
    pub libraries: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    /// Write a Docker v2 schema 2 manifest instead of an OCI one.
    pub docker_format: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestFramework {
    Gtest,
    #[default]
    ExitCode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestSection {
    pub framework: TestFramework,
    pub args: Vec<String>,
}

/// One recipe, validated on its own. Paths are relative to the workspace root.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: String,
    /// `recipes/<name>.toml`
    pub file: String,
    pub kind: Kind,
    pub language: Language,
    pub toolchain: Spanned<String>,
    pub version: String,
    pub description: String,
    pub license: String,
    /// Expanded, sorted, de-duplicated.
    pub sources: Vec<PathBuf>,
    pub include_dirs: Vec<PathBuf>,
    pub source_dirs: Vec<PathBuf>,
    pub defines: Vec<String>,
    pub cflags: Vec<String>,
    pub ldflags: Vec<String>,
    pub system_libs: Vec<SystemLib>,
    pub deps: Vec<Spanned<String>>,
    pub main: Option<String>,
    pub output: String,
    pub shared: bool,
    pub image: ImageSection,
    pub depends_on: Vec<Spanned<String>>,
    pub test: TestSection,
    /// `[deploy]`: replicas, resources, autoscaling and ingress for `kiln k8s`.
    pub deploy: DeploySection,
    /// The file's text, kept to render errors found later (unknown deps, cycles).
    pub source_text: String,
    /// The platform this recipe is built for, when its outputs go to that platform's own
    /// `out/<os>-<arch>/`: `None` as loaded (the default platform, `out/`);
    /// [`crate::workspace::Workspace::for_platform`] sets it with the platform's toolchain.
    pub platform: Option<crate::platform::Platform>,
}

impl Recipe {
    pub fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        msg: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(&self.file, &self.source_text, span, msg)
    }
}
