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
pub mod http;
#[cfg(feature = "llm")]
pub mod inference;
pub mod interpreter;
pub mod inventory;
pub mod jobs;
pub mod leases;

use std::sync::Arc;

use parking_lot::Mutex;
use tensorgrid_client::{RpcClient, RpcError};
use tensorgrid_provider_core::{Identity, ProviderCore};
use tensorgrid_runner::{JobRunner, LeaseRunner};
use tensorgrid_types::job::{JobId, WorkloadKind};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::provider_api::JobRunState;
use tensorgrid_types::{Address, Amount, Hash, Msg, SecretKey, Timestamp, TxRecord};

pub use config::ProviderConfig;
pub use daemon::{run, start, start_with_runners, Provider};
pub use error::ProviderError;
/// Where `scripts/fetch-models` puts the open models, for commands that serve them by default.
#[cfg(feature = "llm")]
pub use tensorgrid_engine_llm::models_dir;

use crate::bidding::Situation;
use crate::content::ContentStore;

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

    /// A client of another provider's API at `host_uri`, signing as this provider. It connects only to
    /// public addresses unless `private` (a local devnet).
    pub fn provider_client(&self, host_uri: &str, private: bool) -> tensorgrid_client::ProviderClient {
        if private {
            tensorgrid_client::ProviderClient::new(host_uri, self.key.clone())
        } else {
            tensorgrid_client::ProviderClient::public_only(host_uri, self.key.clone())
        }
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

/// Everything the daemon's tasks and the API share.
pub struct Shared {
    pub config: ProviderConfig,
    pub chain: Chain,
    /// The provider's logic (bidding, jobs, heartbeats, capacity); [`interpreter::dispatch`] is the only
    /// way in, and it carries out what the core asks.
    pub core: Mutex<ProviderCore>,
    pub content: ContentStore,
    pub runners: Vec<Arc<dyn JobRunner>>,
    /// The container runtime for leases, when the host has one.
    pub lease_runner: Option<Arc<dyn LeaseRunner>>,
    /// The models served and the channels paying for them, when the configuration names models.
    #[cfg(feature = "llm")]
    pub inference: Option<Arc<inference::Inference>>,
    /// Nonces seen recently and each signer's request rate, bounded.
    pub guard: Mutex<http::RequestGuard>,
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
        self.core.lock().situation()
    }

    /// A job this provider was assigned, as the API reports it.
    pub fn job(&self, id: JobId) -> Option<JobView> {
        self.core.lock().job(id).map(|entry| JobView {
            client: entry.client(),
            content: entry.content(),
            state: entry.state.clone(),
        })
    }
}

/// The core for a daemon with this configuration, these runners and (maybe) a container runtime.
pub fn core_for(
    config: &ProviderConfig,
    address: Address,
    runners: &[Arc<dyn JobRunner>],
    runs_leases: bool,
) -> ProviderCore {
    let identity = Identity {
        address,
        host_uri: config.host_uri.clone(),
        info: ProviderInfo { email: config.email.clone(), website: config.website.clone() },
        stake: config.stake,
        attributes: config
            .attributes
            .iter()
            .map(|(k, v)| tensorgrid_types::resources::Attribute::new(k.clone(), v.clone()))
            .collect(),
        runtimes: runners
            .iter()
            .flat_map(|r| r.runtimes().iter().map(move |rt| (r.kind(), rt.to_string())))
            .collect(),
        runs_leases,
        referee: config.referee,
    };
    ProviderCore::new(identity, bidding::policy(&config.pricing, &config.limits))
}

/// The wall clock in chain units, for request timestamps and decision records.
pub fn now() -> Timestamp {
    tensorgrid_client::wall_clock()
}
