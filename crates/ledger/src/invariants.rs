//! Whole-state consistency checks. They read everything, so they are for tests, simulations and audits, not
//! for block execution.

use std::collections::BTreeMap;

use tensorgrid_types::committee::{Committee, CommitteePhase, SeatState};
use tensorgrid_types::job::{Job, JobBid, JobBidState};
use tensorgrid_types::market::{
    Bid, BidState, Deployment, DeploymentState, Lease, LeaseState, Order, OrderState,
};
use tensorgrid_types::provider::Provider;
use tensorgrid_types::{Account, Address, Amount};

use crate::bank::Module;
use crate::error::LedgerError;
use crate::keys;
use crate::ledger::Ledger;
use crate::state::decode_stored;
use crate::store::Store;

/// A broken invariant, described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("invariant broken: {0}")]
    Broken(String),
}

fn sum<I: IntoIterator<Item = Amount>>(items: I) -> Amount {
    Amount(items.into_iter().map(|a| a.0).sum())
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), InvariantError> {
    if ok {
        Ok(())
    } else {
        Err(InvariantError::Broken(what()))
    }
}

impl<S: Store> Ledger<S> {
    /// Checks that
    /// - all balances add up to the genesis supply (nothing is minted or burned);
    /// - each module account holds exactly what the records say it holds;
    /// - each active lease has exactly one winning (active) bid and an active order, and open orders none;
    /// - each provider's lease count matches its active leases;
    /// - closed deployments hold nothing;
    /// - the storage module holds exactly the deposits of the records still stored.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let st = self.reader()?;
        let all = |prefix: &[u8]| st.scan(prefix, None, usize::MAX).map_err(LedgerError::Store);

        let supply: Amount = st.get(keys::SUPPLY)?.ok_or(LedgerError::NotInitialized)?;
        let mut balances = BTreeMap::new();
        for (k, v) in all(keys::ACCOUNT)? {
            let account: Account = decode_stored(&k, &v)?;
            balances.insert(k.get(keys::ACCOUNT.len()..).unwrap_or_default().to_vec(), account.balance);
        }
        let total = sum(balances.values().copied());
        ensure(total == supply, || format!("balances add up to {total}, supply is {supply}"))?;
        let module = |m: Module| balances.get(m.address().as_bytes().as_slice()).copied().unwrap_or_default();

        let deployments: Vec<Deployment> = st.scan_values(keys::DEPLOYMENT)?;
        let active_escrow =
            sum(deployments.iter().filter(|d| d.state == DeploymentState::Active).map(|d| d.escrow.balance));
        ensure(module(Module::Escrow) == active_escrow, || {
            format!("escrow module holds {} but deployments hold {active_escrow}", module(Module::Escrow))
        })?;
        for d in deployments.iter().filter(|d| d.state != DeploymentState::Active) {
            ensure(d.escrow.balance.is_zero() && d.escrow.dry_at.is_none(), || {
                format!("closed deployment {} still holds {}", d.dseq, d.escrow.balance)
            })?;
        }

        let providers: Vec<Provider> = st.scan_values(keys::PROVIDER)?;
        let bonded = sum(providers
            .iter()
            .flat_map(|p| std::iter::once(p.stake).chain(p.unbonding.iter().map(|u| u.amount))));
        ensure(module(Module::Bonds) == bonded, || {
            format!("bonds module holds {} but providers have {bonded}", module(Module::Bonds))
        })?;

        let bids: Vec<Bid> = st.scan_values(keys::BID)?;
        let job_bids: Vec<JobBid> = st.scan_values(keys::JOB_BID)?;
        let deposits = sum(bids
            .iter()
            .filter(|b| !matches!(b.state, BidState::Closed { .. }))
            .map(|b| b.deposit))
        .checked_add(sum(job_bids
            .iter()
            .filter(|b| matches!(b.state, JobBidState::Open | JobBidState::Assigned | JobBidState::Held))
            .map(|b| b.deposit)))
        .unwrap_or(Amount(u128::MAX));
        ensure(module(Module::BidDeposits) == deposits, || {
            format!("bid-deposit module holds {} but live bids hold {deposits}", module(Module::BidDeposits))
        })?;

        let jobs: Vec<Job> = st.scan_values(keys::JOB)?;
        let held = sum(jobs.iter().flat_map(|j| [j.held, j.audit_fee]));
        ensure(module(Module::Jobs) == held, || {
            format!("jobs module holds {} but jobs hold {held}", module(Module::Jobs))
        })?;
        for job in jobs.iter().filter(|j| j.state.is_final()) {
            ensure(job.held.is_zero() && job.audit_fee.is_zero() && job.live_bids.is_empty(), || {
                format!("finished job {} still holds funds", job.id)
            })?;
        }

