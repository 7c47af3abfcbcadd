//! The provider API (axum), served at the provider's registered `host_uri`:
//!
//! - `GET /v1/provider` (open to anyone): who the provider is, its capacity and its recent bid decisions with
//!   the reasons it declined.
//! - `PUT /v1/jobs/{id}/content/{hash}`: the job's client uploads the module or an input; the bytes must hash
//!   to `hash` and `hash` must be one the job names.
//! - `GET /v1/jobs/{id}/status`, `GET /v1/jobs/{id}/outputs`, `GET /v1/jobs/{id}/files/{path}`: what the
//!   provider did with the job, and what it produced.
//!
//! - `PUT /v1/leases/{dseq}/{gseq}/manifest`: the lease's owner sends the deployment's manifest (the mapped
//!   deployment as JSON); it must hash to what the deployment was created with, and its group must be the
//!   order's; then the workloads start.
//! - `GET /v1/leases/{dseq}/{gseq}/status`, `GET /v1/leases/{dseq}/{gseq}/logs?tail=N`: what runs, where it
//!   answers, and its output.
//!
//! Every request but the first must be signed by the job's client or the lease's owner (`tensorgrid_types::provider_api`): a bad
//! or missing signature is 401, a replayed or stale one too, and a valid signature from anyone else is 403
//! with nothing about the job. Errors are `{"error": {"code", "message"}}` like the node's.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use tensorgrid_types::job::JobId;
use tensorgrid_types::manifest::MappedDeployment;
use tensorgrid_types::market::LeaseId;
use tensorgrid_types::provider_api::{JobRunState, JobStatus, LeaseStatus};
use tensorgrid_types::{Address, Hash};

use crate::content::PutError;
use crate::http::{ApiError, Signed};
use crate::leases::{self, ManifestError};
use crate::{jobs, JobView, Shared};

pub fn router(shared: Arc<Shared>) -> Router {
    let limit = usize::try_from(shared.config.limits.max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/provider", get(info))
        .route("/v1/jobs/{id}/content/{hash}", put(upload).get(serve_content))
        .route("/v1/jobs/{id}/status", get(job_status))
        .route("/v1/jobs/{id}/outputs", get(job_outputs))
        .route("/v1/jobs/{id}/files/{*path}", get(job_file))
        .route("/v1/leases/{dseq}/{gseq}/manifest", put(send_manifest))
        .route("/v1/leases/{dseq}/{gseq}/status", get(lease_status))
        .route("/v1/leases/{dseq}/{gseq}/logs", get(lease_logs))
        .merge(inference_routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

#[cfg(feature = "llm")]
fn inference_routes() -> Router<Arc<Shared>> {
    use crate::inference;
    use axum::routing::post;
    Router::new()
        .route("/v1/inference/models", get(inference::models))
        .route("/v1/tokenizers/{hash}", get(inference::tokenizer))
        .route("/v1/inference/{channel}", get(inference::tally))
        .route("/v1/inference/{channel}/vouchers", post(inference::voucher))
        .route("/v1/inference/{channel}/generate", post(inference::generate))
        .route("/v1/inference/{channel}/embeddings", post(inference::embeddings))
}

#[cfg(not(feature = "llm"))]
fn inference_routes() -> Router<Arc<Shared>> {
    Router::new()
}

fn chain_unavailable(e: tensorgrid_client::RpcError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "chain_unavailable",
        format!("the provider cannot read the chain: {e}"),
    )
}

/// The job's view, if `signer` is its client and this provider holds a slot of it. Anyone else learns only
/// that the job is not theirs here.
async fn job_for(shared: &Arc<Shared>, id: JobId, signer: Address) -> Result<JobView, ApiError> {
    let forbidden = || {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("job {id} is not yours on this provider"))
    };
    if let Some(view) = shared.job(id) {
        return if view.client == signer { Ok(view) } else { Err(forbidden()) };
    }
    // The chain may have assigned the job before the daemon read that block: ask it.
    let job = shared.chain.client.job(id).await.map_err(chain_unavailable)?.ok_or_else(forbidden)?;
    if job.client != signer {
        return Err(forbidden());
    }
    let me = shared.address();
    if !job.slots.iter().any(|s| s.provider == me && s.state.is_live()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_assigned",
            format!("this provider holds no slot of job {id}"),
        ));
    }
    Ok(JobView { client: job.client, content: job.spec.content(), state: JobRunState::WaitingForContent })
}

