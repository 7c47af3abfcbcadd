//! Jobs: k cheapest bids win, commit–reveal, payment on agreement, disputes, deadlines and replacements.

mod common;

use common::*;
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::job::{result_commitment, JobBidState, JobFailure, JobSpec, JobState, SlotState};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Hash, Msg, Params, Receipt, Timestamp, TxError};

fn params() -> Params {
    Params { heartbeat_grace_ms: 1 << 40, ..Params::default() }
}

fn submit(w: &mut World, spec: JobSpec) -> (u64, Receipt) {
    let tenant = w.tenant.clone();
    let r = w.chain.exec(&tenant, Msg::SubmitJob { spec });
    ok(&r);
    let id = r
        .events
        .iter()
        .find_map(|e| match e {
            Event::JobSubmitted { job, .. } => Some(*job),
            _ => None,
        })
        .expect("job event");
    (id, r)
}

fn bid(w: &mut World, p: usize, job: u64, price: Amount) -> Receipt {
    let key = w.providers[p].clone();
    w.chain.exec(&key, Msg::BidJob { job, price })
}

fn salt(p: usize) -> [u8; 32] {
    [p as u8 + 1; 32]
}

fn confirm(w: &mut World, p: usize, job: u64) -> Receipt {
    let key = w.providers[p].clone();
    w.chain.exec(&key, Msg::ConfirmJobContent { job })
}

fn commit(w: &mut World, p: usize, job: u64, result: Hash) -> Receipt {
    let key = w.providers[p].clone();
    let commitment = result_commitment(&result, &key.address(), &salt(p));
    w.chain.exec(&key, Msg::CommitResult { job, commitment })
}

fn reveal(w: &mut World, p: usize, job: u64, result: Hash) -> Receipt {
    let key = w.providers[p].clone();
    w.chain.exec(&key, Msg::RevealResult { job, result_hash: result, salt: salt(p) })
}

/// Submits `spec`, has each `(provider, price)` bid, closes bidding and has every winner confirm that it
/// received the content: returns the job's id.
fn assigned(w: &mut World, spec: JobSpec, bids: &[(usize, Amount)]) -> u64 {
    let (job, _) = submit(w, spec);
    for (p, price) in bids {
        ok(&bid(w, *p, job, *price));
    }
    close_bidding(w, job);
    for slot in w.job(job).slots {
        let p = index_of(w, slot.provider);
        ok(&confirm(w, p, job));
    }
    job
}

fn index_of(w: &World, address: tensorgrid_types::Address) -> usize {
    w.providers.iter().position(|k| k.address() == address).expect("a provider of the world")
}

/// The first block at the reveal deadline: where revealed results are checked or accepted.
fn end_reveals(w: &mut World, job: u64) -> tensorgrid_types::BlockOutcome {
    let deadline = w.job(job).reveal_deadline.expect("reveals started");
    w.chain.block_at(deadline, &[])
}

fn close_bidding(w: &mut World, job: u64) {
    let deadline = w.job(job).bid_deadline;
    w.chain.block_at(deadline, &[]);
}

