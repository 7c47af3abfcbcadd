//! Why a transaction was refused or failed. These travel in receipts, so they are part of the wire model:
//! each variant carries the values that explain it, and its `Display` says what to do next where that helps.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::channel::ChannelId;
use crate::crypto::{Address, Hash};
use crate::job::{JobId, JobState};
use crate::limits::Malformed;
use crate::market::{BidId, Dseq, OrderId};
use crate::time::Timestamp;

#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize, thiserror::Error,
)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum TxError {
    // --- admission: the transaction changes nothing, not even the nonce, and pays no fee
    #[error("undecodable transaction: {reason}")]
    Undecodable { reason: String },
    #[error("transaction is {size} bytes; the limit is {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("malformed transaction: {malformed}")]
    Malformed { malformed: Malformed },
    #[error("transaction is for chain `{got}`, this is `{expected}`")]
    WrongChainId { expected: String, got: String },
    #[error("signature does not verify for signer {signer}")]
    BadSignature { signer: Address },
    #[error("account {address} does not exist; it must receive funds first")]
    UnknownAccount { address: Address },
    #[error("nonce {got} was already used; the next nonce of this account is {expected}")]
    NonceReplayed { expected: u64, got: u64 },
    #[error("nonce {got} skips ahead; the next nonce of this account is {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("max_fee {offered} is below the fee for this transaction, {required}")]
    FeeTooLow { required: Amount, offered: Amount },
    #[error("the fee is {required} but the account holds {available}")]
    CannotPayFee { required: Amount, available: Amount },

    // --- execution: the fee is paid and the nonce advances; nothing else changes
    #[error("{account} holds {available} but {needed} is needed")]
    InsufficientFunds { account: Address, needed: Amount, available: Amount },
    #[error("arithmetic overflow computing {what}")]
    Overflow { what: String },
    #[error("{address} is not a registered provider")]
    ProviderNotFound { address: Address },
    #[error("{address} is already an active provider; use update_provider")]
    ProviderAlreadyActive { address: Address },
    #[error("provider {address} is deregistered")]
    ProviderNotActive { address: Address },
    #[error("provider {address} is offline: its last heartbeat was at {last_heartbeat}")]
    ProviderOffline { address: Address, last_heartbeat: Timestamp },
    #[error("stake would be {stake}, below the minimum {minimum}; deregister to withdraw all of it")]
    StakeBelowMinimum { stake: Amount, minimum: Amount },
    #[error("cannot unbond {requested}: only {bonded} is bonded")]
    UnbondTooLarge { requested: Amount, bonded: Amount },
    #[error("already {max} unbonding entries; wait for one to mature")]
    TooManyUnbonding { max: u32 },
    #[error("provider still has {leases} active leases and {job_slots} job slots; close them first")]
    ProviderHasActiveWork { leases: u32, job_slots: u32 },
    #[error("deposit {deposit} is below the minimum {minimum}")]
    DepositTooSmall { deposit: Amount, minimum: Amount },
    #[error("price {price} per hour is above the limit {max}")]
    PriceTooHigh { price: Amount, max: Amount },
    #[error("deployment {dseq} does not exist")]
    DeploymentNotFound { dseq: Dseq },
    #[error("deployment {dseq} is closed")]
    DeploymentClosed { dseq: Dseq },
    #[error("{signer} may not do this: {what} belongs to {owner}")]
    NotOwner { signer: Address, owner: Address, what: String },
    #[error("order {order} does not exist")]
    OrderNotFound { order: OrderId },
    #[error("order {order} is not open for bids")]
    OrderNotOpen { order: OrderId },
    #[error("provider lacks the required attribute {key}={value}")]
    AttributeNotMet { key: String, value: String },
    #[error("this provider already has a bid on order {order}")]
    DuplicateBid { order: OrderId },
    #[error("the bid book is full and {price} does not beat the worst live bid {worst}")]
    BidNotCompetitive { price: Amount, worst: Amount },
    #[error("bid {bid} does not exist")]
    BidNotFound { bid: BidId },
    #[error("bid {bid} is not open")]
    BidNotOpen { bid: BidId },
    #[error("lease {lease} does not exist")]
    LeaseNotFound { lease: BidId },
    #[error("lease {lease} is not active")]
    LeaseNotActive { lease: BidId },
    #[error("job {job} does not exist")]
    JobNotFound { job: JobId },
    #[error("job {job} is {state:?}; this needs it to be {expected}")]
    JobWrongState { job: JobId, state: JobState, expected: String },
    #[error("redundancy {requested} is above the limit {max}")]
    RedundancyTooHigh { requested: u8, max: u8 },
    #[error("{field} of {value} ms is outside [{min}, {max}] ms")]
    WindowOutOfRange { field: String, value: u64, min: u64, max: u64 },
    #[error("bid {price} is above the per-provider maximum {max} (budget / redundancy)")]
    JobBidTooHigh { price: Amount, max: Amount },
    #[error("this provider already bid on job {job}")]
    DuplicateJobBid { job: JobId },
    #[error("{provider} holds no live slot nor committee seat in job {job}")]
    NotAssigned { job: JobId, provider: Address },
    #[error("the dispute deposit {deposit} is below {required}, the fees of every seat of every round")]
    DisputeDepositTooLow { deposit: Amount, required: Amount },
    #[error("provider {address} is jailed: slashed below the minimum stake, it must bond more first")]
    ProviderJailed { address: Address },
    #[error("job {job} requires {requirement}; this provider's record has {actual}")]
    RequirementNotMet { job: JobId, requirement: String, actual: u64 },
    #[error("committee {committee} is not taking reveals yet: every member must commit first")]
    CommitteeNotRevealing { committee: u64 },
    #[error(
        "run_timeout_ms of {run_timeout_ms} is too short for max_fuel {max_fuel}: at least {needed_ms} ms \
         (the overhead plus the fuel at the reference speed)"
    )]
    RunTimeoutTooShort { run_timeout_ms: u64, max_fuel: u64, needed_ms: u64 },
    #[error("{to} is the `{module}` module's account, which takes funds only through its own messages")]
    SendToModule { to: Address, module: String },
    #[error("this slot already confirmed its content")]
    ContentAlreadyConfirmed { job: JobId },
    #[error("this slot has not confirmed its content yet")]
    ContentNotConfirmed { job: JobId },
    #[error("this slot already committed")]
    AlreadyCommitted { job: JobId },
    #[error("this slot already revealed")]
    AlreadyRevealed { job: JobId },
    #[error("the revealed result and salt do not match the commitment")]
    CommitmentMismatch { job: JobId },
    #[error("payment channel {channel} does not exist")]
    ChannelNotFound { channel: ChannelId },
    #[error("payment channel {channel} is {state}; this needs it open")]
    ChannelNotOpen { channel: ChannelId, state: String },
    #[error("the voucher for channel {channel} is not signed by its client")]
    BadVoucher { channel: ChannelId },
    #[error(
        "the voucher allows {cumulative} in total and {redeemed} was already redeemed: nothing new to take"
    )]
    NothingToRedeem { channel: ChannelId, cumulative: Amount, redeemed: Amount },
    #[error("this provider already offers {max} models; withdraw one first")]
    TooManyModels { max: u32 },
    #[error("this provider offers no model {model_hash}")]
    ModelNotOffered { model_hash: Hash },
}

impl TxError {
    /// Admission errors leave everything unchanged; execution errors still charge the fee and use the nonce.
    pub fn is_admission(&self) -> bool {
        matches!(
            self,
            TxError::Undecodable { .. }
                | TxError::TooLarge { .. }
                | TxError::Malformed { .. }
                | TxError::WrongChainId { .. }
                | TxError::BadSignature { .. }
                | TxError::UnknownAccount { .. }
                | TxError::NonceReplayed { .. }
                | TxError::NonceGap { .. }
                | TxError::FeeTooLow { .. }
                | TxError::CannotPayFee { .. }
        )
    }
}
