//! Provider registration, stake with an unbonding period, liveness through heartbeats, and the one slashing
//! function.

use tensorgrid_types::provider::{Provider, ProviderInfo, ProviderRecord, ProviderStatus, Unbonding};
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Address, Amount, Event, TxError};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

/// The runtimes a provider registers and whether it accepts committee seats for them.
pub(crate) struct Referee {
    pub runtimes: Vec<String>,
    pub opt_in: bool,
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn provider(&self, address: &Address) -> ExecResult<Option<Provider>> {
        Ok(self.get(&keys::provider(address))?)
    }

    pub(crate) fn put_provider(&mut self, provider: &Provider) {
        self.put(keys::provider(&provider.address), provider);
    }

    /// The provider, which must be registered and active.
    pub(crate) fn active_provider(&self, address: &Address) -> ExecResult<Provider> {
        let provider = self.provider(address)?.ok_or(TxError::ProviderNotFound { address: *address })?;
        if provider.status != ProviderStatus::Active {
            return Err(TxError::ProviderNotActive { address: *address }.into());
        }
        Ok(provider)
    }

    /// When the provider's leases stop accruing unless it sends another heartbeat.
    pub(crate) fn live_until(&self, provider: &Provider) -> tensorgrid_types::Timestamp {
        provider.last_heartbeat.plus(self.params.heartbeat_grace_ms)
    }

    /// An active provider that has sent a heartbeat within the grace period: the only kind that may win work.
    pub(crate) fn live_provider(&self, address: &Address) -> ExecResult<Provider> {
        let provider = self.active_provider(address)?;
        if provider.jailed {
            return Err(TxError::ProviderJailed { address: *address }.into());
        }
        if self.now > self.live_until(&provider) {
            return Err(TxError::ProviderOffline {
                address: *address,
                last_heartbeat: provider.last_heartbeat,
            }
            .into());
        }
        if provider.stake < self.params.min_provider_stake {
            return Err(TxError::StakeBelowMinimum {
                stake: provider.stake,
                minimum: self.params.min_provider_stake,
            }
            .into());
        }
        Ok(provider)
    }

    pub(crate) fn register_provider(
        &mut self,
        signer: Address,
        host_uri: String,
        attributes: Vec<Attribute>,
        info: ProviderInfo,
        stake: Amount,
        referee: Referee,
    ) -> ExecResult<()> {
        let previous = self.provider(&signer)?;
        if previous.as_ref().is_some_and(|p| p.status == ProviderStatus::Active) {
            return Err(TxError::ProviderAlreadyActive { address: signer }.into());
        }
        if stake < self.params.min_provider_stake {
            return Err(TxError::StakeBelowMinimum { stake, minimum: self.params.min_provider_stake }.into());
        }
        self.lock(&signer, Module::Bonds, stake)?;
        let now = self.now;
        // Re-registration keeps the record's history (unbonding entries, job counters, slashes).
        let provider = match previous {
            Some(mut p) => {
                p.host_uri = host_uri;
                p.attributes = attributes;
                p.info = info;
                p.status = ProviderStatus::Active;
                p.stake = p.stake.checked_add(stake).ok_or_else(|| overflow("stake"))?;
                p.registered_at = now;
                p.last_heartbeat = now;
                p.runtimes = referee.runtimes;
                p.referee = referee.opt_in;
                p.jailed = false;
                p
            }
            None => Provider {
                address: signer,
                host_uri,
                attributes,
                info,
                status: ProviderStatus::Active,
                stake,
                unbonding: Vec::new(),
                registered_at: now,
                last_heartbeat: now,
                active_leases: 0,
                active_job_slots: 0,
                jobs_completed: 0,
                jobs_missed: 0,
                runtimes: referee.runtimes,
                referee: referee.opt_in,
                jailed: false,
                record: ProviderRecord::default(),
            },
        };
        self.index_referee(&provider, true);
        self.set_timer(self.live_until(&provider), Timer::ProviderLiveness(signer));
        self.put_provider(&provider);
        self.emit(Event::ProviderRegistered { provider: signer, stake });
        Ok(())
    }