#[test]
fn agreeing_results_pay_each_winner_its_own_bid_and_refund_the_rest() {
    let mut w = world(3, params());
    w.register_all();
    let client_start = w.chain.balance(&w.tenant.address());
    let (job, submit_receipt) = submit(&mut w, job_spec(2, Amount::tgr(1)));
    let starts: Vec<Amount> = w.providers.iter().map(|p| w.chain.balance(&p.address())).collect();
    let mut fees = [Amount::ZERO; 3];
    for (p, price) in [(0, 300_000), (1, 400_000), (2, 450_000)] {
        let r = bid(&mut w, p, job, Amount(price));
        ok(&r);
        fees[p] = Amount(fees[p].0 + r.fee_paid.0);
    }
    close_bidding(&mut w, job);
    for (p, fee) in fees.iter_mut().enumerate().take(2) {
        let r = confirm(&mut w, p, job);
        ok(&r);
        *fee = Amount(fee.0 + r.fee_paid.0);
    }
    let j = w.job(job);
    assert_eq!(j.state, JobState::Running);
    let assigned: Vec<_> = j.slots.iter().map(|s| (s.provider, s.price)).collect();
    assert_eq!(
        assigned,
        vec![(w.providers[0].address(), Amount(300_000)), (w.providers[1].address(), Amount(400_000))]
    );

    let result = Hash::of(b"stdout: 42");
    for (p, fee) in fees.iter_mut().enumerate().take(2) {
        let r = commit(&mut w, p, job, result);
        ok(&r);
        *fee = Amount(fee.0 + r.fee_paid.0);
    }
    assert_eq!(w.job(job).state, JobState::Revealing);
    // The spare bid was kept for replacements until every winner committed; now it is returned.
    assert_eq!(w.chain.balance(&w.providers[2].address()), Amount(starts[2].0 - fees[2].0));
    for (p, fee) in fees.iter_mut().enumerate().take(2) {
        let r = reveal(&mut w, p, job, result);
        ok(&r);
        *fee = Amount(fee.0 + r.fee_paid.0);
    }
    assert_eq!(w.job(job).state, JobState::Revealing, "results wait for the reveal deadline's audit draw");
    end_reveals(&mut w, job);
    let j = w.job(job);
    assert_eq!(j.state, JobState::Completed);
    assert_eq!((j.paid, j.held), (Amount(700_000), Amount::ZERO));
    assert_eq!(w.chain.balance(&w.providers[0].address()), Amount(starts[0].0 + 300_000 - fees[0].0));
    assert_eq!(w.chain.balance(&w.providers[1].address()), Amount(starts[1].0 + 400_000 - fees[1].0));
    assert_eq!(
        w.chain.balance(&w.tenant.address()),
        Amount(
            client_start.0
                - submit_receipt.fee_paid.0
                - 700_000
                - w.chain.params().storage_deposit.0
                - w.chain.params().audit_fee_for(Amount(700_000)).0
        ),
        "the client paid exactly the two winning bids and the audit fee"
    );
    w.check();
}

#[test]
fn different_results_with_nobody_to_referee_end_with_no_verdict_and_return_everything() {
    let mut w = world(2, params());
    w.register_all();
    let client_start = w.chain.balance(&w.tenant.address());
    let job = assigned(&mut w, job_spec(2, Amount::tgr(1)), &[(0, Amount(100)), (1, Amount(100))]);
    commit(&mut w, 0, job, Hash::of(b"honest"));
    commit(&mut w, 1, job, Hash::of(b"cheat"));
    ok(&reveal(&mut w, 0, job, Hash::of(b"honest")));
    ok(&reveal(&mut w, 1, job, Hash::of(b"cheat")));
    assert_eq!(w.job(job).state, JobState::Revealing, "nothing is decided before the reveal deadline");
    let out = end_reveals(&mut w, job);
    assert!(out.events.iter().any(|e| matches!(e, Event::JobDisputed { .. })));
    let j = w.job(job);
    assert_eq!(j.state, JobState::Failed { reason: JobFailure::NoVerdict });
    assert_eq!((j.held, j.paid, j.audit_fee), (Amount::ZERO, Amount::ZERO, Amount::ZERO));
    let QueryResponse::JobBids(bids) = w.chain.query(Query::JobBids { job }) else { panic!() };
    assert!(bids.iter().all(|b| b.state == JobBidState::Returned));
    // The client is out only its fees, its storage deposit and the audit fee (the job had results).
    let spent: u128 = w.chain.params().storage_deposit.0 + w.chain.params().audit_fee_for(Amount(200)).0;
    let fees = client_start.0 - w.chain.balance(&w.tenant.address()).0 - spent;
    assert!(fees < 10_000, "only transaction fees beyond that: {fees}");
    w.check();
}

