//! Time as the gateway sees it, injected so the gateway can run on a simulated clock: routing ranks
//! providers by recent failures and latency, and responses carry creation times.

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        tensorgrid_client::wall_clock().millis()
    }
}
