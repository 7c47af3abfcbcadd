//! Payment channels: open, top up, redeem cumulative vouchers, close by either side, and the two guarantees —
//! a provider never gets more than the client signed (or deposited), a client never takes back what it signed
//! while the provider redeems within the challenge period.

mod common;

use common::*;
use proptest::prelude::*;
use tensorgrid_ledger::testing::TEST_CHAIN_ID;
use tensorgrid_types::channel::{Channel, ChannelState, Voucher};
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Msg, Params, TxError};

fn channel(w: &World, id: u64) -> Channel {
    match w.chain.query(Query::Channel { channel: id }) {
        QueryResponse::Channel(Some(c)) => c,
        other => panic!("no channel {id}: {other:?}"),
    }
}

fn open(w: &mut World, deposit: Amount) -> u64 {
    let provider = w.providers[0].address();
    let receipt = w.chain.exec(&w.tenant.clone(), Msg::OpenChannel { provider, deposit });
    ok(&receipt);
    receipt
        .events
        .iter()
        .find_map(|e| match e {
            Event::ChannelOpened { channel, .. } => Some(*channel),
            _ => None,
        })
        .expect("a channel id")
}

fn voucher(w: &World, id: u64, cumulative: u128) -> Msg {
    Msg::RedeemVoucher { voucher: Voucher::sign(&w.tenant, TEST_CHAIN_ID, id, Amount(cumulative)) }
}

#[test]
fn a_channel_pays_the_provider_what_the_latest_voucher_says_and_refunds_the_rest() {
    let mut w = world(1, Params::default());
    w.register_all();
    let provider = w.providers[0].clone();
    let id = open(&mut w, Amount(1_000_000));
    let p_before = w.chain.balance(&provider.address());
    let mut provider_fees = Amount::ZERO;
    for cumulative in [300, 1_000] {
        let receipt = w.chain.exec(&provider, voucher(&w, id, cumulative));
        ok(&receipt);
        provider_fees = provider_fees.saturating_add(receipt.fee_paid);
    }
    // An older voucher is worth nothing new (and its failed transaction still pays its fee).
    let stale = w.chain.exec(&provider, voucher(&w, id, 500));
    assert!(matches!(failed_with(&stale), TxError::NothingToRedeem { .. }));
    provider_fees = provider_fees.saturating_add(stale.fee_paid);
    assert_eq!(channel(&w, id).redeemed, Amount(1_000));
    assert_eq!(
        w.chain.balance(&provider.address()),
        p_before.saturating_add(Amount(1_000)).saturating_sub(provider_fees)
    );

    // Someone else's signature, another chain's voucher, or a voucher redeemed by someone else: refused.
    let forged = Voucher::sign(&w.outsider, TEST_CHAIN_ID, id, Amount(5_000));
    assert!(matches!(
        failed_with(&w.chain.exec(&provider, Msg::RedeemVoucher { voucher: forged })),
        TxError::BadVoucher { .. }
    ));
    let elsewhere = Voucher::sign(&w.tenant, "tg-other", id, Amount(5_000));
    assert!(matches!(
        failed_with(&w.chain.exec(&provider, Msg::RedeemVoucher { voucher: elsewhere })),
        TxError::BadVoucher { .. }
    ));
    assert!(matches!(
        failed_with(&w.chain.exec(&w.outsider.clone(), voucher(&w, id, 5_000))),
        TxError::NotOwner { .. }
    ));

    // A voucher above the deposit pays the deposit, no more.
    ok(&w.chain.exec(&w.tenant.clone(), Msg::TopUpChannel { channel: id, amount: Amount(1_000) }));
    assert_eq!(channel(&w, id).deposit, Amount(1_001_000));
    ok(&w.chain.exec(&provider, voucher(&w, id, 5_000_000)));
    assert_eq!(channel(&w, id).redeemed, Amount(1_001_000));
    assert_eq!(channel(&w, id).balance(), Amount::ZERO);
    w.check();
}

#[test]
fn a_clients_close_waits_for_the_challenge_period_and_the_provider_can_still_redeem() {
    let params = Params { channel_challenge_ms: 60_000, ..Params::default() };
    let mut w = world(1, params);
    w.register_all();
    let provider = w.providers[0].clone();
    let id = open(&mut w, Amount(10_000));
    let signed = voucher(&w, id, 4_000);
    let closing = w.chain.exec(&w.tenant.clone(), Msg::CloseChannel { channel: id });
    ok(&closing);
    assert!(matches!(channel(&w, id).state, ChannelState::Closing { .. }));
    // No top-ups into a closing channel; the provider's redeem still works.
    assert!(matches!(
        failed_with(&w.chain.exec(&w.tenant.clone(), Msg::TopUpChannel { channel: id, amount: Amount(1) })),
        TxError::ChannelNotOpen { .. }
    ));
    ok(&w.chain.exec(&provider, signed));
    let tenant_before = w.chain.balance(&w.tenant.address());
    let out = w.chain.advance(60_000);
    let refunded = out.events.iter().find_map(|e| match e {
        Event::ChannelClosed { refunded, .. } => Some(*refunded),
        _ => None,
    });
    assert_eq!(refunded, Some(Amount(6_000)), "the deposit less what the provider redeemed");
    assert_eq!(w.chain.balance(&w.tenant.address()), tenant_before.saturating_add(Amount(6_000)));
    assert!(matches!(channel(&w, id).state, ChannelState::Closed { .. }));
    // Too late now.
    assert!(matches!(
        failed_with(&w.chain.exec(&provider, voucher(&w, id, 9_000))),
        TxError::ChannelNotOpen { .. }
    ));
    w.check();
}

