//! Keeping a request inside the image root: destinations are absolute and normalised, and a
//! symlink copied from the workspace may only point within the tree it was copied with.
//!
//! An absolute link target would name a host path (it means nothing, or something else, inside
//! the image); a relative one that climbs out of the copied tree points at whatever happens to be
//! there in the image. Both are refused rather than guessed at.

use std::path::Path;

use super::ImageError;

/// Checks an image destination such as `/usr/share/svc/config.toml`.
pub fn check_destination(dst: &str) -> Result<(), ImageError> {
    let bad = |reason| {
        Err(ImageError::BadDestination {
            dst: dst.to_string(),
            reason,
        })
    };
    if !dst.starts_with('/') {
        return bad("it must be an absolute path inside the image");
    }
    if dst == "/" {
        return bad("it must name a file or directory below /");
    }
    for part in dst[1..].trim_end_matches('/').split('/') {
        match part {
            ".." => return bad("it must not contain '..'"),
            "." | "" => return bad("it must be normalised (no '.' or empty components)"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a symlink found at `link` (inside the copied tree rooted at `root`) with target `target`.
pub fn check_symlink(root: &Path, link: &Path, target: &Path) -> Result<(), ImageError> {
    let refuse = |reason| {
        Err(ImageError::UnsafeSymlink {
            link: link.to_path_buf(),
            target: target.display().to_string(),
            reason,
        })
    };
    if target.is_absolute() {
        return refuse(
            "absolute targets name host paths; use a relative target within the copied directory",
        );
    }
    // Depth of the link's directory below the copied root, then walk the target lexically.
    let rel_dir = link.parent().and_then(|p| p.strip_prefix(root).ok());
    let Some(rel_dir) = rel_dir else {
        return refuse("a copied file itself may not be a symlink that leaves its directory");
    };
    if crate::relpath::climbs_out(rel_dir.components().count(), target) {
        return refuse("it escapes the directory it is copied with");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(check_destination("/usr/share/x").is_ok());
        assert!(check_destination("/usr/share/x/").is_ok());
        for bad in ["usr/x", "/usr/../etc/passwd", "/", "/a//b", "/a/./b"] {
            assert!(check_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks() {
        let root = Path::new("/w/data");
        assert!(check_symlink(root, Path::new("/w/data/a/l"), Path::new("../b")).is_ok());
        assert!(check_symlink(root, Path::new("/w/data/a/l"), Path::new("../../x")).is_err());
        assert!(check_symlink(root, Path::new("/w/data/l"), Path::new("/etc/passwd")).is_err());
    }
}
