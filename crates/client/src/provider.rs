//! The client of a provider's API (the provider daemon serves it at its registered `host_uri`): every request
//! is signed by the caller's key (see `tensorgrid_types::provider_api`), since a provider answers only the
//! owner of the lease or job a request names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tensorgrid_types::job::JobId;
use tensorgrid_types::manifest::MappedDeployment;
use tensorgrid_types::market::LeaseId;
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
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl ProviderClient {
    /// A client of the provider whose API is at `base` (its on-chain `host_uri`), signing as `key`.
    pub fn new(base: impl Into<String>, key: SecretKey) -> ProviderClient {
        let base = base.into().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        ProviderClient { base, key, http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let auth = RequestAuth::sign(&self.key, method.as_str(), path, now_ms(), nonce, &body);
        let mut request = self.http.request(method, format!("{}{path}", self.base)).body(body);
        for (name, value) in auth.headers() {
            request = request.header(name, value);
        }
        let transport =
            |e: reqwest::Error| RpcError::Transport { url: self.base.clone(), reason: e.to_string() };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<Value>(&bytes) {
                Ok(body) => (
                    body["error"]["code"].as_str().unwrap_or("http").to_string(),
                    body["error"]["message"].as_str().unwrap_or_default().to_string(),
                ),
                Err(_) => ("http".to_string(), String::from_utf8_lossy(&bytes).chars().take(300).collect()),
            };
            return Err(RpcError::Node { status: status.as_u16(), code, message, details: Value::Null });
        }
        Ok(bytes.to_vec())
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
