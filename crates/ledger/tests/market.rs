//! Deployments, bids, leases and escrow, with exact arithmetic.

mod common;

use common::*;
use tensorgrid_types::market::{BidState, CloseReason, DeploymentState, LeaseState, OrderId, OrderState};
use tensorgrid_types::time::MS_PER_HOUR;
use tensorgrid_types::{Amount, Event, Msg, Params, TxError};

const DAY: u64 = 24 * MS_PER_HOUR;

/// Params where providers stay live without heartbeats, so a test controls liveness only where it wants to.
fn patient() -> Params {
    Params { heartbeat_grace_ms: 365 * DAY, ..Params::default() }
}

fn order1(dseq: u64) -> OrderId {
    OrderId { dseq, gseq: 1 }
}

#[test]
fn tenant_accepts_a_bid_losers_get_deposits_back_and_payment_follows_block_time() {
    let mut w = world(3, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    let order = order1(dseq);
    let before: Vec<Amount> = w.providers.iter().map(|p| w.chain.balance(&p.address())).collect();
    let fee = |r: &tensorgrid_types::Receipt| r.fee_paid;
    let fees: Vec<Amount> = vec![
        fee(&w.bid(0, order, Amount(1_200_000))),
        fee(&w.bid(1, order, Amount(800_000))),
        fee(&w.bid(2, order, Amount(1_000_000))),
    ];
    let deposit = Params::default().bid_deposit;
    assert_eq!(w.chain.balance(&w.providers[0].address()), Amount(before[0].0 - fees[0].0 - deposit.0));

    let tenant = w.tenant.clone();
    let winner = w.bid_id(1, order);
    let r = w.chain.exec(&tenant, Msg::AcceptBid { bid: winner });
    ok(&r);
    let start = w.chain.now;
    assert_eq!(w.order(order).state, OrderState::Active);
    let lease = w.lease(winner);
    assert_eq!((lease.price, lease.started_at, lease.state), (Amount(800_000), start, LeaseState::Active));
    for loser in [0, 2] {
        assert_eq!(
            w.chain.balance(&w.providers[loser].address()),
            Amount(before[loser].0 - fees[loser].0),
            "loser {loser} got its deposit back"
        );
    }
    let bids = match w.chain.query(tensorgrid_types::query::Query::Bids { order }) {
        tensorgrid_types::query::QueryResponse::Bids(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(bids.iter().filter(|b| b.state == BidState::Active).count(), 1);
    assert_eq!(
        bids.iter()
            .filter(|b| matches!(b.state, BidState::Closed { reason: CloseReason::LostAuction, .. }))
            .count(),
        2
    );
    w.check();

    // Half an hour later the provider withdraws exactly half an hour's pay.
    w.chain.block_at(start.plus(MS_PER_HOUR / 2 - w.chain.block_ms), &[]);
    let provider = w.providers[1].clone();
    let balance = w.chain.balance(&provider.address());
    let r = w.chain.exec(&provider, Msg::WithdrawLease { lease: winner });
    ok(&r);
    assert_eq!(w.chain.now, start.plus(MS_PER_HOUR / 2));
    assert_eq!(w.chain.balance(&provider.address()), Amount(balance.0 + 400_000 - r.fee_paid.0));

    // The tenant closes 75 minutes in: the provider is paid up to then, the tenant gets the rest back.
    let tenant_before = w.chain.balance(&tenant.address());
    w.chain.block_at(start.plus(75 * 60_000 - w.chain.block_ms), &[]);
    let r = w.chain.exec(&tenant, Msg::CloseDeployment { dseq });
    ok(&r);
    let owed_total = 800_000u128 * 75 / 60;
    let lease = w.lease(winner);
    assert_eq!(lease.paid, Amount(owed_total));
    assert!(matches!(lease.state, LeaseState::Closed { reason: CloseReason::TenantClosed, .. }));
    let refund = Amount::tgr(10).0 - owed_total;
    assert_eq!(w.chain.balance(&tenant.address()), Amount(tenant_before.0 + refund - r.fee_paid.0));
    let info = w.deployment(dseq);
    assert!(matches!(
        info.deployment.state,
        DeploymentState::Closed { reason: CloseReason::TenantClosed, .. }
    ));
    assert_eq!(info.deployment.escrow.refunded, Amount(refund));
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::DeploymentClosed { refunded, .. } if refunded.0 == refund)));
    w.check();
}

