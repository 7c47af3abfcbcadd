//! The tensorgrid wire model, shared by the ledger, node, provider, gateway, CLI and explorer.
//!
//! Plain data and pure functions only: no I/O, no clock, no randomness of its own. Every type has a serde JSON
//! form (for RPC and humans) and, where it is signed or stored, one canonical binary form ([`codec`]).

pub mod account;
pub mod amount;
pub mod block;
pub mod channel;
pub mod channel_book;
pub mod codec;
pub mod committee;
pub mod crypto;
pub mod error;
pub mod event;
pub mod genesis;
pub mod inference;
pub mod job;
pub mod limits;
pub mod manifest;
pub mod market;
pub mod model;
pub mod params;
pub mod provider;
pub mod provider_api;
pub mod query;
pub mod resources;
pub mod time;
pub mod tx;

pub use account::Account;
pub use amount::Amount;
pub use block::{BlockContext, BlockOutcome, BlockRecord, Receipt, StreamedBlock, TxOutcome, TxRecord};
pub use crypto::{Address, Hash, SecretKey, Signature};
pub use error::TxError;
pub use event::Event;
pub use genesis::{Genesis, GenesisAccount};
pub use params::Params;
pub use time::Timestamp;
pub use tx::{Msg, SignedTx, Tx};