#[test]
fn a_single_result_is_paid_after_the_challenge_period_unless_disputed() {
    for dispute in [false, true] {
        let mut w = world(1, params());
        w.register_all();
        let (job, _) = submit(&mut w, job_spec(1, Amount::tgr(1)));
        bid(&mut w, 0, job, Amount(500_000));
        close_bidding(&mut w, job);
        ok(&confirm(&mut w, 0, job));
        commit(&mut w, 0, job, Hash::of(b"out"));
        ok(&reveal(&mut w, 0, job, Hash::of(b"out")));
        end_reveals(&mut w, job);
        let j = w.job(job);
        assert_eq!(j.state, JobState::Challenge);
        let deadline = j.challenge_deadline.unwrap();
        if dispute {
            let tenant = w.tenant.clone();
            let required = w.chain.params().dispute_deposit_for(Amount(500_000));
            let low = Msg::DisputeJob { job, deposit: Amount(required.0 - 1) };
            assert!(matches!(failed_with(&w.chain.exec(&tenant, low)), TxError::DisputeDepositTooLow { .. }));
            assert_eq!(w.job(job).state, JobState::Challenge, "a refused dispute changes nothing");
            ok(&w.chain.exec(&tenant, Msg::DisputeJob { job, deposit: required }));
        }
        w.chain.block_at(deadline, &[]);
        let j = w.job(job);
        if dispute {
            // Nobody is eligible to referee: the dispute ends at once with no verdict.
            assert_eq!((j.state, j.paid), (JobState::Failed { reason: JobFailure::NoVerdict }, Amount::ZERO));
        } else {
            assert_eq!((j.state, j.paid), (JobState::Completed, Amount(500_000)));
            let tenant = w.tenant.clone();
            let r = w.chain.exec(&tenant, Msg::DisputeJob { job, deposit: Amount::tgr(10) });
            assert!(matches!(failed_with(&r), TxError::JobWrongState { .. }));
        }
        w.check();
    }
}

#[test]
fn a_winner_that_misses_its_commit_deadline_is_replaced_and_pays_the_client() {
    let mut w = world(2, params());
    w.register_all();
    let job = assigned(&mut w, job_spec(1, Amount::tgr(1)), &[(0, Amount(100_000)), (1, Amount(200_000))]);
    let deadline = w.job(job).slots[0].commit_deadline.expect("confirmed");
    let client_before = w.chain.balance(&w.tenant.address());
    let out = w.chain.block_at(deadline, &[]);
    let forfeited = Params::default().job_bid_deposit_for(Amount(100_000));
    assert_eq!(forfeited, Amount::tgr(2), "a deposit is the price over the audit rate");
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::JobDeadlineMissed { forfeited: f, .. } if *f == forfeited)));
    assert_eq!(w.chain.balance(&w.tenant.address()), Amount(client_before.0 + forfeited.0));
    let j = w.job(job);
    assert_eq!(j.slots.len(), 2);
    assert_eq!(j.slots[0].state, SlotState::MissedCommit);
    assert_eq!(
        (j.slots[1].provider, j.slots[1].state),
        (w.providers[1].address(), SlotState::AwaitingContent)
    );
    let QueryResponse::Provider(Some(p0)) =
        w.chain.query(Query::Provider { address: w.providers[0].address() })
    else {
        panic!()
    };
    assert_eq!((p0.jobs_missed, p0.active_job_slots), (1, 0));
    // The latecomer can no longer commit; the replacement can, and is paid its own bid.
    let r = commit(&mut w, 0, job, Hash::of(b"late"));
    assert!(matches!(failed_with(&r), TxError::NotAssigned { .. }));
    ok(&confirm(&mut w, 1, job));
    ok(&commit(&mut w, 1, job, Hash::of(b"out")));
    ok(&reveal(&mut w, 1, job, Hash::of(b"out")));
    end_reveals(&mut w, job);
    let deadline = w.job(job).challenge_deadline.unwrap();
    w.chain.block_at(deadline, &[]);
    assert_eq!((w.job(job).state, w.job(job).paid), (JobState::Completed, Amount(200_000)));
    w.check();
}

#[test]
fn a_missed_reveal_forfeits_and_the_rest_decide() {
    let mut w = world(2, params());
    w.register_all();
    let job = assigned(&mut w, job_spec(2, Amount::tgr(1)), &[(0, Amount(100)), (1, Amount(100))]);
    commit(&mut w, 0, job, Hash::of(b"x"));
    commit(&mut w, 1, job, Hash::of(b"x"));
    ok(&reveal(&mut w, 0, job, Hash::of(b"x")));
    let deadline = w.job(job).reveal_deadline.unwrap();
    w.chain.block_at(deadline, &[]);
    let j = w.job(job);
    assert_eq!(j.slots[1].state, SlotState::MissedReveal);
    assert_eq!(j.state, JobState::Challenge, "one revealed result waits out a challenge period");
    w.check();
}

