//! Model offers: only active providers announce, one offer per (provider, model) replaced in place, a cap per
//! provider, listing by model, withdrawal, and a leaving provider's offers leave with it.

mod common;

use common::*;
use tensorgrid_types::model::{ListedOffer, ModelOffer, MAX_MODELS_PER_PROVIDER};
use tensorgrid_types::query::{Page, Paged, Query, QueryResponse};
use tensorgrid_types::{Amount, Hash, Msg, Params, TxError};

fn offer(model: &str, price: u128) -> ModelOffer {
    ModelOffer {
        model_hash: Hash::of(model.as_bytes()),
        name: model.into(),
        source_hash: Hash::of(b"source"),
        quantization: "Q8_0".into(),
        tokenizer_hash: Hash::of(b"tokenizer"),
        context_length: 8192,
        price_input_per_m: Amount(price),
        price_output_per_m: Amount(price * 4),
        throughput_tps: 100,
    }
}

fn offers(w: &World, model: Option<&str>, page: Page) -> Paged<ListedOffer> {
    match w.chain.query(Query::ModelOffers { model_hash: model.map(|m| Hash::of(m.as_bytes())), page }) {
        QueryResponse::ModelOffers(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn providers_offer_models_that_gateways_find_by_hash() {
    let mut w = world(2, Params::default());
    let outsider = w.outsider.clone();
    assert!(matches!(
        failed_with(&w.chain.exec(&outsider, Msg::AnnounceModel { offer: offer("smollm2", 10) })),
        TxError::ProviderNotFound { .. }
    ));
    w.register_all();
    let (p0, p1) = (w.providers[0].clone(), w.providers[1].clone());
    ok(&w.chain.exec(&p0, Msg::AnnounceModel { offer: offer("smollm2", 10) }));
    ok(&w.chain.exec(&p1, Msg::AnnounceModel { offer: offer("smollm2", 7) }));
    ok(&w.chain.exec(&p0, Msg::AnnounceModel { offer: offer("minilm", 1) }));
    let smol = offers(&w, Some("smollm2"), Page::default());
    assert_eq!(smol.items.len(), 2);
    assert!(smol.items.iter().all(|l| l.offer.name == "smollm2"));
    assert_eq!(offers(&w, None, Page::default()).items.len(), 3);

    // Announcing again replaces the offer (a new price), it does not add one.
    ok(&w.chain.exec(&p0, Msg::AnnounceModel { offer: offer("smollm2", 5) }));
    let smol = offers(&w, Some("smollm2"), Page::default());
    assert_eq!(smol.items.len(), 2);
    let mine = smol.items.iter().find(|l| l.provider == p0.address()).unwrap();
    assert_eq!(mine.offer.price_input_per_m, Amount(5));

    // Paging by one joins up.
    let first = offers(&w, None, Page::first(1));
    let next = offers(&w, None, Page { after: first.next.clone(), limit: 1 });
    assert_ne!(first.items[0], next.items[0]);

    // Withdrawal, then a provider that leaves takes its remaining offers along.
    ok(&w.chain.exec(&p1, Msg::WithdrawModel { model_hash: Hash::of(b"smollm2") }));
    assert!(matches!(
        failed_with(&w.chain.exec(&p1, Msg::WithdrawModel { model_hash: Hash::of(b"smollm2") })),
        TxError::ModelNotOffered { .. }
    ));
    ok(&w.chain.exec(&p0, Msg::DeregisterProvider));
    assert!(offers(&w, None, Page::default()).items.is_empty());
    w.check();
}

/// A provider that raised its price to take more from the gateways already routing to it: the rise waits out
/// the notice period on chain, and neither announcing it again nor withdrawing and re-announcing skips it.
#[test]
fn a_price_rise_takes_effect_only_after_its_notice_and_cannot_skip_it() {
    let notice = 60_000;
    let mut w = world(1, Params { model_price_notice_ms: notice, ..Params::default() });
    w.register_all();
    let p = w.providers[0].clone();
    let listed = |w: &World| offers(w, Some("smollm2"), Page::default()).items.into_iter().next();
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 10) }));
    let first = listed(&w).unwrap();
    assert_eq!(first.pending, None, "a first offer applies at once");

    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 1_000) }));
    let raised = listed(&w).unwrap();
    assert_eq!(raised.offer.price_input_per_m, Amount(10), "the old price stays in effect");
    let pending = raised.pending.expect("the rise waits");
    assert_eq!(pending.price.input_per_m, Amount(1_000));
    assert_eq!(pending.effective_at, raised.announced_at.plus(notice));
    let just_before = tensorgrid_types::Timestamp(pending.effective_at.millis() - 1);
    assert_eq!(raised.price_at(just_before).input_per_m, Amount(10));
    assert_eq!(raised.price_at(pending.effective_at).input_per_m, Amount(1_000));

    // Announcing the same rise again keeps its place; the rise is not restarted and not hurried.
    w.chain.advance(notice / 2);
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 1_000) }));
    assert_eq!(listed(&w).unwrap().pending.unwrap().effective_at, pending.effective_at);

    // Withdrawing and announcing again does not skip the notice either.
    ok(&w.chain.exec(&p, Msg::WithdrawModel { model_hash: Hash::of(b"smollm2") }));
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 1_000) }));
    let again = listed(&w).unwrap();
    assert_eq!(again.offer.price_input_per_m, Amount(10), "the withdrawn offer's price still stands");
    assert!(again.pending.unwrap().effective_at > again.announced_at);

    // Lower prices apply at once, and cancel the pending rise.
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 5) }));
    let lower = listed(&w).unwrap();
    assert_eq!((lower.offer.price_input_per_m, lower.pending), (Amount(5), None));

    // Once the notice has run, a rise is in effect for everyone reading the listing.
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 50) }));
    w.chain.advance(notice + 1);
    let now = listed(&w).unwrap();
    assert_eq!(now.price_at(now.pending.unwrap().effective_at).input_per_m, Amount(50));
    // A withdrawn offer's memory is forgotten after the notice: a later offer is a first one.
    ok(&w.chain.exec(&p, Msg::WithdrawModel { model_hash: Hash::of(b"smollm2") }));
    w.chain.advance(notice + 1);
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("smollm2", 90) }));
    assert_eq!(listed(&w).unwrap().pending, None);
    w.check();
}

#[test]
fn a_provider_offers_at_most_the_cap_and_malformed_offers_are_refused_at_admission() {
    let mut w = world(1, Params::default());
    w.register_all();
    let p = w.providers[0].clone();
    for i in 0..MAX_MODELS_PER_PROVIDER {
        ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer(&format!("model-{i}"), 1) }));
    }
    assert!(matches!(
        failed_with(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("one-too-many", 1) })),
        TxError::TooManyModels { .. }
    ));
    ok(&w.chain.exec(&p, Msg::AnnounceModel { offer: offer("model-0", 2) }));
    let bad = ModelOffer { context_length: 0, ..offer("broken", 1) };
    assert!(matches!(
        rejected_with(&w.chain.exec(&p, Msg::AnnounceModel { offer: bad })),
        TxError::Malformed { .. }
    ));
    w.check();
}
