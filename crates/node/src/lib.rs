//! The tensorgrid validator node: the mempool, block production over the ledger ([`core`]) and the HTTP JSON
//! API ([`rpc`]). Consensus (commonware simplex + marshal), sync, the event stream, metrics and the
//! devnet/testnet launchers build on these.

pub mod core;
pub mod mempool;
pub mod rpc;

use tensorgrid_types::Timestamp;

/// This machine's clock, for what happens off-chain (mempool arrival times, genesis times, rates). Nothing
/// that affects consensus reads it: blocks carry their own time.
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
