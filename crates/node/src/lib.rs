//! The tensorgrid validator node: the mempool, block production over the ledger ([`core`]) and the HTTP JSON
//! API ([`rpc`]). Consensus (commonware simplex + marshal), sync, the event stream, metrics and the
//! devnet/testnet launchers build on these.

pub mod core;
pub mod mempool;
pub mod rpc;

use tensorgrid_ledger::{LedgerError, StoreError};
use tensorgrid_types::{Hash, Timestamp};

/// Why a node could not answer a read: its status, a committed record, an index. The API answers every one
/// with 500 (`rpc::internal`), since none is the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the node's state lock is poisoned")]
    Poisoned,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("a stored {what} record is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("the account index names transaction {0}, which has no record")]
    MissingRecord(Hash),
    #[error("the status document: {0}")]
    Encode(String),
}

/// This machine's clock, for what happens off-chain (mempool arrival times, genesis times, rates). Nothing
/// that affects consensus reads it: blocks carry their own time.
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
