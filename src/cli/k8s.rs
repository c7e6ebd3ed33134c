//! `kiln k8s` (manifests from the recipes) and `kiln resolve` (image references to digests).

use std::path::PathBuf;
use std::process::ExitCode;

use super::Error;
use crate::deploy::{self, kustomize, resolve, Options};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct K8sArgs {
    /// Services to write manifests for (default: all).
    pub services: Vec<String>,
    /// Write a Kustomize layout (base/ and overlays/{dev,staging,prod}) to DIR instead of
    /// printing one YAML stream.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Namespace of the ingress controller that `[deploy] ingress = true` services accept.
    #[arg(long, value_name = "NAMESPACE", default_value = "ingress-nginx")]
    pub ingress_namespace: String,
    /// Namespace Prometheus scrapes from; empty lets no scraper through the policies.
    #[arg(long, value_name = "NAMESPACE", default_value = "monitoring")]
    pub monitoring_namespace: String,
    /// Namespace of the cluster DNS (pods labelled `k8s-app: kube-dns`).
    #[arg(long, value_name = "NAMESPACE", default_value = "kube-system")]
    pub dns_namespace: String,
}

#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    /// A YAML file, or a directory searched for *.yaml and *.yml.
    #[arg(short = 'f', long = "filename", value_name = "FILE_OR_DIR")]
    pub file: PathBuf,
    /// The destination the images were pushed to, as given to `kiln push --to`.
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    pub to: String,
    /// Rewrite the files instead of printing the resolved YAML.
    #[arg(short = 'i', long)]
    pub in_place: bool,
}

pub fn run(ws: &Workspace, args: &K8sArgs) -> Result<ExitCode, Error> {
    let opts = Options {
        ingress_namespace: args.ingress_namespace.clone(),
        monitoring_namespace: Some(args.monitoring_namespace.clone()).filter(|m| !m.is_empty()),
        dns_namespace: args.dns_namespace.clone(),
    };
    let all = deploy::service_specs(ws);
    let selected = deploy::select(ws, &all, &args.services)?;
    match &args.output {
        None => out!("{}", deploy::stream(&selected, &all, &opts)),
        Some(dir) => {
            let tree = kustomize::tree(&selected, &all, &opts);
            kustomize::write(dir, &tree)?;
            for s in &selected {
                eprintln!("kiln: k8s: {}", deploy::netpol::summary(s));
            }
            eprintln!(
                "kiln: k8s: wrote {} file(s) for {} service(s) to {} (overlays: {})",
                tree.len(),
                selected.len(),
                dir.display(),
                kustomize::ENVIRONMENTS.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn resolved(
    ws: &Workspace,
    path: &std::path::Path,
    to: &str,
) -> Result<Vec<(PathBuf, String)>, resolve::ResolveError> {
    let record = resolve::load_record(&ws.root)?;
    let files = resolve::yaml_files(path)?;
    let is_service = |n: &str| {
        ws.recipe(n)
            .is_some_and(|r| r.kind == crate::recipe::Kind::Service)
    };
    resolve::resolve_files(&files, is_service, to, &record)
}

/// `kiln resolve -i`, also run by `kiln push --resolve`.
pub fn resolve_in_place(
    ws: &Workspace,
    path: &std::path::Path,
    to: &str,
) -> Result<(), resolve::ResolveError> {
    let files = resolved(ws, path, to)?;
    resolve::write_in_place(&files)?;
    eprintln!("kiln: resolve: rewrote {} file(s)", files.len());
    Ok(())
}

pub fn resolve(ws: &Workspace, args: &ResolveArgs) -> Result<ExitCode, Error> {
    if args.in_place {
        resolve_in_place(ws, &args.file, &args.to)?;
        return Ok(ExitCode::SUCCESS);
    }
    let resolved = resolved(ws, &args.file, &args.to)?;
    // Separate files as YAML documents; a file that already starts one needs no more.
    for (i, (_, t)) in resolved.iter().enumerate() {
        if i > 0 && !t.starts_with("---") {
            outln!("---");
        }
        out!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
