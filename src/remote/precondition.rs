//! `google.rpc.PreconditionFailure`, the detail REAPI puts in a `FAILED_PRECONDITION` status to
//! say *what* was not met. The spec has servers list each blob they lack as a violation of type
//! [`MISSING`] (subject `blobs/<hash>/<size>`); uploading again then helps. Any other violation
//! (kiln's worker uses [`TOOLCHAIN_ROOT`] when it cannot materialise an action's toolchain
//! root, [`SANDBOX`] when bubblewrap cannot run) will not go away by uploading, so the client
//! stops retrying at once.
//!
//! Declared here as prost structs with the field numbers of `google/rpc/error_details.proto`,
//! since `bazel-remote-apis` does not carry that file and kiln builds without protoc.

use bazel_remote_apis::google::protobuf::Any;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use prost::Message;

/// The violation type of a missing blob.
pub const MISSING: &str = "MISSING";
/// The violation type of a toolchain root the worker could not materialise.
pub const TOOLCHAIN_ROOT: &str = "kiln-toolchain-root";
/// The violation type of a sandbox (bubblewrap) the worker could not run.
pub const SANDBOX: &str = "kiln-sandbox";

const TYPE_URL: &str = "type.googleapis.com/google.rpc.PreconditionFailure";

#[derive(Clone, PartialEq, Message)]
pub struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<Violation>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Violation {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub description: String,
}

/// Whether uploading again may cure a `FAILED_PRECONDITION` `status`: it names a missing blob,
/// or says nothing about what failed (servers that leave the detail out mean missing blobs).
pub fn reupload_may_help(details: &[Any]) -> bool {
    let failures: Vec<PreconditionFailure> = details
        .iter()
        .filter(|d| d.type_url == TYPE_URL)
        .filter_map(|d| PreconditionFailure::decode(d.value.as_slice()).ok())
        .collect();
    let violations: Vec<&Violation> = failures.iter().flat_map(|f| &f.violations).collect();
    violations.is_empty() || violations.iter().any(|v| v.r#type == MISSING)
}

/// A `FAILED_PRECONDITION` status with one violation.
pub fn status(kind: &str, subject: &str, message: String) -> RpcStatus {
    let detail = PreconditionFailure {
        violations: vec![Violation {
            r#type: kind.to_string(),
            subject: subject.to_string(),
            description: message.clone(),
        }],
    };
    RpcStatus {
        code: tonic::Code::FailedPrecondition as i32,
        message,
        details: vec![Any {
            type_url: TYPE_URL.to_string(),
            value: detail.encode_to_vec(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_blobs_or_no_detail_are_worth_another_upload() {
        assert!(reupload_may_help(&[]));
        let missing = status(MISSING, "blobs/ab/1", "gone".into());
        assert!(reupload_may_help(&missing.details));
        let root = status(TOOLCHAIN_ROOT, "blobs/cd/2", "no mirror".into());
        assert!(!reupload_may_help(&root.details));
        let unrelated = Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: vec![],
        };
        assert!(reupload_may_help(&[unrelated]));
    }
}
