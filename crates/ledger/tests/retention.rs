//! State growth: every deployment, job and channel locks a storage deposit, and a retention period after it
//! closes the record is deleted with everything filed under it and the deposit goes back to its owner.

mod common;

use std::collections::BTreeSet;

use common::*;
use tensorgrid_ledger::testing::account_key;
use tensorgrid_ledger::{Module, Store};
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::market::{DeploymentState, OrderId};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Msg, Params, SecretKey, TxError};

const RETENTION: u64 = 60_000;

fn params() -> Params {
    Params { record_retention_ms: RETENTION, heartbeat_grace_ms: 1 << 40, ..Params::default() }
}

fn keys_of(w: &World) -> BTreeSet<Vec<u8>> {
    w.chain.ledger.store().scan_prefix(b"").map(|item| item.expect("memory store").0).collect()
}

fn under(keys: &BTreeSet<Vec<u8>>, prefix: &[u8]) -> usize {
    keys.iter().filter(|k| k.starts_with(prefix)).count()
}

#[test]
fn a_closed_deployment_is_removed_after_retention_with_its_orders_bids_and_leases() {
    let mut w = world(2, params());
    w.register_all();
    let storage = w.chain.params().storage_deposit;
    let dseq = w.deploy(vec![group("web", Amount::tgr(2))], Amount::tgr(10));
    let order = OrderId { dseq, gseq: 1 };
    ok(&w.bid(0, order, Amount(1_000_000)));
    ok(&w.bid(1, order, Amount(1_500_000)));
    let tenant = w.tenant.clone();
    ok(&w.chain.exec(&tenant, Msg::AcceptBid { bid: w.bid_id(0, order) }));
    let lease = w.bid_id(0, order);
    ok(&w.chain.exec(&tenant, Msg::CloseDeployment { dseq }));
    let DeploymentState::Closed { at, .. } = w.deployment(dseq).deployment.state else {
        panic!("the tenant closed it")
    };
    let before = w.chain.balance(&tenant.address());

    // Everyone can read the outcome for the whole retention period.
    w.chain.block_at(at.plus(RETENTION - 1), &[]);
    assert_eq!(w.lease(lease).id, lease);
    let out = w.chain.block_at(at.plus(RETENTION), &[]);
    let removed = Event::RecordRemoved {
        record: StoredRecord::Deployment(dseq),
        owner: tenant.address(),
        refunded: storage,
    };
    assert!(out.events.contains(&removed), "{:?}", out.events);
    assert_eq!(w.chain.balance(&tenant.address()), before.saturating_add(storage));
    assert_eq!(w.chain.query(Query::Deployment { dseq }), QueryResponse::Deployment(None));
    assert_eq!(w.chain.query(Query::Lease { lease }), QueryResponse::Lease(None));
    assert_eq!(w.chain.query(Query::Bids { order }), QueryResponse::Bids(Vec::new()));
    let QueryResponse::Deployments(mine) =
        w.chain.query(Query::DeploymentsByOwner { owner: tenant.address(), page: Default::default() })
    else {
        panic!()
    };
    assert!(mine.items.is_empty());
    let keys = keys_of(&w);
    for prefix in [&b"d/"[..], b"o/", b"b/", b"l/", b"x/do/", b"x/lp/", b"x/oo/"] {
        assert_eq!(under(&keys, prefix), 0, "something is left under {}", String::from_utf8_lossy(prefix));
    }
    // Removed records are gone for good: closing again is a typed refusal that changes nothing but the fee.
    let again = w.chain.exec(&tenant, Msg::CloseDeployment { dseq });
    assert!(matches!(failed_with(&again), TxError::DeploymentNotFound { .. }));
    w.check();
}