#[test]
fn too_few_bids_fail_the_job_and_refund_everyone() {
    let mut w = world(2, params());
    w.register_all();
    let client_before = w.chain.balance(&w.tenant.address());
    let (job, r) = submit(&mut w, job_spec(3, Amount::tgr(3)));
    let before: Vec<Amount> = w.providers.iter().map(|p| w.chain.balance(&p.address())).collect();
    let fees: Vec<Amount> = (0..2).map(|p| bid(&mut w, p, job, Amount(10)).fee_paid).collect();
    close_bidding(&mut w, job);
    let j = w.job(job);
    assert_eq!(j.state, JobState::Failed { reason: JobFailure::NotEnoughBids { got: 2, needed: 3 } });
    // Everything comes back but the fee and the storage deposit, which returns when the record is removed.
    let storage = w.chain.params().storage_deposit;
    assert_eq!(w.chain.balance(&w.tenant.address()), Amount(client_before.0 - r.fee_paid.0 - storage.0));
    for p in 0..2 {
        assert_eq!(w.chain.balance(&w.providers[p].address()), Amount(before[p].0 - fees[p].0));
    }
    w.check();
}

#[test]
fn the_client_can_cancel_while_bidding_only() {
    let mut w = world(1, params());
    w.register_all();
    let (job, _) = submit(&mut w, job_spec(1, Amount::tgr(1)));
    bid(&mut w, 0, job, Amount(10));
    let outsider = w.outsider.clone();
    assert!(matches!(
        failed_with(&w.chain.exec(&outsider, Msg::CancelJob { job })),
        TxError::NotOwner { .. }
    ));
    let tenant = w.tenant.clone();
    let r = w.chain.exec(&tenant, Msg::CancelJob { job });
    ok(&r);
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::JobCancelled { refunded, .. } if *refunded == Amount::tgr(1).saturating_add(Params::default().audit_fee_for(Amount::tgr(1))))),
        "the budget and the audit fee come back");
    assert_eq!(w.job(job).state, JobState::Cancelled);
    assert!(matches!(
        failed_with(&w.chain.exec(&tenant, Msg::CancelJob { job })),
        TxError::JobWrongState { .. }
    ));
    w.check();
}

#[test]
fn a_copied_commitment_cannot_be_revealed() {
    let mut w = world(2, params());
    w.register_all();
    let job = assigned(&mut w, job_spec(2, Amount::tgr(1)), &[(0, Amount(100)), (1, Amount(100))]);
    let honest = Hash::of(b"real output");
    let honest_commitment = result_commitment(&honest, &w.providers[0].address(), &salt(0));
    ok(&commit(&mut w, 0, job, honest));
    // Provider 1 copies provider 0's commitment without doing the work.
    let copier = w.providers[1].clone();
    ok(&w.chain.exec(&copier, Msg::CommitResult { job, commitment: honest_commitment }));
    // Reveals are not accepted before everyone committed; now they are, and the copy does not open.
    ok(&reveal(&mut w, 0, job, honest));
    let r = w.chain.exec(&copier, Msg::RevealResult { job, result_hash: honest, salt: salt(0) });
    assert!(matches!(failed_with(&r), TxError::CommitmentMismatch { .. }));
    let deadline = w.job(job).reveal_deadline.unwrap();
    w.chain.block_at(deadline, &[]);
    let j = w.job(job);
    assert_eq!(j.slots[1].state, SlotState::MissedReveal);
    w.check();
}

#[test]
fn reveals_wait_for_every_commitment() {
    let mut w = world(2, params());
    w.register_all();
    let job = assigned(&mut w, job_spec(2, Amount::tgr(1)), &[(0, Amount(100)), (1, Amount(100))]);
    commit(&mut w, 0, job, Hash::of(b"x"));
    let r = reveal(&mut w, 0, job, Hash::of(b"x"));
    assert!(matches!(failed_with(&r), TxError::JobWrongState { .. }));
    let r = commit(&mut w, 0, job, Hash::of(b"x"));
    assert!(matches!(failed_with(&r), TxError::AlreadyCommitted { .. }));
}

