//! Every duration, deposit and limit the ledger uses, in one place. Durations are milliseconds of block time;
//! amounts are utgr.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::limits::Malformed;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    // --- transactions
    /// Fee = `base_fee + fee_per_byte × encoded size`.
    pub base_fee: Amount,
    pub fee_per_byte: Amount,
    /// Largest encoded transaction accepted.
    pub max_tx_bytes: u32,
    /// Validators reject a block whose timestamp is further ahead of their own clock than this.
    pub max_clock_drift_ms: u64,

    // --- providers
    pub min_provider_stake: Amount,
    pub unbonding_period_ms: u64,
    pub max_unbonding_entries: u32,
    /// How often a provider is expected to send a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Leases accrue up to `last heartbeat + heartbeat_grace_ms`; past it the provider's leases close.
    pub heartbeat_grace_ms: u64,

    // --- market
    pub min_deployment_deposit: Amount,
    pub bid_window_ms: u64,
    pub max_bids_per_order: u32,
    pub bid_deposit: Amount,
    /// Highest price per hour a bid or order may name; keeps escrow arithmetic far from overflow.
    pub max_price_per_hour: Amount,

    // --- jobs
    pub max_redundancy: u8,
    pub max_bids_per_job: u32,
    pub job_bid_deposit: Amount,
    pub min_job_window_ms: u64,
    pub max_job_window_ms: u64,
    /// With one result there is nothing to compare: the client may dispute it for this long.
    pub challenge_period_ms: u64,
    /// How long an assigned provider has to confirm it received the module and inputs, which the client
    /// must upload to it; a slot that lapses is replaced and costs its provider nothing.
    pub job_content_window_ms: u64,
    /// The reference speed of a job runtime, in fuel units per second: a job's `run_timeout_ms` must leave
    /// room for `max_fuel` at this speed, so no client can ask for a run no provider can finish in time.
    pub job_reference_fuel_per_sec: u64,
    /// What a run needs besides its fuel (compiling the module, preparing inputs, the commitment reaching
    /// a block), added to the fuel's time in the minimum run timeout.
    pub job_run_overhead_ms: u64,
    /// How long a provider has to redeem its last voucher after the client asks to close a channel.
    #[serde(default = "default_channel_challenge_ms")]
    pub channel_challenge_ms: u64,
    /// How long a model offer's price rise waits before it takes effect (a lower price applies at once).
    #[serde(default = "default_model_price_notice_ms")]
    pub model_price_notice_ms: u64,

    // --- verification
    /// Members of a full referee committee.
    #[serde(default = "default_referee_count")]
    pub referee_count: u8,
    /// A member's fee, in basis points of the job's highest slot price: a member runs the same work as a
    /// worker, so it is paid what the work is worth (at least 1 utgr).
    #[serde(default = "default_referee_fee_bps")]
    pub referee_fee_bps: u32,
    /// Locked out of a member's stake while it sits on a committee; forfeited when it stays silent or votes
    /// against the verdict.
    #[serde(default = "default_referee_deposit")]
    pub referee_deposit: Amount,
    /// Committee rounds without a majority before a check ends with no verdict.
    #[serde(default = "default_max_referee_rounds")]
    pub max_referee_rounds: u8,
    /// What a provider whose result differs from a verdict loses of its stake (bonded and unbonding), in
    /// basis points; its bid deposit goes too.
    #[serde(default = "default_slash_fraction_bps")]
    pub slash_fraction_bps: u32,
    /// The chance, in basis points, that agreeing or single results are audited before they are paid; each
    /// job pays this fraction of its budget into the audit pool at submission.
    #[serde(default = "default_audit_rate_bps")]
    pub audit_rate_bps: u32,
    /// The most a job bid's deposit can be. A bid's deposit is `price / audit_rate` (so skipping the work
    /// loses in expectation what the job is worth), at least `job_bid_deposit` and at most this.
    #[serde(default = "default_max_job_bid_deposit")]
    pub max_job_bid_deposit: Amount,

    // --- state
    /// Locked from whoever creates a deployment, a job or a channel, and refunded when the record is removed:
    /// what bounds the state by capital rather than by fees alone.
    pub storage_deposit: Amount,
    /// How long a closed deployment, finished job or closed channel stays queryable before it is removed
    /// from the state (its events stay in the block index).
    pub record_retention_ms: u64,
}

