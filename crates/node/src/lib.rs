//! The tensorgrid validator node. Today: the mempool. Consensus (commonware simplex + marshal), block
//! building and execution, sync, RPC and the devnet/testnet launchers build on it.

pub mod mempool;
