//! Every malformed or invalid transaction is refused with a typed error naming the cause, charges no more
//! than the fee rules say, and leaves all other state unchanged. Each case runs the same history twice, once
//! with the bad transaction and once without, and compares the whole state.

mod common;

use common::*;
use tensorgrid_ledger::testing::account_key;
use tensorgrid_ledger::Module;
use tensorgrid_types::market::OrderId;
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::{Amount, Msg, Params, SecretKey, SignedTx, Tx, TxError};

/// A world with two registered providers, an open deployment (dseq 1) with a bid from provider 0, and a
/// closed deployment (dseq 2).
fn setup() -> World {
    let mut w = world(3, Params::default());
    let providers = w.providers[..2].to_vec();
    let txs: Vec<_> = providers.iter().map(|p| w.chain.tx(p, register_msg("eu"))).collect();
    w.chain.block(&txs);
    w.deploy(vec![group("web", Amount::tgr(1))], Amount::tgr(10));
    w.deploy(vec![group("db", Amount::tgr(1))], Amount::tgr(10));
    let tenant = w.tenant.clone();
    ok(&w.chain.exec(&tenant, Msg::CloseDeployment { dseq: 2 }));
    ok(&w.bid(0, OrderId { dseq: 1, gseq: 1 }, Amount(500_000)));
    // An account that exists but holds less than any fee.
    ok(&w.chain.exec(&tenant, Msg::Send { to: key("poor").address(), amount: Amount(50) }));
    w
}

/// Runs `make`'s transaction in a block and an empty block in an identical world; returns the receipt and
/// the keys whose values differ.
fn run_bad(make: impl Fn(&mut World) -> Vec<u8>) -> (tensorgrid_types::Receipt, Vec<Vec<u8>>, World) {
    let mut with = setup();
    let mut without = setup();
    let tx = make(&mut with);
    let mut outcome = with.chain.block(&[tx]);
    without.chain.block(&[]);
    let receipt = outcome.receipts.remove(0);
    let diff = with.chain.diff_keys(&without.chain);
    (receipt, diff, with)
}

fn assert_rejected(make: impl Fn(&mut World) -> Vec<u8>, expect: impl Fn(&TxError) -> bool) {
    let (receipt, diff, w) = run_bad(make);
    let error = rejected_with(&receipt);
    assert!(expect(&error), "unexpected error {error:?}");
    assert_eq!(receipt.fee_paid, Amount::ZERO);
    assert!(diff.is_empty(), "a rejected transaction changed {} keys", diff.len());
    assert!(!error.to_string().is_empty());
    w.check();
}

fn assert_failed(
    signer: &SecretKey,
    make: impl Fn(&mut World) -> Vec<u8>,
    expect: impl Fn(&TxError) -> bool,
) {
    let (receipt, diff, w) = run_bad(make);
    let error = failed_with(&receipt);
    assert!(expect(&error), "unexpected error {error:?}");
    assert!(receipt.fee_paid > Amount::ZERO);
    let allowed = [account_key(&signer.address()), account_key(&Module::Fees.address())];
    for key in &diff {
        assert!(allowed.contains(key), "a failed transaction changed more than its fee and nonce");
    }
    assert_eq!(diff.len(), 2, "the fee moved from the signer to the fee collector");
    w.check();
}

fn signed(w: &World, key: &SecretKey, nonce: u64, edit: impl Fn(&mut Tx)) -> Vec<u8> {
    let mut tx = Tx::new(w.chain.chain_id.clone(), key.address(), nonce, Amount::tgr(1), Msg::Heartbeat);
    tx.msg = Msg::Send { to: key.address(), amount: Amount(1) };
    edit(&mut tx);
    tx.sign(key).encode()
}

#[test]
fn bad_signature_is_rejected() {
    assert_rejected(
        |w| {
            let tenant = w.tenant.clone();
            let mut tx = SignedTx::decode(&w.chain.tx(&tenant, Msg::Heartbeat)).unwrap();
            tx.signature.0[5] ^= 0x40;
            tx.encode()
        },
        |e| matches!(e, TxError::BadSignature { .. }),
    );
}