#[test]
fn the_lowest_bid_wins_automatically_when_the_window_closes() {
    let mut w = world(3, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    let created = w.chain.now;
    w.bid(0, order1(dseq), Amount(900_000));
    w.bid(1, order1(dseq), Amount(700_000));
    w.bid(2, order1(dseq), Amount(800_000));
    let window = Params::default().bid_window_ms;
    w.chain.block_at(created.plus(window - 1), &[]);
    assert_eq!(w.order(order1(dseq)).state, OrderState::Open, "not before the window closes");
    let out = w.chain.block_at(created.plus(window), &[]);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::LeaseCreated { lease, .. } if *lease == w.bid_id(1, order1(dseq)))));
    assert_eq!(w.order(order1(dseq)).state, OrderState::Active);
    assert_eq!(w.lease(w.bid_id(1, order1(dseq))).started_at, created.plus(window));
    w.check();
}

#[test]
fn a_window_without_bids_leaves_the_order_open_and_the_next_bid_opens_a_new_one() {
    let mut w = world(1, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    w.chain.advance(Params::default().bid_window_ms + 1);
    let order = w.order(order1(dseq));
    assert_eq!((order.state, order.window_ends), (OrderState::Open, None));
    ok(&w.bid(0, order1(dseq), Amount(500_000)));
    let bid_time = w.chain.now;
    assert_eq!(w.order(order1(dseq)).window_ends, Some(bid_time.plus(Params::default().bid_window_ms)));
    w.chain.advance(Params::default().bid_window_ms);
    assert_eq!(w.order(order1(dseq)).state, OrderState::Active);
    w.check();
}

#[test]
fn equal_bids_are_broken_by_block_randomness_not_arrival() {
    let mut winners = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let run = |seed| {
            let mut w = world_seeded(2, patient(), seed);
            w.register_all();
            let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
            // Provider 0 always bids first.
            w.bid(0, order1(dseq), Amount(500_000));
            w.bid(1, order1(dseq), Amount(500_000));
            w.chain.advance(Params::default().bid_window_ms);
            let info = w.deployment(dseq);
            assert_eq!(info.leases.len(), 1);
            info.leases[0].id.provider
        };
        let first = run(seed);
        assert_eq!(first, run(seed), "same seed, same winner");
        winners.insert(first);
    }
    assert_eq!(winners.len(), 2, "both providers win for some seeds");
}

#[test]
fn the_bid_book_is_bounded_and_a_new_bid_must_beat_the_worst() {
    let params = Params { max_bids_per_order: 3, ..patient() };
    let mut w = world(5, params);
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    for (p, price) in [(0, 1_000_000), (1, 900_000), (2, 800_000)] {
        ok(&w.bid(p, order1(dseq), Amount(price)));
    }
    let before = w.chain.balance(&w.providers[0].address());
    ok(&w.bid(3, order1(dseq), Amount(950_000)));
    assert_eq!(
        w.chain.balance(&w.providers[0].address()),
        Amount(before.0 + Params::default().bid_deposit.0),
        "the evicted bid's deposit came back"
    );
    let r = w.bid(4, order1(dseq), Amount(950_000));
    assert!(matches!(failed_with(&r), TxError::BidNotCompetitive { worst, .. } if worst == Amount(950_000)));
    assert_eq!(w.order(order1(dseq)).live_bids.len(), 3);
    w.check();
}