        // An open committee holds its reserve, the forfeited deposits it has not shared yet and the deposits
        // of its members still sitting; a concluded one holds nothing, and no job waits on a concluded one.
        let committees: Vec<Committee> = st.scan_values(keys::COMMITTEE)?;
        let mut in_committees = Amount::ZERO;
        for c in &committees {
            let open = !matches!(c.phase, CommitteePhase::Concluded { .. });
            let seated = sum(c
                .seats
                .iter()
                .filter(|s| {
                    matches!(s.state, SeatState::Committing | SeatState::Committed | SeatState::Revealed)
                })
                .map(|s| s.deposit));
            if open {
                in_committees = in_committees
                    .saturating_add(c.reserve)
                    .saturating_add(c.forfeited)
                    .saturating_add(seated);
            }
        }
        ensure(module(Module::Committees) == in_committees, || {
            format!(
                "committees module holds {} but open committees hold {in_committees}",
                module(Module::Committees)
            )
        })?;
        for job in &jobs {
            let waiting = job.checks.last().and_then(|id| committees.iter().find(|c| c.id == *id));
            let refereeing = job.state == tensorgrid_types::job::JobState::Refereeing;
            let open = waiting.is_some_and(|c| !matches!(c.phase, CommitteePhase::Concluded { .. }));
            ensure(refereeing == open, || {
                format!(
                    "job {} is {:?} and its last committee is {:?}",
                    job.id,
                    job.state,
                    waiting.map(|c| c.phase)
                )
            })?;
        }

        let channels: Vec<tensorgrid_types::channel::Channel> = st.scan_values(keys::CHANNEL)?;
        let unspent = sum(channels
            .iter()
            .filter(|c| !matches!(c.state, tensorgrid_types::channel::ChannelState::Closed { .. }))
            .map(|c| c.balance()));
        ensure(module(Module::Channels) == unspent, || {
            format!("channels module holds {} but open channels hold {unspent}", module(Module::Channels))
        })?;
        let stored = sum(deployments
            .iter()
            .map(|d| d.storage_deposit)
            .chain(jobs.iter().map(|j| j.storage_deposit))
            .chain(channels.iter().map(|c| c.storage_deposit)));
        ensure(module(Module::Storage) == stored, || {
            format!("storage module holds {} but stored records hold {stored}", module(Module::Storage))
        })?;
        for channel in &channels {
            ensure(channel.redeemed <= channel.deposit, || {
                format!(
                    "channel {} paid out {} of a {} deposit",
                    channel.id, channel.redeemed, channel.deposit
                )
            })?;
        }

        let orders: Vec<Order> = st.scan_values(keys::ORDER)?;
        let leases: Vec<Lease> = st.scan_values(keys::LEASE)?;
        let mut active_leases: BTreeMap<Address, u32> = BTreeMap::new();
        for order in &orders {
            let active_bids: Vec<&Bid> =
                bids.iter().filter(|b| b.id.order() == order.id && b.state == BidState::Active).collect();
            let open_leases: Vec<&Lease> =
                leases.iter().filter(|l| l.id.order() == order.id && l.state == LeaseState::Active).collect();
            match order.state {
                OrderState::Active => {
                    ensure(active_bids.len() == 1 && open_leases.len() == 1, || {
                        format!(
                            "active order {} has {} winning bids and {} leases",
                            order.id,
                            active_bids.len(),
                            open_leases.len()
                        )
                    })?;
                    ensure(active_bids.first().map(|b| b.id) == open_leases.first().map(|l| l.id), || {
                        format!("order {} lease/bid mismatch", order.id)
                    })?;
                }
                OrderState::Open | OrderState::Closed { .. } => {
                    ensure(active_bids.is_empty() && open_leases.is_empty(), || {
                        format!("order {} is {:?} but has a winning bid or a lease", order.id, order.state)
                    })?;
                }
            }
            let live = bids.iter().filter(|b| b.id.order() == order.id && b.state == BidState::Open).count();
            ensure(live == order.live_bids.len(), || format!("order {} bid book out of sync", order.id))?;
        }
        for lease in leases.iter().filter(|l| l.state == LeaseState::Active) {
            *active_leases.entry(lease.id.provider).or_default() += 1;
        }
        for p in &providers {
            let counted = active_leases.get(&p.address).copied().unwrap_or(0);
            ensure(p.active_leases == counted, || {
                format!("provider {} counts {} leases, {} are active", p.address, p.active_leases, counted)
            })?;
        }
        Ok(())
    }
}
