//! REAPI digests: kiln's SHA-256 [`Digest`] plus the blob's size, as the protocol names blobs.
//!
//! Every blob that arrives from a server passes [`BlobDigest::verify`] before anything uses it;
//! that is the "never lies" half of the remote cache.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;

use super::error::RemoteError;
use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest {
    pub digest: Digest,
    pub size: u64,
}

impl BlobDigest {
    pub fn of(bytes: &[u8]) -> BlobDigest {
        BlobDigest {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    pub fn to_proto(self) -> reapi::Digest {
        reapi::Digest {
            hash: self.digest.hex(),
            size_bytes: self.size as i64,
        }
    }

    /// Reads a digest a server sent; `what` says where it came from, for the error.
    pub fn from_proto(d: Option<&reapi::Digest>, what: &str) -> Result<BlobDigest, RemoteError> {
        let bad = |hash: &str, size| RemoteError::BadDigest {
            what: what.to_string(),
            hash: hash.to_string(),
            size,
        };
        let d = d.ok_or_else(|| bad("", -1))?;
        let digest: Digest = format!("sha256:{}", d.hash)
            .parse()
            .map_err(|_| bad(&d.hash, d.size_bytes))?;
        let size = u64::try_from(d.size_bytes).map_err(|_| bad(&d.hash, d.size_bytes))?;
        Ok(BlobDigest { digest, size })
    }

    /// Checks that `bytes` are the blob this digest names.
    pub fn verify(&self, what: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        if bytes.len() as u64 != self.size {
            return Err(RemoteError::SizeMismatch {
                what: what.to_string(),
                expected: self.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(bytes);
        if actual != self.digest {
            return Err(RemoteError::DigestMismatch {
                what: what.to_string(),
                digest: self.digest,
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_and_verification() {
        let b = BlobDigest::of(b"hello");
        assert_eq!(BlobDigest::from_proto(Some(&b.to_proto()), "t").unwrap(), b);
        b.verify("t", b"hello").unwrap();
        assert!(b.verify("t", b"hellO").unwrap_err().is_integrity());
        assert!(b.verify("t", b"hell").unwrap_err().is_integrity());
    }

    #[test]
    fn malformed_digests_are_refused() {
        let mut p = BlobDigest::of(b"x").to_proto();
        p.size_bytes = -1;
        assert!(BlobDigest::from_proto(Some(&p), "t").is_err());
        let p = reapi::Digest {
            hash: "ABC".into(),
            size_bytes: 1,
        };
        assert!(BlobDigest::from_proto(Some(&p), "t").is_err());
        assert!(BlobDigest::from_proto(None, "t").is_err());
    }
}
