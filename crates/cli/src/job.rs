//! `tgrid job …`: one-shot jobs. The module and inputs stay on this machine, addressed by blake3; the chain
//! gets their hashes, the budget and the deadlines, and the client uploads the bytes to each provider the job
//! is assigned to (the provider API is the content store in this round). A job's local record (which files
//! have which hashes) is kept in `<home>/jobs/<id>.json` so later commands (`job status --wait`) can upload.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tensorgrid_types::committee::{Committee, CommitteePhase, SeatState};
use tensorgrid_types::job::{
    Job as OnChain, JobId, JobRequirements, JobSpec, JobState, SlotState, Workload, WorkloadKind,
};
use tensorgrid_types::resources::ResourceUnits;
use tensorgrid_types::{Amount, Hash, Msg, Timestamp};

use crate::ctx::{tgr, Ctx, NotFound};
use crate::{emit_line, print_json, Output};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// A WASI module, run under fuel metering.
    Wasm,
    /// An OCI image archive, run once to completion.
    Container,
    /// A JSONL file of inference requests.
    InferenceBatch,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Job {
    /// Post a job: k providers bid in a short window, the k cheapest run it, commit to a result hash and
    /// reveal it; agreeing results are paid from the budget, the rest comes back.
    Submit {
        /// The module (or image archive, or batch file) to run.
        module: PathBuf,
        /// An input file (repeat for more); providers see it by its blake3 hash.
        #[arg(long = "input")]
        inputs: Vec<PathBuf>,
        /// Arguments passed to the module.
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// The total for all k providers; each bid may be at most budget / k.
        #[arg(long)]
        budget: Amount,
        /// How many providers run the job independently (k).
        #[arg(long, short = 'k', default_value_t = 1)]
        redundancy: u8,
        #[arg(long, value_enum, default_value_t = Kind::Wasm)]
        kind: Kind,
        /// The runtime and its version the module needs.
        #[arg(long, default_value = "wasi-p1")]
        runtime: String,
        /// The fuel limit, the same for every provider (running out is a result too).
        #[arg(long, default_value_t = 10_000_000_000)]
        fuel: u64,
        /// CPU per provider, as in SDL (`1`, `0.5`, `500m`).
        #[arg(long, default_value = "1")]
        cpu: String,
        /// Memory per provider, as in SDL (`512Mi`, `2Gi`).
        #[arg(long, default_value = "512Mi")]
        memory: String,
        /// How long providers may bid.
        #[arg(long, default_value = "30s")]
        bid_window: humantime::Duration,
        /// How long a winner has to commit to a result, from when it confirms on chain that it received the
        /// module and inputs. The chain refuses one too short for --fuel at its reference speed.
        #[arg(long, default_value = "5m")]
        run_timeout: humantime::Duration,
        /// How long winners have to reveal once all have committed.
        #[arg(long, default_value = "1m")]
        reveal_window: humantime::Duration,
        /// Show progress and return when the job has a result (or failed), instead of at once.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this long (the job goes on).
        #[arg(long)]
        timeout: Option<humantime::Duration>,
        /// Take bids only from providers that completed at least this many jobs.
        #[arg(long, default_value_t = 0)]
        min_completed: u64,
        /// Take bids only from providers slashed at most this many times.
        #[arg(long)]
        max_slashes: Option<u64>,
    },
    /// A job's state, deadlines, bids and assigned providers.
    Status {
        id: JobId,
        /// Follow the job until it has a result or fails.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        timeout: Option<humantime::Duration>,
    },
    /// A job's result: the agreed result hash and who produced it; with --download, the outputs themselves,
    /// checked against that hash.
    Result {
        id: JobId,
        /// Write stdout, stderr and the output files (under `out/`) into this directory.
        #[arg(long)]
        download: Option<PathBuf>,
    },
    /// Cancel a job still taking bids; the budget comes back.
    Cancel { id: JobId },
    /// Dispute a single provider's result during its challenge period: a referee committee re-runs the job.
    /// The deposit pays the referees; the rest of it comes back if the result was wrong (with the provider's
    /// slash), and goes to the provider if it was right.
    Dispute {
        id: JobId,
        /// The dispute deposit; by default the least the chain takes (every referee's fee in every round).
        #[arg(long)]
        deposit: Option<Amount>,
        /// Follow the job to its verdict, uploading the module and inputs to the referees.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        timeout: Option<humantime::Duration>,
    },
}

