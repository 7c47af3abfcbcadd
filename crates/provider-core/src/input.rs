//! What reaches the core: the chain's events, answers to the effects it asked for, and the passing of time.

use tensorgrid_types::job::{Job, JobExit, JobId};
use tensorgrid_types::market::{GroupSpec, LeaseId, Order, OrderId};
use tensorgrid_types::{Amount, Event, Hash, Params};

use crate::capacity::Capacity;
use crate::effect::TxPurpose;
use crate::jobs::JobRecord;

/// What a run produced, as far as the protocol cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub result_hash: Hash,
    pub exit: JobExit,
    pub fuel_used: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The interpreter is ready: the chain's params (heartbeat interval), this machine's capacity, and the
    /// job records it kept on disk, so a restarted provider finishes what it committed to.
    Started { params: Params, capacity: Capacity, records: Vec<JobRecord> },
    /// Time passed (heartbeats fall due).
    Tick,
    /// The inventory measured the machine again.
    Inventory(Capacity),
    /// An event from a block.
    Event(Event),
    /// The chain's answer to [`crate::Effect::ReadJob`] (or a job found while catching up).
    JobRead(JobId, Option<Job>),
    /// The chain's answer to [`crate::Effect::ReadOrder`] (or an order found while catching up).
    OrderRead(OrderId, Option<Order>),
    /// The operator's price script answered: a price, or why it declined.
    PriceScript { work: WorkRef, answer: Result<Amount, String> },
    /// Every content hash the job needs is stored here, each checked against its hash.
    ContentArrived { job: JobId },
    /// The content did not all arrive by the time asked. `salt` is fresh randomness: a referee that cannot
    /// get the content commits to "content unavailable" instead of a result.
    ContentMissing { job: JobId, salt: [u8; 32] },
    /// The runner's check of the module: it compiles and links, or why not.
    ModuleChecked { job: JobId, result: Result<(), String> },
    /// A run ended (a result, deterministic limits included) or could not run at all. `salt` is fresh
    /// randomness for the commitment, which the core may not make itself.
    RunFinished { job: JobId, result: Result<RunSummary, String>, salt: [u8; 32] },
    /// A transaction the core asked for committed (its receipt's events) or did not (why).
    TxDone { purpose: TxPurpose, result: Result<Vec<Event>, String> },
    /// An active lease of this provider the chain listed (after a restart) with no workloads running: it waits
    /// for its manifest as a new one does.
    LeaseFound(LeaseId),
    /// The interpreter checked a tenant's manifest against the chain (hash, group) and is starting its
    /// workloads.
    ManifestReceived { lease: LeaseId, spec: GroupSpec },
    /// The workloads started, or why not.
    LeaseDeployed { lease: LeaseId, result: Result<(), String> },
    /// After a restart, workloads found running for a lease the chain says is active.
    LeaseAdopted { lease: LeaseId, spec: GroupSpec },
}

/// A piece of work a decision is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkRef {
    Order(OrderId),
    Job(JobId),
}