fn default_channel_challenge_ms() -> u64 {
    60 * 60 * 1_000
}

fn default_model_price_notice_ms() -> u64 {
    60 * 60 * 1_000
}

fn default_referee_count() -> u8 {
    3
}

fn default_referee_fee_bps() -> u32 {
    10_000
}

fn default_referee_deposit() -> Amount {
    Amount::tgr(1)
}

fn default_max_referee_rounds() -> u8 {
    2
}

fn default_slash_fraction_bps() -> u32 {
    1_000
}

fn default_audit_rate_bps() -> u32 {
    500
}

fn default_max_job_bid_deposit() -> Amount {
    Amount::tgr(1_000_000)
}

impl Default for Params {
    fn default() -> Self {
        const SECOND: u64 = 1_000;
        const MINUTE: u64 = 60 * SECOND;
        const DAY: u64 = 24 * 60 * MINUTE;
        Params {
            base_fee: Amount::utgr(100),
            fee_per_byte: Amount::utgr(1),
            max_tx_bytes: 64 * 1024,
            max_clock_drift_ms: 500,

            min_provider_stake: Amount::tgr(100),
            unbonding_period_ms: 14 * DAY,
            max_unbonding_entries: 7,
            heartbeat_interval_ms: MINUTE,
            heartbeat_grace_ms: 3 * MINUTE,

            min_deployment_deposit: Amount::tgr(5),
            bid_window_ms: 30 * SECOND,
            max_bids_per_order: 20,
            bid_deposit: Amount::tgr(5),
            max_price_per_hour: Amount::tgr(1_000_000),

            max_redundancy: 8,
            max_bids_per_job: 32,
            job_bid_deposit: Amount::tgr(1),
            min_job_window_ms: SECOND,
            max_job_window_ms: DAY,
            challenge_period_ms: 10 * MINUTE,
            job_content_window_ms: 2 * MINUTE,
            job_reference_fuel_per_sec: 100_000_000,
            job_run_overhead_ms: 10 * SECOND,
            channel_challenge_ms: default_channel_challenge_ms(),
            model_price_notice_ms: default_model_price_notice_ms(),

            referee_count: default_referee_count(),
            referee_fee_bps: default_referee_fee_bps(),
            referee_deposit: default_referee_deposit(),
            max_referee_rounds: default_max_referee_rounds(),
            slash_fraction_bps: default_slash_fraction_bps(),
            audit_rate_bps: default_audit_rate_bps(),
            max_job_bid_deposit: default_max_job_bid_deposit(),

            storage_deposit: Amount::utgr(100_000),
            record_retention_ms: 7 * DAY,
        }
    }
}

