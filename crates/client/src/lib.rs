//! The tensorgrid Rust SDK, used by the CLI, the provider daemon and the gateway.
//!
//! Today: keys (BIP39 recovery phrases, SLIP-0010 ed25519 derivation) and an encrypted keystore. The typed RPC
//! client and the transaction builder arrive with the node's RPC.

pub mod keystore;

pub use keystore::{Backend, KdfParams, KeyInfo, Keystore, KeystoreError, Unlocked};
