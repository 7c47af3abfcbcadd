//! The tensorgrid validator node: the mempool, block production over the ledger ([`core`]) and the HTTP JSON
//! API ([`rpc`]). Consensus (commonware simplex + marshal), sync, the event stream, metrics and the
//! devnet/testnet launchers build on these.

pub mod core;
pub mod mempool;
pub mod rpc;
