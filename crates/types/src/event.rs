//! What happened, in order: the one stream explorers, providers and clients watch.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
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
    JobAssigned {
        job: JobId,
        provider: Address,
        price: Amount,
        commit_deadline: Timestamp,
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
}
