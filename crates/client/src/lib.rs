//! The tensorgrid Rust SDK, used by the CLI, the provider daemon and the gateway: keys (BIP39 recovery
//! phrases, SLIP-0010 ed25519 derivation) in an encrypted keystore, the typed client of a node's HTTP API,
//! the transaction builder, and the signed client of a provider's API.

pub mod jobs;
pub mod keystore;
pub mod provider;
pub mod rpc;

pub use keystore::{Backend, KdfParams, KeyInfo, Keystore, KeystoreError, Unlocked};
pub use provider::ProviderClient;
pub use rpc::{RpcClient, RpcError, Submitted, TxBuilder};
