use tensorgrid_types::limits::Malformed;
use tensorgrid_types::{Timestamp, TxError};

use crate::store::StoreError;

/// Failures that stop the ledger itself, as opposed to a transaction failing. A block that hits one is not
/// applied at all: the store is left exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state under `{key}` is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("ledger invariant broken: {what}")]
    Invariant { what: String },
    #[error("the ledger has no genesis yet")]
    NotInitialized,
    #[error("the ledger already has a genesis")]
    AlreadyInitialized,
    #[error("invalid genesis: {0}")]
    Genesis(Malformed),
    #[error("block height {got} does not follow {last}")]
    WrongHeight { last: u64, got: u64 },
    #[error("block time {got} is not after the previous block's {last}")]
    TimeNotIncreasing { last: Timestamp, got: Timestamp },
}

/// Why a query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("bad page cursor `{0}`")]
    BadCursor(String),
}

/// Inside execution: either the transaction fails (and is rolled back) or the ledger stops.
#[derive(Debug)]
pub(crate) enum ExecError {
    Tx(TxError),
    Fatal(LedgerError),
}

impl From<TxError> for ExecError {
    fn from(e: TxError) -> Self {
        ExecError::Tx(e)
    }
}

impl From<LedgerError> for ExecError {
    fn from(e: LedgerError) -> Self {
        ExecError::Fatal(e)
    }
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        ExecError::Fatal(LedgerError::Store(e))
    }
}

pub(crate) type ExecResult<T> = Result<T, ExecError>;

pub(crate) fn invariant(what: impl Into<String>) -> LedgerError {
    LedgerError::Invariant { what: what.into() }
}

pub(crate) fn overflow(what: &str) -> ExecError {
    ExecError::Tx(TxError::Overflow { what: what.to_string() })
}
