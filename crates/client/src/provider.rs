//! The client of a provider's API (the provider daemon serves it at its registered `host_uri`): every request
//! is signed by the caller's key (see `tensorgrid_types::provider_api`), since a provider answers only the
//! owner of the lease or job a request names.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tensorgrid_types::channel::{ChannelId, Voucher};
use tensorgrid_types::inference::{
    ChannelTally, EmbeddingsRequest, EmbeddingsResponse, GenerateRequest, InferenceEvent,
};
use tensorgrid_types::job::JobId;
use tensorgrid_types::manifest::MappedDeployment;
use tensorgrid_types::market::LeaseId;
use tensorgrid_types::model::ModelOffer;
use tensorgrid_types::provider_api::{JobOutputs, JobStatus, LeaseStatus, RequestAuth};
use tensorgrid_types::{Hash, SecretKey};

use crate::rpc::RpcError;

/// A client of one provider's API, acting for one key.
#[derive(Clone)]
pub struct ProviderClient {
    base: String,
    key: SecretKey,
    http: reqwest::Client,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient").field("base", &self.base).field("as", &self.key.address()).finish()
    }
}

fn now_ms() -> u64 {
    crate::wall_clock().millis()
}

/// How long a provider may stay silent mid-request (no byte of an answer, a stream or a header).
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest line of a generation's event stream: a provider that sends more without a newline is cut off
/// instead of filling the client's memory.
pub const MAX_EVENT_LINE: usize = 1024 * 1024;

