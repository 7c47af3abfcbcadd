//! The tensorgrid ledger: a pure, deterministic state machine.
//!
//! `Ledger::execute_block(ctx, txs, rng)` turns a block's context and encoded transactions into receipts and
//! events over a [`Store`]. There is no async runtime, clock, randomness or I/O here: time and randomness come
//! in with the [`BlockContext`](tensorgrid_types::BlockContext), storage through the `Store` trait, and the
//! node turns the outputs into effects.
//!
//! Modules: bank (balances, fees, module accounts), providers (registration, stake, heartbeats), market
//! (deployments, orders, bids, leases), escrow (lazy accrual and the dry-time index), jobs (k-redundant
//! commit–reveal work). Deadlines of every kind share one time-ordered index ([`timers`]), so per-block work
//! is proportional to what ends in the block.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod bank;
mod channels;
mod committees;
mod error;
mod escrow;
mod invariants;
mod jobs;
mod keys;
mod ledger;
mod market;
mod models;
mod providers;
mod query;
mod retention;
mod state;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;

pub use bank::Module;
pub use error::{LedgerError, QueryError};
pub use escrow::{accrued, dry_time, split_proportionally};
pub use invariants::InvariantError;
pub use ledger::Ledger;
pub use store::{KeyValue, MemStore, ScanItem, Store, StoreError, WriteBatch};
