//! Referee committees, random audits and slashing: every verdict path pays, slashes and refunds exactly (to
//! the utgr), no job stays held, and bad or out-of-phase messages change nothing.

mod common;

use std::collections::BTreeMap;

use common::*;
use tensorgrid_types::committee::{unavailable_vote, CheckKind, Committee, CommitteePhase, SeatState};
use tensorgrid_types::job::{
    result_commitment, JobBidState, JobFailure, JobRequirements, JobState, SlotState,
};
use tensorgrid_types::provider::Provider;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{Address, Amount, Hash, Msg, Params, Receipt, SecretKey, TxError};

const HONEST: &[u8] = b"the honest result";
const WRONG: &[u8] = b"a made-up result";
/// Stake each referee bonds: twice the minimum, so stake weights differ from the workers'.
const REFEREE_STAKE: Amount = Amount::tgr(200);

fn params() -> Params {
    Params { heartbeat_grace_ms: 1 << 40, ..Params::default() }
}

/// How a committee member behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vote {
    Honest,
    Wrong,
    Unavailable,
    Silent,
}

/// A chain with `workers` registered providers (indices `0..workers`) and `referees` opted-in ones after them,
/// with every fee each account paid counted, so balances can be checked to the utgr.
struct Bench {
    w: World,
    fees: BTreeMap<Address, Amount>,
    /// Each member's committed vote and salt, for its reveal.
    planned: BTreeMap<Address, (Hash, [u8; 32])>,
}

impl Bench {
    fn new(workers: usize, referees: usize, params: Params) -> Bench {
        Bench::seeded(workers, referees, params, 0)
    }

    fn seeded(workers: usize, referees: usize, params: Params, seed: u64) -> Bench {
        let w = world_seeded(workers + referees, params, seed);
        let mut b = Bench { w, fees: BTreeMap::new(), planned: BTreeMap::new() };
        for p in 0..workers {
            ok(&b.exec_provider(p, register_msg("eu-west")));
        }
        for p in workers..workers + referees {
            ok(&b.exec_provider(p, referee_msg(REFEREE_STAKE)));
        }
        b
    }

    fn exec(&mut self, key: &SecretKey, msg: Msg) -> Receipt {
        let r = self.w.chain.exec(key, msg);
        let fee = self.fees.entry(key.address()).or_default();
        *fee = fee.saturating_add(r.fee_paid);
        r
    }

    fn exec_provider(&mut self, p: usize, msg: Msg) -> Receipt {
        let key = self.w.providers[p].clone();
        self.exec(&key, msg)
    }

    fn exec_client(&mut self, msg: Msg) -> Receipt {
        let key = self.w.tenant.clone();
        self.exec(&key, msg)
    }

    /// Balance plus every fee paid: what the account holds if transactions were free.
    fn net(&self, address: &Address) -> Amount {
        self.w.chain.balance(address).saturating_add(self.fees.get(address).copied().unwrap_or_default())
    }

    fn address(&self, p: usize) -> Address {
        self.w.providers[p].address()
    }

