//! The Remote Workers API (`google.devtools.remoteworkers.v1test2`, the Bots service) that
//! BuildGrid hands work to its bots through; `kiln worker` ([`crate::worker`]) is such a bot.
//!
//! `bazel-remote-apis` does not carry these protos, and generating them would need `protoc` at
//! build time, which kiln avoids. The few messages a bot uses are therefore written here as
//! prost structs with the field numbers of the vendored `.proto` files
//! (`proto/google/devtools/remoteworkers/v1test2/{bots,worker}.proto`, Apache-2.0, from
//! googleapis); fields a bot never reads or sets are left out (protobuf skips unknown fields, and
//! a bot sends back only what it owns). The client below is two unary calls over the same
//! channel and headers as the rest of [`super::client`].

use bazel_remote_apis::google::protobuf::{Any, Timestamp};
use bazel_remote_apis::google::rpc::Status;
use tonic::codegen::http::uri::PathAndQuery;

use super::client::Transport;

/// `BotStatus.OK`.
pub const BOT_OK: i32 = 1;
/// `BotStatus.BOT_TERMINATING`.
pub const BOT_TERMINATING: i32 = 4;

/// `LeaseState`.
pub mod lease_state {
    pub const PENDING: i32 = 1;
    pub const ACTIVE: i32 = 2;
    pub const COMPLETED: i32 = 4;
    pub const CANCELLED: i32 = 5;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BotSession {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub bot_id: String,
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "7")]
    pub id: String,
    #[prost(message, optional, tag = "8")]
    pub payload: Option<Any>,
    #[prost(message, optional, tag = "9")]
    pub result: Option<Any>,
    #[prost(int32, tag = "2")]
    pub state: i32,
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Worker {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<Property>,
}

/// `Worker.Property`, `Worker.Config` and `Device.Property` are all (key = 1, value = 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Property {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub handle: String,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateBotSessionRequest {
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateBotSessionRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
    #[prost(message, optional, tag = "3")]
    pub update_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

/// The type URL of a packed message of the REAPI package.
pub fn type_url(name: &str) -> String {
    format!("type.googleapis.com/{name}")
}

/// A Bots client over the shared transport.
pub struct BotsClient {
    inner: tonic::client::Grpc<Transport>,
}

impl BotsClient {
    pub fn new(transport: Transport) -> BotsClient {
        BotsClient {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    async fn unary<Q, R>(
        &mut self,
        method: &'static str,
        request: tonic::Request<Q>,
    ) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        let path = PathAndQuery::from_static(method);
        Ok(self.inner.unary(request, path, codec).await?.into_inner())
    }

    pub async fn create_bot_session(
        &mut self,
        request: tonic::Request<CreateBotSessionRequest>,
    ) -> Result<BotSession, tonic::Status> {
        self.unary(
            "/google.devtools.remoteworkers.v1test2.Bots/CreateBotSession",
            request,
        )
        .await
    }

    pub async fn update_bot_session(
        &mut self,
        request: tonic::Request<UpdateBotSessionRequest>,
    ) -> Result<BotSession, tonic::Status> {
        self.unary(
            "/google.devtools.remoteworkers.v1test2.Bots/UpdateBotSession",
            request,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_are_those_of_the_proto() {
        // Lease.id is field 7 (a length-delimited string: tag byte 7 << 3 | 2 = 0x3a), state
        // field 2 (varint: 0x10), as bots.proto numbers them.
        let lease = Lease {
            id: "x".into(),
            state: lease_state::ACTIVE,
            ..Lease::default()
        };
        let bytes = lease.encode_to_vec();
        assert_eq!(bytes, [0x10, 0x02, 0x3a, 0x01, b'x']);
        let session = BotSession {
            bot_id: "b".into(),
            status: BOT_OK,
            ..BotSession::default()
        };
        assert_eq!(session.encode_to_vec(), [0x12, 0x01, b'b', 0x18, 0x01]);
    }
}
