//! Property tests over random transaction sequences: after every block, the supply is conserved, every
//! module account matches its records, no lease lacks its single winning bid, and closed things stay closed.
//! Replaying the same sequence gives the same state.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tensorgrid_ledger::testing::TestChain;
use tensorgrid_types::job::result_commitment;
use tensorgrid_types::market::{BidState, DeploymentState, LeaseState, OrderId, OrderState};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Hash, Msg, Params, SecretKey};

const TENANTS: usize = 2;
const PROVIDERS: usize = 4;

#[derive(Clone, Debug)]
enum Action {
    Send { from: usize, to: usize, amount: u64 },
    Register { p: usize },
    Heartbeat { p: usize },
    Bond { p: usize, amount: u64 },
    Unbond { p: usize, amount: u64 },
    Deregister { p: usize },
    Deploy { t: usize, groups: u8, price: u64, deposit: u64 },
    Deposit { t: usize, d: u64, amount: u64 },
    CloseDeployment { t: usize, d: u64 },
    Bid { p: usize, d: u64, g: u32, price: u64 },
    CloseBid { p: usize, d: u64, g: u32 },
    Accept { t: usize, p: usize, d: u64, g: u32 },
    CloseLease { by_tenant: bool, t: usize, p: usize, d: u64, g: u32 },
    Withdraw { p: usize, d: u64, g: u32 },
    SubmitJob { t: usize, k: u8, budget: u64 },
    BidJob { p: usize, j: u64, price: u64 },
    Confirm { p: usize, j: u64 },
    Commit { p: usize, j: u64, result: u8 },
    Reveal { p: usize, j: u64, result: u8 },
    Cancel { t: usize, j: u64 },
    Dispute { t: usize, j: u64 },
    Garbage { bytes: Vec<u8> },
}

fn action() -> impl Strategy<Value = Action> {
    let t = 0..TENANTS;
    let p = 0..PROVIDERS;
    // Offsets back from the newest deployment or job, so most actions address something still open.
    let d = 0..4u64;
    let g = 1..3u32;
    let j = 0..4u64;
    // Weighted so that sequences get far: providers stay mostly live, bids and reveals are common, and
    // destructive moves (deregistering, garbage) are rare.
    prop_oneof![
        2 => (0..TENANTS + PROVIDERS, 0..TENANTS + PROVIDERS, 1..5_000_000u64)
            .prop_map(|(from, to, amount)| Action::Send { from, to, amount }),
        2 => p.clone().prop_map(|p| Action::Register { p }),
        6 => p.clone().prop_map(|p| Action::Heartbeat { p }),
        1 => (p.clone(), 1..50_000_000u64).prop_map(|(p, amount)| Action::Bond { p, amount }),
        1 => (p.clone(), 1..50_000_000u64).prop_map(|(p, amount)| Action::Unbond { p, amount }),
        1 => p.clone().prop_map(|p| Action::Deregister { p }),
        3 => (t.clone(), 1..3u8, 1..5_000_000u64, 1..20u64)
            .prop_map(|(t, groups, price, deposit)| Action::Deploy { t, groups, price, deposit }),
        2 => (t.clone(), d.clone(), 1..5_000_000u64).prop_map(|(t, d, amount)| Action::Deposit { t, d, amount }),
        1 => (t.clone(), d.clone()).prop_map(|(t, d)| Action::CloseDeployment { t, d }),
        8 => (p.clone(), d.clone(), g.clone(), 1..6_000_000u64)
            .prop_map(|(p, d, g, price)| Action::Bid { p, d, g, price }),
        1 => (p.clone(), d.clone(), g.clone()).prop_map(|(p, d, g)| Action::CloseBid { p, d, g }),
        4 => (t.clone(), p.clone(), d.clone(), g.clone()).prop_map(|(t, p, d, g)| Action::Accept { t, p, d, g }),
        2 => (any::<bool>(), t.clone(), p.clone(), d.clone(), g.clone())
            .prop_map(|(by_tenant, t, p, d, g)| Action::CloseLease { by_tenant, t, p, d, g }),
        3 => (p.clone(), d, g).prop_map(|(p, d, g)| Action::Withdraw { p, d, g }),
        3 => (t.clone(), 1..4u8, 1_000_000..4_000_000u64).prop_map(|(t, k, budget)| Action::SubmitJob { t, k, budget }),
        8 => (p.clone(), j.clone(), 1..300_000u64).prop_map(|(p, j, price)| Action::BidJob { p, j, price }),
        5 => (p.clone(), j.clone()).prop_map(|(p, j)| Action::Confirm { p, j }),
        6 => (p.clone(), j.clone(), 0..2u8).prop_map(|(p, j, result)| Action::Commit { p, j, result }),
        6 => (p.clone(), j.clone(), 0..2u8).prop_map(|(p, j, result)| Action::Reveal { p, j, result }),
        1 => (t.clone(), j.clone()).prop_map(|(t, j)| Action::Cancel { t, j }),
        1 => (t, j).prop_map(|(t, j)| Action::Dispute { t, j }),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| Action::Garbage { bytes }),
    ]
}