#[test]
fn signature_by_another_key_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            let tx =
                Tx::new(w.chain.chain_id.clone(), w.tenant.address(), nonce, Amount::tgr(1), Msg::Heartbeat);
            let forged = tx.clone().sign(&w.outsider);
            SignedTx { tx, signature: forged.signature }.encode()
        },
        |e| matches!(e, TxError::BadSignature { .. }),
    );
}

#[test]
fn wrong_chain_id_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            signed(w, &w.tenant, nonce, |tx| tx.chain_id = "tg-other".into())
        },
        |e| matches!(e, TxError::WrongChainId { got, .. } if got == "tg-other"),
    );
}

#[test]
fn replayed_nonce_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            assert!(nonce > 0, "setup used the tenant's nonces");
            signed(w, &w.tenant, nonce - 1, |_| {})
        },
        |e| matches!(e, TxError::NonceReplayed { .. }),
    );
}

#[test]
fn replaying_the_same_bytes_in_one_block_is_rejected() {
    let mut w = setup();
    let tenant = w.tenant.clone();
    let tx = w.chain.tx(&tenant, Msg::Send { to: w.outsider.address(), amount: Amount(7) });
    let out = w.chain.block(&[tx.clone(), tx]);
    ok(&out.receipts[0]);
    assert!(matches!(rejected_with(&out.receipts[1]), TxError::NonceReplayed { .. }));
    w.check();
}

#[test]
fn skipped_nonce_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            signed(w, &w.tenant, nonce + 1, |_| {})
        },
        |e| matches!(e, TxError::NonceGap { .. }),
    );
}

#[test]
fn unknown_account_is_rejected() {
    assert_rejected(
        |w| signed(w, &key("nobody"), 0, |_| {}),
        |e| matches!(e, TxError::UnknownAccount { .. }),
    );
}

#[test]
fn fee_below_the_rule_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            signed(w, &w.tenant, nonce, |tx| tx.max_fee = Amount(1))
        },
        |e| matches!(e, TxError::FeeTooLow { offered, .. } if *offered == Amount(1)),
    );
}

#[test]
fn unpayable_fee_is_rejected() {
    assert_rejected(
        |w| signed(w, &key("poor"), 0, |_| {}),
        |e| matches!(e, TxError::CannotPayFee { available, .. } if *available == Amount(50)),
    );
}

#[test]
fn undecodable_bytes_are_rejected() {
    for garbage in [vec![], vec![0xff; 3], vec![1u8; 300], b"{\"json\": true}".to_vec()] {
        assert_rejected(move |_| garbage.clone(), |e| matches!(e, TxError::Undecodable { .. }));
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    assert_rejected(
        |w| {
            let tenant = w.tenant.clone();
            let mut tx = w.chain.tx(&tenant, Msg::Heartbeat);
            tx.push(0);
            tx
        },
        |e| matches!(e, TxError::Undecodable { .. }),
    );
}

#[test]
fn oversized_transaction_is_rejected() {
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            signed(w, &w.tenant, nonce, |tx| tx.memo = "x".repeat(70_000))
        },
        |e| matches!(e, TxError::TooLarge { max, .. } if *max == 64 * 1024),
    );
}

