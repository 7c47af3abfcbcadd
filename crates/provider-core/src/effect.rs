//! What the core asks its interpreter to do. Effects come out in the order they must be carried out: a
//! `Persist` before the `Send` that depends on it.

use tensorgrid_types::job::{Job, JobId, WorkloadKind};
use tensorgrid_types::market::{LeaseId, Order, OrderId};
use tensorgrid_types::{Amount, Hash, Msg, Timestamp};

use crate::bidding::Decision;
use crate::jobs::JobRecord;

/// Why a transaction was sent, so its outcome finds its way back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxPurpose {
    Heartbeat,
    BidOrder(OrderId),
    BidJob(JobId),
    ConfirmContent(JobId),
    Commit(JobId),
    Reveal(JobId),
    /// Closing a lease whose manifest never came.
    CloseLease(LeaseId),
    /// Collecting what a lease accrued.
    Withdraw(LeaseId),
}

/// Everything a runner needs for one job run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub job: JobId,
    pub kind: WorkloadKind,
    pub runtime: String,
    pub module: Hash,
    pub args: Vec<String>,
    pub inputs: Vec<Hash>,
    pub max_fuel: u64,
    pub memory_bytes: u64,
    /// The most wall-clock time the run may take here.
    pub wall_timeout_ms: u64,
    /// Where the job's virtual clock starts.
    pub clock_ms: u64,
    /// The job's randomness seed, the same on every provider.
    pub seed: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Sign and send a transaction; answer with [`crate::Input::TxDone`].
    Send { msg: Msg, purpose: TxPurpose },
    /// Read a job from the chain; answer with [`crate::Input::JobRead`].
    ReadJob(JobId),
    /// Read an order from the chain; answer with [`crate::Input::OrderRead`].
    ReadOrder(OrderId),
    /// Run the operator's price script on this work at this price so far; answer with
    /// [`crate::Input::PriceScript`].
    AskPriceScript { work: Box<QuotedWork>, price: Amount },
    /// Wait until every hash is in the content store (the client uploads them), at the latest until
    /// `until`; answer with [`crate::Input::ContentArrived`] or [`crate::Input::ContentMissing`].
    AwaitContent { job: JobId, hashes: Vec<Hash>, until: Timestamp },
    /// Have the runner check the module; answer with [`crate::Input::ModuleChecked`].
    CheckModule { job: JobId, kind: WorkloadKind, runtime: String, module: Hash },
    /// Run the job; answer with [`crate::Input::RunFinished`].
    Run(Box<RunSpec>),
    /// Write the job's record durably before carrying out any later effect.
    Persist(JobRecord),
    /// The chain closed the lease: remove its workloads and what the provider kept for it.
    StopLease(LeaseId),
    /// A bid decision was made (for the operator's log).
    Decided(Decision),
    /// Something the operator should read in the log.
    Log { warn: bool, message: String },
}

impl QuotedWork {
    /// The most the chain lets this provider ask for it.
    pub fn ceiling(&self) -> Amount {
        match self {
            QuotedWork::Order { order } => crate::bidding::Work::Order { order }.ceiling(),
            QuotedWork::Job { job } => crate::bidding::Work::Job { job }.ceiling(),
        }
    }
}

/// The work a price script is asked about, as the chain has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuotedWork {
    Order { order: Order },
    Job { job: Job },
}
