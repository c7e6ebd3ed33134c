//! Lexical path arithmetic for symlinks kiln places in trees it writes (image layers, unpacked
//! Debian packages): whether a relative target, followed from a link's directory, stays inside
//! the tree. Lexical on purpose: the tree being checked is not the filesystem the link will be
//! resolved in.

use std::path::{Component, Path};

/// Whether the relative `target` of a link whose directory is `depth` levels below the tree's
/// root ever climbs above that root. `.` is ignored; an absolute target is the caller's
/// business and counts as not climbing.
pub fn climbs_out(depth: usize, target: &Path) -> bool {
    let mut depth = depth as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbing_is_counted_along_the_whole_target() {
        assert!(!climbs_out(1, Path::new("../lib/x")));
        assert!(climbs_out(1, Path::new("../../x")));
        assert!(climbs_out(0, Path::new("a/../../b")));
        assert!(!climbs_out(0, Path::new("./a")));
        assert!(!climbs_out(2, Path::new("../../a/../b")));
    }
}