    pub(crate) fn update_provider(
        &mut self,
        signer: Address,
        host_uri: Option<String>,
        attributes: Option<Vec<Attribute>>,
        info: Option<ProviderInfo>,
        (runtimes, referee): (Option<Vec<String>>, Option<bool>),
    ) -> ExecResult<()> {
        let mut provider = self.active_provider(&signer)?;
        self.index_referee(&provider, false);
        if let Some(runtimes) = runtimes {
            provider.runtimes = runtimes;
        }
        if let Some(referee) = referee {
            provider.referee = referee;
        }
        self.index_referee(&provider, true);
        if let Some(uri) = host_uri {
            provider.host_uri = uri;
        }
        if let Some(attributes) = attributes {
            provider.attributes = attributes;
        }
        if let Some(info) = info {
            provider.info = info;
        }
        self.put_provider(&provider);
        self.emit(Event::ProviderUpdated { provider: signer });
        Ok(())
    }

    pub(crate) fn deregister_provider(&mut self, signer: Address) -> ExecResult<()> {
        let mut provider = self.active_provider(&signer)?;
        if provider.active_leases > 0 || provider.active_job_slots > 0 {
            return Err(TxError::ProviderHasActiveWork {
                leases: provider.active_leases,
                job_slots: provider.active_job_slots,
            }
            .into());
        }
        let stake = provider.stake;
        if !stake.is_zero() {
            self.start_unbonding(&mut provider, stake, true)?;
        }
        self.clear_timer(self.live_until(&provider), Timer::ProviderLiveness(signer));
        self.withdraw_all_models(&signer)?;
        self.index_referee(&provider, false);
        provider.status = ProviderStatus::Deregistered;
        self.put_provider(&provider);
        self.emit(Event::ProviderDeregistered { provider: signer });
        Ok(())
    }

    pub(crate) fn bond(&mut self, signer: Address, amount: Amount) -> ExecResult<()> {
        let mut provider = self.active_provider(&signer)?;
        self.lock(&signer, Module::Bonds, amount)?;
        provider.stake = provider.stake.checked_add(amount).ok_or_else(|| overflow("stake"))?;
        self.emit(Event::StakeBonded { provider: signer, amount });
        if provider.jailed && provider.stake >= self.params.min_provider_stake {
            provider.jailed = false;
            self.emit(Event::ProviderUnjailed { provider: signer });
        }
        self.put_provider(&provider);
        Ok(())
    }

    pub(crate) fn unbond(&mut self, signer: Address, amount: Amount) -> ExecResult<()> {
        let mut provider = self.active_provider(&signer)?;
        self.start_unbonding(&mut provider, amount, false)?;
        self.put_provider(&provider);
        Ok(())
    }

    /// Moves `amount` of bonded stake into a new unbonding entry. Unless the provider is leaving, what stays
    /// bonded must meet the minimum.
    fn start_unbonding(&mut self, provider: &mut Provider, amount: Amount, leaving: bool) -> ExecResult<()> {
        let remaining = provider
            .stake
            .checked_sub(amount)
            .ok_or(TxError::UnbondTooLarge { requested: amount, bonded: provider.stake })?;
        if !leaving && remaining < self.params.min_provider_stake {
            return Err(TxError::StakeBelowMinimum {
                stake: remaining,
                minimum: self.params.min_provider_stake,
            }
            .into());
        }
        if provider.unbonding.len() >= self.params.max_unbonding_entries as usize {
            return Err(TxError::TooManyUnbonding { max: self.params.max_unbonding_entries }.into());
        }
        let matures_at = self.now.plus(self.params.unbonding_period_ms);
        provider.stake = remaining;
        provider.unbonding.push(Unbonding { amount, matures_at });
        self.set_timer(matures_at, Timer::Unbonding(provider.address));
        self.emit(Event::UnbondingStarted { provider: provider.address, amount, matures_at });
        Ok(())
    }