#[test]
fn a_providers_close_is_immediate_and_only_the_parties_may_close() {
    let mut w = world(1, Params::default());
    w.register_all();
    let provider = w.providers[0].clone();
    let id = open(&mut w, Amount(10_000));
    assert!(matches!(
        failed_with(&w.chain.exec(&w.outsider.clone(), Msg::CloseChannel { channel: id })),
        TxError::NotOwner { .. }
    ));
    ok(&w.chain.exec(&provider, voucher(&w, id, 2_500)));
    let tenant_before = w.chain.balance(&w.tenant.address());
    ok(&w.chain.exec(&provider, Msg::CloseChannel { channel: id }));
    assert_eq!(w.chain.balance(&w.tenant.address()), tenant_before.saturating_add(Amount(7_500)));
    assert!(matches!(channel(&w, id).state, ChannelState::Closed { refunded: Amount(7_500), .. }));
    // A channel to someone who is not a provider cannot be opened.
    let not_provider = w.outsider.address();
    assert!(matches!(
        failed_with(
            &w.chain.exec(&w.tenant.clone(), Msg::OpenChannel { provider: not_provider, deposit: Amount(5) })
        ),
        TxError::ProviderNotFound { .. }
    ));
    w.check();
}

#[test]
fn a_closed_channel_is_removed_after_retention_and_an_open_one_is_kept() {
    let retention = 60_000;
    let mut w = world(1, Params { record_retention_ms: retention, ..Params::default() });
    w.register_all();
    let provider = w.providers[0].clone();
    let storage = w.chain.params().storage_deposit;
    let closed = open(&mut w, Amount(10_000));
    let kept = open(&mut w, Amount(10_000));
    ok(&w.chain.exec(&provider, Msg::CloseChannel { channel: closed }));
    let ChannelState::Closed { at, .. } = channel(&w, closed).state else { panic!("closed at once") };
    let client = w.tenant.address();
    let before = w.chain.balance(&client);
    w.chain.block_at(at.plus(retention - 1), &[]);
    assert!(matches!(channel(&w, closed).state, ChannelState::Closed { .. }));
    let out = w.chain.block_at(at.plus(retention), &[]);
    let removed =
        Event::RecordRemoved { record: StoredRecord::Channel(closed), owner: client, refunded: storage };
    assert!(out.events.contains(&removed), "{:?}", out.events);
    assert_eq!(w.chain.query(Query::Channel { channel: closed }), QueryResponse::Channel(None));
    assert_eq!(w.chain.balance(&client), before.saturating_add(storage));
    // A closed and removed channel takes no voucher: the provider gets a typed refusal, nothing moves.
    let late = w.chain.exec(&provider, voucher(&w, closed, 1));
    assert!(matches!(failed_with(&late), TxError::ChannelNotFound { .. }), "{:?}", late.outcome);
    w.chain.advance(retention * 10);
    assert_eq!(channel(&w, kept).state, ChannelState::Open);
    w.check();
}

proptest! {
    /// Whatever vouchers the client signs (in any order) and the provider redeems, with top-ups and a close
    /// in between: the provider ends with exactly min(deposit, highest voucher it redeemed), the client with
    /// the rest, and the ledger's invariants hold after every block.
    #[test]
    fn a_provider_never_gets_more_than_signed_and_a_client_never_takes_back_what_it_signed(
        deposit in 1u128..1_000_000,
        steps in prop::collection::vec((0u8..4, 0u128..2_000_000), 1..24),
    ) {
        let params = Params { channel_challenge_ms: 10_000, ..Params::default() };
        let mut w = world(1, params);
        w.register_all();
        let provider = w.providers[0].clone();
        let id = open(&mut w, Amount(deposit));
        let mut total_deposit = deposit;
        let mut best_redeemed = 0u128;
        let mut closing = false;
        for (kind, value) in steps {
            match kind {
                0 | 1 => {
                    let receipt = w.chain.exec(&provider, voucher(&w, id, value));
                    let expected = value.min(total_deposit);
                    if receipt.succeeded() {
                        prop_assert!(expected > best_redeemed);
                        best_redeemed = expected;
                    } else {
                        prop_assert!(value == 0 || expected <= best_redeemed, "a valid newer voucher was refused");
                    }
                }
                2 if !closing => {
                    let amount = value % 10_000 + 1;
                    ok(&w.chain.exec(&w.tenant.clone(), Msg::TopUpChannel { channel: id, amount: Amount(amount) }));
                    total_deposit += amount;
                }
                3 if !closing => {
                    ok(&w.chain.exec(&w.tenant.clone(), Msg::CloseChannel { channel: id }));
                    closing = true;
                }
                _ => {}
            }
            let c = channel(&w, id);
            prop_assert_eq!(c.redeemed, Amount(best_redeemed));
            prop_assert!(c.redeemed <= c.deposit);
            w.check();
        }
        if closing {
            w.chain.advance(10_000);
            let c = channel(&w, id);
            let refunded = match c.state { ChannelState::Closed { refunded, .. } => refunded, other => panic!("{other:?}") };
            prop_assert_eq!(refunded.0 + best_redeemed, total_deposit);
        }
        w.check();
    }
}
