//! Escrow accrual, settled lazily.
//!
//! A lease owes `⌊price × (end − started_at) / 1 h⌋ − paid`, where `end` is the block time capped at the
//! provider's liveness (`last heartbeat + grace`). The amount is computed only when something touches the
//! deployment (a deposit, a withdrawal, a close, a new lease) and is cumulative, so how often settlement happens
//! never changes the total. The time at which the escrow runs dry is computed whenever its balance or its set
//! of leases changes and kept in the timer index; the block that reaches it closes the deployment as overdrawn.

use tensorgrid_types::market::{CloseReason, DeploymentState, Dseq, Lease};
use tensorgrid_types::time::MS_PER_HOUR;
use tensorgrid_types::{Amount, Event, Timestamp};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

pub use tensorgrid_types::market::accrued;

/// The first millisecond at which leases with these `(price, started_at, paid)` have accrued at least
/// `balance + Σ paid`, i.e. the escrow is spent: `⌈((balance + Σ paid) × 1 h + Σ price × start) / Σ price⌉`.
/// `None` when nothing accrues.
pub fn dry_time(balance: Amount, leases: &[(Amount, Timestamp, Amount)]) -> Option<Option<Timestamp>> {
    let mut rate: u128 = 0;
    let mut weighted_start: u128 = 0;
    let mut paid: u128 = 0;
    for (price, start, already) in leases {
        rate = rate.checked_add(price.0)?;
        weighted_start = weighted_start.checked_add(price.0.checked_mul(u128::from(start.0))?)?;
        paid = paid.checked_add(already.0)?;
    }
    if rate == 0 {
        return Some(None);
    }
    let numerator =
        balance.0.checked_add(paid)?.checked_mul(u128::from(MS_PER_HOUR))?.checked_add(weighted_start)?;
    let at = numerator.div_ceil(rate);
    Some(Some(Timestamp(u64::try_from(at).unwrap_or(u64::MAX))))
}

/// Splits `available` over `owed` in proportion, rounding down, and hands the few units left by rounding to the
/// first debts in order (one unit each), so the whole balance is paid out and nobody gets more than owed.
pub fn split_proportionally(available: Amount, owed: &[Amount]) -> Option<Vec<Amount>> {
    let total = owed.iter().try_fold(0u128, |acc, o| acc.checked_add(o.0))?;
    if total == 0 {
        return Some(vec![Amount::ZERO; owed.len()]);
    }
    let mut shares: Vec<u128> =
        owed.iter().map(|o| available.0.checked_mul(o.0).map(|p| p / total)).collect::<Option<_>>()?;
    let mut left = available.0.checked_sub(shares.iter().sum())?;
    for (share, debt) in shares.iter_mut().zip(owed) {
        if left == 0 {
            break;
        }
        if *share < debt.0 {
            *share += 1;
            left -= 1;
        }
    }
    Some(shares.into_iter().map(Amount).collect())
}

