//! What happened, in order: the one stream explorers, providers and clients watch.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::channel::ChannelId;
use crate::committee::{CheckKind, CheckSubject, CommitteeId};
use crate::crypto::{Address, Hash};
use crate::job::{JobFailure, JobId};
use crate::market::{BidId, CloseReason, Dseq, LeaseId, OrderId};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Transfer {
        from: Address,
        to: Address,
        amount: Amount,
    },
    FeePaid {
        payer: Address,
        amount: Amount,
    },

    ProviderRegistered {
        provider: Address,
        stake: Amount,
    },
    ProviderUpdated {
        provider: Address,
    },
    ProviderDeregistered {
        provider: Address,
    },
    StakeBonded {
        provider: Address,
        amount: Amount,
    },
    UnbondingStarted {
        provider: Address,
        amount: Amount,
        matures_at: Timestamp,
    },
    UnbondingCompleted {
        provider: Address,
        amount: Amount,
    },

    DeploymentCreated {
        dseq: Dseq,
        owner: Address,
        deposit: Amount,
    },
    DeploymentDeposited {
        dseq: Dseq,
        amount: Amount,
        balance: Amount,
    },
    DeploymentClosed {
        dseq: Dseq,
        owner: Address,
        reason: CloseReason,
        refunded: Amount,
    },
    OrderCreated {
        order: OrderId,
        max_price: Amount,
    },
    OrderClosed {
        order: OrderId,
        reason: CloseReason,
    },
    BidCreated {
        bid: BidId,
        price: Amount,
    },
    BidClosed {
        bid: BidId,
        reason: CloseReason,
    },
    LeaseCreated {
        lease: LeaseId,
        owner: Address,
        price: Amount,
    },
    LeaseClosed {
        lease: LeaseId,
        owner: Address,
        reason: CloseReason,
    },
    /// Escrow paid a lease's provider for time up to `settled_to`.
    LeasePaid {
        lease: LeaseId,
        amount: Amount,
        settled_to: Timestamp,
    },

    JobSubmitted {
        job: JobId,
        client: Address,
        budget: Amount,
    },
    JobBid {
        job: JobId,
        provider: Address,
        price: Amount,
    },
    JobBidReturned {
        job: JobId,
        provider: Address,
    },
    /// A bid won a slot; its provider must confirm the content by `content_deadline`.
    JobAssigned {
        job: JobId,
        provider: Address,
        price: Amount,
        content_deadline: Timestamp,
    },
    JobCommitted {
        job: JobId,
        provider: Address,
    },
    JobRevealStarted {
        job: JobId,
        deadline: Timestamp,
    },
    JobRevealed {
        job: JobId,
        provider: Address,
        result_hash: Hash,
    },
    JobChallengeStarted {
        job: JobId,
        deadline: Timestamp,
    },
    /// A provider missed a deadline; its bid deposit went to the client.
    JobDeadlineMissed {
        job: JobId,
        provider: Address,
        forfeited: Amount,
    },
    JobPaid {
        job: JobId,
        provider: Address,
        amount: Amount,
    },
    JobCompleted {
        job: JobId,
        paid: Amount,
        refunded: Amount,
    },
    JobDisputed {
        job: JobId,
    },
    JobFailed {
        job: JobId,
        reason: JobFailure,
        refunded: Amount,
    },
    JobCancelled {
        job: JobId,
        refunded: Amount,
    },

    ChannelOpened {
        channel: ChannelId,
        client: Address,
        provider: Address,
        deposit: Amount,
    },
    ChannelToppedUp {
        channel: ChannelId,
        amount: Amount,
        deposit: Amount,
    },
    VoucherRedeemed {
        channel: ChannelId,
        provider: Address,
        amount: Amount,
        cumulative: Amount,
    },
    ChannelClosing {
        channel: ChannelId,
        ends_at: Timestamp,
    },
    ChannelClosed {
        channel: ChannelId,
        client: Address,
        refunded: Amount,
    },

    ModelAnnounced {
        provider: Address,
        model_hash: Hash,
        name: String,
    },
    ModelWithdrawn {
        provider: Address,
        model_hash: Hash,
    },

    /// The provider confirmed it holds the module and inputs; it must commit by `commit_deadline`.
    JobStarted {
        job: JobId,
        provider: Address,
        commit_deadline: Timestamp,
    },
    /// The provider never confirmed the content: its slot is replaced and its deposit returned.
    JobContentUnavailable {
        job: JobId,
        provider: Address,
    },

    /// A referee committee drew its members for a round (an audit's first round has one).
    CommitteeDrawn {
        committee: CommitteeId,
        subject: CheckSubject,
        check: CheckKind,
        round: u8,
        members: Vec<Address>,
        commit_deadline: Timestamp,
    },
    /// Every seated member committed; reveals are due by `deadline`.
    CommitteeRevealStarted {
        committee: CommitteeId,
        deadline: Timestamp,
    },
    RefereeCommitted {
        committee: CommitteeId,
        provider: Address,
    },
    RefereeRevealed {
        committee: CommitteeId,
        provider: Address,
        vote: Hash,
    },
    /// A member stayed silent past a deadline (its deposit is forfeited) or voted against the verdict.
    RefereeForfeited {
        committee: CommitteeId,
        provider: Address,
        deposit: Amount,
    },
    /// A member whose reveal counted was paid its fee and its share of forfeited deposits; its deposit
    /// went back to its stake.
    RefereePaid {
        committee: CommitteeId,
        provider: Address,
        fee: Amount,
        reward: Amount,
    },
    CommitteeConcluded {
        committee: CommitteeId,
        subject: CheckSubject,
        verdict: Option<Hash>,
        fees_paid: Amount,
    },
    /// Results were revealed and the audit draw chose this job: a referee re-runs it before it is paid.
    JobAudited {
        job: JobId,
        committee: CommitteeId,
    },
    /// A check of the job ended; `verdict` is the result it stands on, none when no committee decided.
    JobVerdict {
        job: JobId,
        verdict: Option<Hash>,
    },
    /// A verdict went against the provider's result: it lost `stake` of its bonded and unbonding stake
    /// and its bid `deposit`.
    ProviderSlashed {
        provider: Address,
        job: JobId,
        stake: Amount,
        deposit: Amount,
    },
    /// Slashed below the minimum stake: no new bids or committee seats until it bonds enough again.
    ProviderJailed {
        provider: Address,
    },
    ProviderUnjailed {
        provider: Address,
    },

    /// A closed record reached the end of its retention period and was deleted from the state (its events
    /// stay in the block index); its storage deposit went back to `owner`.
    RecordRemoved {
        record: StoredRecord,
        owner: Address,
        refunded: Amount,
    },
}

