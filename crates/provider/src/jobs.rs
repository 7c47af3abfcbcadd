//! Job effects as the daemon carries them out: waiting for the client's upload, the runner's check of the
//! module, the sandboxed run, and the files a job leaves (`<work_dir>/jobs/<id>/`: the record the core
//! persists before it commits, and the outputs the client downloads). What happens when is the core's
//! business (`tensorgrid_provider_core`); this module only does it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tensorgrid_provider_core::{Input, RunSpec, RunSummary};
use tensorgrid_runner::{prepare_inputs, JobRun, RunOutput};
use tensorgrid_types::job::{JobId, WorkloadKind};
use tensorgrid_types::provider_api::{JobOutputs, OutputFile};
use tensorgrid_types::{Hash, Timestamp};

pub use tensorgrid_provider_core::JobRecord;

use crate::interpreter::dispatch;
use crate::Shared;

pub fn job_dir(shared: &Shared, job: JobId) -> PathBuf {
    shared.config.work_dir.join("jobs").join(job.to_string())
}

fn record_path(shared: &Shared, job: JobId) -> PathBuf {
    job_dir(shared, job).join("record.json")
}

pub fn load_record(shared: &Shared, job: JobId) -> Option<JobRecord> {
    let bytes = std::fs::read(record_path(shared, job)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every record kept on disk, for the core to finish after a restart.
pub fn load_records(shared: &Shared) -> Vec<JobRecord> {
    let Ok(entries) = std::fs::read_dir(shared.config.work_dir.join("jobs")) else {
        return Vec::new();
    };
    let mut records: Vec<JobRecord> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<JobId>().ok()))
        .filter_map(|id| load_record(shared, id))
        .filter(|record| !record.revealed)
        .collect();
    records.sort_by_key(|r| r.job);
    records
}

/// Writes the record whole or not at all (a temporary file renamed over the old one).
pub fn save_record(shared: &Shared, record: &JobRecord) -> std::io::Result<()> {
    let path = record_path(shared, record.job);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, serde_json::to_vec_pretty(record).unwrap_or_default())?;
    std::fs::rename(temporary, path)
}

/// Waits until every hash is in the content store (the client uploads them), at the latest until `until`.
/// A referee also asks the job's workers for what is missing, every few seconds.
pub async fn await_content(shared: Arc<Shared>, job: JobId, hashes: Vec<Hash>, until: Timestamp) {
    let mut asked = std::time::Instant::now();
    loop {
        if hashes.iter().all(|h| shared.content.has(h)) {
            return dispatch(&shared, Input::ContentArrived { job });
        }
        if asked.elapsed() >= Duration::from_secs(3) {
            asked = std::time::Instant::now();
            fetch_from_workers(&shared, job, &hashes).await;
            continue;
        }
        if crate::now() >= until {
            let mut salt = [0u8; 32];
            OsRng.fill_bytes(&mut salt);
            return dispatch(&shared, Input::ContentMissing { job, salt });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For a job this provider referees: asks each of its workers for content still missing, keeping what hashes
/// right. Workers are reached at their registered URIs, which must be public unless `limits.private_peers`.
async fn fetch_from_workers(shared: &Shared, job: JobId, hashes: &[Hash]) {
    let workers: Vec<tensorgrid_types::Address> = {
        let core = shared.core.lock();
        match core.job(job) {
            Some(entry) if entry.referee.is_some() => {
                entry.job.slots.iter().filter(|s| s.result.is_some()).map(|s| s.provider).collect()
            }
            _ => return,
        }
    };
    for worker in workers {
        let Ok(Some(record)) = shared.chain.client.provider(&worker).await else { continue };
        let client = shared.chain.provider_client(&record.host_uri, shared.config.limits.private_peers);
        for hash in hashes.iter().filter(|h| !shared.content.has(h)) {
            match client.job_content(job, hash).await {
                Ok(bytes) => {
                    if let Err(e) = shared.content.put(hash, &bytes) {
                        tracing::warn!(job, %worker, "content {hash} from a worker was refused: {e}");
                    }
                }
                Err(e) => tracing::debug!(job, %worker, "asking a worker for content {hash}: {e}"),
            }
        }
    }
}

/// The runner's check of the module: it compiles, every import links, it has an entry point.
pub async fn check_module(
    shared: Arc<Shared>,
    job: JobId,
    kind: WorkloadKind,
    runtime: String,
    module: Hash,
) {
    let result = match shared.runner(kind, &runtime) {
        None => Err(format!("no runner for `{runtime}`")),
        Some(runner) => {
            let path = shared.content.path(&module);
            match tokio::task::spawn_blocking(move || runner.check(&path)).await {
                Ok(checked) => checked.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the runner task failed: {e}")),
            }
        }
    };
    dispatch(&shared, Input::ModuleChecked { job, result });
}

/// Runs the job in its sandbox and reports the result with a fresh salt for the commitment.
pub async fn run(shared: Arc<Shared>, spec: RunSpec) {
    let result = run_inner(&shared, &spec).await;
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    dispatch(&shared, Input::RunFinished { job: spec.job, result, salt });
}

async fn run_inner(shared: &Shared, spec: &RunSpec) -> Result<RunSummary, String> {
    let id = spec.job;
    let runner =
        shared.runner(spec.kind, &spec.runtime).ok_or_else(|| format!("no runner for `{}`", spec.runtime))?;
    let run_dir = job_dir(shared, id).join("run");
    let inputs: Vec<PathBuf> = spec.inputs.iter().map(|h| shared.content.path(h)).collect();
    prepare_inputs(&run_dir, &inputs).map_err(|e| e.to_string())?;
    let run = JobRun {
        job: id,
        module: shared.content.path(&spec.module),
        args: spec.args.clone(),
        dir: run_dir,
        max_fuel: spec.max_fuel,
        memory_bytes: spec.memory_bytes,
        wall_timeout: Duration::from_millis(spec.wall_timeout_ms),
        clock_ms: spec.clock_ms,
        seed: spec.seed,
    };
    let output = tokio::task::spawn_blocking(move || runner.run(&run))
        .await
        .map_err(|e| format!("the runner task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    save_outputs(shared, id, &output).map_err(|e| format!("saving the outputs: {e}"))?;
    Ok(RunSummary { result_hash: output.result_hash, exit: output.exit, fuel_used: output.fuel_used })
}

/// Keeps stdout, stderr and the list of output files for the client (`GET /v1/jobs/{id}/outputs`).
fn save_outputs(shared: &Shared, id: JobId, output: &RunOutput) -> std::io::Result<()> {
    let outputs = JobOutputs {
        job: id,
        result_hash: output.result_hash,
        exit: output.exit,
        stdout_hex: hex::encode(&output.stdout),
        stderr_hex: hex::encode(&output.stderr),
        files: output
            .outputs
            .iter()
            .map(|(path, bytes)| OutputFile {
                path: path.clone(),
                size: bytes.len() as u64,
                hash: Hash::of(bytes),
            })
            .collect(),
    };
    std::fs::write(
        job_dir(shared, id).join("outputs.json"),
        serde_json::to_vec_pretty(&outputs).unwrap_or_default(),
    )
}

pub fn load_outputs(shared: &Shared, id: JobId) -> Option<JobOutputs> {
    let bytes = std::fs::read(job_dir(shared, id).join("outputs.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}
