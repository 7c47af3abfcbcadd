//! The provider daemon (`tgrid provider run --config provider.toml`): it registers the provider on chain,
//! keeps it alive with heartbeats, watches the node's event stream for orders and jobs, decides through its
//! bid engine whether and at what price to bid, serves the provider API (signed requests only), and runs
//! the jobs it wins: content from the client, a sandboxed deterministic run, commit, reveal, payment.
//!
//! Effects live here and in the runners; the chain's rules live in the ledger. The daemon never trusts its
//! own memory over the chain: on start and after every reconnect it reads the chain's view again.

pub mod api;
pub mod bidding;
pub mod config;
pub mod content;
pub mod daemon;
pub mod error;
#[cfg(feature = "llm")]
pub mod inference;
pub mod inventory;
pub mod jobs;
pub mod leases;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tensorgrid_client::{RpcClient, RpcError};
use tensorgrid_runner::{JobRunner, LeaseRunner};
use tensorgrid_types::job::{JobId, WorkloadKind};
use tensorgrid_types::market::{GroupSpec, LeaseId};
use tensorgrid_types::provider_api::{JobRunState, LeaseRunState};
use tensorgrid_types::{Address, Amount, Hash, Msg, SecretKey, Timestamp, TxRecord};

pub use config::ProviderConfig;
pub use daemon::{run, start, Provider};
pub use error::ProviderError;
/// Where `scripts/fetch-models` puts the open models, for commands that serve them by default.
#[cfg(feature = "llm")]
pub use tensorgrid_engine_llm::models_dir;

use crate::bidding::{BidEngine, Situation};
use crate::content::ContentStore;
use crate::inventory::{Capacity, Reservation};

/// The most fee one of the daemon's transactions may pay.
const MAX_FEE: Amount = Amount(1_000_000);

/// The daemon's signing account: transactions go out one at a time so their nonces follow each other.
pub struct Chain {
    pub client: RpcClient,
    key: SecretKey,
    sending: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("node", &self.client.base()).field("as", &self.key.address()).finish()
    }
}

impl Chain {
    pub fn new(client: RpcClient, key: SecretKey) -> Chain {
        Chain { client, key, sending: tokio::sync::Mutex::new(()) }
    }

    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Signs, sends and waits for the commit; a committed-but-failed transaction is an error.
    pub async fn execute(&self, msg: Msg) -> Result<TxRecord, RpcError> {
        let _turn = self.sending.lock().await;
        self.client.execute(&self.key, msg, MAX_FEE).await
    }
}

/// What the API reports about a job this provider was assigned.
#[derive(Clone, Debug)]
pub struct JobView {
    pub client: Address,
    /// The module and inputs, by hash.
    pub content: Vec<Hash>,
    pub state: JobRunState,
}

/// A lease this provider serves.
#[derive(Clone, Debug)]
pub struct LeaseView {
    /// The order's group, as the chain has it: what the lease pays for.
    pub spec: GroupSpec,
    pub state: LeaseRunState,
}

/// Everything the daemon's tasks and the API share.
pub struct Shared {
    pub config: ProviderConfig,
    pub chain: Chain,
    /// The core's bid engine (its decisions are the API's "why no bid").
    pub engine: Mutex<BidEngine>,
    pub content: ContentStore,
    /// The machine's capacity, refreshed by the daemon every minute.
    pub capacity: parking_lot::RwLock<Capacity>,
    pub runners: Vec<Arc<dyn JobRunner>>,
    /// The container runtime for leases, when the host has one.
    pub lease_runner: Option<Arc<dyn LeaseRunner>>,
    /// Leases this provider serves, by id.
    pub leases: Mutex<HashMap<LeaseId, LeaseView>>,
    /// Jobs this provider was assigned, by id.
    pub jobs: Mutex<HashMap<JobId, JobView>>,
    /// Resources held by running work.
    pub reserved: Mutex<Reservation>,
    /// The models served and the channels paying for them, when the configuration names models.
    #[cfg(feature = "llm")]
    pub inference: Option<Arc<inference::Inference>>,
    /// Request nonces seen recently, with when they may be forgotten (ms), against replays.
    pub nonces: Mutex<HashMap<[u8; 16], u64>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("chain", &self.chain).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn address(&self) -> Address {
        self.chain.address()
    }

    /// The runner for a workload, if this provider has one.
    pub fn runner(&self, kind: WorkloadKind, runtime: &str) -> Option<Arc<dyn JobRunner>> {
        self.runners.iter().find(|r| r.kind() == kind && r.runtimes().contains(&runtime)).cloned()
    }

    /// What the bid engine sees: free capacity, attributes, what is running, what can run.
    pub fn situation(&self) -> Situation {
        let reserved = self.reserved.lock().clone();
        let jobs = self.jobs.lock();
        let active_jobs = jobs
            .values()
            .filter(|j| matches!(j.state, JobRunState::WaitingForContent | JobRunState::Running))
            .count() as u32;
        Situation {
            free: self.capacity.read().minus(&reserved),
            attributes: self.attributes(),
            active_leases: self.leases.lock().len() as u32,
            active_jobs,
            runtimes: self
                .runners
                .iter()
                .flat_map(|r| r.runtimes().iter().map(move |rt| (r.kind(), rt.to_string())))
                .collect(),
            runs_leases: self.lease_runner.is_some(),
        }
    }

    /// The operator's attributes and the inventory's, as registered on chain.
    pub fn attributes(&self) -> Vec<tensorgrid_types::resources::Attribute> {
        let mut attributes: Vec<_> = self
            .config
            .attributes
            .iter()
            .map(|(k, v)| tensorgrid_types::resources::Attribute::new(k.clone(), v.clone()))
            .collect();
        for attribute in self.capacity.read().attributes() {
            if !attributes.iter().any(|a| a.key == attribute.key) {
                attributes.push(attribute);
            }
        }
        attributes
    }
}

/// The wall clock in chain units, for request timestamps and decision records.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