#[test]
fn oversized_fields_are_rejected_naming_the_field() {
    let cases: Vec<(Msg, &str)> = vec![
        (
            Msg::RegisterProvider {
                host_uri: format!("https://{}.org", "a".repeat(300)),
                attributes: vec![],
                info: ProviderInfo::default(),
                stake: Amount::tgr(100),
                runtimes: vec!["wasi-p1".into()],
                referee: false,
            },
            "host_uri",
        ),
        (
            Msg::RegisterProvider {
                host_uri: "ftp://x".into(),
                attributes: vec![],
                info: ProviderInfo::default(),
                stake: Amount::tgr(100),
                runtimes: vec!["wasi-p1".into()],
                referee: false,
            },
            "host_uri",
        ),
        (deployment_msg(vec![], Amount::tgr(10)), "groups"),
        (
            deployment_msg((0..21).map(|i| group(&format!("g{i}"), Amount(1))).collect(), Amount::tgr(10)),
            "groups",
        ),
        (deployment_msg(vec![group("bad name/", Amount(1))], Amount::tgr(10)), "groups[0].name"),
        (
            deployment_msg(vec![group("a", Amount(1)), group("a", Amount(1))], Amount::tgr(10)),
            "groups[1].name",
        ),
        (Msg::Send { to: key("x").address(), amount: Amount::ZERO }, "amount"),
        (Msg::SubmitJob { spec: job_spec(0, Amount::tgr(1)) }, "spec.redundancy"),
        (Msg::SubmitJob { spec: job_spec(3, Amount(2)) }, "spec.budget"),
        (Msg::DisputeJob { job: 1, deposit: Amount::ZERO }, "deposit"),
        (
            Msg::RegisterProvider {
                host_uri: "https://p.example.org".into(),
                attributes: vec![],
                info: ProviderInfo::default(),
                stake: Amount::tgr(100),
                runtimes: vec!["wasi-p1".into(), "wasi-p1".into()],
                referee: true,
            },
            "runtimes[1]",
        ),
        (
            Msg::UpdateProvider {
                host_uri: None,
                attributes: None,
                info: None,
                runtimes: Some(vec![String::new()]),
                referee: None,
            },
            "runtimes[0]",
        ),
        (
            Msg::UpdateProvider {
                host_uri: None,
                attributes: None,
                info: None,
                runtimes: Some((0..9).map(|i| format!("rt-{i}")).collect()),
                referee: None,
            },
            "runtimes",
        ),
        (
            Msg::UpdateProvider {
                host_uri: None,
                attributes: None,
                info: None,
                runtimes: None,
                referee: None,
            },
            "update_provider",
        ),
    ];
    for (msg, field) in cases {
        assert_rejected(
            |w| {
                let tenant = w.tenant.clone();
                w.chain.tx(&tenant, msg.clone())
            },
            |e| matches!(e, TxError::Malformed { malformed } if malformed.field == field),
        );
    }
    assert_rejected(
        |w| {
            let nonce = w.chain.next_nonce(&w.tenant.address());
            signed(w, &w.tenant, nonce, |tx| tx.version = 3)
        },
        |e| matches!(e, TxError::Malformed { malformed } if malformed.field == "version"),
    );
}

#[test]
fn insufficient_funds_fails_and_only_charges_the_fee() {
    let tenant = key("tenant");
    assert_failed(
        &tenant,
        |w| {
            let t = w.tenant.clone();
            w.chain.tx(&t, Msg::Send { to: w.outsider.address(), amount: Amount(u128::MAX) })
        },
        |e| matches!(e, TxError::InsufficientFunds { .. }),
    );
}

#[test]
fn absurd_price_fails_instead_of_overflowing() {
    let tenant = key("tenant");
    assert_failed(
        &tenant,
        |w| {
            let t = w.tenant.clone();
            w.chain.tx(&t, deployment_msg(vec![group("g", Amount(u128::MAX))], Amount::tgr(10)))
        },
        |e| matches!(e, TxError::PriceTooHigh { .. }),
    );
}

#[test]
fn bid_on_a_closed_order_fails() {
    let provider = key("provider-1");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[1].clone();
            w.chain.tx(&p, Msg::CreateBid { order: OrderId { dseq: 2, gseq: 1 }, price: Amount(1) })
        },
        |e| matches!(e, TxError::OrderNotOpen { .. }),
    );
}

