//! The ActionCache service: `GetActionResult` by Action digest, `UpdateActionResult` after a
//! local run. `NOT_FOUND` is a miss, not an error.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;

use super::blob::BlobDigest;
use super::client::Client;
use super::error::RemoteError;

pub fn get(
    client: &Client,
    action: BlobDigest,
) -> Result<Option<reapi::ActionResult>, RemoteError> {
    let req = reapi::GetActionResultRequest {
        instance_name: client.instance_name().to_string(),
        action_digest: Some(action.to_proto()),
        // Outputs are fetched (and verified) through the CAS, never inlined.
        inline_stdout: false,
        inline_stderr: false,
        inline_output_files: Vec::new(),
        digest_function: reapi::digest_function::Value::Sha256 as i32,
    };
    match client.unary(|| async { client.action_cache().get_action_result(req.clone()).await }) {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(client.rpc_error("GetActionResult", s)),
    }
}

pub fn update(
    client: &Client,
    action: BlobDigest,
    result: reapi::ActionResult,
) -> Result<(), RemoteError> {
    let req = reapi::UpdateActionResultRequest {
        instance_name: client.instance_name().to_string(),
        action_digest: Some(action.to_proto()),
        action_result: Some(result),
        results_cache_policy: None,
        digest_function: reapi::digest_function::Value::Sha256 as i32,
    };
    client
        .unary(|| async {
            client
                .action_cache()
                .update_action_result(req.clone())
                .await
        })
        .map_err(|s| client.rpc_error("UpdateActionResult", s))?;
    Ok(())
}