async fn info(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let (situation, capacity, decisions, no_bids) = {
        let core = shared.core.lock();
        (core.situation(), core.capacity().clone(), core.decisions(), core.no_bids())
    };
    let recent: Vec<_> = decisions.iter().rev().take(20).collect();
    let no_bids: Vec<_> = no_bids.into_iter().rev().take(20).collect();
    Json(json!({
        "address": shared.address(),
        "host_uri": shared.config.host_uri,
        "attributes": situation.attributes,
        "capacity": capacity,
        "free": situation.free,
        "active_jobs": situation.active_jobs,
        "runtimes": situation.runtimes,
        "recent_decisions": recent,
        "no_bid_reasons": no_bids,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path((id, hash)): Path<(JobId, String)>,
    signed: Signed,
) -> Result<StatusCode, ApiError> {
    let (signer, body) = (signed.signer, signed.body);
    let view = job_for(&shared, id, signer).await?;
    let hash: Hash = hash.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", format!("`{hash}` is not a content hash"))
    })?;
    if !view.content.contains(&hash) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_job_content",
            format!("job {id} names no module or input with hash {hash}"),
        ));
    }
    match shared.content.put(&hash, &body) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ PutError::Mismatch { .. }) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "hash_mismatch", e.to_string()))
        }
        Err(PutError::Io(e)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))
        }
    }
}

/// A job's module or input, served to a member of the job's referee committee: the client must serve its
/// content to referees, and workers that hold it serve it too, so a referee can re-run the job even when the
/// client is slow. Only a member of the job's current committee is served, only content the job names.
async fn serve_content(
    State(shared): State<Arc<Shared>>,
    Path((id, hash)): Path<(JobId, String)>,
    signed: Signed,
) -> Result<Vec<u8>, ApiError> {
    let signer = signed.signer;
    let hash: Hash = hash.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", format!("`{hash}` is not a content hash"))
    })?;
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("only a member of job {id}'s referee committee is served its content"),
        )
    };
    let job = shared.chain.client.job(id).await.map_err(chain_unavailable)?.ok_or_else(forbidden)?;
    let committee = match (job.state, job.checks.last()) {
        (tensorgrid_types::job::JobState::Refereeing, Some(committee)) => *committee,
        _ => return Err(forbidden()),
    };
    let committee =
        shared.chain.client.committee(committee).await.map_err(chain_unavailable)?.ok_or_else(forbidden)?;
    if !committee.seats.iter().any(|s| s.provider == signer) {
        return Err(forbidden());
    }
    if !job.spec.content().contains(&hash) || !shared.content.has(&hash) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_content",
            format!("this provider holds no content {hash} of job {id}"),
        ));
    }
    std::fs::read(shared.content.path(&hash))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))
}

async fn job_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<JobId>,
    signed: Signed,
) -> Result<Json<JobStatus>, ApiError> {
    let signer = signed.signer;
    let view = job_for(&shared, id, signer).await?;
    let missing = view.content.iter().filter(|h| !shared.content.has(h)).copied().collect();
    Ok(Json(JobStatus { job: id, missing, state: view.state }))
}

async fn job_outputs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<JobId>,
    signed: Signed,
) -> Result<Json<tensorgrid_types::provider_api::JobOutputs>, ApiError> {
    let signer = signed.signer;
    job_for(&shared, id, signer).await?;
    jobs::load_outputs(&shared, id).map(Json).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_outputs", format!("job {id} has not finished here"))
    })
}