#[test]
fn bid_on_a_missing_order_fails() {
    let provider = key("provider-1");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[1].clone();
            w.chain.tx(&p, Msg::CreateBid { order: OrderId { dseq: 99, gseq: 1 }, price: Amount(1) })
        },
        |e| matches!(e, TxError::OrderNotFound { .. }),
    );
}

#[test]
fn bid_by_an_unregistered_provider_fails() {
    let provider = key("provider-2");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[2].clone();
            w.chain.tx(&p, Msg::CreateBid { order: OrderId { dseq: 1, gseq: 1 }, price: Amount(1) })
        },
        |e| matches!(e, TxError::ProviderNotFound { .. }),
    );
}

#[test]
fn bid_above_the_order_price_fails() {
    let provider = key("provider-1");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[1].clone();
            w.chain.tx(&p, Msg::CreateBid { order: OrderId { dseq: 1, gseq: 1 }, price: Amount::tgr(2) })
        },
        |e| matches!(e, TxError::PriceTooHigh { .. }),
    );
}

#[test]
fn accepting_a_bid_on_someone_elses_order_fails() {
    let outsider = key("outsider");
    assert_failed(
        &outsider,
        |w| {
            let o = w.outsider.clone();
            let bid = w.bid_id(0, OrderId { dseq: 1, gseq: 1 });
            w.chain.tx(&o, Msg::AcceptBid { bid })
        },
        |e| matches!(e, TxError::NotOwner { .. }),
    );
}

#[test]
fn closing_someone_elses_deployment_fails() {
    let outsider = key("outsider");
    assert_failed(
        &outsider,
        |w| {
            let o = w.outsider.clone();
            w.chain.tx(&o, Msg::CloseDeployment { dseq: 1 })
        },
        |e| matches!(e, TxError::NotOwner { .. }),
    );
}

#[test]
fn a_second_bid_from_the_same_provider_fails() {
    let provider = key("provider-0");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[0].clone();
            w.chain.tx(&p, Msg::CreateBid { order: OrderId { dseq: 1, gseq: 1 }, price: Amount(400_000) })
        },
        |e| matches!(e, TxError::DuplicateBid { .. }),
    );
}

#[test]
fn withdrawing_another_providers_bid_fails() {
    let provider = key("provider-1");
    assert_failed(
        &provider,
        |w| {
            let p = w.providers[1].clone();
            let bid = w.bid_id(0, OrderId { dseq: 1, gseq: 1 });
            w.chain.tx(&p, Msg::CloseBid { bid })
        },
        |e| matches!(e, TxError::NotOwner { .. }),
    );
}

#[test]
fn a_failed_message_in_a_block_does_not_disturb_its_neighbours() {
    let mut w = setup();
    let tenant = w.tenant.clone();
    let outsider = w.outsider.clone();
    let before = w.chain.balance(&outsider.address());
    let txs = vec![
        w.chain.tx(&tenant, Msg::Send { to: outsider.address(), amount: Amount(10) }),
        w.chain.tx(&tenant, Msg::Send { to: outsider.address(), amount: Amount(u128::MAX) }),
        w.chain.tx(&tenant, Msg::Send { to: outsider.address(), amount: Amount(20) }),
    ];
    let out = w.chain.block(&txs);
    ok(&out.receipts[0]);
    failed_with(&out.receipts[1]);
    ok(&out.receipts[2]);
    assert_eq!(w.chain.balance(&outsider.address()), Amount(before.0 + 30));
    w.check();
}

#[test]
fn a_send_to_a_module_account_fails_and_keeps_the_module_whole() {
    // Funds sent straight to a module would sit outside every record it keeps: refused, whichever module.
    for module in Module::ALL {
        assert_failed(
            &key("tenant"),
            |w| {
                let tenant = w.tenant.clone();
                w.chain.tx(&tenant, Msg::Send { to: module.address(), amount: Amount(1_000) })
            },
            |e| matches!(e, TxError::SendToModule { module: name, .. } if name == module.name()),
        );
    }
}