#[test]
fn bids_must_meet_placement_attributes() {
    let mut w = world(1, patient());
    w.register_all();
    let mut g = group("gpu", Amount::tgr(2));
    g.requirements.attributes.push(tensorgrid_types::resources::Attribute::new("region", "us-east"));
    let dseq = w.deploy(vec![g], Amount::tgr(10));
    let r = w.bid(0, order1(dseq), Amount(1));
    assert!(
        matches!(failed_with(&r), TxError::AttributeNotMet { key, value } if key == "region" && value == "us-east")
    );
}

#[test]
fn the_escrow_closes_as_overdrawn_exactly_when_it_runs_dry() {
    let mut w = world(1, patient());
    w.register_all();
    // 5 TGR at 1 TGR per hour: dry after exactly five hours.
    let lease_id = w.lease_one(0, Amount::tgr(2), Amount::tgr(5), Amount::tgr(1));
    let dseq = lease_id.dseq;
    let start = w.chain.now;
    assert_eq!(w.deployment(dseq).deployment.escrow.dry_at, Some(start.plus(5 * MS_PER_HOUR)));
    let provider_before = w.chain.balance(&w.providers[0].address());

    w.chain.block_at(start.plus(5 * MS_PER_HOUR - 1), &[]);
    assert_eq!(w.deployment(dseq).deployment.state, DeploymentState::Active);
    let out = w.chain.block_at(start.plus(5 * MS_PER_HOUR), &[]);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::LeaseClosed { reason: CloseReason::Overdrawn, .. })));
    let info = w.deployment(dseq);
    assert!(matches!(info.deployment.state, DeploymentState::Closed { reason: CloseReason::Overdrawn, .. }));
    assert_eq!(info.deployment.escrow.total_paid, Amount::tgr(5));
    assert_eq!(info.deployment.escrow.refunded, Amount::ZERO);
    // The provider got all five TGR and its bid deposit back.
    assert_eq!(
        w.chain.balance(&w.providers[0].address()),
        Amount(provider_before.0 + Amount::tgr(5).0 + Params::default().bid_deposit.0)
    );
    w.check();
}

#[test]
fn a_late_block_splits_the_last_of_the_escrow_in_proportion() {
    let mut w = world(2, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("a", Amount::tgr(10)), group("b", Amount::tgr(10))], Amount::tgr(6));
    w.bid(0, OrderId { dseq, gseq: 1 }, Amount::tgr(1));
    w.bid(1, OrderId { dseq, gseq: 2 }, Amount::tgr(2));
    let tenant = w.tenant.clone();
    let a = w.bid_id(0, OrderId { dseq, gseq: 1 });
    let b = w.bid_id(1, OrderId { dseq, gseq: 2 });
    let txs =
        vec![w.chain.tx(&tenant, Msg::AcceptBid { bid: a }), w.chain.tx(&tenant, Msg::AcceptBid { bid: b })];
    w.chain.block(&txs);
    let start = w.chain.now;
    // 6 TGR at 3 TGR/h: dry after two hours. The next block comes an hour late.
    assert_eq!(w.deployment(dseq).deployment.escrow.dry_at, Some(start.plus(2 * MS_PER_HOUR)));
    w.chain.block_at(start.plus(3 * MS_PER_HOUR), &[]);
    let (la, lb) = (w.lease(a), w.lease(b));
    // Owed 3 and 6 TGR, 6 available: split 2 : 4.
    assert_eq!((la.paid, lb.paid), (Amount::tgr(2), Amount::tgr(4)));
    assert!(matches!(la.state, LeaseState::Closed { reason: CloseReason::Overdrawn, .. }));
    w.check();
}

#[test]
fn a_top_up_moves_the_dry_time() {
    let mut w = world(1, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(5));
    w.bid(0, order1(dseq), Amount::tgr(1));
    let tenant = w.tenant.clone();
    ok(&w.chain.exec(&tenant, Msg::AcceptBid { bid: w.bid_id(0, order1(dseq)) }));
    let start = w.chain.now;
    let r = w.chain.exec(&tenant, Msg::DepositDeployment { dseq, amount: Amount::tgr(3) });
    ok(&r);
    assert_eq!(w.deployment(dseq).deployment.escrow.dry_at, Some(start.plus(8 * MS_PER_HOUR)));
    let outsider = w.outsider.clone();
    let r = w.chain.exec(&outsider, Msg::DepositDeployment { dseq, amount: Amount::tgr(3) });
    assert!(matches!(failed_with(&r), TxError::NotOwner { .. }));
    w.check();
}