/// What this machine remembers about a job it submitted.
#[derive(Debug, Serialize, Deserialize)]
struct LocalJob {
    id: JobId,
    module: (PathBuf, Hash),
    inputs: Vec<(PathBuf, Hash)>,
}

fn hash_file(path: &Path) -> anyhow::Result<Hash> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Hash(*hasher.finalize().as_bytes()))
}

fn millis(field: &str, d: humantime::Duration) -> anyhow::Result<u64> {
    let ms =
        u64::try_from(Duration::from(d).as_millis()).with_context(|| format!("--{field} is too long"))?;
    anyhow::ensure!(ms > 0, "--{field} must be longer than zero");
    Ok(ms)
}

pub(crate) fn run(ctx: &Ctx, command: Job) -> anyhow::Result<()> {
    match command {
        Job::Submit {
            module,
            inputs,
            args,
            budget,
            redundancy,
            kind,
            runtime,
            fuel,
            cpu,
            memory,
            bid_window,
            run_timeout,
            reveal_window,
            wait,
            timeout,
            min_completed,
            max_slashes,
        } => {
            let module_hash = hash_file(&module)?;
            let mut input_hashes = Vec::with_capacity(inputs.len());
            for input in &inputs {
                input_hashes.push((input.clone(), hash_file(input)?));
            }
            let spec = JobSpec {
                workload: Workload {
                    kind: match kind {
                        Kind::Wasm => WorkloadKind::Wasm,
                        Kind::Container => WorkloadKind::Container,
                        Kind::InferenceBatch => WorkloadKind::InferenceBatch,
                    },
                    hash: module_hash,
                    runtime,
                    args,
                },
                inputs: input_hashes.iter().map(|(_, h)| *h).collect(),
                resources: ResourceUnits {
                    cpu_millis: tensorgrid_sdl::cpu_millis(&cpu)
                        .map_err(|e| anyhow::anyhow!("--cpu `{cpu}`: {e}"))?,
                    memory_bytes: tensorgrid_sdl::memory_bytes(&memory)
                        .map_err(|e| anyhow::anyhow!("--memory `{memory}`: {e}"))?,
                    ..ResourceUnits::default()
                },
                max_fuel: fuel,
                redundancy,
                budget,
                bid_window_ms: millis("bid-window", bid_window)?,
                run_timeout_ms: millis("run-timeout", run_timeout)?,
                reveal_window_ms: millis("reveal-window", reveal_window)?,
                requirements: JobRequirements { min_completed, max_slashes },
            };
            let record = ctx.execute(Msg::SubmitJob { spec })?;
            let id = record.receipt.created_job().context("the receipt names no new job")?;
            let local = LocalJob {
                id,
                module: (absolute(&module), module_hash),
                inputs: input_hashes.into_iter().map(|(p, h)| (absolute(&p), h)).collect(),
            };
            let dir = ctx.home.join("jobs");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec_pretty(&local)?)?;
            if !wait {
                return match ctx.output {
                    Output::Json => print_json(&serde_json::json!({
                        "job": id, "height": record.height, "tx": record.hash, "fee": record.receipt.fee_paid,
                        "module": module_hash,
                    })),
                    Output::Text => {
                        emit_line(&format!(
                            "job {id} submitted in block {}: {} budget, k={redundancy}",
                            record.height,
                            tgr(budget)
                        ))?;
                        emit_line(&format!("follow it with `tgrid job status {id} --wait`"))
                    }
                };
            }
            let job = follow(ctx, id, timeout)?;
            print_job(ctx, &job)
        }
        Job::Status { id, wait, timeout } => {
            let job = if wait { follow(ctx, id, timeout)? } else { fetch(ctx, id)? };
            print_job(ctx, &job)
        }
        Job::Result { id, download: target } => {
            let job = fetch(ctx, id)?;
            let results: Vec<(String, Hash, SlotState)> = job
                .slots
                .iter()
                .filter_map(|s| s.result.map(|r| (s.provider.to_string(), r, s.state)))
                .collect();
            if results.is_empty() {
                anyhow::bail!(
                    "job {id} has no revealed result yet (it is {}); `tgrid job status {id} --wait` follows it",
                    state_name(&job.state)
                );
            }
            let agreed = results.windows(2).all(|w| w[0].1 == w[1].1);
            // A committee's verdict settles which result stands; without one, the results must agree.
            let accepted = job.verdict.or_else(|| agreed.then(|| results[0].1));
            let outputs = match &target {
                Some(dir) => {
                    let Some(result) = accepted else {
                        anyhow::bail!(
                            "the providers' results disagree; nothing is downloaded until the referees decide"
                        );
                    };
                    Some(download(ctx, &job, result, dir)?)
                }
                None => None,
            };
            match ctx.output {
                Output::Json => print_json(&serde_json::json!({
                    "job": id, "state": job.state, "agreed": agreed, "verdict": job.verdict,
                    "results": results.iter().map(|(p, h, s)| serde_json::json!({ "provider": p, "result_hash": h, "slot": s })).collect::<Vec<_>>(),
                    "outputs": outputs,
                })),
                Output::Text => {
                    emit_line(&format!(
                        "job {id}: {} ({})",
                        state_name(&job.state),
                        match (job.verdict, agreed) {
                            (Some(_), _) => "the referees' verdict stands",
                            (None, true) => "all results agree",
                            (None, false) => "RESULTS DISAGREE",
                        }
                    ))?;
                    if let Some(verdict) = job.verdict {
                        emit_line(&format!("  verdict {verdict}"))?;
                    }
                    for (provider, hash, state) in &results {
                        emit_line(&format!("  {hash}  from {provider} ({state:?})"))?;
                    }
                    match (&outputs, &target) {
                        (Some(outputs), Some(dir)) => emit_line(&format!(
                            "downloaded to {}: exit {:?}, {} output files, checked against the result hash",
                            dir.display(),
                            outputs.exit,
                            outputs.files.len()
                        )),
                        _ => emit_line(&format!(
                            "download the outputs with `tgrid job result {id} --download DIR`"
                        )),
                    }
                }
            }
        }
        Job::Cancel { id } => {
            let record = ctx.execute(Msg::CancelJob { job: id })?;
            ctx.show_tx(&format!("cancelled job {id}"), &record)
        }
        Job::Dispute { id, deposit, wait, timeout } => {
            let deposit = match deposit {
                Some(deposit) => deposit,
                None => {
                    let job = fetch(ctx, id)?;
                    ctx.block_on(ctx.client().params())?.dispute_deposit_for(job.work_price())
                }
            };
            let record = ctx.execute(Msg::DisputeJob { job: id, deposit })?;
            if !wait {
                ctx.show_tx(&format!("disputed job {id} with a deposit of {}", tgr(deposit)), &record)?;
                if ctx.output == Output::Text {
                    emit_line(&format!(
                        "follow it with `tgrid job status {id} --wait` (it uploads the module and inputs to the referees)"
                    ))?;
                }
                return Ok(());
            }
            let job = follow(ctx, id, timeout)?;
            print_job(ctx, &job)
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn fetch(ctx: &Ctx, id: JobId) -> anyhow::Result<OnChain> {
    Ok(ctx.block_on(ctx.client().job(id))?.ok_or_else(|| NotFound(format!("no job {id}")))?)
}

fn state_name(state: &JobState) -> String {
    match state {
        JobState::Failed { reason } => format!("failed: {reason}"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// Whether a job has got as far as a client waits for: a result to look at, or an end. A job being
/// refereed is followed to its verdict, since its referees need the module and inputs from the client.
fn settled(state: &JobState) -> bool {
    state.is_final() || matches!(state, JobState::Challenge)
}

/// One line about where a job is, with the time left in its phase by the chain's clock.
fn progress_line(job: &OnChain, now: Timestamp) -> String {
    let left = |deadline: Timestamp| {
        let ms = deadline.since(now);
        format!("{}.{} s left", ms / 1000, (ms % 1000) / 100)
    };
    let k = job.spec.redundancy;
    match &job.state {
        JobState::Bidding => {
            format!("bidding: {} bids for {k} places, {}", job.live_bids.len(), left(job.bid_deadline))
        }
        JobState::Running => {
            let committed = job.slots.iter().filter(|s| s.state == SlotState::Committed).count();
            let running = job.slots.iter().filter(|s| s.state.is_live()).count();
            let waiting = job.slots.iter().filter(|s| s.state == SlotState::AwaitingContent).count();
            format!(
                "running on {running} providers ({waiting} waiting for the module and inputs), {committed}/{k} committed"
            )
        }
        JobState::Revealing => {
            let revealed = job.slots.iter().filter(|s| s.result.is_some()).count();
            let deadline = job.reveal_deadline.map(left).unwrap_or_default();
            format!("revealing: {revealed}/{k} results, {deadline}")
        }
        JobState::Refereeing => {
            format!("refereeing: committee {} re-runs it", job.checks.last().copied().unwrap_or(0))
        }
        other => state_name(other),
    }
}

/// Polls the job until it settles, showing where it is on a spinner (on a terminal only).
fn follow(ctx: &Ctx, id: JobId, timeout: Option<humantime::Duration>) -> anyhow::Result<OnChain> {
    let bar = ProgressBar::with_draw_target(
        None,
        match ctx.output {
            Output::Text => ProgressDrawTarget::stderr(),
            Output::Json => ProgressDrawTarget::hidden(),
        },
    );
    bar.set_style(ProgressStyle::with_template("{spinner} job {prefix}: {msg} [{elapsed}]")?);
    bar.set_prefix(id.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let client = ctx.client();
    // The module and inputs go to each provider the job is assigned to, once, as soon as it is assigned.
    let local = load_local(ctx, id);
    let mut uploaded: Vec<tensorgrid_types::Address> = Vec::new();
    let mut signer = None;
    let outcome = loop {
        let job = fetch(ctx, id)?;
        let now = ctx.block_on(client.chain_info())?.time;
        bar.set_message(progress_line(&job, now));
        if let Some(local) = &local {
            // Workers waiting for the content, and referees drawn to re-run the job, get it from the client.
            let mut waiting: Vec<tensorgrid_types::Address> = job
                .slots
                .iter()
                .filter(|s| s.state == SlotState::AwaitingContent)
                .map(|s| s.provider)
                .collect();
            if let (JobState::Refereeing, Some(committee)) = (&job.state, job.checks.last()) {
                if let Some(committee) = ctx.block_on(client.committee(*committee))? {
                    waiting.extend(
                        committee
                            .seats
                            .iter()
                            .filter(|s| s.state == SeatState::Committing)
                            .map(|s| s.provider),
                    );
                }
            }
            for provider in waiting {
                if uploaded.contains(&provider) {
                    continue;
                }
                if signer.is_none() {
                    signer = Some(ctx.signer()?);
                }
                let key = signer.as_ref().context("no signing key")?;
                bar.set_message(format!("uploading the module and inputs to {provider}"));
                match upload(ctx, key, local, provider) {
                    Ok(()) => uploaded.push(provider),
                    // The provider may not have read the assignment yet; the next round tries again.
                    Err(e) => bar.set_message(format!("upload to {provider} failed, retrying: {e:#}")),
                }
            }
        }
        if settled(&job.state) {
            break Ok(job);
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= Duration::from(limit) {
                break Err(anyhow::anyhow!(
                    "job {id} is still {} after {limit}; it goes on: `tgrid job status {id} --wait`",
                    state_name(&job.state)
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    };
    bar.finish_and_clear();
    outcome
}

fn load_local(ctx: &Ctx, id: JobId) -> Option<LocalJob> {
    let bytes = std::fs::read(ctx.home.join("jobs").join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Sends a job's module and inputs to one assigned provider, each checked against the hash the job names
/// (a file changed since submitting would be refused by the provider anyway).
fn upload(
    ctx: &Ctx,
    key: &tensorgrid_types::SecretKey,
    local: &LocalJob,
    provider: tensorgrid_types::Address,
) -> anyhow::Result<()> {
    let mut content = Vec::with_capacity(1 + local.inputs.len());
    for (path, hash) in std::iter::once(&local.module).chain(&local.inputs) {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(
            Hash::of(&bytes) == *hash,
            "{} changed since the job was submitted (it no longer hashes to {hash})",
            path.display()
        );
        content.push((*hash, bytes));
    }
    Ok(ctx.block_on(tensorgrid_client::jobs::upload(&ctx.client(), key, local.id, &provider, &content))?)
}

/// Downloads a finished job's outputs from a provider whose revealed result is `agreed` (checked against that
/// hash by the SDK), and writes them under `dir`: `stdout`, `stderr`, and the files under `out/`.
fn download(
    ctx: &Ctx,
    job: &OnChain,
    agreed: Hash,
    dir: &Path,
) -> anyhow::Result<tensorgrid_types::provider_api::JobOutputs> {
    let key = ctx.signer()?;
    anyhow::ensure!(
        key.address() == job.client,
        "only the job's client may download its outputs; --from is not job {}'s client",
        job.id
    );
    let done = ctx.block_on(tensorgrid_client::jobs::download(&ctx.client(), &key, job, agreed))?;
    std::fs::create_dir_all(dir.join("out")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("stdout"), &done.stdout)?;
    std::fs::write(dir.join("stderr"), &done.stderr)?;
    for (path, bytes) in &done.files {
        let target = dir.join("out").join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(done.outputs)
}

/// The job with its referee committees: JSON is the job's own object with `checks_detail` added.
fn print_job(ctx: &Ctx, job: &OnChain) -> anyhow::Result<()> {
    let mut committees = Vec::new();
    for id in &job.checks {
        if let Some(committee) = ctx.block_on(ctx.client().committee(*id))? {
            committees.push(committee);
        }
    }
    let mut value = serde_json::to_value(job)?;
    value["checks_detail"] = serde_json::to_value(&committees)?;
    ctx.show(&value, |_| {
        let mut text = format!("job {}  {}\n", job.id, state_name(&job.state));
        text.push_str(&format!("client    {}\n", job.client));
        text.push_str(&format!(
            "workload  {:?} {} ({}), fuel {}\n",
            job.spec.workload.kind, job.spec.workload.hash, job.spec.workload.runtime, job.spec.max_fuel
        ));
        text.push_str(&format!(
            "budget    {} for k={} (at most {} each); held {}, paid {}\n",
            tgr(job.spec.budget),
            job.spec.redundancy,
            tgr(job.spec.max_bid()),
            tgr(job.held),
            tgr(job.paid)
        ));
        text.push_str(&format!("bids      {} live\n", job.live_bids.len()));
        for slot in &job.slots {
            text.push_str(&format!(
                "slot      {} at {}  {:?}{}\n",
                slot.provider,
                tgr(slot.price),
                slot.state,
                slot.result.map(|r| format!("  result {r}")).unwrap_or_default()
            ));
        }
        for committee in &committees {
            text.push_str(&committee_text(committee));
        }
        if let Some(verdict) = job.verdict {
            text.push_str(&format!("verdict   {verdict}\n"));
        }
        text
    })
}

/// A committee in a few lines: why it sat, who, how each voted, what it decided.
fn committee_text(c: &Committee) -> String {
    let phase = match c.phase {
        CommitteePhase::Committing => "members running the job and committing".to_string(),
        CommitteePhase::Revealing => "members revealing".to_string(),
        CommitteePhase::Concluded { verdict: Some(v) } => format!("verdict {v}"),
        CommitteePhase::Concluded { verdict: None } => "no verdict".to_string(),
    };
    let mut text = format!(
        "check     committee {} ({:?}, round {}/{}, fee {} each): {phase}\n",
        c.id,
        c.kind,
        c.round,
        c.max_rounds,
        tgr(c.fee)
    );
    for seat in &c.seats {
        text.push_str(&format!(
            "  member  {} (round {})  {:?}{}\n",
            seat.provider,
            seat.round,
            seat.state,
            seat.vote.map(|v| format!("  vote {v}")).unwrap_or_default()
        ));
    }
    text
}