/// Blocks of 1–6 actions, each after a random step of block time: mostly seconds, sometimes minutes, so
/// deadlines of every kind are crossed.
fn blocks() -> impl Strategy<Value = Vec<(u64, Vec<Action>)>> {
    let step = prop_oneof![9 => 1..15_000u64, 1 => 15_000..400_000u64];
    proptest::collection::vec((step, proptest::collection::vec(action(), 1..7)), 1..60)
}

fn small_params() -> Params {
    Params {
        bid_window_ms: 5_000,
        max_bids_per_order: 2,
        max_bids_per_job: 3,
        max_redundancy: 3,
        min_provider_stake: Amount::tgr(10),
        min_deployment_deposit: Amount::tgr(1),
        bid_deposit: Amount(100_000),
        job_bid_deposit: Amount(50_000),
        heartbeat_grace_ms: 180_000,
        unbonding_period_ms: 600_000,
        challenge_period_ms: 60_000,
        min_job_window_ms: 1_000,
        ..Params::default()
    }
}

struct Sim {
    chain: TestChain,
    tenants: Vec<SecretKey>,
    providers: Vec<SecretKey>,
    last_dseq: u64,
    last_job: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let tenants: Vec<SecretKey> = (0..TENANTS).map(|i| key(&format!("tenant-{i}"))).collect();
        let providers: Vec<SecretKey> = (0..PROVIDERS).map(|i| key(&format!("provider-{i}"))).collect();
        let funded: Vec<(&SecretKey, Amount)> =
            tenants.iter().chain(&providers).map(|k| (k, Amount::tgr(1_000))).collect();
        Sim {
            chain: TestChain::with_seed(&funded, small_params(), seed),
            tenants,
            providers,
            last_dseq: 0,
            last_job: 0,
        }
    }

    fn tx(&mut self, action: &Action) -> Vec<u8> {
        let p = |i: usize| self.providers[i].clone();
        let t = |i: usize| self.tenants[i].clone();
        let (last_dseq, last_job) = (self.last_dseq, self.last_job);
        let order = |d: u64, g: u32| OrderId { dseq: last_dseq.saturating_sub(d).max(1), gseq: g };
        let dseq = |d: u64| last_dseq.saturating_sub(d).max(1);
        let job = |j: u64| last_job.saturating_sub(j).max(1);
        let (signer, msg) = match action.clone() {
            Action::Send { from, to, amount } => {
                let everyone: Vec<SecretKey> = self.tenants.iter().chain(&self.providers).cloned().collect();
                (
                    everyone[from].clone(),
                    Msg::Send { to: everyone[to].address(), amount: Amount(amount.into()) },
                )
            }
            Action::Register { p: i } => {
                let mut msg = register_msg(if i % 2 == 0 { "eu" } else { "us" });
                // Every other provider accepts referee seats, with room above the minimum for the deposit.
                if let Msg::RegisterProvider { stake, referee, .. } = &mut msg {
                    *stake = Amount::tgr(12);
                    *referee = i % 2 == 1;
                }
                (p(i), msg)
            }
            Action::Heartbeat { p: i } => (p(i), Msg::Heartbeat),
            Action::Bond { p: i, amount } => (p(i), Msg::Bond { amount: Amount(amount.into()) }),
            Action::Unbond { p: i, amount } => (p(i), Msg::Unbond { amount: Amount(amount.into()) }),
            Action::Deregister { p: i } => (p(i), Msg::DeregisterProvider),
            Action::Deploy { t: i, groups, price, deposit } => {
                let specs = (0..groups).map(|g| group(&format!("g{g}"), Amount(price.into()))).collect();
                (t(i), deployment_msg(specs, Amount::tgr(deposit.into())))
            }
            Action::Deposit { t: i, d, amount } => {
                (t(i), Msg::DepositDeployment { dseq: dseq(d), amount: Amount(amount.into()) })
            }
            Action::CloseDeployment { t: i, d } => (t(i), Msg::CloseDeployment { dseq: dseq(d) }),
            Action::Bid { p: i, d, g, price } => {
                (p(i), Msg::CreateBid { order: order(d, g), price: Amount(price.into()) })
            }
            Action::CloseBid { p: i, d, g } => {
                (p(i), Msg::CloseBid { bid: order(d, g).bid(self.providers[i].address()) })
            }
            Action::Accept { t: ti, p: pi, d, g } => {
                (t(ti), Msg::AcceptBid { bid: order(d, g).bid(self.providers[pi].address()) })
            }
            Action::CloseLease { by_tenant, t: ti, p: pi, d, g } => {
                let lease = order(d, g).bid(self.providers[pi].address());
                (if by_tenant { t(ti) } else { p(pi) }, Msg::CloseLease { lease })
            }
            Action::Withdraw { p: i, d, g } => {
                (p(i), Msg::WithdrawLease { lease: order(d, g).bid(self.providers[i].address()) })
            }
            Action::SubmitJob { t: i, k, budget } => {
                let mut spec = job_spec(k, Amount(budget.into()));
                spec.bid_window_ms = 30_000;
                spec.run_timeout_ms = 120_000;
                spec.reveal_window_ms = 60_000;
                (t(i), Msg::SubmitJob { spec })
            }
            Action::BidJob { p: i, j, price } => {
                (p(i), Msg::BidJob { job: job(j), price: Amount(price.into()) })
            }
            Action::Confirm { p: i, j } => {
                let i = self.slot_holder(job(j), i);
                (p(i), Msg::ConfirmJobContent { job: job(j) })
            }
            Action::Commit { p: i, j, result } => {
                let i = self.slot_holder(job(j), i);
                let commitment =
                    result_commitment(&Hash::of(&[result]), &self.providers[i].address(), &[7; 32]);
                (p(i), Msg::CommitResult { job: job(j), commitment })
            }
            Action::Reveal { p: i, j, result } => {
                let i = self.slot_holder(job(j), i);
                (p(i), Msg::RevealResult { job: job(j), result_hash: Hash::of(&[result]), salt: [7; 32] })
            }
            Action::Cancel { t: i, j } => (t(i), Msg::CancelJob { job: job(j) }),
            Action::Dispute { t: i, j } => (t(i), Msg::DisputeJob { job: job(j), deposit: Amount::tgr(10) }),
            Action::Garbage { bytes } => return bytes,
        };
        self.chain.tx(&signer, msg)
    }

    /// The index of a provider holding a slot in `job` (the `pick`th of them), or `pick` if none does: commits
    /// and reveals mostly come from providers that can make them.
    fn slot_holder(&self, job: u64, pick: usize) -> usize {
        let QueryResponse::Job(Some(j)) = self.chain.query(Query::Job { job }) else { return pick };
        let mut holders: Vec<usize> = j
            .slots
            .iter()
            .filter_map(|s| self.providers.iter().position(|k| k.address() == s.provider))
            .collect();
        // While a committee sits, its members are the ones who can commit and reveal.
        if let Some(committee) =
            j.checks.last().filter(|_| j.state == tensorgrid_types::job::JobState::Refereeing)
        {
            if let QueryResponse::Committee(Some(c)) =
                self.chain.query(Query::Committee { committee: *committee })
            {
                holders = c
                    .seats
                    .iter()
                    .filter_map(|s| self.providers.iter().position(|k| k.address() == s.provider))
                    .collect();
            }
        }
        if holders.is_empty() {
            pick
        } else {
            holders[pick % holders.len()]
        }
    }

    /// Everything closed or finished, keyed by what it is.
    fn finished(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for dseq in 1..=self.last_dseq {
            let QueryResponse::Deployment(Some(info)) = self.chain.query(Query::Deployment { dseq }) else {
                continue;
            };
            if info.deployment.state != DeploymentState::Active {
                out.insert(format!("d{dseq}"), format!("{:?}", info.deployment));
            }
            for o in &info.orders {
                if matches!(o.state, OrderState::Closed { .. }) {
                    out.insert(format!("o{}", o.id), format!("{o:?}"));
                }
                let QueryResponse::Bids(bids) = self.chain.query(Query::Bids { order: o.id }) else {
                    continue;
                };
                for b in bids.iter().filter(|b| matches!(b.state, BidState::Closed { .. })) {
                    out.insert(format!("b{}", b.id), format!("{b:?}"));
                }
            }
            for l in info.leases.iter().filter(|l| l.state != LeaseState::Active) {
                out.insert(format!("l{}", l.id), format!("{l:?}"));
            }
        }
        for job in 1..=self.last_job {
            let QueryResponse::Job(Some(j)) = self.chain.query(Query::Job { job }) else { continue };
            if j.state.is_final() {
                out.insert(format!("j{job}"), format!("{:?}/{}/{}", j.state, j.held, j.paid));
            }
        }
        out
    }

    fn run(&mut self, blocks: &[(u64, Vec<Action>)]) -> Result<(), TestCaseError> {
        let supply: Amount = Amount::tgr(1_000 * (TENANTS + PROVIDERS) as u128);
        let mut finished = BTreeMap::new();
        for (step, actions) in blocks {
            let txs: Vec<Vec<u8>> = actions.iter().map(|a| self.tx(a)).collect();
            let at = self.chain.now.plus(*step);
            let out = self.chain.block_at(at, &txs);
            for event in &out.events {
                match event {
                    Event::DeploymentCreated { dseq, .. } => self.last_dseq = *dseq,
                    Event::JobSubmitted { job, .. } => self.last_job = *job,
                    _ => {}
                }
            }
            if let Err(e) = self.chain.ledger.check_invariants() {
                return Err(TestCaseError::fail(e.to_string()));
            }
            let QueryResponse::Supply(s) = self.chain.query(Query::Supply) else { unreachable!() };
            prop_assert_eq!(s.total, supply);
            let now = self.finished();
            for (what, state) in &finished {
                prop_assert_eq!(now.get(what), Some(state), "{} changed after it closed", what);
            }
            finished = now;
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn invariants_hold_after_every_block(seed in 0..1_000u64, blocks in blocks()) {
        let mut sim = Sim::new(seed);
        // Most sequences need registered providers and a deployment to get anywhere.
        let mut opening = vec![(1_000, (0..PROVIDERS).map(|p| Action::Register { p }).collect::<Vec<_>>())];
        opening.push((1_000, vec![Action::Deploy { t: 0, groups: 2, price: 4_000_000, deposit: 5 }]));
        sim.run(&opening)?;
        sim.run(&blocks)?;
    }

    #[test]
    fn the_same_blocks_give_the_same_state(seed in 0..1_000u64, blocks in blocks()) {
        let mut a = Sim::new(seed);
        let mut b = Sim::new(seed);
        a.run(&blocks)?;
        b.run(&blocks)?;
        prop_assert_eq!(a.chain.ledger.state_digest().unwrap(), b.chain.ledger.state_digest().unwrap());
    }
}