#[test]
fn job_limits_are_enforced() {
    let mut w = world(1, params());
    w.register_all();
    let tenant = w.tenant.clone();
    let r = w.chain.exec(&tenant, Msg::SubmitJob { spec: job_spec(9, Amount::tgr(1)) });
    assert!(matches!(failed_with(&r), TxError::RedundancyTooHigh { requested: 9, max: 8 }));
    let mut spec = job_spec(1, Amount::tgr(1));
    spec.bid_window_ms = 10;
    let r = w.chain.exec(&tenant, Msg::SubmitJob { spec });
    assert!(matches!(failed_with(&r), TxError::WindowOutOfRange { .. }));
    let (job, _) = submit(&mut w, job_spec(2, Amount::tgr(1)));
    let r = bid(&mut w, 0, job, Amount(500_001));
    assert!(matches!(failed_with(&r), TxError::JobBidTooHigh { max, .. } if max == Amount(500_000)));
    ok(&bid(&mut w, 0, job, Amount(500_000)));
    assert!(matches!(failed_with(&bid(&mut w, 0, job, Amount(1))), TxError::DuplicateJobBid { .. }));
    w.check();
}

#[test]
fn equal_job_bids_are_broken_by_block_randomness() {
    let mut winners = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let mut w = world_seeded(3, params(), seed);
        w.register_all();
        let (job, _) = submit(&mut w, job_spec(1, Amount::tgr(1)));
        for p in 0..3 {
            bid(&mut w, p, job, Amount(100));
        }
        close_bidding(&mut w, job);
        winners.insert(w.job(job).slots[0].provider);
    }
    assert!(winners.len() >= 2, "the first bidder does not always win");
}

#[test]
fn a_client_that_never_uploads_takes_no_deposit_and_gets_only_its_budget_back() {
    // The attack: a client posts a job, wins providers' bids, and never serves the module and inputs, hoping
    // every winner and every replacement forfeits its deposit to it.
    let mut w = world(4, params());
    w.register_all();
    let client_start = w.chain.balance(&w.tenant.address());
    let (job, submitted) = submit(&mut w, job_spec(2, Amount::tgr(1)));
    let starts: Vec<Amount> = w.providers.iter().map(|p| w.chain.balance(&p.address())).collect();
    let mut fees = [Amount::ZERO; 4];
    for (p, fee) in fees.iter_mut().enumerate() {
        let r = bid(&mut w, p, job, Amount(100_000 + p as u128));
        ok(&r);
        *fee = r.fee_paid;
    }
    close_bidding(&mut w, job);
    let mut forfeits = 0;
    // No provider receives anything, so none confirms: each slot lapses at its content deadline and the
    // next bid takes it, until no bid is left.
    for _ in 0..4 {
        let Some(deadline) = w
            .job(job)
            .slots
            .iter()
            .filter(|s| s.state == SlotState::AwaitingContent)
            .map(|s| s.content_deadline)
            .min()
        else {
            break;
        };
        let out = w.chain.block_at(deadline, &[]);
        forfeits += out.events.iter().filter(|e| matches!(e, Event::JobDeadlineMissed { .. })).count();
    }
    let j = w.job(job);
    assert_eq!(forfeits, 0, "no deposit was forfeited");
    assert_eq!(j.slots.len(), 4, "every bid was tried");
    assert!(j.slots.iter().all(|s| s.state == SlotState::ContentUnavailable));
    assert_eq!(j.state, JobState::Failed { reason: JobFailure::ContentUnavailable });
    for (p, fee) in fees.iter().enumerate() {
        assert_eq!(
            w.chain.balance(&w.providers[p].address()),
            Amount(starts[p].0 - fee.0),
            "provider {p} lost nothing but its bid's fee"
        );
        let QueryResponse::Provider(Some(record)) =
            w.chain.query(Query::Provider { address: w.providers[p].address() })
        else {
            panic!()
        };
        assert_eq!((record.jobs_missed, record.active_job_slots), (0, 0));
    }
    assert_eq!(
        w.chain.balance(&w.tenant.address()),
        Amount(client_start.0 - submitted.fee_paid.0 - w.chain.params().storage_deposit.0),
        "the client gets its budget back and nothing more"
    );
    w.check();
}

