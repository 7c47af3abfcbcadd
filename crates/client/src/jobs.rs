//! A job client's side of the content exchange: upload a job's module and inputs to a provider it was
//! assigned to, and download a finished job's outputs, checked against the result hash the providers revealed
//! on chain (so a provider cannot hand back anything but what it committed to).

use tensorgrid_types::job::{result_hash, Job, JobId};
use tensorgrid_types::provider_api::JobOutputs;
use tensorgrid_types::{Address, Hash, SecretKey};

use crate::provider::ProviderClient;
use crate::rpc::{RpcClient, RpcError};

#[derive(Debug, thiserror::Error)]
pub enum JobClientError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("{0} is not a registered provider")]
    NotAProvider(Address),
    #[error("the outputs {provider} served hash to {got}, not the result {expected} it revealed")]
    HashMismatch { provider: String, got: Hash, expected: Hash },
    #[error("the outputs {provider} served are malformed: {reason}")]
    BadOutputs { provider: String, reason: String },
    #[error("no provider of job {job} revealed {result}")]
    NoProvider { job: JobId, result: Hash },
}

/// The API of a registered provider, acting as `key`.
async fn provider_api(
    rpc: &RpcClient,
    key: &SecretKey,
    provider: &Address,
) -> Result<ProviderClient, JobClientError> {
    let info = rpc.provider(provider).await?.ok_or(JobClientError::NotAProvider(*provider))?;
    Ok(ProviderClient::new(info.host_uri, key.clone()))
}

/// Uploads each `(hash, bytes)` of a job's content to `provider`.
pub async fn upload(
    rpc: &RpcClient,
    key: &SecretKey,
    job: JobId,
    provider: &Address,
    content: &[(Hash, Vec<u8>)],
) -> Result<(), JobClientError> {
    let api = provider_api(rpc, key, provider).await?;
    for (hash, bytes) in content {
        api.upload(job, hash, bytes.clone()).await?;
    }
    Ok(())
}

/// A finished job's outputs, as the result hash covers them.
#[derive(Clone, Debug)]
pub struct Downloaded {
    pub outputs: JobOutputs,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output files by relative path, sorted.
    pub files: Vec<(String, Vec<u8>)>,
    /// The provider they came from.
    pub provider: Address,
}

/// Downloads a job's outputs from a provider that revealed `agreed`, trying each such provider until one
/// serves outputs that hash to it.
pub async fn download(
    rpc: &RpcClient,
    key: &SecretKey,
    job: &Job,
    agreed: Hash,
) -> Result<Downloaded, JobClientError> {
    let mut last = None;
    for slot in job.slots.iter().filter(|s| s.result == Some(agreed)) {
        match download_from(rpc, key, job.id, &slot.provider, agreed).await {
            Ok(done) => return Ok(done),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(JobClientError::NoProvider { job: job.id, result: agreed }))
}

async fn download_from(
    rpc: &RpcClient,
    key: &SecretKey,
    job: JobId,
    provider: &Address,
    agreed: Hash,
) -> Result<Downloaded, JobClientError> {
    let api = provider_api(rpc, key, provider).await?;
    let bad =
        |reason: &str| JobClientError::BadOutputs { provider: api.base().to_string(), reason: reason.into() };
    let outputs = api.job_outputs(job).await?;
    let stdout = hex::decode(&outputs.stdout_hex).map_err(|_| bad("stdout is not hex"))?;
    let stderr = hex::decode(&outputs.stderr_hex).map_err(|_| bad("stderr is not hex"))?;
    let mut files = Vec::with_capacity(outputs.files.len());
    for file in &outputs.files {
        // Paths name files inside the job's output directory; anything else is refused before it is written
        // anywhere.
        if file.path.is_empty()
            || file.path.starts_with('/')
            || file.path.split('/').any(|c| c.is_empty() || c == "..")
        {
            return Err(bad(&format!("output path `{}` leaves the output directory", file.path)));
        }
        files.push((file.path.clone(), api.job_file(job, &file.path).await?));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let got = result_hash(&outputs.exit, &stdout, &stderr, &files);
    if got != agreed {
        return Err(JobClientError::HashMismatch { provider: api.base().to_string(), got, expected: agreed });
    }
    Ok(Downloaded { outputs, stdout, stderr, files, provider: *provider })
}
