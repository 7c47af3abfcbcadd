//! One-shot jobs (Golem/Nosana's model): a client posts a workload with a budget and a redundancy factor `k`;
//! the `k` cheapest bids win; each winner commits to a hash of its result, then reveals it; agreeing results
//! are paid; disagreement is a dispute with the funds held.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::committee::CommitteeId;
use crate::crypto::{Address, Hash};
use crate::limits::{self, Malformed};
use crate::market::LiveBid;
use crate::resources::ResourceUnits;
use crate::time::Timestamp;

pub type JobId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// A WASI module run under fuel metering.
    Wasm,
    /// An OCI image run once to completion.
    Container,
    /// A JSONL file of inference requests against a model.
    InferenceBatch,
}

/// What to run: content-addressed (blake3), with the runtime it needs so honest providers agree bit for bit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// blake3 of the module, image archive or batch file.
    pub hash: Hash,
    /// The runtime and its version, e.g. `wasi-p1`.
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct JobSpec {
    pub workload: Workload,
    /// Content hashes of the input files.
    #[serde(default)]
    pub inputs: Vec<Hash>,
    pub resources: ResourceUnits,
    /// The same fuel limit for every provider, so that running out of fuel is a deterministic result too.
    pub max_fuel: u64,
    /// How many providers run the job independently (k).
    pub redundancy: u8,
    /// The total for all k providers; each winner is paid its own bid, which must be at most `budget / k`.
    pub budget: Amount,
    pub bid_window_ms: u64,
    /// How long a winner has to commit to a result, counted from the block that confirms it received the
    /// module and inputs (`ConfirmJobContent`). The chain refuses one shorter than `max_fuel` needs at the
    /// reference speed (`Params::min_run_timeout_ms`), so a client cannot set a limit no provider can meet.
    pub run_timeout_ms: u64,
    /// How long winners have to reveal once every winner has committed.
    pub reveal_window_ms: u64,
    /// Whom the client trusts: bids from providers whose on-chain record falls short are refused.
    #[serde(default)]
    pub requirements: JobRequirements,
}

/// The least record a provider needs to bid on a job.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct JobRequirements {
    /// Jobs it completed and was paid for.
    #[serde(default)]
    pub min_completed: u64,
    /// The most times it may have been slashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slashes: Option<u64>,
}

impl JobSpec {
    /// Everything a provider must receive to run the job, by hash: the module, then the inputs in order.
    pub fn content(&self) -> Vec<Hash> {
        std::iter::once(self.workload.hash).chain(self.inputs.iter().copied()).collect()
    }

    /// The most one provider may bid: `⌊budget / k⌋`, so any k bids fit the budget.
    pub fn max_bid(&self) -> Amount {
        Amount(self.budget.0 / u128::from(self.redundancy.max(1)))
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), Malformed> {
        limits::check_str(
            &format!("{field}.workload.runtime"),
            &self.workload.runtime,
            limits::MAX_NAME_LEN,
        )?;
        if self.workload.runtime.is_empty() {
            return Err(Malformed::new(format!("{field}.workload.runtime"), "is empty"));
        }
        limits::check_len(&format!("{field}.workload.args"), self.workload.args.len(), limits::MAX_JOB_ARGS)?;
        for (i, arg) in self.workload.args.iter().enumerate() {
            limits::check_str(&format!("{field}.workload.args[{i}]"), arg, limits::MAX_JOB_ARG_LEN)?;
        }
        limits::check_len(&format!("{field}.inputs"), self.inputs.len(), limits::MAX_JOB_INPUTS)?;
        self.resources.validate(&format!("{field}.resources"))?;
        if self.max_fuel == 0 {
            return Err(Malformed::new(format!("{field}.max_fuel"), "is zero"));
        }
        if self.redundancy == 0 {
            return Err(Malformed::new(
                format!("{field}.redundancy"),
                "is zero; at least one provider must run it",
            ));
        }
        if self.max_bid().is_zero() {
            return Err(Malformed::new(
                format!("{field}.budget"),
                format!(
                    "{} split over {} providers leaves nothing to pay each",
                    self.budget, self.redundancy
                ),
            ));
        }
        for (name, value) in [
            ("bid_window_ms", self.bid_window_ms),
            ("run_timeout_ms", self.run_timeout_ms),
            ("reveal_window_ms", self.reveal_window_ms),
        ] {
            if value == 0 {
                return Err(Malformed::new(format!("{field}.{name}"), "is zero"));
            }
        }
        Ok(())
    }
}