impl Params {
    /// Rejects params that would make the ledger misbehave (zero windows, an empty bid book, ...).
    pub fn validate(&self) -> Result<(), Malformed> {
        let positive = [
            ("max_tx_bytes", u64::from(self.max_tx_bytes)),
            ("unbonding_period_ms", self.unbonding_period_ms),
            ("max_unbonding_entries", u64::from(self.max_unbonding_entries)),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_grace_ms", self.heartbeat_grace_ms),
            ("bid_window_ms", self.bid_window_ms),
            ("max_bids_per_order", u64::from(self.max_bids_per_order)),
            ("max_redundancy", u64::from(self.max_redundancy)),
            ("max_bids_per_job", u64::from(self.max_bids_per_job)),
            ("min_job_window_ms", self.min_job_window_ms),
            ("challenge_period_ms", self.challenge_period_ms),
            ("job_content_window_ms", self.job_content_window_ms),
            ("job_reference_fuel_per_sec", self.job_reference_fuel_per_sec),
            ("channel_challenge_ms", self.channel_challenge_ms),
            ("record_retention_ms", self.record_retention_ms),
            ("referee_count", u64::from(self.referee_count)),
            ("max_referee_rounds", u64::from(self.max_referee_rounds)),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Malformed::new(format!("params.{name}"), "must be greater than zero"));
            }
        }
        if self.max_job_window_ms < self.min_job_window_ms {
            return Err(Malformed::new("params.max_job_window_ms", "is below min_job_window_ms"));
        }
        if self.max_bids_per_job < u32::from(self.max_redundancy) {
            return Err(Malformed::new("params.max_bids_per_job", "is below max_redundancy"));
        }
        for (name, bps) in
            [("slash_fraction_bps", self.slash_fraction_bps), ("audit_rate_bps", self.audit_rate_bps)]
        {
            if bps > 10_000 {
                return Err(Malformed::new(format!("params.{name}"), "is above 10000 (100 %)"));
            }
        }
        if self.referee_fee_bps > 100_000 {
            return Err(Malformed::new("params.referee_fee_bps", "is above 100000 (10× the job's price)"));
        }
        if self.referee_count > 32 || self.max_referee_rounds > 8 {
            return Err(Malformed::new(
                "params.referee_count",
                "committees are at most 32 seats and 8 rounds",
            ));
        }
        if self.max_job_bid_deposit < self.job_bid_deposit {
            return Err(Malformed::new("params.max_job_bid_deposit", "is below job_bid_deposit"));
        }
        if self.model_price_notice_ms > 30 * 24 * 60 * 60 * 1_000 {
            return Err(Malformed::new("params.model_price_notice_ms", "is longer than 30 days"));
        }
        if self.max_price_per_hour.is_zero() || self.max_price_per_hour > Amount::tgr(1_000_000_000) {
            return Err(Malformed::new("params.max_price_per_hour", "must be between 1utgr and 10^9 TGR"));
        }
        Ok(())
    }

    /// The shortest `run_timeout_ms` a job with `max_fuel` may ask for: the overhead plus the fuel's time at
    /// the reference speed, rounded up.
    pub fn min_run_timeout_ms(&self, max_fuel: u64) -> u64 {
        let fuel_ms = u128::from(max_fuel)
            .saturating_mul(1_000)
            .div_ceil(u128::from(self.job_reference_fuel_per_sec.max(1)));
        u64::try_from(fuel_ms).unwrap_or(u64::MAX).saturating_add(self.job_run_overhead_ms)
    }

    /// The deposit a job bid at `price` locks: `⌈price × 10⁴ / audit_rate_bps⌉`, so that a provider that
    /// skips the work and is audited with probability `audit_rate` loses in expectation at least what it
    /// would have been paid; never below `job_bid_deposit` nor above `max_job_bid_deposit`.
    pub fn job_bid_deposit_for(&self, price: Amount) -> Amount {
        let scaled = match self.audit_rate_bps {
            0 => 0,
            rate => price.0.saturating_mul(10_000).div_ceil(u128::from(rate)),
        };
        Amount(scaled.clamp(self.job_bid_deposit.0, self.max_job_bid_deposit.0.max(self.job_bid_deposit.0)))
    }

    /// The audit fee on `amount`: `⌈amount × audit_rate_bps / 10⁴⌉`. A job locks it on its budget at
    /// submission and pays it on its results' prices once they are revealed.
    pub fn audit_fee_for(&self, budget: Amount) -> Amount {
        Amount(budget.0.saturating_mul(u128::from(self.audit_rate_bps)).div_ceil(10_000))
    }

    /// A committee member's fee for work whose slot price is `price`.
    pub fn referee_fee_for(&self, price: Amount) -> Amount {
        Amount((price.0.saturating_mul(u128::from(self.referee_fee_bps)) / 10_000).max(1))
    }

    /// The least deposit a client's dispute of work priced `price` needs: every seat of every round's fee.
    pub fn dispute_deposit_for(&self, price: Amount) -> Amount {
        let seats = u128::from(self.referee_count) * u128::from(self.max_referee_rounds);
        Amount(self.referee_fee_for(price).0.saturating_mul(seats))
    }

    /// The minimum fee for a transaction of `size` encoded bytes, `None` on overflow.
    pub fn fee_for(&self, size: usize) -> Option<Amount> {
        self.fee_per_byte.checked_mul(size as u128)?.checked_add(self.base_fee)
    }

    /// What a transaction of `size` bytes offering `tip` is charged: the minimum fee plus the tip.
    pub fn fee_with_tip(&self, size: usize, tip: Amount) -> Option<Amount> {
        self.fee_for(size)?.checked_add(tip)
    }
}