#[test]
fn a_silent_provider_loses_its_leases_and_the_tenant_keeps_the_unserved_time() {
    let params = Params::default();
    let grace = params.heartbeat_grace_ms;
    let mut w = world(1, params);
    w.register_all();
    let lease_id = w.lease_one(0, Amount::tgr(2), Amount::tgr(10), Amount::tgr(1));
    let (dseq, tenant) = (lease_id.dseq, w.tenant.clone());
    let start = w.chain.now;
    let provider = w.providers[0].clone();
    // One heartbeat a minute in, then silence.
    let hb = w.chain.tx(&provider, Msg::Heartbeat);
    w.chain.block_at(start.plus(60_000), &[hb]);
    let last_heartbeat = w.chain.now;
    w.chain.block_at(last_heartbeat.plus(grace - 1), &[]);
    assert_eq!(w.lease(lease_id).state, LeaseState::Active);
    let tenant_before = w.chain.balance(&tenant.address());
    // The chain only notices an hour later; the tenant pays only up to heartbeat + grace.
    w.chain.block_at(last_heartbeat.plus(MS_PER_HOUR), &[]);
    let lease = w.lease(lease_id);
    assert!(matches!(lease.state, LeaseState::Closed { reason: CloseReason::ProviderUnresponsive, .. }));
    let served = last_heartbeat.plus(grace).since(start);
    let paid = 1_000_000u128 * u128::from(served) / u128::from(MS_PER_HOUR);
    assert_eq!(lease.paid, Amount(paid));
    assert_eq!(w.chain.balance(&tenant.address()), Amount(tenant_before.0 + Amount::tgr(10).0 - paid));
    let info = w.deployment(dseq);
    assert!(matches!(
        info.deployment.state,
        DeploymentState::Closed { reason: CloseReason::AllGroupsClosed, .. }
    ));
    w.check();
}

#[test]
fn how_often_a_provider_settles_never_changes_what_it_earns() {
    let run = |withdraw_every_block: bool| {
        let mut w = world(1, patient());
        w.register_all();
        let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
        w.bid(0, order1(dseq), Amount(1_234_567));
        let tenant = w.tenant.clone();
        let lease_id = w.bid_id(0, order1(dseq));
        ok(&w.chain.exec(&tenant, Msg::AcceptBid { bid: lease_id }));
        let provider = w.providers[0].clone();
        w.chain.block_ms = 7_777;
        for _ in 0..50 {
            let txs = if withdraw_every_block {
                vec![w.chain.tx(&provider, Msg::WithdrawLease { lease: lease_id })]
            } else {
                vec![]
            };
            w.chain.block(&txs);
        }
        ok(&w.chain.exec(&tenant, Msg::CloseLease { lease: lease_id }));
        w.check();
        w.lease(lease_id).paid
    };
    let often = run(true);
    let once = run(false);
    assert_eq!(often, once);
    assert_eq!(once, Amount(1_234_567u128 * (51 * 7_777) / u128::from(MS_PER_HOUR)));
}

