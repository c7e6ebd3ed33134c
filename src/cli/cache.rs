//! `kiln cache verify | gc | stats`: the shared cache's upkeep, without a workspace.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::Error;
use crate::cache::config::{self, parse_age, parse_limit};
use crate::cache::gc::{self, GcOptions, ItemKind};
use crate::cache::{stats, Cache};

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Hash every blob, check every entry and layer; remove what is damaged. Exits 1 when
    /// something was removed.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used files until the cache fits (default: the configured limits).
    Gc {
        /// Largest total size to keep, e.g. 5GB, 512MiB, 0.
        #[arg(long, value_name = "SIZE", value_parser = size_arg)]
        max_size: Option<u64>,
        /// Remove what was not used for longer, e.g. 30d, 12h.
        #[arg(long, value_name = "DURATION", value_parser = age_arg)]
        max_age: Option<Duration>,
        /// Never remove what was used more recently than this (protects running builds).
        #[arg(long, value_name = "DURATION", value_parser = age_arg, default_value = "10m")]
        grace: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Size, entries, limits and the hit rate of recent builds.
    Stats {
        /// How many recent builds the hit rate covers.
        #[arg(long, default_value_t = 20)]
        builds: usize,
        #[arg(long)]
        json: bool,
    },
}

fn size_arg(s: &str) -> Result<u64, String> {
    match parse_limit(s) {
        Some(Some(n)) => Ok(n),
        _ => Err("expected a size such as 5GB, 512MiB or 0".into()),
    }
}

fn age_arg(s: &str) -> Result<Duration, String> {
    parse_age(s).ok_or_else(|| "expected a duration such as 30d, 12h, 10m or 0s".into())
}

/// Decimal megabytes or gigabytes, for people.
pub fn human(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn open() -> Result<Cache, Error> {
    let dir = crate::cache::default_dir();
    Cache::open(dir.clone())
        .map_err(|e| Error::Failed(format!("opening the cache {}: {e}", dir.display())))
}

fn json_out<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn run(cmd: &CacheCmd) -> Result<ExitCode, Error> {
    let cache = open()?;
    let root = cache.root();
    match cmd {
        CacheCmd::Verify { json } => {
            let r = crate::cache::verify::verify(root)
                .map_err(|e| Error::Failed(format!("verifying the cache: {e}")))?;
            if *json {
                json_out(&r);
            } else {
                eprintln!(
                    "kiln: cache verify: checked {} blobs, {} action entries, {} layers, {} test results",
                    r.blobs, r.action_entries, r.layers, r.test_results
                );
                for x in &r.removed {
                    eprintln!("kiln: cache verify: removed {}: {}", x.path, x.reason);
                }
                if !r.removed.is_empty() {
                    eprintln!(
                        "kiln: cache verify: removed {} damaged file(s); the next build reruns what they held",
                        r.removed.len()
                    );
                }
            }
            Ok(ExitCode::from(u8::from(!r.removed.is_empty())))
        }
        CacheCmd::Gc {
            max_size,
            max_age,
            grace,
            json,
        } => {
            let limits = config::load(root).map_err(|e| Error::Driver(e.into()))?;
            let opts = GcOptions {
                max_size: max_size.or(limits.max_size),
                max_age: max_age.or(limits.max_age),
                grace: *grace,
            };
            let r = gc::collect(root, &opts, std::time::SystemTime::now())
                .map_err(|e| Error::Failed(format!("collecting the cache: {e}")))?;
            if *json {
                json_out(&r);
            } else {
                eprintln!("kiln: cache gc: {}", describe_gc(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Stats { builds, json } => {
            let limits = config::load(root).map_err(|e| Error::Driver(e.into()))?;
            let inv = gc::inventory(root)
                .map_err(|e| Error::Failed(format!("listing the cache: {e}")))?;
            let count = |k: ItemKind| inv.items.iter().filter(|i| i.kind == k).count();
            let recent = stats::recent(root, *builds);
            let mut total = stats::BuildStats::default();
            for b in &recent {
                total.add(b);
            }
            if *json {
                json_out(&serde_json::json!({
                    "size": inv.item_bytes() + inv.memo_bytes,
                    "max_size": limits.max_size,
                    "max_age_seconds": limits.max_age.map(|d| d.as_secs()),
                    "blobs": count(ItemKind::Blob),
                    "action_entries": count(ItemKind::ActionEntry),
                    "layers": count(ItemKind::Layer),
                    "test_results": count(ItemKind::TestResult),
                    "builds": recent.len(),
                    "recent": total,
                    "hit_rate": total.hit_rate(),
                }));
                return Ok(ExitCode::SUCCESS);
            }
            let limit = limits.max_size.map_or("unlimited".to_string(), |m| {
                format!("max_size {}", human(m))
            });
            outln!("cache:    {}", root.display());
            outln!(
                "size:     {} ({limit})",
                human(inv.item_bytes() + inv.memo_bytes)
            );
            outln!(
                "entries:  {} blobs, {} action entries, {} layers, {} test results",
                count(ItemKind::Blob),
                count(ItemKind::ActionEntry),
                count(ItemKind::Layer),
                count(ItemKind::TestResult)
            );
            match total.hit_rate() {
                Some(rate) => outln!(
                    "hit rate: {:.1}% over the last {} build(s): {} from cache, {} from remote cache, {} run, {} failed, {} up to date, {} damaged blob(s)",
                    rate * 100.0,
                    recent.len(),
                    total.cached,
                    total.remote,
                    total.ran,
                    total.failed,
                    total.fresh,
                    total.damaged
                ),
                None => outln!(
                    "hit rate: no lookups in the last {} build(s)",
                    recent.len()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line for a collection, shared with the automatic one after builds.
pub fn describe_gc(r: &gc::GcReport) -> String {
    let mut s = format!(
        "removed {} item(s) ({})",
        r.removed_items,
        human(r.removed_bytes)
    );
    if r.removed_dangling > 0 {
        s.push_str(&format!(
            ", then {} entries naming removed blobs",
            r.removed_dangling
        ));
    }
    if r.removed_temps > 0 {
        s.push_str(&format!(", {} leftover temp file(s)", r.removed_temps));
    }
    s.push_str(&format!(
        "; kept {} ({})",
        r.kept_items,
        human(r.kept_bytes)
    ));
    if r.protected_items > 0 {
        s.push_str(&format!(
            ", {} of them only because they were used within the grace period",
            r.protected_items
        ));
    }
    s
}
