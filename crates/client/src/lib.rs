//! The tensorgrid Rust SDK, used by the CLI, the provider daemon and the gateway: keys (BIP39 recovery
//! phrases, SLIP-0010 ed25519 derivation) in an encrypted keystore, the typed client of a node's HTTP API,
//! and the transaction builder.

pub mod keystore;
pub mod rpc;

pub use keystore::{Backend, KdfParams, KeyInfo, Keystore, KeystoreError, Unlocked};
pub use rpc::{RpcClient, RpcError, Submitted, TxBuilder};
