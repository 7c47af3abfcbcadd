//! The provider's protocol as a pure state machine: `ProviderCore::handle(now, input) -> effects`.
//!
//! Everything a provider decides lives here: whether and at what price to bid on orders and jobs, the life of
//! a job it won (wait for the client's content, check the module, confirm on chain, run, persist the result
//! before committing, commit, reveal), heartbeats, and what its running work holds of the machine. There is no
//! I/O, clock, randomness or async runtime: time comes with each call, salts with the run's result, and every
//! outside action is an [`Effect`] that an interpreter carries out and answers with an [`Input`]. The daemon
//! (`tgrid provider run`) interprets effects against the node, the content store and the runners; the seeded
//! simulation interprets them against an in-memory chain. Both therefore run exactly this logic.
//!
//! New kinds of work (referee duty, training, job arrays) are new inputs and effects and a book of their own
//! here, not new shared maps in the daemon.

pub mod bidding;
pub mod capacity;
mod core;
mod effect;
mod input;
mod jobs;
mod leases;

use tensorgrid_types::{Address, Amount};

pub use crate::core::{Identity, ProviderCore};
pub use effect::{Effect, QuotedWork, RunSpec, TxPurpose};
pub use input::{Input, RunSummary, WorkRef};
pub use jobs::{job_seed, JobEntry, JobRecord};
pub use leases::LeaseEntry;

/// What the operator decided: prices, who is never served, and how much work to take on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub cpu_core_hour: Amount,
    pub memory_gib_hour: Amount,
    pub storage_gib_hour: Amount,
    pub gpu_hour: Amount,
    /// The least a lease bid asks, per hour.
    pub floor: Amount,
    /// Per 10⁹ fuel units.
    pub job_gfuel: Amount,
    /// The least a job bid asks.
    pub job_floor: Amount,
    pub deny: Vec<Address>,
    /// Whether the operator's price script has the last word on each bid.
    pub price_script: bool,
    pub max_leases: u32,
    pub max_jobs: u32,
    /// How fast this machine burns fuel: jobs whose fuel cannot burn in time are declined.
    pub job_fuel_per_sec: u64,
    /// The longest a run may take here, whatever the job allows.
    pub job_wall_timeout_ms: u64,
    /// How long to wait for a client's upload (never past the chain's content deadline).
    pub content_timeout_ms: u64,
    /// A lease whose manifest has not arrived by then is closed.
    pub manifest_timeout_ms: u64,
    /// How often what the leases accrued is collected.
    pub withdraw_interval_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cpu_core_hour: Amount(20_000),
            memory_gib_hour: Amount(5_000),
            storage_gib_hour: Amount(200),
            gpu_hour: Amount::tgr(1),
            floor: Amount(10_000),
            job_gfuel: Amount(1_000),
            job_floor: Amount(1_000),
            deny: Vec::new(),
            price_script: false,
            max_leases: 10,
            max_jobs: 4,
            job_fuel_per_sec: 150_000_000,
            job_wall_timeout_ms: 10 * 60_000,
            content_timeout_ms: 2 * 60_000,
            manifest_timeout_ms: 5 * 60_000,
            withdraw_interval_ms: 60 * 60_000,
        }
    }
}