async fn job_file(
    State(shared): State<Arc<Shared>>,
    Path((id, path)): Path<(JobId, String)>,
    signed: Signed,
) -> Result<Vec<u8>, ApiError> {
    let signer = signed.signer;
    job_for(&shared, id, signer).await?;
    let outputs = jobs::load_outputs(&shared, id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_outputs", format!("job {id} has not finished here"))
    })?;
    // Only paths the result lists are served, so no request can walk out of the output directory.
    if !outputs.files.iter().any(|f| f.path == path) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_output",
            format!("job {id} has no output `{path}`"),
        ));
    }
    let file = jobs::job_dir(&shared, id).join("run").join("out").join(&path);
    std::fs::read(&file)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))
}

/// The lease `dseq/gseq` to this provider, if `signer` owns it; anyone else learns only that it is not theirs.
async fn lease_for(shared: &Arc<Shared>, dseq: u64, gseq: u32, signer: Address) -> Result<LeaseId, ApiError> {
    let lease = LeaseId { dseq, gseq, provider: shared.address() };
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("lease {dseq}/{gseq} is not yours on this provider"),
        )
    };
    let on_chain =
        shared.chain.client.lease(lease).await.map_err(chain_unavailable)?.ok_or_else(forbidden)?;
    if on_chain.owner != signer {
        return Err(forbidden());
    }
    Ok(lease)
}

async fn send_manifest(
    State(shared): State<Arc<Shared>>,
    Path((dseq, gseq)): Path<(u64, u32)>,
    signed: Signed,
) -> Result<Json<LeaseStatus>, ApiError> {
    let (signer, body) = (signed.signer, signed.body);
    let lease = lease_for(&shared, dseq, gseq, signer).await?;
    let manifest: MappedDeployment = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_manifest",
            format!("the manifest is not a mapped deployment: {e}"),
        )
    })?;
    leases::deploy(&shared, lease, manifest).await.map(Json).map_err(|e| {
        let (status, code) = match &e {
            ManifestError::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "manifest_mismatch"),
            ManifestError::ExceedsGroup(_) => (StatusCode::BAD_REQUEST, "exceeds_group"),
            ManifestError::NoGroup(_) | ManifestError::GroupMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "manifest_mismatch")
            }
            ManifestError::NotActive(_) => (StatusCode::CONFLICT, "lease_not_active"),
            ManifestError::NoRuntime => (StatusCode::NOT_IMPLEMENTED, "no_container_runtime"),
            ManifestError::Chain(_) => (StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable"),
            ManifestError::Start(_) => (StatusCode::UNPROCESSABLE_ENTITY, "start_failed"),
        };
        ApiError::new(status, code, e.to_string())
    })
}

async fn lease_status(
    State(shared): State<Arc<Shared>>,
    Path((dseq, gseq)): Path<(u64, u32)>,
    signed: Signed,
) -> Result<Json<LeaseStatus>, ApiError> {
    let signer = signed.signer;
    let lease = lease_for(&shared, dseq, gseq, signer).await?;
    Ok(Json(leases::status(&shared, lease).await))
}

#[derive(Debug, serde::Deserialize)]
struct Tail {
    tail: Option<usize>,
}

async fn lease_logs(
    State(shared): State<Arc<Shared>>,
    Path((dseq, gseq)): Path<(u64, u32)>,
    axum::extract::Query(query): axum::extract::Query<Tail>,
    signed: Signed,
) -> Result<String, ApiError> {
    let signer = signed.signer;
    let lease = lease_for(&shared, dseq, gseq, signer).await?;
    let runner = shared.lease_runner.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "no_container_runtime", "this provider runs no containers")
    })?;
    runner
        .logs(&leases::key(&lease), query.tail.unwrap_or(200).min(10_000))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "logs", e.to_string()))
}
