//! What the consensus layer hands the ledger with each block, and what it gets back.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::{Address, Hash};
use crate::error::TxError;
use crate::event::Event;
use crate::time::Timestamp;

/// The block's context: the only source of time and randomness the ledger ever sees.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockContext {
    pub height: u64,
    /// The proposer's timestamp, already checked by consensus to exceed the parent's.
    pub time: Timestamp,
    /// Randomness the proposer cannot choose alone (see ARCHITECTURE.md for what biases it today).
    pub randomness: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    Succeeded,
    /// Admitted, paid its fee and used its nonce, but the message failed; nothing else changed.
    Failed {
        error: TxError,
    },
    /// Refused at admission; nothing changed at all.
    Rejected {
        error: TxError,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    /// `None` when the bytes could not even be decoded.
    pub signer: Option<Address>,
    pub outcome: TxOutcome,
    pub fee_paid: Amount,
    pub events: Vec<Event>,
}

impl Receipt {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, TxOutcome::Succeeded)
    }

    pub fn error(&self) -> Option<&TxError> {
        match &self.outcome {
            TxOutcome::Succeeded => None,
            TxOutcome::Failed { error } | TxOutcome::Rejected { error } => Some(error),
        }
    }

    /// The deployment this transaction created, if it created one.
    pub fn created_deployment(&self) -> Option<crate::market::Dseq> {
        self.events.iter().find_map(|e| match e {
            Event::DeploymentCreated { dseq, .. } => Some(*dseq),
            _ => None,
        })
    }

    /// The payment channel this transaction opened, if it opened one.
    pub fn opened_channel(&self) -> Option<crate::channel::ChannelId> {
        self.events.iter().find_map(|e| match e {
            Event::ChannelOpened { channel, .. } => Some(*channel),
            _ => None,
        })
    }

    /// The job this transaction submitted, if it submitted one.
    pub fn created_job(&self) -> Option<crate::job::JobId> {
        self.events.iter().find_map(|e| match e {
            Event::JobSubmitted { job, .. } => Some(*job),
            _ => None,
        })
    }
}

/// Everything a block produced: one receipt per transaction, and the block's events in order (those from
/// deadlines reached at the start of the block first, then each transaction's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockOutcome {
    pub receipts: Vec<Receipt>,
    pub events: Vec<Event>,
}

/// A node's record of a committed transaction: where it landed and what it did (`GET /v1/tx/{hash}`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxRecord {
    pub hash: Hash,
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    pub block_time: Timestamp,
    pub receipt: Receipt,
}

/// A node's record of a committed block (`GET /v1/blocks/{height}`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockRecord {
    pub height: u64,
    /// The digest validators signed, hex.
    pub digest: String,
    pub parent: String,
    pub time: Timestamp,
    /// The header's delayed state commitment: the root after executing block `state_height`.
    pub state_height: u64,
    pub state_root: Hash,
    /// The state root after executing this block (what a later header will claim).
    pub app_root: Hash,
    pub tx_root: Hash,
    pub txs: Vec<Hash>,
    /// Events of the deadlines the block's time reached and of its transactions, in order.
    pub events: Vec<Event>,
}

/// One committed block as the node's event stream (`GET /v1/events`) carries it: its height, time and the
/// events that passed the subscriber's filters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamedBlock {
    pub height: u64,
    pub time: Timestamp,
    pub events: Vec<Event>,
}
