//! The tensorgrid Rust SDK, used by the CLI, the provider daemon and the gateway: keys (BIP39 recovery
//! phrases, SLIP-0010 ed25519 derivation) in an encrypted keystore, the typed client of a node's HTTP API,
//! the transaction builder, and the signed client of a provider's API.

pub mod jobs;
pub mod keystore;
pub mod net;
pub mod provider;
pub mod rpc;

pub use keystore::{Backend, KdfParams, KeyInfo, Keystore, KeystoreError, Unlocked};
pub use provider::ProviderClient;
pub use rpc::{RpcClient, RpcError, Submitted, TxBuilder};

/// This machine's clock in chain units, for everything off chain that needs the time (request signatures,
/// provider decisions, gateway routing). The node side has its own (`tensorgrid_node::wall_clock`), since it
/// does not depend on this crate; nothing that affects consensus reads either.
pub fn wall_clock() -> tensorgrid_types::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    tensorgrid_types::Timestamp::from_millis(ms)
}