/// A record that carries a storage deposit and is removed a retention period after it closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum StoredRecord {
    /// A deployment with its orders, bids and leases.
    Deployment(Dseq),
    /// A job with its bids.
    Job(JobId),
    Channel(ChannelId),
}

impl std::fmt::Display for StoredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredRecord::Deployment(dseq) => write!(f, "deployment {dseq}"),
            StoredRecord::Job(id) => write!(f, "job {id}"),
            StoredRecord::Channel(id) => write!(f, "channel {id}"),
        }
    }
}

impl Event {
    /// The accounts the event names, in the order it names them: what an account's history is indexed by.
    /// A bid or lease names its provider through its id.
    pub fn accounts(&self) -> Vec<Address> {
        match self {
            Event::Transfer { from, to, .. } => vec![*from, *to],
            Event::FeePaid { payer, .. } => vec![*payer],
            Event::ProviderRegistered { provider, .. }
            | Event::ProviderUpdated { provider }
            | Event::ProviderDeregistered { provider }
            | Event::StakeBonded { provider, .. }
            | Event::UnbondingStarted { provider, .. }
            | Event::UnbondingCompleted { provider, .. }
            | Event::JobBid { provider, .. }
            | Event::JobBidReturned { provider, .. }
            | Event::JobAssigned { provider, .. }
            | Event::JobStarted { provider, .. }
            | Event::JobContentUnavailable { provider, .. }
            | Event::JobCommitted { provider, .. }
            | Event::JobRevealed { provider, .. }
            | Event::JobDeadlineMissed { provider, .. }
            | Event::JobPaid { provider, .. }
            | Event::RefereeCommitted { provider, .. }
            | Event::RefereeRevealed { provider, .. }
            | Event::RefereeForfeited { provider, .. }
            | Event::RefereePaid { provider, .. }
            | Event::ProviderSlashed { provider, .. }
            | Event::ProviderJailed { provider }
            | Event::ProviderUnjailed { provider } => vec![*provider],
            Event::CommitteeDrawn { members, .. } => members.clone(),
            Event::DeploymentCreated { owner, .. } | Event::DeploymentClosed { owner, .. } => vec![*owner],
            Event::JobSubmitted { client, .. } => vec![*client],
            Event::BidCreated { bid, .. } | Event::BidClosed { bid, .. } => vec![bid.provider],
            Event::LeaseCreated { lease, owner, .. } | Event::LeaseClosed { lease, owner, .. } => {
                vec![*owner, lease.provider]
            }
            Event::LeasePaid { lease, .. } => vec![lease.provider],
            Event::ChannelOpened { client, provider, .. } => vec![*client, *provider],
            Event::VoucherRedeemed { provider, .. } => vec![*provider],
            Event::ChannelClosed { client, .. } => vec![*client],
            Event::RecordRemoved { owner, .. } => vec![*owner],
            Event::ModelAnnounced { provider, .. } | Event::ModelWithdrawn { provider, .. } => {
                vec![*provider]
            }
            Event::DeploymentDeposited { .. }
            | Event::OrderCreated { .. }
            | Event::OrderClosed { .. }
            | Event::JobRevealStarted { .. }
            | Event::JobChallengeStarted { .. }
            | Event::JobCompleted { .. }
            | Event::JobDisputed { .. }
            | Event::JobFailed { .. }
            | Event::JobCancelled { .. }
            | Event::ChannelToppedUp { .. }
            | Event::ChannelClosing { .. }
            | Event::CommitteeRevealStarted { .. }
            | Event::CommitteeConcluded { .. }
            | Event::JobAudited { .. }
            | Event::JobVerdict { .. } => Vec::new(),
        }
    }
}