/// The commitment a provider publishes before anyone reveals: `blake3(result_hash ‖ provider ‖ salt)`.
/// Binding the provider's address stops a provider from copying another's commitment.
pub fn result_commitment(result_hash: &Hash, provider: &Address, salt: &[u8; 32]) -> Hash {
    Hash::of_parts(&[b"tensorgrid/job-commit", result_hash.as_bytes(), provider.as_bytes(), salt])
}

/// How a job's run ended, as far as its result hash is concerned. Only deterministic endings are results: a
/// provider whose run hits its own wall-clock limit has no result to commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "exit", rename_all = "snake_case")]
pub enum JobExit {
    /// The program exited with this status (0 is success).
    Exited { code: i32 },
    /// The fuel ran out: a result like any other, and paid.
    OutOfFuel,
    /// The program trapped (unreachable, out-of-bounds access, stack overflow, memory limit).
    Trapped,
    /// The program wrote more than a result may hold (bytes to stdout, stderr or files, or files created;
    /// see [`OutputLimits`]). Counted per write call, so every provider stops at the same call. The result
    /// holds no stdout, stderr or files.
    OutputLimit,
    /// The program left something in its output directory that is not a plain file or directory (a link,
    /// a device, an unreadable file). The result holds no stdout, stderr or files.
    OutputInvalid,
}

/// What a job may write, counted the same way by every provider so that reaching a limit is a result
/// ([`JobExit::OutputLimit`]) rather than a provider's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes of stdout, and of stderr, each.
    pub stream_bytes: u64,
    /// Bytes of all output files together at the end, and the most any one file may be sized to.
    pub file_bytes: u64,
    /// Bytes passed to write calls on files over the whole run (rewrites count again): what bounds the
    /// provider's disk work even when the final outputs are small.
    pub written_bytes: u64,
    /// Files and directories the program may create.
    pub entries: u64,
}

/// The limits every runner enforces: stdout, stderr and files together stay within [`MAX_RESULT_BYTES`].
pub const OUTPUT_LIMITS: OutputLimits = OutputLimits {
    stream_bytes: 16 * 1024 * 1024,
    file_bytes: MAX_RESULT_BYTES - 32 * 1024 * 1024,
    written_bytes: 4 * MAX_RESULT_BYTES,
    entries: 10_000,
};

/// The most bytes of stdout, of stderr, and of all output files together that a result may hold; a run
/// that writes more ends as [`JobExit::Trapped`] with nothing beyond the limit kept.
pub const MAX_RESULT_BYTES: u64 = 64 * 1024 * 1024;

/// The result hash of DESIGN's job rule: blake3 over a canonical encoding of the exit status, stdout, stderr
/// and the output directory (files sorted by path, each path then its contents; every part length-prefixed).
/// `outputs` must be sorted by path; the runner does that.
pub fn result_hash(exit: &JobExit, stdout: &[u8], stderr: &[u8], outputs: &[(String, Vec<u8>)]) -> Hash {
    let exit_bytes: Vec<u8> = match exit {
        JobExit::Exited { code } => [&[0u8][..], &code.to_le_bytes()].concat(),
        JobExit::OutOfFuel => vec![1],
        JobExit::Trapped => vec![2],
        JobExit::OutputLimit => vec![3],
        JobExit::OutputInvalid => vec![4],
    };
    let count = (outputs.len() as u64).to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![b"tensorgrid/job-result/v1", &exit_bytes, stdout, stderr, &count];
    for (path, contents) in outputs {
        parts.push(path.as_bytes());
        parts.push(contents);
    }
    Hash::of_parts(&parts)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobFailure {
    /// Fewer valid bids than the redundancy asked for when the bidding window closed.
    NotEnoughBids { got: u8, needed: u8 },
    /// No assigned provider revealed a result.
    NoResults,
    /// No assigned provider confirmed that it received the module and inputs: the client, who must serve
    /// them, did not (or could not reach anyone). Nobody's deposit is taken.
    ContentUnavailable,
    /// The referee committees found no majority in any round (or nobody was eligible to referee): the
    /// budget went back to the client and every deposit to its owner; nobody was slashed.
    NoVerdict,
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobFailure::NotEnoughBids { got, needed } => {
                write!(f, "{got} valid bids when the window closed; {needed} were needed")
            }
            JobFailure::NoResults => f.write_str("no assigned provider revealed a result"),
            JobFailure::ContentUnavailable => f.write_str(
                "no assigned provider confirmed receiving the module and inputs; the client must upload them",
            ),
            JobFailure::NoVerdict => f.write_str(
                "the referees reached no verdict; the budget and every deposit went back to their owners",
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Taking bids until `bid_deadline`.
    Bidding,
    /// Assigned providers are running it and committing.
    Running,
    /// Every assigned provider committed; reveals are due by `reveal_deadline`.
    Revealing,
    /// One result was revealed; the client may dispute it until `challenge_deadline`.
    Challenge,
    /// Results agreed (or went unchallenged) and providers were paid.
    Completed,
    /// A referee committee is checking the results (an audit, a disagreement or the client's dispute):
    /// funds are held until its verdict, which always comes (or "no verdict" after the last round).
    Refereeing,
    Failed {
        reason: JobFailure,
    },
    Cancelled,
}

impl JobState {
    pub fn is_final(&self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed { .. } | JobState::Cancelled)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Has the module and inputs (confirmed on chain) and is running: must commit by `commit_deadline`.
    Running,
    Committed,
    Revealed,
    /// Missed its commit deadline: deposit forfeited to the client, replaced by the next-cheapest bid.
    MissedCommit,
    /// Missed the reveal deadline: deposit forfeited to the client.
    MissedReveal,
    Paid,
    /// Assigned; waiting for the client's upload until `content_deadline`.
    AwaitingContent,
    /// Never confirmed the content by its deadline: replaced by the next-cheapest bid, deposit returned
    /// (the chain cannot tell a provider that did not fetch from a client that did not serve).
    ContentUnavailable,
    /// A referee verdict went against its result: unpaid, its stake slashed and its deposit taken.
    Slashed,
}

impl SlotState {
    /// Still part of the job's outcome (not replaced or dropped).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            SlotState::AwaitingContent
                | SlotState::Running
                | SlotState::Committed
                | SlotState::Revealed
                | SlotState::Paid
        )
    }
}