    /// Adds or removes the provider's entries in the referee index (one per runtime, when it opted in).
    fn index_referee(&mut self, provider: &Provider, present: bool) {
        if !provider.referee {
            return;
        }
        for runtime in &provider.runtimes {
            let key = keys::ix_referee(runtime, &provider.address);
            if present {
                self.put_raw(key, Vec::new());
            } else {
                self.delete(key);
            }
        }
    }

    /// DESIGN's one slashing function: takes `fraction_bps` of the provider's stake, bonded first and then
    /// unbonding entries not yet matured (oldest first), into the `to` module, and jails a provider left
    /// below the minimum stake. Returns what was taken; the caller decides where it goes from `to`.
    pub(crate) fn slash(&mut self, address: &Address, fraction_bps: u32, to: Module) -> ExecResult<Amount> {
        let mut provider = self.provider(address)?.ok_or_else(|| invariant("slashed provider vanished"))?;
        let total = provider
            .unbonding
            .iter()
            .try_fold(provider.stake, |sum, u| sum.checked_add(u.amount))
            .ok_or_else(|| overflow("stake"))?;
        let due = Amount(total.0.saturating_mul(u128::from(fraction_bps)) / 10_000);
        let from_stake = due.min(provider.stake);
        provider.stake = provider.stake.saturating_sub(from_stake);
        let mut rest = due.saturating_sub(from_stake);
        for entry in provider.unbonding.iter_mut() {
            let take = rest.min(entry.amount);
            entry.amount = entry.amount.saturating_sub(take);
            rest = rest.saturating_sub(take);
        }
        provider.unbonding.retain(|u| !u.amount.is_zero());
        let taken = due.saturating_sub(rest);
        self.move_between(Module::Bonds, to, taken)?;
        provider.record.slashes = provider.record.slashes.saturating_add(1);
        provider.record.slashed_total = provider.record.slashed_total.saturating_add(taken);
        if provider.status == ProviderStatus::Active
            && !provider.jailed
            && provider.stake < self.params.min_provider_stake
        {
            provider.jailed = true;
            self.emit(Event::ProviderJailed { provider: *address });
        }
        self.put_provider(&provider);
        Ok(taken)
    }

    pub(crate) fn heartbeat(&mut self, signer: Address) -> ExecResult<()> {
        let mut provider = self.active_provider(&signer)?;
        self.clear_timer(self.live_until(&provider), Timer::ProviderLiveness(signer));
        provider.last_heartbeat = self.now;
        self.set_timer(self.live_until(&provider), Timer::ProviderLiveness(signer));
        self.put_provider(&provider);
        Ok(())
    }

    /// Deadline: returns every matured unbonding entry to the provider.
    pub(crate) fn on_unbonding_due(&mut self, address: Address) -> ExecResult<()> {
        let Some(mut provider) = self.provider(&address)? else { return Ok(()) };
        let now = self.now;
        let (matured, waiting): (Vec<Unbonding>, Vec<Unbonding>) =
            provider.unbonding.iter().partition(|u| u.matures_at <= now);
        provider.unbonding = waiting;
        self.put_provider(&provider);
        for entry in matured {
            self.release_from(Module::Bonds, &address, entry.amount)?;
            self.emit(Event::UnbondingCompleted { provider: address, amount: entry.amount });
        }
        Ok(())
    }

    /// Deadline: the provider sent no heartbeat within the grace period. Its leases close, accruing only up to
    /// `last heartbeat + grace`, and their tenants keep the rest of their escrow.
    pub(crate) fn on_liveness_due(&mut self, address: Address) -> ExecResult<()> {
        let Some(provider) = self.provider(&address)? else { return Ok(()) };
        if provider.status != ProviderStatus::Active || self.now < self.live_until(&provider) {
            // A heartbeat moved the deadline; this entry is stale.
            return Ok(());
        }
        self.close_leases_of_provider(&address)
    }
}
