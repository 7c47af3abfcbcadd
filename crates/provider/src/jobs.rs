//! The job worker: bid on jobs the engine accepts, and for each job this provider is assigned, wait for the
//! client's upload of the module and inputs, run it, commit to the result hash, reveal it when the reveal
//! phase opens, and keep the outputs for the client to download.
//!
//! What must survive a restart (the salt behind a commitment, the result) is written to the job's directory
//! before the commitment goes on chain, so a restarted daemon can still reveal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use tensorgrid_runner::{prepare_inputs, JobRun, RunOutput};
use tensorgrid_types::job::{result_commitment, Job, JobExit, JobId, JobState, SlotState};
use tensorgrid_types::provider_api::{JobOutputs, JobRunState, OutputFile};
use tensorgrid_types::{Event, Hash, Msg};
use tracing::{info, warn};

use tensorgrid_provider_core::QuotedWork;

use crate::bidding::COMMIT_MARGIN;
use crate::{JobView, Shared};

/// What is kept on disk about a job this provider ran (`<work_dir>/jobs/<id>/record.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: JobId,
    pub result_hash: Hash,
    /// The commitment's salt, hex; revealed only in the reveal transaction.
    pub salt: String,
    pub exit: JobExit,
    pub fuel_used: u64,
    pub committed: bool,
    pub revealed: bool,
}

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

fn save_record(shared: &Shared, record: &JobRecord) -> std::io::Result<()> {
    let path = record_path(shared, record.job);
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, serde_json::to_vec_pretty(record).unwrap_or_default())?;
    std::fs::rename(temporary, path)
}

/// Decides on a job in its bidding window and bids if the engine says so.
pub async fn consider(shared: Arc<Shared>, job: Job) {
    if job.state != JobState::Bidding || job.live_bids.iter().any(|b| b.provider == shared.address()) {
        return;
    }
    let id = job.id;
    let Some(price) = crate::bidding::decide(&shared, QuotedWork::Job { job }, crate::now()).await else {
        return;
    };
    match shared.chain.execute(Msg::BidJob { job: id, price }).await {
        Ok(record) => info!(job = id, %price, height = record.height, "bid on job"),
        Err(e) => warn!(job = id, error = %e, "bidding on a job failed"),
    }
}

fn set_state(shared: &Shared, job: JobId, state: JobRunState) {
    if let Some(view) = shared.jobs.lock().get_mut(&job) {
        view.state = state;
    }
}

/// Runs an assigned job to its commitment. Errors are logged and recorded in the job's state: the chain
/// replaces a provider that does not commit in time, so giving up is safe.
pub async fn run_assigned(shared: Arc<Shared>, id: JobId) {
    if let Err(reason) = run_assigned_inner(&shared, id).await {
        warn!(job = id, %reason, "job failed on this provider");
        set_state(&shared, id, JobRunState::Failed { reason });
    }
}

/// Resources a running job holds, given back when the run ends however it ends.
struct Held<'a> {
    shared: &'a Shared,
    units: tensorgrid_types::resources::ResourceUnits,
}

