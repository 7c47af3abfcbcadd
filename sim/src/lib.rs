//! Seeded, deterministic simulations of the tensorgrid market on the in-process ledger.
//!
//! Actors (honest providers and misbehaving ones: cheaters, the silent, the lazy; paying and non-paying
//! tenants; job clients) react to each block's events; the [`World`](world::World) runs them and checks every
//! ledger invariant after every block. The same seed always gives the same history.

pub mod actors;
pub mod detection;
pub mod narrate;
pub mod report;
pub mod scenario;
pub mod world;