/// One provider's assignment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct JobSlot {
    pub provider: Address,
    pub price: Amount,
    pub assigned_at: Timestamp,
    /// By when the provider must confirm it holds the module and inputs.
    pub content_deadline: Timestamp,
    /// By when it must commit: set when it confirms the content (`run_timeout_ms` from then).
    pub commit_deadline: Option<Timestamp>,
    pub commitment: Option<Hash>,
    pub result: Option<Hash>,
    pub state: SlotState,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub client: Address,
    pub spec: JobSpec,
    pub state: JobState,
    pub created_at: Timestamp,
    pub bid_deadline: Timestamp,
    pub reveal_deadline: Option<Timestamp>,
    pub challenge_deadline: Option<Timestamp>,
    /// Assignments in order; replaced slots stay for the record.
    pub slots: Vec<JobSlot>,
    /// Open bids, at most `max_bids_per_job`: the winners come from here, and so do replacements.
    pub live_bids: Vec<LiveBid>,
    /// What the job still holds of its budget.
    pub held: Amount,
    /// What was paid to providers.
    pub paid: Amount,
    pub finished_at: Option<Timestamp>,
    /// Locked from the client for as long as the record is stored; refunded when it is removed, a
    /// retention period after the job finished.
    #[serde(default)]
    pub storage_deposit: Amount,
    /// Locked at submission for the audit pool (`audit_rate × budget`): once results are revealed,
    /// `audit_rate` of their prices goes to the pool and the rest back to the client; all of it comes back if
    /// the job ends before any result.
    #[serde(default)]
    pub audit_fee: Amount,
    /// The referee committees that checked it, oldest first.
    #[serde(default)]
    pub checks: Vec<CommitteeId>,
    /// The result a committee decided on, when one did: the output the client should take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Hash>,
}

impl Job {
    /// The result the job stands on: the verdict when a committee gave one, else the revealed results'
    /// common value.
    pub fn accepted_result(&self) -> Option<Hash> {
        if self.verdict.is_some() {
            return self.verdict;
        }
        let mut paid = self.slots.iter().filter(|s| s.state == SlotState::Paid).filter_map(|s| s.result);
        paid.next()
    }

    /// The highest price among the revealed or paid slots: what a referee's fee is reckoned from.
    pub fn work_price(&self) -> Amount {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Revealed | SlotState::Paid))
            .map(|s| s.price)
            .max()
            .unwrap_or_else(|| self.spec.max_bid())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobBidState {
    Open,
    /// Won a slot; the deposit is returned when the slot is paid.
    Assigned,
    /// Lost or outbid, or the job ended: deposit returned.
    Returned,
    /// Its slot missed a deadline: deposit paid to the client.
    Forfeited,
    /// Its slot is being refereed: the deposit is held until the verdict.
    Held,
    /// The verdict went against its result: the deposit went with the slash.
    Slashed,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct JobBid {
    pub job: JobId,
    pub provider: Address,
    pub price: Amount,
    pub deposit: Amount,
    pub state: JobBidState,
    pub created_at: Timestamp,
}
