//! Read-only questions to the ledger and their answers. Lists are paged with an opaque cursor so that no
//! answer grows with the size of the chain.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::amount::Amount;
use crate::channel::{Channel, ChannelId};
use crate::committee::{Committee, CommitteeId};
use crate::crypto::Address;
use crate::crypto::Hash;
use crate::job::{Job, JobBid, JobId};
use crate::market::{Bid, Deployment, Dseq, Lease, LeaseId, Order, OrderId};
use crate::model::ListedOffer;
use crate::params::Params;
use crate::provider::Provider;
use crate::time::Timestamp;

/// The most items one page returns.
pub const MAX_PAGE: u32 = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Items wanted; 0 means the default (50), larger than [`MAX_PAGE`] means [`MAX_PAGE`].
    #[serde(default)]
    pub limit: u32,
}

impl Page {
    pub fn first(limit: u32) -> Self {
        Page { after: None, limit }
    }

    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 50,
            n => n.min(MAX_PAGE) as usize,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum Query {
    ChainInfo,
    Params,
    Supply,
    Account {
        address: Address,
    },
    Provider {
        address: Address,
    },
    Providers {
        #[serde(default)]
        page: Page,
    },
    Deployment {
        dseq: Dseq,
    },
    DeploymentsByOwner {
        owner: Address,
        #[serde(default)]
        page: Page,
    },
    Order {
        order: OrderId,
    },
    OpenOrders {
        #[serde(default)]
        page: Page,
    },
    Bids {
        order: OrderId,
    },
    Lease {
        lease: LeaseId,
    },
    LeasesByProvider {
        provider: Address,
        #[serde(default)]
        page: Page,
    },
    Job {
        job: JobId,
    },
    JobBids {
        job: JobId,
    },
    OpenJobs {
        #[serde(default)]
        page: Page,
    },
    Channel {
        channel: ChannelId,
    },
    /// A referee committee (a job's `checks` name them).
    Committee {
        committee: CommitteeId,
    },
    /// Offers of one model (by hash), or of every model when `model_hash` is absent, by model then provider.
    ModelOffers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_hash: Option<Hash>,
        #[serde(default)]
        page: Page,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChainInfo {
    pub chain_id: String,
    /// Height of the last executed block (0 before the first).
    pub height: u64,
    pub time: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// Fixed at genesis; nothing mints yet.
    pub total: Amount,
    /// Held by module accounts (escrow, bonds, bid deposits, job budgets, fees), by module name.
    pub modules: Vec<(String, Amount)>,
}

/// A deployment with its orders and leases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentInfo {
    pub deployment: Deployment,
    pub orders: Vec<Order>,
    pub leases: Vec<Lease>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Pass as `page.after` for the next page; `None` on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum QueryResponse {
    ChainInfo(ChainInfo),
    Params(Params),
    Supply(Supply),
    Account(Option<Account>),
    Provider(Option<Provider>),
    Providers(Paged<Provider>),
    Deployment(Option<DeploymentInfo>),
    Deployments(Paged<Deployment>),
    Order(Option<Order>),
    Orders(Paged<Order>),
    Bids(Vec<Bid>),
    Lease(Option<Lease>),
    Leases(Paged<Lease>),
    Job(Option<Job>),
    JobBids(Vec<JobBid>),
    Jobs(Paged<Job>),
    Channel(Option<Channel>),
    ModelOffers(Paged<ListedOffer>),
    Committee(Option<Committee>),
}
