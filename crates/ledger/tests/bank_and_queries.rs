//! Transfers and the read side: every listing pages, and answers match what the transactions did.

mod common;

use common::*;
use tensorgrid_ledger::testing::TEST_CHAIN_ID;
use tensorgrid_ledger::Module;
use tensorgrid_types::market::OrderId;
use tensorgrid_types::query::{Page, Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Msg, Params, Tx};

#[test]
fn a_transfer_moves_exactly_the_amount_and_the_fee_goes_to_the_collector() {
    let mut w = world(0, Params::default());
    let tenant = w.tenant.clone();
    let newcomer = key("newcomer").address();
    assert_eq!(w.chain.account(&newcomer), None);
    let before = w.chain.balance(&tenant.address());
    let r = w.chain.exec(&tenant, Msg::Send { to: newcomer, amount: Amount::tgr(3) });
    ok(&r);
    // The fee is base + per byte of the encoded transaction: a transfer like this one is this many bytes.
    let size = Tx::new(
        TEST_CHAIN_ID,
        tenant.address(),
        0,
        w.chain.max_fee,
        Msg::Send { to: newcomer, amount: Amount::tgr(3) },
    )
    .sign(&tenant)
    .encode()
    .len();
    assert_eq!(r.fee_paid, Params::default().fee_for(size).unwrap());
    assert_eq!(w.chain.balance(&newcomer), Amount::tgr(3));
    assert_eq!(w.chain.balance(&tenant.address()), Amount(before.0 - Amount::tgr(3).0 - r.fee_paid.0));
    assert_eq!(w.chain.balance(&Module::Fees.address()), r.fee_paid);
    assert_eq!(w.chain.account(&tenant.address()).unwrap().nonce, 1);
    assert!(r.events.contains(&Event::Transfer {
        from: tenant.address(),
        to: newcomer,
        amount: Amount::tgr(3)
    }));
    // The new account can spend what it received.
    let newcomer_key = key("newcomer");
    ok(&w.chain.exec(&newcomer_key, Msg::Send { to: tenant.address(), amount: Amount(1) }));
    let QueryResponse::Supply(supply) = w.chain.query(Query::Supply) else { panic!() };
    assert_eq!(supply.total, Amount(FUNDS.0 * 2));
    w.check();
}

#[test]
fn listings_page_through_everything() {
    let params = Params { heartbeat_grace_ms: 1 << 40, ..Params::default() };
    let mut w = world(2, params.clone());
    w.register_all();
    let tenant = w.tenant.clone();
    let txs: Vec<_> = (0..5)
        .map(|i| {
            w.chain.tx(&tenant, deployment_msg(vec![group(&format!("g{i}"), Amount::tgr(1))], Amount::tgr(5)))
        })
        .collect();
    w.chain.block(&txs);

    let mut seen = Vec::new();
    let mut page = Page::first(2);
    loop {
        let QueryResponse::Orders(orders) = w.chain.query(Query::OpenOrders { page: page.clone() }) else {
            panic!()
        };
        seen.extend(orders.items.iter().map(|o| o.id));
        match orders.next {
            Some(next) => page = Page { after: Some(next), limit: 2 },
            None => break,
        }
    }
    assert_eq!(seen, (1..=5).map(|dseq| OrderId { dseq, gseq: 1 }).collect::<Vec<_>>());

    let QueryResponse::Deployments(mine) =
        w.chain.query(Query::DeploymentsByOwner { owner: tenant.address(), page: Page::default() })
    else {
        panic!()
    };
    assert_eq!(mine.items.iter().map(|d| d.dseq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);

    for dseq in 1..=3 {
        ok(&w.bid(0, OrderId { dseq, gseq: 1 }, Amount(10)));
    }
    w.chain.advance(params.bid_window_ms);
    let QueryResponse::Leases(leases) =
        w.chain.query(Query::LeasesByProvider { provider: w.providers[0].address(), page: Page::default() })
    else {
        panic!()
    };
    assert_eq!(leases.items.len(), 3);
    let QueryResponse::Orders(open) = w.chain.query(Query::OpenOrders { page: Page::default() }) else {
        panic!()
    };
    assert_eq!(open.items.len(), 2, "orders that became leases leave the open list");

    let (job, _) = {
        let r = w.chain.exec(&tenant, Msg::SubmitJob { spec: job_spec(1, Amount::tgr(1)) });
        ok(&r);
        (1u64, r)
    };
    let QueryResponse::Jobs(jobs) = w.chain.query(Query::OpenJobs { page: Page::default() }) else {
        panic!()
    };
    assert_eq!(jobs.items.iter().map(|j| j.id).collect::<Vec<_>>(), vec![job]);

    let bad = w.chain.ledger.query(&Query::OpenOrders { page: Page { after: Some("zz".into()), limit: 1 } });
    assert!(bad.is_err(), "a malformed cursor is an error, not a panic");
    let QueryResponse::ChainInfo(info) = w.chain.query(Query::ChainInfo) else { panic!() };
    assert_eq!((info.height, info.time), (w.chain.height, w.chain.now));
    w.check();
}

#[test]
fn query_json_is_what_clients_will_send() {
    let q: Query = serde_json::from_str(r#"{"query":"open_orders","page":{"limit":5}}"#).unwrap();
    assert_eq!(q, Query::OpenOrders { page: Page { after: None, limit: 5 } });
    let q: Query = serde_json::from_str(r#"{"query":"deployment","dseq":7}"#).unwrap();
    assert_eq!(q, Query::Deployment { dseq: 7 });
}

#[test]
fn signatures_the_caller_already_verified_give_the_same_outcome() {
    let mut w = world(0, Params::default());
    let tenant = w.tenant.clone();
    let to = key("payee").address();
    let good = w.chain.tx(&tenant, Msg::Send { to, amount: Amount::tgr(1) });
    let mut forged = w.chain.tx(&tenant, Msg::Send { to, amount: Amount::tgr(2) });
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let txs = vec![good.clone(), forged, b"junk".to_vec()];
    let ctx = tensorgrid_types::BlockContext {
        height: 1,
        time: w.chain.now.plus(1_000),
        randomness: tensorgrid_types::Hash::ZERO,
    };
    let rng = || <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(1);
    let plain = w.chain.ledger.simulate_block(&ctx, &txs, rng()).unwrap();
    // The caller vouches only for the bytes it checked: the good transaction.
    let with = w.chain.ledger.simulate_block_with(&ctx, &txs, rng(), &|raw| raw == good.as_slice()).unwrap();
    assert_eq!(plain, with);
    assert!(plain.0.receipts[0].succeeded());
    assert!(matches!(plain.0.receipts[1].error(), Some(tensorgrid_types::TxError::BadSignature { .. })));
}
