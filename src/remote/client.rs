//! The gRPC connection to a REAPI server: one channel, one small runtime, and the request
//! headers from [`RemoteConfig`] on every call.
//!
//! kiln is synchronous; the client owns a current-thread tokio runtime and every public call
//! `block_on`s it, so callers on any thread see plain blocking functions. The channel is
//! created lazily: an unreachable server shows up as `UNAVAILABLE` on the first call (which
//! [`super::capabilities`] makes at connect), like every later outage.

use std::future::Future;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    action_cache_client::ActionCacheClient, capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient,
    execution_client::ExecutionClient,
};
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::config::RemoteConfig;
use super::error::{RemoteError, Status};

/// Largest message the client accepts; batch reads are packed well under it.
const MAX_MESSAGE: usize = 64 << 20;

/// Attempts of a call the server answers `RESOURCE_EXHAUSTED`: over its limit of concurrent
/// calls or its rate, a reason to slow down rather than a broken remote.
pub const EXHAUSTED_ATTEMPTS: u32 = 6;
/// The pause before the first retry; it doubles for each one after (about 1.6 s in all, plus
/// up to half again of random spread so that threads turned away together do not return
/// together).
const EXHAUSTED_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Adds the configured headers to each request. Values are marked sensitive so that HTTP/2
/// never puts them in its compression table and debug output of the request hides them.
#[derive(Clone)]
pub struct Headers(Arc<Vec<(AsciiMetadataKey, AsciiMetadataValue)>>);

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (k, v) in self.0.iter() {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        Ok(req)
    }
}

pub type Transport = InterceptedService<Channel, Headers>;

pub struct Client {
    // Declared before the runtime so the channel's tasks are dropped while it still exists.
    channel: Channel,
    headers: Headers,
    instance: String,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn connect(cfg: &RemoteConfig) -> Result<Client, RemoteError> {
        let url = cfg.redacted_url();
        let mut endpoint = Endpoint::from_shared(cfg.endpoint_url()?)
            .map_err(|source| RemoteError::Connect {
                url: url.clone(),
                source,
            })?
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout);
        if cfg.is_tls()? {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path).map_err(|source| RemoteError::ReadCa {
                    path: path.clone(),
                    source,
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| RemoteError::Connect {
                    url: url.clone(),
                    source,
                })?;
        }
        let mut headers = Vec::new();
        for h in &cfg.headers {
            let invalid = |reason| RemoteError::InvalidHeader {
                variable: h.origin,
                reason,
            };
            let key: AsciiMetadataKey = h
                .name
                .parse()
                .map_err(|_| invalid("the name is not a valid gRPC metadata key"))?;
            let mut value: AsciiMetadataValue = h
                .value
                .expose()
                .parse()
                .map_err(|_| invalid("the value is not valid gRPC metadata"))?;
            value.set_sensitive(true);
            headers.push((key, value));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        let channel = {
            let _in_runtime = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Client {
            channel,
            headers: Headers(Arc::new(headers)),
            instance: cfg.instance_name.clone(),
            url,
            runtime,
        })
    }

    /// Runs one piece of async protocol work to completion on the client's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// One unary call, made again after a pause when the server answers `RESOURCE_EXHAUSTED`,
    /// up to [`EXHAUSTED_ATTEMPTS`] in all; any other answer is returned as it is.
    pub fn unary<T, F, Fut>(&self, mut call: F) -> Result<tonic::Response<T>, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut refused = 0;
        loop {
            match self.block_on(call()) {
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted
                        && self.pause_when_exhausted(&mut refused) => {}
                answer => return answer,
            }
        }
    }

    /// After the `refused`-th `RESOURCE_EXHAUSTED` answer to one call: pauses (longer each
    /// time) and says to make the call again, or, after [`EXHAUSTED_ATTEMPTS`] in all, says
    /// to give up. For the streaming calls, whose retries [`Client::unary`] cannot make.
    pub fn pause_when_exhausted(&self, refused: &mut u32) -> bool {
        *refused += 1;
        if *refused >= EXHAUSTED_ATTEMPTS {
            return false;
        }
        let pause = EXHAUSTED_FIRST_PAUSE * 2u32.pow(*refused - 1);
        let spread = rand::random::<u64>() % (pause.as_millis() as u64 / 2 + 1);
        std::thread::sleep(pause + std::time::Duration::from_millis(spread));
        true
    }

    pub fn instance_name(&self) -> &str {
        &self.instance
    }

    /// The server's address with any credentials removed, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The error for a failed call of `method`.
    pub fn rpc_error(&self, method: &'static str, status: tonic::Status) -> RemoteError {
        RemoteError::Rpc {
            method,
            url: self.url.clone(),
            source: Status::from(status),
        }
    }

    /// The channel with the configured headers, for clients declared outside this file
    /// ([`super::workers::BotsClient`]).
    pub fn transport(&self) -> Transport {
        InterceptedService::new(self.channel.clone(), self.headers.clone())
    }

    pub fn capabilities(&self) -> CapabilitiesClient<Transport> {
        CapabilitiesClient::new(self.transport())
    }

    pub fn cas(&self) -> ContentAddressableStorageClient<Transport> {
        ContentAddressableStorageClient::new(self.transport())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn action_cache(&self) -> ActionCacheClient<Transport> {
        ActionCacheClient::new(self.transport()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn execution(&self) -> ExecutionClient<Transport> {
        ExecutionClient::new(self.transport()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn bytestream(&self) -> ByteStreamClient<Transport> {
        ByteStreamClient::new(self.transport())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}