    fn provider(&self, p: usize) -> Provider {
        match self.w.chain.query(Query::Provider { address: self.address(p) }) {
            QueryResponse::Provider(Some(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    fn committee(&self, id: u64) -> Committee {
        match self.w.chain.query(Query::Committee { committee: id }) {
            QueryResponse::Committee(Some(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn pool(&self) -> Amount {
        self.w.chain.balance(&tensorgrid_ledger::Module::Audits.address())
    }

    fn index_of(&self, address: Address) -> usize {
        self.w.providers.iter().position(|k| k.address() == address).expect("a provider of the bench")
    }

    /// Submits a WASM job with budget `budget`, has each worker bid its price, runs it to the reveal deadline
    /// with each worker's result, and returns the job's id (the block at the reveal deadline has run).
    fn job(&mut self, budget: Amount, bids: &[(usize, Amount, &[u8])]) -> u64 {
        self.job_with(job_spec(bids.len() as u8, budget), bids)
    }

    fn job_with(&mut self, spec: tensorgrid_types::job::JobSpec, bids: &[(usize, Amount, &[u8])]) -> u64 {
        let r = self.exec_client(Msg::SubmitJob { spec });
        ok(&r);
        let job = r.created_job().expect("a job");
        for (p, price, _) in bids {
            ok(&self.exec_provider(*p, Msg::BidJob { job, price: *price }));
        }
        let deadline = self.w.job(job).bid_deadline;
        self.w.chain.block_at(deadline, &[]);
        for (p, _, result) in bids {
            ok(&self.exec_provider(*p, Msg::ConfirmJobContent { job }));
            let commitment = result_commitment(&Hash::of(result), &self.address(*p), &[*p as u8; 32]);
            ok(&self.exec_provider(*p, Msg::CommitResult { job, commitment }));
        }
        for (p, _, result) in bids {
            let salt = [*p as u8; 32];
            ok(&self.exec_provider(*p, Msg::RevealResult { job, result_hash: Hash::of(result), salt }));
        }
        let deadline = self.w.job(job).reveal_deadline.expect("reveals started");
        self.w.chain.block_at(deadline, &[]);
        job
    }

    /// Plays the current round of the job's committee: each member waiting to commit commits as `votes` says
    /// (members past the end of `votes` are honest); a silent one's deadline is let pass (it is replaced);
    /// once all committed, every member reveals what it committed. Returns the committee as it stands after.
    fn referee_round(&mut self, job: u64, votes: &[Vote]) -> Committee {
        let id = *self.w.job(job).checks.last().expect("a check");
        let committee = self.committee(id);
        let client = self.w.tenant.address();
        let seated: Vec<(usize, Address)> = committee
            .seats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.round == committee.round && s.state == SeatState::Committing)
            .map(|(i, s)| (i, s.provider))
            .collect();
        let mut silent = false;
        for (n, (_, provider)) in seated.iter().enumerate() {
            let vote = votes.get(n).copied().unwrap_or(Vote::Honest);
            let p = self.index_of(*provider);
            let hash = match vote {
                Vote::Honest => Hash::of(HONEST),
                Vote::Wrong => Hash::of(WRONG),
                Vote::Unavailable => unavailable_vote(&client),
                Vote::Silent => {
                    silent = true;
                    continue;
                }
            };
            let salt = [100 + p as u8; 32];
            ok(&self.exec_provider(
                p,
                Msg::CommitResult { job, commitment: result_commitment(&hash, provider, &salt) },
            ));
            self.planned.insert(*provider, (hash, salt));
        }
        if silent {
            // Its commit deadline passes: it forfeits its deposit and is replaced (or the round ends).
            let deadline =
                seated.iter().map(|(i, _)| committee.seats[*i].commit_deadline).max().expect("seats");
            self.w.chain.block_at(deadline, &[]);
            return self.committee(id);
        }
        let now = self.committee(id);
        if now.phase == CommitteePhase::Revealing {
            let committed: Vec<Address> = now
                .seats
                .iter()
                .filter(|s| s.round == now.round && s.state == SeatState::Committed)
                .map(|s| s.provider)
                .collect();
            for provider in committed {
                let (hash, salt) = self.planned[&provider];
                let p = self.index_of(provider);
                ok(&self.exec_provider(p, Msg::RevealResult { job, result_hash: hash, salt }));
            }
        }
        self.committee(id)
    }

    fn check(&self) {
        self.w.check();
        let QueryResponse::Supply(s) = self.w.chain.query(Query::Supply) else { panic!() };
        let n = self.w.providers.len() as u128 + 2;
        assert_eq!(s.total, Amount(FUNDS.0 * n), "supply is conserved");
    }
}

fn bid_state(b: &Bench, job: u64, p: usize) -> JobBidState {
    let QueryResponse::JobBids(bids) = b.w.chain.query(Query::JobBids { job }) else { panic!() };
    bids.iter().find(|x| x.provider == b.address(p)).expect("a bid").state
}

#[test]
fn a_disagreement_goes_to_a_committee_whose_verdict_slashes_the_cheater_exactly() {
    let mut b = Bench::new(2, 3, params());
    let params = b.w.chain.params();
    let client = b.w.tenant.address();
    let start: Vec<Amount> = (0..5).map(|p| b.net(&b.address(p))).collect();
    let client_start = b.net(&client);
    let (honest_price, cheat_price) = (Amount(300_000), Amount(400_000));
    let job = b.job(Amount::tgr(1), &[(0, honest_price, HONEST), (1, cheat_price, WRONG)]);
    assert_eq!(b.w.job(job).state, JobState::Refereeing);
    let committee = b.committee(b.w.job(job).checks[0]);
    assert_eq!((committee.kind, committee.seats.len()), (CheckKind::Disagreement, 3));
    let members: Vec<usize> = committee.seats.iter().map(|s| b.index_of(s.provider)).collect();
    assert!(members.iter().all(|m| *m >= 2), "no party to the job sits on its committee: {members:?}");
    // Each member's deposit is held out of its stake while it sits.
    assert_eq!(b.provider(members[0]).stake, REFEREE_STAKE.saturating_sub(params.referee_deposit));

    let done = b.referee_round(job, &[]);
    assert_eq!(done.phase, CommitteePhase::Concluded { verdict: Some(Hash::of(HONEST)) });
    let j = b.w.job(job);
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.verdict, Some(Hash::of(HONEST)));
    assert_eq!((j.slots[0].state, j.slots[1].state), (SlotState::Paid, SlotState::Slashed));
    assert_eq!((bid_state(&b, job, 0), bid_state(&b, job, 1)), (JobBidState::Returned, JobBidState::Slashed));

    // The cheater lost 10 % of its 100 TGR stake and its whole 8 TGR bid deposit (20 × its price).
    let deposit = params.job_bid_deposit_for(cheat_price);
    assert_eq!(deposit, Amount::tgr(8));
    let cheater = b.provider(1);
    assert_eq!(cheater.stake, Amount::tgr(90));
    assert!(cheater.jailed, "below the minimum stake");
    assert_eq!((cheater.record.slashes, cheater.record.disputes_lost), (1, 1));
    assert_eq!(cheater.record.slashed_total, Amount::tgr(18));
    assert_eq!(b.net(&b.address(1)), start[1].saturating_sub(deposit), "its deposit is gone, nothing paid");
    assert_eq!(b.provider(0).record.disputes_won, 1);
    assert_eq!(b.net(&b.address(0)), start[0].saturating_add(honest_price));

    // Each member is paid the fee (the job's highest price) whole: the pool held only the job's audit fee,
    // so the slash made up the rest; members get their deposits back into their stake.
    let fee = params.referee_fee_for(cheat_price);
    assert_eq!(fee, cheat_price);
    for m in &members {
        assert_eq!(b.net(&b.address(*m)), start[*m].saturating_add(fee), "member {m}");
        assert_eq!(b.provider(*m).stake, REFEREE_STAKE);
    }
    // The audit fee is 5 % of the revealed results' prices (the rest of what was locked on the budget
    // came back).
    let audit_fee = params.audit_fee_for(Amount(honest_price.0 + cheat_price.0));
    assert_eq!(audit_fee, Amount(35_000));
    let pot = Amount::tgr(18);
    let from_pool = audit_fee.min(Amount(fee.0 * 6));
    let top_up = Amount(fee.0 * 3 - from_pool.0);
    // The pool is reimbursed what it paid; the client gets the rest of the slash and its unspent budget.
    assert_eq!(b.pool(), audit_fee, "the pool got its fee and was reimbursed what it paid the members");
    let compensation = pot.saturating_sub(top_up).saturating_sub(from_pool);
    let expected_client =
        Amount(client_start.0 - audit_fee.0 - params.storage_deposit.0 - honest_price.0 + compensation.0);
    assert_eq!(b.net(&client), expected_client);
    b.check();
}

#[test]
fn a_griefing_clients_dispute_of_an_honest_result_costs_it_the_deposit() {
    let mut b = Bench::new(1, 3, params());
    let params = b.w.chain.params();
    let client = b.w.tenant.address();
    let price = Amount(500_000);
    let job = b.job(Amount::tgr(1), &[(0, price, HONEST)]);
    let j = b.w.job(job);
    // Not drawn for an audit at this seed: one result waits out its challenge period.
    assert_eq!(j.state, JobState::Challenge);
    let client_before = b.net(&client);
    let worker_before = b.net(&b.address(0));
    let required = params.dispute_deposit_for(price);
    assert_eq!(required, Amount(price.0 * 3 * 2), "every seat of every round");
    ok(&b.exec_client(Msg::DisputeJob { job, deposit: required }));
    assert_eq!(b.w.job(job).state, JobState::Refereeing);
    let members: Vec<usize> =
        b.committee(b.w.job(job).checks[0]).seats.iter().map(|s| b.index_of(s.provider)).collect();
    let member_before: Vec<Amount> = members.iter().map(|m| b.net(&b.address(*m))).collect();
    b.referee_round(job, &[]);
    let j = b.w.job(job);
    assert_eq!((j.state, j.verdict), (JobState::Completed, Some(Hash::of(HONEST))));
    let fee = params.referee_fee_for(price);
    for (m, before) in members.iter().zip(&member_before) {
        assert_eq!(b.net(&b.address(*m)), before.saturating_add(fee));
    }
    // The client paid the three fees from its deposit; the rest went to the provider it accused, which also
    // got its bid deposit back (it was locked when `worker_before` was read).
    let left = Amount(required.0 - 3 * fee.0);
    let bid_deposit = params.job_bid_deposit_for(price);
    assert_eq!(b.net(&client), Amount(client_before.0 - required.0 + (Amount::tgr(1).0 - price.0)));
    assert_eq!(b.net(&b.address(0)), Amount(worker_before.0 + price.0 + left.0 + bid_deposit.0));
    assert_eq!(b.provider(0).record.disputes_won, 1);
    assert_eq!(b.provider(0).record.slashes, 0);
    b.check();
}

#[test]
fn a_justified_dispute_slashes_the_provider_and_returns_the_client_everything_plus_compensation() {
    let mut b = Bench::new(1, 3, params());
    let params = b.w.chain.params();
    let client = b.w.tenant.address();
    let price = Amount(500_000);
    let job = b.job(Amount::tgr(1), &[(0, price, WRONG)]);
    assert_eq!(b.w.job(job).state, JobState::Challenge);
    let client_before = b.net(&client);
    let worker_before = b.net(&b.address(0));
    let required = params.dispute_deposit_for(price);
    ok(&b.exec_client(Msg::DisputeJob { job, deposit: required }));
    b.referee_round(job, &[]);
    let j = b.w.job(job);
    assert_eq!((j.state, j.verdict, j.paid), (JobState::Completed, Some(Hash::of(HONEST)), Amount::ZERO));
    let deposit = params.job_bid_deposit_for(price);
    let slash = Amount::tgr(10).saturating_add(deposit);
    // The client is reimbursed the fees it paid, keeps the rest of its deposit, gets its whole budget back
    // and what is left of the slash.
    let fees = Amount(3 * params.referee_fee_for(price).0);
    assert_eq!(b.net(&client), Amount(client_before.0 + Amount::tgr(1).0 + slash.0 - fees.0));
    // Its bid deposit (locked when `worker_before` was read) never comes back, and it is paid nothing.
    assert_eq!(b.net(&b.address(0)), worker_before);
    assert_eq!(b.provider(0).stake, Amount::tgr(90));
    assert_eq!(b.provider(0).record.slashed_total, slash);
    b.check();
}

#[test]
fn an_audit_passes_with_one_referee_and_a_mismatch_escalates_to_a_full_committee() {
    let always = Params { audit_rate_bps: 10_000, ..params() };
    // Passed: one member confirms the single result, which then waits out its challenge period as any
    // single result does (the client may still dispute it) and is paid.
    let mut b = Bench::new(1, 4, always.clone());
    let price = Amount(500_000);
    let job = b.job(Amount::tgr(1), &[(0, price, HONEST)]);
    let j = b.w.job(job);
    assert_eq!(j.state, JobState::Refereeing);
    let c = b.committee(j.checks[0]);
    assert_eq!((c.kind, c.seats.len(), c.confirms), (CheckKind::Audit, 1, Some(Hash::of(HONEST))));
    b.referee_round(job, &[]);
    let j = b.w.job(job);
    assert_eq!(j.state, JobState::Challenge);
    assert_eq!(b.provider(0).record.audits_passed, 1);
    b.w.chain.block_at(j.challenge_deadline.unwrap(), &[]);
    let j = b.w.job(job);
    assert_eq!((j.state, j.paid), (JobState::Completed, price));
    b.check();

    // Escalated: a lying auditor's mismatch draws a full committee, which confirms the result; the liar's
    // deposit goes to the members who matched and it is paid nothing.
    let mut b = Bench::new(1, 4, always);
    let params = b.w.chain.params();
    let job = b.job(Amount::tgr(1), &[(0, price, HONEST)]);
    let auditor = b.index_of(b.committee(b.w.job(job).checks[0]).seats[0].provider);
    let auditor_before = b.net(&b.address(auditor));
    let c = b.referee_round(job, &[Vote::Wrong]);
    assert_eq!((c.round, c.phase), (2, CommitteePhase::Committing), "escalated to round 2");
    assert_eq!(c.seats.iter().filter(|s| s.round == 2).count(), 3);
    assert!(c.seats.iter().filter(|s| s.round == 2).all(|s| s.provider != b.address(auditor)));
    let members: Vec<usize> =
        c.seats.iter().filter(|s| s.round == 2).map(|s| b.index_of(s.provider)).collect();
    let before: Vec<Amount> = members.iter().map(|m| b.net(&b.address(*m))).collect();
    let c = b.referee_round(job, &[]);
    assert_eq!(c.phase, CommitteePhase::Concluded { verdict: Some(Hash::of(HONEST)) });
    let j = b.w.job(job);
    assert_eq!(j.state, JobState::Challenge);
    b.w.chain.block_at(j.challenge_deadline.unwrap(), &[]);
    let j = b.w.job(job);
    assert_eq!((j.state, j.paid), (JobState::Completed, price));
    assert_eq!(b.provider(0).record.disputes_won, 1);
    let liar = b.provider(auditor);
    assert_eq!(liar.stake, REFEREE_STAKE.saturating_sub(params.referee_deposit), "its deposit is gone");
    assert_eq!(b.net(&b.address(auditor)), auditor_before, "and it was paid nothing");
    assert_eq!(liar.record.referee_forfeits, 1);
    // The matching members share the liar's deposit; the pool paid what it could of their fees.
    let shared: u128 = members.iter().zip(&before).map(|(m, x)| b.net(&b.address(*m)).0 - x.0).sum();
    let fees: u128 = c.seats.iter().map(|s| s.paid.0).sum();
    assert_eq!(shared, fees + params.referee_deposit.0);
    b.check();
}

#[test]
fn silent_referees_are_replaced_and_a_check_with_none_left_ends_with_no_verdict() {
    // Four referees, a committee of three: one stays silent and the fourth replaces it.
    let mut b = Bench::new(2, 4, params());
    let params = b.w.chain.params();
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    let silent = b.index_of(b.committee(b.w.job(job).checks[0]).seats[0].provider);
    let c = b.referee_round(job, &[Vote::Silent]);
    assert_eq!(c.seats[0].state, SeatState::MissedCommit);
    assert_eq!(c.seats.iter().filter(|s| s.state == SeatState::Committing).count(), 1, "a replacement");
    assert_eq!(b.provider(silent).stake, REFEREE_STAKE.saturating_sub(params.referee_deposit));
    // The two who committed waited for the replacement; once it commits, all three reveal.
    let c = b.referee_round(job, &[]);
    assert_eq!(c.phase, CommitteePhase::Concluded { verdict: Some(Hash::of(HONEST)) });
    assert_eq!(c.seats.iter().filter(|s| s.state == SeatState::Revealed).count(), 3);
    // The silent member's deposit went to the three who matched; it stays out of its stake.
    assert_eq!(b.provider(silent).stake, REFEREE_STAKE.saturating_sub(params.referee_deposit));
    assert_eq!(b.provider(silent).record.referee_forfeits, 1);
    b.check();

    // Three referees who all stay silent, twice: nobody is left to draw and the job ends with no verdict,
    // everyone's funds back where they came from (the silent members' deposits to the funder, the pool).
    let mut b = Bench::new(2, 3, params.clone());
    let client = b.w.tenant.address();
    let client_before = b.net(&client);
    let workers_before: Vec<Amount> = (0..2).map(|p| b.net(&b.address(p))).collect();
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    let pool_after_fee = b.pool();
    b.referee_round(job, &[Vote::Silent, Vote::Silent, Vote::Silent]);
    let j = b.w.job(job);
    assert_eq!(j.state, JobState::Failed { reason: JobFailure::NoVerdict });
    assert_eq!((j.held, j.paid), (Amount::ZERO, Amount::ZERO));
    for (p, before) in workers_before.iter().enumerate() {
        assert_eq!(b.net(&b.address(p)), *before, "worker {p}'s deposit came back");
        assert_eq!(b.provider(p).record.slashes, 0);
    }
    let audit_fee = params.audit_fee_for(Amount(600_000));
    assert_eq!(b.net(&client), Amount(client_before.0 - audit_fee.0 - params.storage_deposit.0));
    // The job's audit fee went to the pool, which prepaid the committee with it: it comes back unspent,
    // with the three silent members' deposits.
    assert_eq!(pool_after_fee, Amount::ZERO, "all of it was reserved for the committee");
    assert_eq!(b.pool(), Amount(audit_fee.0 + 3 * params.referee_deposit.0));
    b.check();
}

#[test]
fn a_split_committee_goes_to_a_second_round_and_a_second_split_ends_with_no_verdict() {
    let mut b = Bench::new(2, 6, params());
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    let c = b.referee_round(job, &[Vote::Honest, Vote::Wrong, Vote::Unavailable]);
    assert_eq!((c.round, c.phase), (2, CommitteePhase::Committing));
    let first: Vec<Address> = c.seats.iter().filter(|s| s.round == 1).map(|s| s.provider).collect();
    assert!(c.seats.iter().filter(|s| s.round == 2).all(|s| !first.contains(&s.provider)), "new members");
    let revealed_before: Vec<(usize, Amount)> =
        first.iter().map(|a| b.index_of(*a)).map(|m| (m, b.net(&b.address(m)))).collect();
    let c = b.referee_round(job, &[Vote::Wrong, Vote::Honest, Vote::Unavailable]);
    assert_eq!(c.phase, CommitteePhase::Concluded { verdict: None });
    assert_eq!(b.w.job(job).state, JobState::Failed { reason: JobFailure::NoVerdict });
    // With no verdict every member who revealed keeps its fee (as far as the pool had it) and its deposit.
    for (m, before) in revealed_before {
        assert!(b.net(&b.address(m)) >= before);
        assert_eq!(b.provider(m).stake, REFEREE_STAKE);
    }
    b.check();
}

#[test]
fn with_fewer_eligible_than_the_committee_size_all_of_them_sit_and_their_majority_decides() {
    let mut b = Bench::new(2, 1, params());
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    let c = b.committee(b.w.job(job).checks[0]);
    assert_eq!((c.seats.len(), c.round_seats, c.majority()), (1, 1, 1));
    let c = b.referee_round(job, &[]);
    assert_eq!(c.phase, CommitteePhase::Concluded { verdict: Some(Hash::of(HONEST)) });
    assert_eq!(b.w.job(job).slots[1].state, SlotState::Slashed);
    b.check();
}

#[test]
fn referees_who_cannot_get_the_content_decide_against_the_client() {
    let mut b = Bench::new(2, 3, params());
    let client = b.w.tenant.address();
    let workers_before: Vec<Amount> = (0..2).map(|p| b.net(&b.address(p))).collect();
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(400_000), WRONG)]);
    let c = b.referee_round(job, &[Vote::Unavailable, Vote::Unavailable, Vote::Honest]);
    assert_eq!(c.phase, CommitteePhase::Concluded { verdict: Some(unavailable_vote(&client)) });
    let j = b.w.job(job);
    // As if the client had lied: both workers are paid, nobody is slashed.
    assert_eq!((j.state, j.paid), (JobState::Completed, Amount(700_000)));
    assert_eq!(b.net(&b.address(0)), workers_before[0].saturating_add(Amount(300_000)));
    assert_eq!(b.net(&b.address(1)), workers_before[1].saturating_add(Amount(400_000)));
    b.check();
}

#[test]
fn a_jailed_provider_cannot_bid_nor_sit_on_committees_until_it_bonds_again_and_unbonding_stake_is_slashable()
{
    let mut b = Bench::new(2, 3, params());
    // The cheater starts unbonding part of its stake first: slashing reaches the unbonding entry too.
    ok(&b.exec_provider(1, Msg::Bond { amount: Amount::tgr(20) }));
    ok(&b.exec_provider(1, Msg::Unbond { amount: Amount::tgr(20) }));
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    b.referee_round(job, &[]);
    let cheater = b.provider(1);
    // 10 % of 120 TGR (100 bonded, 20 unbonding) is 12: 12 from the bond first.
    assert_eq!((cheater.stake, cheater.unbonding[0].amount), (Amount::tgr(88), Amount::tgr(20)));
    assert!(cheater.jailed);
    let r = b.exec_client(Msg::SubmitJob { spec: job_spec(1, Amount::tgr(1)) });
    let next = r.created_job().unwrap();
    assert!(matches!(
        failed_with(&b.exec_provider(1, Msg::BidJob { job: next, price: Amount(1_000) })),
        TxError::ProviderJailed { .. }
    ));
    ok(&b.exec_provider(1, Msg::Bond { amount: Amount::tgr(12) }));
    assert!(!b.provider(1).jailed);
    ok(&b.exec_provider(1, Msg::BidJob { job: next, price: Amount(1_000) }));

    // A bigger slash reaches into the unbonding entry once the bond is gone.
    let mut b = Bench::new(2, 3, Params { slash_fraction_bps: 9_000, ..params() });
    ok(&b.exec_provider(1, Msg::Bond { amount: Amount::tgr(100) }));
    ok(&b.exec_provider(1, Msg::Unbond { amount: Amount::tgr(100) }));
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    b.referee_round(job, &[]);
    let cheater = b.provider(1);
    // 90 % of 200 TGR is 180: all 100 bonded, then 80 of the 100 unbonding.
    assert_eq!((cheater.stake, cheater.unbonding[0].amount), (Amount::ZERO, Amount::tgr(20)));
    b.check();
}

#[test]
fn jailed_and_opted_out_providers_are_never_drawn_and_nobody_is_drawn_twice() {
    for seed in 0..12 {
        // A slash of 60 % takes a 200 TGR referee's stake below the minimum.
        let mut b = Bench::seeded(2, 5, Params { slash_fraction_bps: 6_000, ..params() }, seed);
        // One referee opts out again.
        let update = Msg::UpdateProvider {
            host_uri: None,
            attributes: None,
            info: None,
            runtimes: None,
            referee: Some(false),
        };
        ok(&b.exec_provider(2, update));
        // A first job makes provider 3 a cheater on a job of its own: slashed and jailed.
        let first = b.job(Amount::tgr(1), &[(3, Amount(300_000), WRONG), (4, Amount(300_000), HONEST)]);
        b.referee_round(first, &[]);
        assert_eq!(b.w.job(first).verdict, Some(Hash::of(HONEST)));
        assert!(b.provider(3).jailed);
        let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
        let c = b.committee(*b.w.job(job).checks.last().unwrap());
        let drawn: Vec<usize> = c.seats.iter().map(|s| b.index_of(s.provider)).collect();
        let mut unique = drawn.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), drawn.len(), "seed {seed}: drawn twice: {drawn:?}");
        for m in &drawn {
            assert!(![0, 1, 2, 3].contains(m), "seed {seed}: drew {m} from {drawn:?}");
        }
        b.check();
    }
}

#[test]
fn members_are_drawn_in_proportion_to_stake() {
    // Two candidates for one audit seat, one with four times the other's stake.
    let mut heavy = 0;
    let runs = 60;
    for seed in 0..runs {
        let mut b = Bench::seeded(1, 0, Params { audit_rate_bps: 10_000, ..params() }, seed);
        // Two referees registered by hand with different stakes.
        let keys = [key("light"), key("heavy")];
        for (k, stake) in keys.iter().zip([Amount::tgr(110), Amount::tgr(440)]) {
            let tenant = b.w.tenant.clone();
            ok(&b.exec(&tenant, Msg::Send { to: k.address(), amount: Amount::tgr(1_000) }));
            ok(&b.exec(k, referee_msg(stake)));
        }
        let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST)]);
        let c = b.committee(b.w.job(job).checks[0]);
        if c.seats[0].provider == keys[1].address() {
            heavy += 1;
        }
    }
    // Expected 4/5 of 60 = 48.
    assert!((38..=58).contains(&heavy), "the heavier provider was drawn {heavy} times of {runs}");
}