impl<'a> Held<'a> {
    fn take(shared: &'a Shared, units: &tensorgrid_types::resources::ResourceUnits) -> Held<'a> {
        shared.reserved.lock().add(units, 1);
        Held { shared, units: units.clone() }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.shared.reserved.lock().remove(&self.units, 1);
    }
}

async fn run_assigned_inner(shared: &Arc<Shared>, id: JobId) -> Result<(), String> {
    let job = shared
        .chain
        .client
        .job(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {id} is not on chain"))?;
    let me = shared.address();
    let Some(slot) = job.slots.iter().find(|s| s.provider == me && s.state.is_live()) else {
        return Err("this provider holds no live slot of the job".into());
    };
    let slot_state = slot.state;
    // After a restart past the confirmation the slot on chain already names its deadline.
    let mut commit_deadline = slot.commit_deadline;
    let _held = Held::take(shared, &job.spec.resources);
    if let Some(record) = load_record(shared, id) {
        // A restart after the run: the result is on disk; finish what is left.
        shared.jobs.lock().insert(id, view_of(&job, finished(&record)));
        return commit_and_reveal(shared, &job, record).await;
    }
    let content = job.spec.content();
    shared.jobs.lock().insert(
        id,
        JobView { client: job.client, content: content.clone(), state: JobRunState::WaitingForContent },
    );
    let runner = shared
        .runner(job.spec.workload.kind, &job.spec.workload.runtime)
        .ok_or_else(|| format!("no runner for `{}`", job.spec.workload.runtime))?;
    if slot_state == SlotState::AwaitingContent {
        info!(job = id, "assigned; waiting for the client's upload");
        // Nothing is confirmed before everything arrived and the module proved runnable: until the
        // confirmation this provider can walk away at no cost, after it a missed commitment costs the deposit.
        let wait_until = crate::now()
            .plus(shared.config.limits.content_timeout.as_millis() as u64)
            .min(slot.content_deadline);
        while !content.iter().all(|h| shared.content.has(h)) {
            if crate::now() >= wait_until {
                return Err(format!(
                    "the module and inputs did not all arrive by {wait_until}; the slot lapses at no cost"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let module = shared.content.path(&job.spec.workload.hash);
        let checker = runner.clone();
        tokio::task::spawn_blocking(move || checker.check(&module))
            .await
            .map_err(|e| format!("the runner task failed: {e}"))?
            .map_err(|e| format!("not confirming: {e}"))?;
        let confirmed = shared
            .chain
            .execute(Msg::ConfirmJobContent { job: id })
            .await
            .map_err(|e| format!("confirming the content: {e}"))?;
        commit_deadline = confirmed.receipt.events.iter().find_map(|e| match e {
            Event::JobStarted { job, provider, commit_deadline } if *job == id && *provider == me => {
                Some(*commit_deadline)
            }
            _ => None,
        });
        info!(job = id, "content confirmed on chain");
    }
    let commit_deadline = commit_deadline.ok_or("the slot has no commit deadline after its confirmation")?;
    set_state(shared, id, JobRunState::Running);
    let dir = job_dir(shared, id);
    let run_dir = dir.join("run");
    let inputs: Vec<PathBuf> = job.spec.inputs.iter().map(|h| shared.content.path(h)).collect();
    prepare_inputs(&run_dir, &inputs).map_err(|e| e.to_string())?;
    // Leave a margin before the commit deadline for the commitment to reach a block.
    let left = Duration::from_millis(commit_deadline.since(crate::now())).saturating_sub(COMMIT_MARGIN);
    let run = JobRun {
        job: id,
        module: shared.content.path(&job.spec.workload.hash),
        args: job.spec.workload.args.clone(),
        dir: run_dir,
        max_fuel: job.spec.max_fuel,
        memory_bytes: job.spec.resources.memory_bytes,
        wall_timeout: shared.config.limits.job_wall_timeout.min(left),
        clock_ms: job.created_at.millis(),
        seed: job_seed(&job),
    };
    let output = tokio::task::spawn_blocking(move || runner.run(&run))
        .await
        .map_err(|e| format!("the runner task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    info!(job = id, exit = ?output.exit, fuel = output.fuel_used, result = %output.result_hash, "ran");
    save_outputs(shared, id, &output).map_err(|e| format!("saving the outputs: {e}"))?;
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    let record = JobRecord {
        job: id,
        result_hash: output.result_hash,
        salt: hex::encode(salt),
        exit: output.exit,
        fuel_used: output.fuel_used,
        committed: false,
        revealed: false,
    };
    save_record(shared, &record).map_err(|e| format!("saving the job record: {e}"))?;
    set_state(shared, id, finished(&record));
    commit_and_reveal(shared, &job, record).await
}

/// The seed of a job's randomness: the same for every provider of the job, fixed by the chain.
fn job_seed(job: &Job) -> Hash {
    Hash::of_parts(&[
        b"tensorgrid/job-seed",
        &job.id.to_le_bytes(),
        job.client.as_bytes(),
        &job.created_at.millis().to_le_bytes(),
    ])
}

fn finished(record: &JobRecord) -> JobRunState {
    JobRunState::Finished { result_hash: record.result_hash, exit: record.exit, fuel_used: record.fuel_used }
}

pub(crate) fn view_of(job: &Job, state: JobRunState) -> JobView {
    JobView { client: job.client, content: job.spec.content(), state }
}

fn salt_of(record: &JobRecord) -> Result<[u8; 32], String> {
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&record.salt, &mut salt)
        .map_err(|_| "the job record's salt is corrupt".to_string())?;
    Ok(salt)
}

async fn commit_and_reveal(shared: &Arc<Shared>, job: &Job, mut record: JobRecord) -> Result<(), String> {
    let me = shared.address();
    let salt = salt_of(&record)?;
    if !record.committed {
        let commitment = result_commitment(&record.result_hash, &me, &salt);
        shared
            .chain
            .execute(Msg::CommitResult { job: job.id, commitment })
            .await
            .map_err(|e| format!("committing: {e}"))?;
        record.committed = true;
        save_record(shared, &record).map_err(|e| e.to_string())?;
        info!(job = job.id, "committed");
    }
    reveal_if_due(shared, job.id).await
}

/// Reveals this provider's result if the job is in its reveal phase and it has not revealed yet.
pub async fn reveal_if_due(shared: &Arc<Shared>, id: JobId) -> Result<(), String> {
    let Some(mut record) = load_record(shared, id) else {
        return Ok(());
    };
    if !record.committed || record.revealed {
        return Ok(());
    }
    let job = shared.chain.client.job(id).await.map_err(|e| e.to_string())?.ok_or("the job vanished")?;
    if job.state != JobState::Revealing {
        return Ok(());
    }
    let salt = salt_of(&record)?;
    shared
        .chain
        .execute(Msg::RevealResult { job: id, result_hash: record.result_hash, salt })
        .await
        .map_err(|e| format!("revealing: {e}"))?;
    record.revealed = true;
    save_record(shared, &record).map_err(|e| e.to_string())?;
    info!(job = id, result = %record.result_hash, "revealed");
    Ok(())
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