impl<S: Store + ?Sized> State<'_, S> {
    /// Pays every active lease of the deployment what it has accrued up to now. Returns `true` when the
    /// escrow could not cover it all: then it paid out everything it held, split in proportion to what each
    /// lease was owed, and the caller must close the deployment as overdrawn.
    pub(crate) fn settle(&mut self, dseq: Dseq) -> ExecResult<bool> {
        let mut deployment = self.must_deployment(dseq)?;
        if deployment.state != DeploymentState::Active {
            return Ok(false);
        }
        let leases = self.active_leases_of(dseq)?;
        if leases.is_empty() {
            return Ok(false);
        }
        let mut ends = Vec::with_capacity(leases.len());
        let mut owed = Vec::with_capacity(leases.len());
        for lease in &leases {
            let provider =
                self.provider(&lease.id.provider)?.ok_or_else(|| invariant("lease's provider vanished"))?;
            let end = self.now.min(self.live_until(&provider)).max(lease.settled_to);
            let total =
                accrued(lease.price, end.since(lease.started_at)).ok_or_else(|| overflow("accrual"))?;
            ends.push(end);
            owed.push(total.saturating_sub(lease.paid));
        }
        let total_owed = owed.iter().try_fold(Amount::ZERO, |acc, o| acc.checked_add(*o));
        let total_owed = total_owed.ok_or_else(|| overflow("escrow debt"))?;
        let overdrawn = total_owed > deployment.escrow.balance;
        let pay = if overdrawn {
            split_proportionally(deployment.escrow.balance, &owed).ok_or_else(|| overflow("escrow split"))?
        } else {
            owed
        };
        let mut paid_total = Amount::ZERO;
        for ((mut lease, end), amount) in leases.into_iter().zip(ends).zip(pay) {
            if !amount.is_zero() {
                self.release_from(Module::Escrow, &lease.id.provider, amount)?;
                lease.paid = lease.paid.checked_add(amount).ok_or_else(|| overflow("lease paid"))?;
                paid_total = paid_total.checked_add(amount).ok_or_else(|| overflow("escrow paid"))?;
                self.emit(Event::LeasePaid { lease: lease.id, amount, settled_to: end });
            }
            lease.settled_to = end;
            self.put(keys::lease(&lease.id), &lease);
        }
        let escrow = &mut deployment.escrow;
        escrow.balance = escrow
            .balance
            .checked_sub(paid_total)
            .ok_or_else(|| invariant("escrow paid more than it held"))?;
        escrow.total_paid =
            escrow.total_paid.checked_add(paid_total).ok_or_else(|| overflow("escrow paid"))?;
        self.put_deployment(&deployment);
        Ok(overdrawn)
    }

    /// Recomputes when the escrow runs dry and moves its entry in the timer index. Returns the new time.
    pub(crate) fn reschedule_dry(&mut self, dseq: Dseq) -> ExecResult<Option<Timestamp>> {
        let leases: Vec<Lease> = self.active_leases_of(dseq)?;
        let mut deployment = self.must_deployment(dseq)?;
        let rates: Vec<_> = leases.iter().map(|l| (l.price, l.started_at, l.paid)).collect();
        let next = dry_time(deployment.escrow.balance, &rates).ok_or_else(|| overflow("escrow dry time"))?;
        if next != deployment.escrow.dry_at {
            if let Some(old) = deployment.escrow.dry_at {
                self.clear_timer(old, Timer::EscrowDry(dseq));
            }
            if let Some(at) = next {
                self.set_timer(at, Timer::EscrowDry(dseq));
            }
            deployment.escrow.dry_at = next;
            self.put_deployment(&deployment);
        }
        Ok(next)
    }

    /// Deadline: the escrow is spent at current rates. Settle (splitting the remainder if the block came late)
    /// and close the deployment as overdrawn.
    pub(crate) fn on_escrow_dry_due(&mut self, dseq: Dseq) -> ExecResult<()> {
        let Some(mut deployment) = self.deployment(dseq)? else { return Ok(()) };
        if deployment.state != DeploymentState::Active
            || deployment.escrow.dry_at.is_none_or(|t| t > self.now)
        {
            return Ok(());
        }
        // The index entry was consumed; forget it so rescheduling does not try to remove it again.
        deployment.escrow.dry_at = None;
        self.put_deployment(&deployment);
        let overdrawn = self.settle(dseq)?;
        let next = self.reschedule_dry(dseq)?;
        if overdrawn || next.is_some_and(|t| t <= self.now) {
            self.close_deployment(dseq, CloseReason::Overdrawn)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accrual_is_cumulative_and_floors() {
        // 1 utgr per hour accrues its first unit only after a full hour.
        assert_eq!(accrued(Amount(1), MS_PER_HOUR - 1), Some(Amount(0)));
        assert_eq!(accrued(Amount(1), MS_PER_HOUR), Some(Amount(1)));
        // Settling every second or once gives the same total.
        let price = Amount(3_600_007);
        let once = accrued(price, 90_000).unwrap();
        let mut paid = Amount(0);
        for s in 1..=90u64 {
            let total = accrued(price, s * 1000).unwrap();
            paid = Amount(paid.0 + (total.0 - paid.0));
        }
        assert_eq!(paid, once);
    }

    #[test]
    fn dry_time_matches_accrual() {
        // 3600 utgr/h from t=0 with 100 utgr: dry after 100 s.
        let at = dry_time(Amount(100), &[(Amount(3600), Timestamp(0), Amount(0))]).unwrap().unwrap();
        assert_eq!(at, Timestamp(100_000));
        // Two leases, one started later and partly paid.
        let leases = [(Amount(3600), Timestamp(0), Amount(10)), (Amount(7200), Timestamp(10_000), Amount(0))];
        let at = dry_time(Amount(90), &leases).unwrap().unwrap();
        let total_at = |t: u64| {
            accrued(Amount(3600), t).unwrap().0 + accrued(Amount(7200), t.saturating_sub(10_000)).unwrap().0
        };
        assert!(total_at(at.0) >= 100, "spent by then");
        assert!(total_at(at.0 - 1) < 100 + 2, "not much earlier");
        assert_eq!(dry_time(Amount(5), &[]), Some(None));
    }

    #[test]
    fn split_pays_out_everything_and_never_more_than_owed() {
        let shares = split_proportionally(Amount(10), &[Amount(7), Amount(7), Amount(7)]).unwrap();
        assert_eq!(shares.iter().map(|a| a.0).sum::<u128>(), 10);
        assert!(shares.iter().all(|s| s.0 <= 7));
        assert_eq!(shares, vec![Amount(4), Amount(3), Amount(3)]);
        let shares = split_proportionally(Amount(5), &[Amount(0), Amount(10)]).unwrap();
        assert_eq!(shares, vec![Amount(0), Amount(5)]);
    }
}
