//! tensorgrid's chain on commonware: the block format, the application that builds, verifies and executes
//! blocks on the ledger, simplex consensus with marshal delivering finalized blocks in order, mempool gossip,
//! and the wiring of one validator over any commonware runtime and p2p network.

pub mod app;
pub mod block;
pub mod engine;
pub mod launch;
pub mod mempool;
pub mod node;

pub use app::{App, Chain, Committed, Halt, OpenError};
pub use block::Block;
pub use engine::{start, EngineConfig, Network, Validator};

/// The signing scheme of consensus votes and certificates: ed25519, one signature per validator, so every
/// certificate says who signed it (attributable faults).
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;

/// Namespace of every consensus signature, so they can never be replayed as transaction signatures.
pub const NAMESPACE: &[u8] = b"tensorgrid/consensus";
