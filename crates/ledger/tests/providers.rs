//! Provider registration, stake, unbonding and heartbeats.

mod common;

use common::*;
use tensorgrid_types::market::OrderId;
use tensorgrid_types::provider::ProviderStatus;
use tensorgrid_types::query::{Page, Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Msg, Params, TxError};

fn provider_record(w: &World, i: usize) -> tensorgrid_types::provider::Provider {
    match w.chain.query(Query::Provider { address: w.providers[i].address() }) {
        QueryResponse::Provider(Some(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn registration_bonds_stake_and_can_be_listed() {
    let mut w = world(3, Params::default());
    let before = w.chain.balance(&w.providers[0].address());
    w.register_all();
    let p = provider_record(&w, 0);
    assert_eq!(p.status, ProviderStatus::Active);
    assert_eq!(p.stake, Params::default().min_provider_stake);
    assert!(w.chain.balance(&w.providers[0].address()) < Amount(before.0 - p.stake.0 + 1));
    let QueryResponse::Providers(page) = w.chain.query(Query::Providers { page: Page::first(2) }) else {
        panic!()
    };
    assert_eq!(page.items.len(), 2);
    let QueryResponse::Providers(rest) =
        w.chain.query(Query::Providers { page: Page { after: page.next, limit: 2 } })
    else {
        panic!()
    };
    assert_eq!((rest.items.len(), rest.next), (1, None));
    w.check();
}

#[test]
fn registration_rules() {
    let mut w = world(2, Params::default());
    let p0 = w.providers[0].clone();
    let mut low = register_msg("eu");
    if let Msg::RegisterProvider { stake, .. } = &mut low {
        *stake = Amount(1);
    }
    assert!(matches!(failed_with(&w.chain.exec(&p0, low)), TxError::StakeBelowMinimum { .. }));
    ok(&w.chain.exec(&p0, register_msg("eu")));
    assert!(matches!(
        failed_with(&w.chain.exec(&p0, register_msg("eu"))),
        TxError::ProviderAlreadyActive { .. }
    ));
    let update = Msg::UpdateProvider {
        host_uri: Some("https://new.example.org".into()),
        attributes: None,
        info: None,
        runtimes: None,
        referee: None,
    };
    ok(&w.chain.exec(&p0, update.clone()));
    assert_eq!(provider_record(&w, 0).host_uri, "https://new.example.org");
    let p1 = w.providers[1].clone();
    assert!(matches!(failed_with(&w.chain.exec(&p1, update)), TxError::ProviderNotFound { .. }));
    assert!(matches!(failed_with(&w.chain.exec(&p1, Msg::Heartbeat)), TxError::ProviderNotFound { .. }));
    w.check();
}

#[test]
fn unbonding_returns_stake_only_after_the_period() {
    let params = Params::default();
    let mut w = world(1, params.clone());
    w.register_all();
    let p = w.providers[0].clone();
    ok(&w.chain.exec(&p, Msg::Bond { amount: Amount::tgr(50) }));
    assert!(matches!(
        failed_with(&w.chain.exec(&p, Msg::Unbond { amount: Amount::tgr(51) })),
        TxError::StakeBelowMinimum { .. }
    ));
    let r = w.chain.exec(&p, Msg::Unbond { amount: Amount::tgr(50) });
    ok(&r);
    let started = w.chain.now;
    let balance = w.chain.balance(&p.address());
    w.chain.block_at(started.plus(params.unbonding_period_ms - 1), &[]);
    assert_eq!(w.chain.balance(&p.address()), balance);
    let out = w.chain.block_at(started.plus(params.unbonding_period_ms), &[]);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::UnbondingCompleted { amount, .. } if *amount == Amount::tgr(50))));
    assert_eq!(w.chain.balance(&p.address()), Amount(balance.0 + Amount::tgr(50).0));
    assert_eq!(provider_record(&w, 0).stake, params.min_provider_stake);
    w.check();
}

#[test]
fn unbonding_entries_are_bounded() {
    let params = Params { max_unbonding_entries: 2, ..Params::default() };
    let mut w = world(1, params);
    w.register_all();
    let p = w.providers[0].clone();
    ok(&w.chain.exec(&p, Msg::Bond { amount: Amount::tgr(3) }));
    ok(&w.chain.exec(&p, Msg::Unbond { amount: Amount::tgr(1) }));
    ok(&w.chain.exec(&p, Msg::Unbond { amount: Amount::tgr(1) }));
    let r = w.chain.exec(&p, Msg::Unbond { amount: Amount::tgr(1) });
    assert!(matches!(failed_with(&r), TxError::TooManyUnbonding { max: 2 }));
}

#[test]
fn deregistration_waits_for_active_work_then_unbonds_everything() {
    let params = Params { heartbeat_grace_ms: 1 << 40, ..Params::default() };
    let mut w = world(1, params.clone());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    w.bid(0, OrderId { dseq, gseq: 1 }, Amount::tgr(1));
    w.chain.advance(params.bid_window_ms);
    let p = w.providers[0].clone();
    let r = w.chain.exec(&p, Msg::DeregisterProvider);
    assert!(matches!(failed_with(&r), TxError::ProviderHasActiveWork { leases: 1, job_slots: 0 }));
    ok(&w.chain.exec(&p, Msg::CloseLease { lease: w.bid_id(0, OrderId { dseq, gseq: 1 }) }));
    ok(&w.chain.exec(&p, Msg::DeregisterProvider));
    let record = provider_record(&w, 0);
    assert_eq!(record.status, ProviderStatus::Deregistered);
    assert_eq!(record.stake, Amount::ZERO);
    assert_eq!(record.unbonding.len(), 1);
    // A deregistered provider cannot bid, and can come back by registering again.
    let dseq2 = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    let r = w.bid(0, OrderId { dseq: dseq2, gseq: 1 }, Amount(1));
    assert!(matches!(failed_with(&r), TxError::ProviderNotActive { .. }));
    ok(&w.chain.exec(&p, register_msg("eu")));
    ok(&w.bid(0, OrderId { dseq: dseq2, gseq: 1 }, Amount(1)));
    w.check();
}

#[test]
fn an_offline_provider_cannot_bid_until_it_heartbeats() {
    let params = Params::default();
    let mut w = world(1, params.clone());
    w.register_all();
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    w.chain.advance(params.heartbeat_grace_ms + 1);
    let r = w.bid(0, OrderId { dseq, gseq: 1 }, Amount(1));
    assert!(matches!(failed_with(&r), TxError::ProviderOffline { .. }));
    let p = w.providers[0].clone();
    ok(&w.chain.exec(&p, Msg::Heartbeat));
    ok(&w.bid(0, OrderId { dseq, gseq: 1 }, Amount(1)));
    w.check();
}
