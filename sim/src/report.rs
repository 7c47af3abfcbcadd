//! What `tgrid sim` prints: the story of the run and every actor's balance before and after.

use serde::Serialize;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::Amount;

use crate::narrate::{clock, describe};
use crate::world::{Logged, Refused, World};

#[derive(Debug, Serialize)]
pub struct BalanceRow {
    pub actor: String,
    pub before: Amount,
    pub after: Amount,
    /// Stake bonded (or unbonding) by a provider: still the provider's, but locked.
    pub bonded: Amount,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub blocks: u64,
    pub duration_ms: u64,
    pub story: Vec<(String, String)>,
    pub balances: Vec<BalanceRow>,
    pub total_supply: Amount,
    /// Held by the protocol's module accounts at the end (escrow, stake, deposits, job budgets, fees).
    pub modules: Vec<(String, Amount)>,
    pub invariants_checked_blocks: u64,
    pub events: Vec<Logged>,
    pub refused: Vec<Refused>,
}

impl Report {
    pub fn from_world(world: &World, seed: u64) -> Report {
        let mut timed: Vec<(u64, String)> =
            world.log.iter().filter_map(|l| describe(world, &l.event).map(|text| (l.at_ms, text))).collect();
        timed.extend(
            world
                .refused
                .iter()
                .map(|r| (r.at_ms, format!("{}'s transaction was refused: {}", r.actor, r.error))),
        );
        // A stable sort keeps each block's events in execution order; refusals come after their block's events.
        timed.sort_by_key(|(at, _)| *at);
        let story = timed.into_iter().map(|(at, text)| (clock(at), text)).collect();
        let after = world.balances();
        let balances = world
            .genesis_balances
            .iter()
            .zip(after)
            .map(|((actor, before), (_, after))| {
                let bonded = world
                    .address_of(actor)
                    .and_then(|address| match world.chain.ledger.query(&Query::Provider { address }) {
                        Ok(QueryResponse::Provider(Some(p))) => {
                            Some(Amount(p.stake.0 + p.unbonding.iter().map(|u| u.amount.0).sum::<u128>()))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                BalanceRow { actor: actor.clone(), before: *before, after, bonded }
            })
            .collect();
        let (total_supply, modules) = match world.chain.ledger.query(&Query::Supply) {
            Ok(QueryResponse::Supply(s)) => (s.total, s.modules),
            _ => (Amount::ZERO, Vec::new()),
        };
        Report {
            seed,
            blocks: world.chain.height,
            duration_ms: world.elapsed(),
            story,
            balances,
            total_supply,
            modules,
            invariants_checked_blocks: world.chain.height,
            events: world.log.clone(),
            refused: world.refused.clone(),
        }
    }

    /// The human form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "tensorgrid market simulation (seed {}): {} blocks, {} of block time, on the in-process ledger\n\n",
            self.seed,
            self.blocks,
            clock(self.duration_ms)
        ));
        for (at, line) in &self.story {
            out.push_str(&format!("  {at}  {line}\n"));
        }
        out.push_str("\nbalances, genesis → now (a provider's bonded stake is still its own, but locked):\n");
        out.push_str(&format!(
            "  {:<10} {:>16}   {:>16} {:>10}   {:>16}\n",
            "", "genesis", "spendable", "bonded", "change"
        ));
        for row in &self.balances {
            let now = row.after.0 + row.bonded.0;
            let delta = i128::try_from(now).unwrap_or(i128::MAX) - i128::try_from(row.before.0).unwrap_or(0);
            let sign = if delta < 0 { "-" } else { "+" };
            let change = format!("{sign}{}", Amount(delta.unsigned_abs()).to_tgr_string());
            out.push_str(&format!(
                "  {:<10} {:>16} → {:>16} {:>10}   {:>16}\n",
                row.actor,
                row.before.to_tgr_string(),
                row.after.to_tgr_string(),
                if row.bonded.is_zero() { String::new() } else { row.bonded.to_tgr_string() },
                change
            ));
        }
        out.push_str("\nheld by the protocol:\n");
        for (module, amount) in &self.modules {
            out.push_str(&format!("  {:<14} {}\n", module, amount.to_tgr_string()));
        }
        out.push_str(&format!(
            "\ntotal supply {} (unchanged since genesis); every ledger invariant held after each of the {} blocks\n",
            self.total_supply.to_tgr_string(),
            self.invariants_checked_blocks
        ));
        out
    }
}