impl ProviderClient {
    /// A client of the provider whose API is at `base` (its on-chain `host_uri`), signing as `key`.
    pub fn new(base: impl Into<String>, key: SecretKey) -> ProviderClient {
        let base = base.into().trim_end_matches('/').to_string();
        // No limit on a whole exchange: a long generation streams for as long as it needs. What is limited
        // is silence: a provider that sends nothing for `READ_TIMEOUT` is given up on.
        let http = reqwest::Client::builder()
            .read_timeout(READ_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        ProviderClient { base, key, http }
    }

    /// A client that connects only to public addresses ([`crate::net::PublicOnly`]): for callers that take
    /// the address from someone else, as a gateway takes a provider's from the chain.
    pub fn public_only(base: impl Into<String>, key: SecretKey) -> ProviderClient {
        let base = base.into().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .read_timeout(READ_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .dns_resolver(crate::net::PublicOnly)
            .build()
            .unwrap_or_default();
        ProviderClient { base, key, http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Signs and sends a request; a non-success status becomes [`RpcError::Node`] with the provider's error.
    async fn start(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, RpcError> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let auth = RequestAuth::sign(&self.key, &self.base, method.as_str(), path, now_ms(), nonce, &body);
        let mut request = self.http.request(method, format!("{}{path}", self.base)).body(body);
        for (name, value) in auth.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
            let (code, message) = match serde_json::from_slice::<Value>(&bytes) {
                Ok(body) => (
                    body["error"]["code"].as_str().unwrap_or("http").to_string(),
                    body["error"]["message"].as_str().unwrap_or_default().to_string(),
                ),
                Err(_) => ("http".to_string(), String::from_utf8_lossy(&bytes).chars().take(300).collect()),
            };
            return Err(RpcError::Node { status: status.as_u16(), code, message, details: Value::Null });
        }
        Ok(response)
    }

    fn transport(&self, e: reqwest::Error) -> RpcError {
        RpcError::Transport { url: self.base.clone(), reason: e.to_string() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let response = self.start(method, path, body).await?;
        Ok(response.bytes().await.map_err(|e| self.transport(e))?.to_vec())
    }

    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T, RpcError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| RpcError::Decode { what: what.into(), reason: e.to_string() })?;
        let bytes = self.send(reqwest::Method::POST, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RpcError::Decode { what: what.into(), reason: e.to_string() })
    }

    /// The models the provider serves, as it offers them.
    pub async fn models(&self) -> Result<Vec<ModelOffer>, RpcError> {
        self.json("/v1/inference/models", "model offers").await
    }

    /// Starts a generation paid from `channel`: the provider's events, line by line, as they come. The request
    /// itself failing (bad model, no credit, …) is the outer error; a broken stream is an item's error.
    pub async fn generate(
        &self,
        channel: ChannelId,
        request: &GenerateRequest,
    ) -> Result<impl Stream<Item = Result<InferenceEvent, RpcError>> + Send + use<>, RpcError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| RpcError::Decode { what: "generate request".into(), reason: e.to_string() })?;
        let response =
            self.start(reqwest::Method::POST, &format!("/v1/inference/{channel}/generate"), body).await?;
        let url = self.base.clone();
        let bytes = response.bytes_stream();
        Ok(futures_util::stream::unfold(
            (bytes, Vec::<u8>::new(), url, false),
            |(mut bytes, mut buffer, url, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        if line.iter().all(|b| b.is_ascii_whitespace()) {
                            continue;
                        }
                        let item = serde_json::from_slice::<InferenceEvent>(&line).map_err(|e| {
                            RpcError::Decode { what: "inference event".into(), reason: e.to_string() }
                        });
                        return Some((item, (bytes, buffer, url, false)));
                    }
                    if buffer.len() > MAX_EVENT_LINE {
                        let error = RpcError::Transport {
                            url: url.clone(),
                            reason: format!("an event line longer than {MAX_EVENT_LINE} bytes"),
                        };
                        return Some((Err(error), (bytes, Vec::new(), url, true)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            let error = RpcError::Transport { url: url.clone(), reason: e.to_string() };
                            return Some((Err(error), (bytes, buffer, url, true)));
                        }
                        None if buffer.is_empty() => return None,
                        None => {
                            let error = RpcError::Transport {
                                url: url.clone(),
                                reason: "the stream ended in the middle of an event".into(),
                            };
                            return Some((Err(error), (bytes, Vec::new(), url, true)));
                        }
                    }
                }
            },
        ))
    }

    /// A tokenizer file by its hash (`GET /v1/tokenizers/{hash}`), at most `max_bytes`; the caller checks the
    /// bytes against the hash.
    pub async fn tokenizer(&self, hash: &Hash, max_bytes: usize) -> Result<Vec<u8>, RpcError> {
        let mut response =
            self.start(reqwest::Method::GET, &format!("/v1/tokenizers/{hash}"), Vec::new()).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > max_bytes {
                return Err(RpcError::Decode {
                    what: "tokenizer".into(),
                    reason: format!("more than {max_bytes} bytes"),
                });
            }
        }
        Ok(bytes)
    }

    /// Embeds texts, paid from `channel`.
    pub async fn embeddings(
        &self,
        channel: ChannelId,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, RpcError> {
        self.post_json(&format!("/v1/inference/{channel}/embeddings"), request, "embeddings").await
    }

    /// Hands the provider a voucher; it answers with its tally of the channel.
    pub async fn send_voucher(&self, voucher: &Voucher) -> Result<ChannelTally, RpcError> {
        self.post_json(&format!("/v1/inference/{}/vouchers", voucher.channel), voucher, "channel tally").await
    }

    /// The provider's tally of a channel: delivered, paid by voucher, redeemed.
    pub async fn channel_tally(&self, channel: ChannelId) -> Result<ChannelTally, RpcError> {
        self.json(&format!("/v1/inference/{channel}"), "channel tally").await
    }

    async fn json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, RpcError> {
        let bytes = self.send(reqwest::Method::GET, path, Vec::new()).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RpcError::Decode { what: what.into(), reason: e.to_string() })
    }

    /// `GET /v1/provider`: who the provider is, what it has free, and why it last declined to bid.
    pub async fn info(&self) -> Result<Value, RpcError> {
        self.json("/v1/provider", "provider info").await
    }

    /// Sends a lease's manifest (the mapped deployment); the provider checks it against the chain and starts
    /// the lease's workloads, answering with where they run.
    pub async fn send_manifest(
        &self,
        lease: &LeaseId,
        manifest: &MappedDeployment,
    ) -> Result<LeaseStatus, RpcError> {
        let body = serde_json::to_vec(manifest)
            .map_err(|e| RpcError::Decode { what: "manifest".into(), reason: e.to_string() })?;
        let bytes = self
            .send(reqwest::Method::PUT, &format!("/v1/leases/{}/{}/manifest", lease.dseq, lease.gseq), body)
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RpcError::Decode { what: "lease status".into(), reason: e.to_string() })
    }

    pub async fn lease_status(&self, lease: &LeaseId) -> Result<LeaseStatus, RpcError> {
        self.json(&format!("/v1/leases/{}/{}/status", lease.dseq, lease.gseq), "lease status").await
    }

    /// The last `tail` lines of each of the lease's service instances.
    pub async fn lease_logs(&self, lease: &LeaseId, tail: usize) -> Result<String, RpcError> {
        let bytes = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/leases/{}/{}/logs?tail={tail}", lease.dseq, lease.gseq),
                Vec::new(),
            )
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Uploads one of a job's module or input files; the provider checks it against `hash`.
    pub async fn upload(&self, job: JobId, hash: &Hash, bytes: Vec<u8>) -> Result<(), RpcError> {
        self.send(reqwest::Method::PUT, &format!("/v1/jobs/{job}/content/{hash}"), bytes).await.map(|_| ())
    }

    /// One of a job's module or input files, from a worker of the job, for a member of its referee committee.
    /// The caller checks the bytes against `hash`.
    pub async fn job_content(&self, job: JobId, hash: &Hash) -> Result<Vec<u8>, RpcError> {
        self.send(reqwest::Method::GET, &format!("/v1/jobs/{job}/content/{hash}"), Vec::new()).await
    }

    pub async fn job_status(&self, job: JobId) -> Result<JobStatus, RpcError> {
        self.json(&format!("/v1/jobs/{job}/status"), "job status").await
    }

    /// What a finished job produced (stdout, stderr, the list of output files).
    pub async fn job_outputs(&self, job: JobId) -> Result<JobOutputs, RpcError> {
        self.json(&format!("/v1/jobs/{job}/outputs"), "job outputs").await
    }

    /// One output file's bytes (`path` as [`JobOutputs`] lists it).
    pub async fn job_file(&self, job: JobId, path: &str) -> Result<Vec<u8>, RpcError> {
        let encoded: String = path
            .split('/')
            .map(|segment| {
                segment
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        other => format!("%{other:02X}"),
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("/");
        self.send(reqwest::Method::GET, &format!("/v1/jobs/{job}/files/{encoded}"), Vec::new()).await
    }
}