/// The attack: an account opens record after record (deployments, jobs, channels) and closes them, to make
/// every node store them forever. Each one locks the storage deposit for as long as it is stored, so the
/// records an account can hold at once are bounded by its capital, and after retention the state holds
/// nothing of them: the same keys as before the flood but the sequence counters.
#[test]
fn a_flood_of_records_locks_capital_while_stored_and_leaves_nothing_behind() {
    let mut w = world(1, params());
    w.register_all();
    let p = w.chain.params();
    let attacker = w.outsider.clone();
    let provider = w.providers[0].address();
    let start = w.chain.balance(&attacker.address());
    let keys_before = keys_of(&w);
    let rounds: u64 = 10;
    let n = u128::from(rounds);
    let mut fees = Amount::ZERO;
    let mut pay = |r: &tensorgrid_types::Receipt| fees = fees.saturating_add(r.fee_paid);
    for _ in 0..rounds {
        let created =
            w.chain.exec(&attacker, deployment_msg(vec![group("x", Amount(1))], p.min_deployment_deposit));
        ok(&created);
        pay(&created);
        let dseq = created
            .events
            .iter()
            .find_map(|e| match e {
                Event::DeploymentCreated { dseq, .. } => Some(*dseq),
                _ => None,
            })
            .expect("created");
        let closed = w.chain.exec(&attacker, Msg::CloseDeployment { dseq });
        ok(&closed);
        pay(&closed);
        let submitted = w.chain.exec(&attacker, Msg::SubmitJob { spec: job_spec(1, Amount(1_000)) });
        ok(&submitted);
        pay(&submitted);
        let opened = w.chain.exec(&attacker, Msg::OpenChannel { provider, deposit: Amount(1) });
        ok(&opened);
        pay(&opened);
    }
    // Jobs without bids fail at their bid deadline; channels the provider closes.
    w.chain.advance(10_000);
    let provider_key = w.providers[0].clone();
    let QueryResponse::Supply(supply) = w.chain.query(Query::Supply) else { panic!() };
    let held =
        |name: &str| supply.modules.iter().find(|(m, _)| m == name).map(|(_, a)| *a).unwrap_or_default();
    assert_eq!(held(Module::Storage.name()), Amount(p.storage_deposit.0 * 3 * n));
    let mut channel_fees = Amount::ZERO;
    for channel in 1..=rounds {
        let r = w.chain.exec(&provider_key, Msg::CloseChannel { channel });
        ok(&r);
        channel_fees = channel_fees.saturating_add(r.fee_paid);
    }
    assert_eq!(
        w.chain.balance(&attacker.address()),
        Amount(start.0 - fees.0 - p.storage_deposit.0 * 3 * n),
        "while stored, each record holds its deposit"
    );

    w.chain.advance(RETENTION + 20_000);
    assert_eq!(w.chain.balance(&attacker.address()), Amount(start.0 - fees.0), "every deposit came back");
    let keys_after = keys_of(&w);
    // Module accounts the flood used for the first time stay (at zero); nothing else is new.
    let modules: Vec<Vec<u8>> = Module::ALL.iter().map(|m| account_key(&m.address())).collect();
    let new: Vec<String> = keys_after
        .difference(&keys_before)
        .filter(|k| !modules.contains(k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(new.iter().all(|k| k.starts_with("m/seq/")), "the flood left state behind: {new:?}");
    assert_eq!(under(&keys_after, b"t/"), under(&keys_before, b"t/"), "no timer is left behind");
    w.check();
}

#[test]
fn an_account_that_cannot_lock_the_storage_deposit_creates_nothing() {
    let mut w = world(1, params());
    w.register_all();
    let p = w.chain.params();
    // Enough for the deposit and the fee, not for the storage deposit.
    let poor = SecretKey::from_label("poor");
    let funder = w.tenant.clone();
    let fee_room = Amount::utgr(10_000);
    ok(&w.chain.exec(
        &funder,
        Msg::Send { to: poor.address(), amount: p.min_deployment_deposit.saturating_add(fee_room) },
    ));
    let r = w.chain.exec(&poor, deployment_msg(vec![group("x", Amount(1))], p.min_deployment_deposit));
    assert!(matches!(failed_with(&r), TxError::InsufficientFunds { .. }), "{:?}", r.outcome);
    assert_eq!(
        w.chain.balance(&poor.address()),
        p.min_deployment_deposit.saturating_add(fee_room).saturating_sub(r.fee_paid),
        "only the fee was taken"
    );
    let QueryResponse::Deployments(theirs) =
        w.chain.query(Query::DeploymentsByOwner { owner: poor.address(), page: Default::default() })
    else {
        panic!()
    };
    assert!(theirs.items.is_empty());
    // The mempool's funding rule counts the storage deposit too, so such a transaction never reaches a block.
    let msg = deployment_msg(vec![group("x", Amount(1))], p.min_deployment_deposit);
    assert_eq!(msg.max_spend(&p), p.min_deployment_deposit.saturating_add(p.storage_deposit));
    w.check();
}
