//! The cache's upkeep after a build: statistics and automatic collection. Neither may fail a
//! finished build; what goes wrong is reported as a warning.

use crate::cache::config::CacheConfig;
use crate::cache::gc::{self, GcReport};
use crate::cache::Cache;

use super::UpkeepError;

/// Collects when the cache is over its configured limits; None when it is within them. Only
/// stats the cache's files unless there is something to remove.
pub fn auto_gc(cache: &Cache, limits: &CacheConfig) -> Option<Result<GcReport, UpkeepError>> {
    if limits.max_size.is_none() && limits.max_age.is_none() {
        return None;
    }
    let now = std::time::SystemTime::now();
    let inv = match gc::inventory(cache.root()) {
        Ok(inv) => inv,
        Err(e) => return Some(Err(UpkeepError::ListCache(e))),
    };
    let over_size = limits.max_size.is_some_and(|m| inv.item_bytes() > m);
    let over_age = limits.max_age.is_some_and(|m| {
        inv.items
            .iter()
            .any(|i| now.duration_since(i.used).is_ok_and(|a| a > m))
    });
    if !over_size && !over_age {
        return None;
    }
    let opts = gc::GcOptions {
        max_size: limits.max_size,
        max_age: limits.max_age,
        grace: gc::DEFAULT_GRACE,
    };
    Some(gc::collect(cache.root(), &opts, now).map_err(UpkeepError::Collect))
}