#[test]
fn a_provider_that_wins_and_walks_away_puts_the_group_back_on_the_market_instead_of_closing_the_deployment() {
    // The attack: win the tenant's only order, then close the lease at once, which used to close the whole
    // deployment. Now the group is posted again as a new order on the same escrow and another provider takes it.
    let mut w = world(2, patient());
    w.register_all();
    let lease_id = w.lease_one(0, Amount::tgr(2), Amount::tgr(10), Amount::tgr(1));
    let (dseq, tenant) = (lease_id.dseq, w.tenant.clone());
    let provider = w.providers[0].clone();
    w.chain.advance(MS_PER_HOUR - w.chain.block_ms);
    let r = w.chain.exec(&provider, Msg::CloseLease { lease: lease_id });
    ok(&r);
    let lease = w.lease(lease_id);
    assert!(matches!(lease.state, LeaseState::Closed { reason: CloseReason::ProviderClosed, .. }));
    assert_eq!(lease.paid, Amount::tgr(1), "the walker is paid exactly the hour it served");
    let info = w.deployment(dseq);
    assert_eq!(info.deployment.state, DeploymentState::Active);
    assert_eq!(
        info.deployment.escrow.balance,
        Amount::tgr(9),
        "nothing refunded: the escrow funds the new order"
    );
    let reposted = OrderId { dseq, gseq: 2 };
    assert!(r.events.iter().any(|e| matches!(e, Event::OrderCreated { order, .. } if *order == reposted)));
    let order = w.order(reposted);
    assert_eq!((order.state, order.group), (OrderState::Open, 1));
    assert_eq!(order.spec, w.order(order1(dseq)).spec, "the same group, priced the same");
    assert!(matches!(w.order(order1(dseq)).state, OrderState::Closed { .. }), "closed records stay closed");
    // Another provider wins the group again; the escrow pays it.
    ok(&w.bid(1, reposted, Amount::tgr(1)));
    ok(&w.chain.exec(&tenant, Msg::AcceptBid { bid: w.bid_id(1, reposted) }));
    w.chain.advance(MS_PER_HOUR);
    let second = w.bid_id(1, reposted);
    let second_provider = w.providers[1].clone();
    ok(&w.chain.exec(&second_provider, Msg::WithdrawLease { lease: second }));
    assert!(w.lease(second).paid >= Amount::tgr(1));
    // Reposts are bounded: after four orders for the group, a provider's close ends the deployment as before.
    let mut last = second;
    for (gseq, p) in [(3, 0), (4, 1)] {
        let walker = w.providers[1 - p].clone();
        ok(&w.chain.exec(&walker, Msg::CloseLease { lease: last }));
        let next = OrderId { dseq, gseq };
        ok(&w.bid(p, next, Amount::tgr(1)));
        last = w.bid_id(p, next);
        ok(&w.chain.exec(&tenant, Msg::AcceptBid { bid: last }));
    }
    let final_walker = w.providers[1].clone();
    ok(&w.chain.exec(&final_walker, Msg::CloseLease { lease: last }));
    assert!(matches!(w.deployment(dseq).deployment.state, DeploymentState::Closed { .. }));
    w.check();
}

#[test]
fn a_tenant_closing_a_lease_does_not_repost_its_group() {
    let mut w = world(1, patient());
    w.register_all();
    let lease_id = w.lease_one(0, Amount::tgr(2), Amount::tgr(10), Amount::tgr(1));
    let (dseq, tenant) = (lease_id.dseq, w.tenant.clone());
    w.chain.advance(MS_PER_HOUR - w.chain.block_ms);
    let r = w.chain.exec(&tenant, Msg::CloseLease { lease: lease_id });
    ok(&r);
    assert!(!r.events.iter().any(|e| matches!(e, Event::OrderCreated { .. })), "nothing is posted again");
    let info = w.deployment(dseq);
    assert!(matches!(info.deployment.state, DeploymentState::Closed { .. }));
    assert_eq!(info.deployment.escrow.refunded, Amount::tgr(9), "the unused escrow comes back");
    w.check();
}

#[test]
fn withdrawing_a_bid_returns_its_deposit() {
    let mut w = world(1, patient());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    let before = w.chain.balance(&w.providers[0].address());
    let r1 = w.bid(0, order1(dseq), Amount(10));
    let provider = w.providers[0].clone();
    let r2 = w.chain.exec(&provider, Msg::CloseBid { bid: w.bid_id(0, order1(dseq)) });
    ok(&r2);
    assert_eq!(w.chain.balance(&provider.address()), Amount(before.0 - r1.fee_paid.0 - r2.fee_paid.0));
    assert!(w.order(order1(dseq)).live_bids.is_empty());
    w.check();
}