#[test]
fn bids_from_providers_below_the_clients_requirements_are_refused() {
    let mut b = Bench::new(2, 0, params());
    let spec = tensorgrid_types::job::JobSpec {
        requirements: JobRequirements { min_completed: 1, max_slashes: Some(0) },
        ..job_spec(1, Amount::tgr(1))
    };
    let r = b.exec_client(Msg::SubmitJob { spec: spec.clone() });
    let job = r.created_job().unwrap();
    assert!(matches!(
        failed_with(&b.exec_provider(0, Msg::BidJob { job, price: Amount(1_000) })),
        TxError::RequirementNotMet { .. }
    ));
    // Once it completed a job it may bid.
    let done = b.job(Amount::tgr(1), &[(0, Amount(1_000), HONEST)]);
    let deadline = b.w.job(done).challenge_deadline.unwrap();
    b.w.chain.block_at(deadline, &[]);
    assert_eq!(b.provider(0).jobs_completed, 1);
    let r = b.exec_client(Msg::SubmitJob { spec });
    let job = r.created_job().unwrap();
    ok(&b.exec_provider(0, Msg::BidJob { job, price: Amount(1_000) }));
    b.check();
}

#[test]
fn out_of_phase_and_foreign_messages_are_refused_and_change_nothing() {
    let mut b = Bench::new(2, 3, params());
    let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
    let c = b.committee(b.w.job(job).checks[0]);
    let member = b.index_of(c.seats[0].provider);
    let outsider = b.w.outsider.clone();
    let job_before = b.w.job(job);
    let refused = [
        // A reveal before every member committed.
        b.exec_provider(member, Msg::RevealResult { job, result_hash: Hash::of(HONEST), salt: [0; 32] }),
        // A commitment from someone with no seat.
        b.exec(&outsider, Msg::CommitResult { job, commitment: Hash::ZERO }),
        // A dispute of a job that is not in its challenge period, and by someone who is not its client.
        b.exec_client(Msg::DisputeJob { job, deposit: Amount::tgr(10) }),
        b.exec(&outsider, Msg::DisputeJob { job, deposit: Amount::tgr(10) }),
    ];
    let errors: Vec<TxError> = refused.iter().map(failed_with).collect();
    assert!(matches!(errors[0], TxError::CommitteeNotRevealing { .. }), "{errors:?}");
    assert!(matches!(errors[1], TxError::NotAssigned { .. }), "{errors:?}");
    assert!(matches!(errors[2], TxError::JobWrongState { .. }), "{errors:?}");
    assert!(matches!(errors[3], TxError::NotOwner { .. }), "{errors:?}");
    // Only fees and nonces moved.
    assert_eq!(b.committee(c.id), c);
    assert_eq!(b.w.job(job), job_before);
    // A malformed dispute (zero deposit) is refused at admission.
    let r = b.w.chain.exec(&b.w.tenant.clone(), Msg::DisputeJob { job, deposit: Amount::ZERO });
    assert!(matches!(rejected_with(&r), TxError::Malformed { .. }));
    b.check();
}

#[test]
fn no_job_stays_held_whatever_its_referees_do() {
    let behaviours = [Vote::Honest, Vote::Wrong, Vote::Unavailable, Vote::Silent];
    for seed in 0..16u64 {
        let mut b = Bench::seeded(2, 5, params(), seed);
        let job = b.job(Amount::tgr(1), &[(0, Amount(300_000), HONEST), (1, Amount(300_000), WRONG)]);
        for round in 0..12 {
            if b.w.job(job).state != JobState::Refereeing {
                break;
            }
            let votes: Vec<Vote> =
                (0..3).map(|i| behaviours[((seed as usize) + i * 3 + round) % behaviours.len()]).collect();
            b.referee_round(job, &votes);
            b.check();
        }
        // Whatever is left runs out on its deadlines.
        b.w.chain.advance(60 * 60 * 1_000);
        let j = b.w.job(job);
        assert!(j.state.is_final(), "seed {seed}: job left {:?}", j.state);
        assert!(j.held.is_zero());
        b.check();
    }
}
