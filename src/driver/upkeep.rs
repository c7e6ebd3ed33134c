//! The cache's upkeep after a build: statistics and automatic collection. Neither may fail a
//! finished build; what goes wrong is reported as a warning.

use crate::cache::config::CacheConfig;
use crate::cache::gc::{self, GcReport};
use crate::cache::Cache;

use super::UpkeepError;

/// Collects when the cache is over its configured limits; None when it is within them. Only
/// stats the cache's files unless there is something to remove. `stored`: whether the build
/// put anything in the cache; when not, only an age limit can have been passed since the last
/// build that did, so without one the cache is not walked at all.
pub fn auto_gc(
    cache: &Cache,
    limits: &CacheConfig,
    stored: bool,
) -> Option<Result<GcReport, UpkeepError>> {
    if limits.max_age.is_none() && (limits.max_size.is_none() || !stored) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_that_stored_nothing_walks_the_cache_only_for_an_age_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        cache.put_bytes(&[7u8; 4096]).unwrap();
        let size_only = CacheConfig {
            max_size: Some(1000),
            max_age: None,
        };
        assert!(auto_gc(&cache, &size_only, false).is_none());
        let report = auto_gc(&cache, &size_only, true).expect("over its size, not looked at");
        report.unwrap();
        let with_age = CacheConfig {
            max_size: Some(1000),
            max_age: Some(std::time::Duration::from_secs(3600)),
        };
        // Within the age limit and stored nothing, but the size is over: an age limit alone
        // makes it look, and looking finds the size too.
        assert!(auto_gc(&cache, &with_age, false).is_some());
        let unlimited = CacheConfig {
            max_size: None,
            max_age: None,
        };
        assert!(auto_gc(&cache, &unlimited, true).is_none());
    }
}