#[test]
fn the_commit_deadline_runs_from_the_confirmation_and_only_a_confirmed_slot_commits() {
    let mut w = world(3, params());
    w.register_all();
    let (job, _) = submit(&mut w, job_spec(1, Amount::tgr(1)));
    ok(&bid(&mut w, 0, job, Amount(100)));
    close_bidding(&mut w, job);
    // Not before the content is confirmed, and never by anyone but the slot's provider.
    assert!(matches!(
        failed_with(&commit(&mut w, 0, job, Hash::of(b"x"))),
        TxError::ContentNotConfirmed { .. }
    ));
    assert!(matches!(failed_with(&confirm(&mut w, 1, job)), TxError::NotAssigned { .. }));
    // A slow upload: the provider confirms just before its content deadline, and still has the whole run
    // timeout from then.
    let content_deadline = w.job(job).slots[0].content_deadline;
    let key = w.providers[0].clone();
    let tx = w.chain.tx(&key, Msg::ConfirmJobContent { job });
    let out = w.chain.block_at(Timestamp::from_millis(content_deadline.millis() - 1), &[tx]);
    let r = out.receipts[0].clone();
    ok(&r);
    assert!(matches!(failed_with(&confirm(&mut w, 0, job)), TxError::ContentAlreadyConfirmed { .. }));
    let commit_deadline = w.job(job).slots[0].commit_deadline.expect("confirmed");
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::JobStarted { commit_deadline: d, .. } if *d == commit_deadline)));
    assert!(commit_deadline.since(content_deadline) >= job_spec(1, Amount::tgr(1)).run_timeout_ms - 1_000);
    let commitment = result_commitment(&Hash::of(b"x"), &key.address(), &salt(0));
    let tx = w.chain.tx(&key, Msg::CommitResult { job, commitment });
    let out = w.chain.block_at(Timestamp::from_millis(commit_deadline.millis() - 1), &[tx]);
    ok(&out.receipts[0]);
    w.check();
}

#[test]
fn a_run_timeout_too_short_for_the_jobs_fuel_is_refused() {
    // The attack: a run timeout no provider can meet, so that every winner times out and forfeits.
    let mut w = world(1, params());
    w.register_all();
    let tenant = w.tenant.clone();
    let before = w.chain.balance(&tenant.address());
    let mut spec = job_spec(1, Amount::tgr(1));
    spec.max_fuel = 100_000_000_000;
    spec.run_timeout_ms = 60_000;
    let needed = Params::default().min_run_timeout_ms(spec.max_fuel);
    let r = w.chain.exec(&tenant, Msg::SubmitJob { spec: spec.clone() });
    assert!(matches!(
        failed_with(&r),
        TxError::RunTimeoutTooShort { needed_ms, .. } if needed_ms == needed
    ));
    assert_eq!(w.chain.balance(&tenant.address()), Amount(before.0 - r.fee_paid.0), "only the fee was taken");
    spec.run_timeout_ms = needed;
    assert!(needed <= Params::default().max_job_window_ms);
    ok(&w.chain.exec(&tenant, Msg::SubmitJob { spec }));
    w.check();
}

#[test]
fn a_finished_job_is_removed_after_retention_with_its_bids() {
    let retention = 60_000;
    let mut w = world(3, Params { record_retention_ms: retention, ..params() });
    w.register_all();
    let storage = w.chain.params().storage_deposit;
    let bids = [(0, Amount(100)), (1, Amount(100)), (2, Amount(200))];
    let done = assigned(&mut w, job_spec(2, Amount::tgr(1)), &bids);
    for p in 0..2 {
        ok(&commit(&mut w, p, done, Hash::of(b"out")));
    }
    for p in 0..2 {
        ok(&reveal(&mut w, p, done, Hash::of(b"out")));
    }
    end_reveals(&mut w, done);
    assert_eq!(w.job(done).state, JobState::Completed);
    let client = w.tenant.address();
    let before = w.chain.balance(&client);
    let finished_at = w.job(done).finished_at.expect("a finished job has a finish time");
    w.chain.block_at(finished_at.plus(retention - 1), &[]);
    assert_eq!(w.job(done).state, JobState::Completed, "readable for the whole retention period");
    let out = w.chain.block_at(finished_at.plus(retention), &[]);
    let removed = Event::RecordRemoved { record: StoredRecord::Job(done), owner: client, refunded: storage };
    assert!(out.events.contains(&removed), "{:?}", out.events);
    assert_eq!(w.chain.query(Query::Job { job: done }), QueryResponse::Job(None));
    assert_eq!(w.chain.query(Query::JobBids { job: done }), QueryResponse::JobBids(Vec::new()));
    assert_eq!(w.chain.balance(&client), before.saturating_add(storage));

    w.check();
}
