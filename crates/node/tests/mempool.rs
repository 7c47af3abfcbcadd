//! The mempool admits what the ledger would admit, bounds itself, and fills blocks fairly and in nonce order.

use rand_chacha::rand_core::SeedableRng;
use tensorgrid_ledger::testing::{TestChain, TEST_CHAIN_ID};
use tensorgrid_node::mempool::{
    check_block, AccountView, BlockCheckError, Mempool, MempoolConfig, MempoolError,
};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{
    Account, Address, Amount, Hash, Msg, Params, SecretKey, SignedTx, Timestamp, Tx, TxError,
};

struct View<'a>(&'a TestChain);

impl AccountView for View<'_> {
    fn account(&self, address: &Address) -> Option<Account> {
        match self.0.query(Query::Account { address: *address }) {
            QueryResponse::Account(a) => a,
            _ => None,
        }
    }
}

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n).map(|i| SecretKey::from_label(&format!("m{i}"))).collect()
}

fn chain(keys: &[SecretKey]) -> TestChain {
    let funded: Vec<(&SecretKey, Amount)> = keys.iter().map(|k| (k, Amount::tgr(10))).collect();
    TestChain::new(&funded, Params::default())
}

fn send(key: &SecretKey, nonce: u64, to: &SecretKey) -> Vec<u8> {
    Tx::new(
        TEST_CHAIN_ID,
        key.address(),
        nonce,
        Amount::tgr(1),
        Msg::Send { to: to.address(), amount: Amount(1) },
    )
    .sign(key)
    .encode()
}

fn insert(pool: &mut Mempool, chain: &TestChain, raw: Vec<u8>) -> Result<Hash, MempoolError> {
    pool.insert(raw, TEST_CHAIN_ID, &chain.params(), &View(chain), chain.now)
}

#[test]
fn it_refuses_what_the_ledger_would_refuse_and_says_why() {
    let k = keys(2);
    let c = chain(&k);
    let mut pool = Mempool::new(MempoolConfig { max_per_account: 4, ..MempoolConfig::default() });
    let good = send(&k[0], 0, &k[1]);
    let hash = insert(&mut pool, &c, good.clone()).unwrap();
    assert_eq!(insert(&mut pool, &c, good), Err(MempoolError::AlreadyKnown { hash }));

    let mut forged = SignedTx::decode(&send(&k[0], 1, &k[1])).unwrap();
    forged.signature.0[0] ^= 1;
    let stranger = SecretKey::from_label("stranger");
    let wrong_chain =
        Tx::new("other", k[0].address(), 1, Amount::tgr(1), Msg::Heartbeat).sign(&k[0]).encode();
    let cheap = Tx::new(TEST_CHAIN_ID, k[0].address(), 1, Amount(1), Msg::Heartbeat).sign(&k[0]).encode();
    type Expected = fn(&MempoolError) -> bool;
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        (forged.encode(), |e| matches!(e, MempoolError::Rejected(TxError::BadSignature { .. }))),
        (wrong_chain, |e| matches!(e, MempoolError::Rejected(TxError::WrongChainId { .. }))),
        (cheap, |e| matches!(e, MempoolError::Rejected(TxError::FeeTooLow { .. }))),
        (send(&stranger, 0, &k[1]), |e| matches!(e, MempoolError::Rejected(TxError::UnknownAccount { .. }))),
        (send(&k[0], 9, &k[1]), |e| matches!(e, MempoolError::TooFarAhead { next: 0, got: 9, max: 4 })),
        (send(&k[0], 0, &k[0]), |e| matches!(e, MempoolError::NonceTaken { nonce: 0, .. })),
        (vec![1, 2, 3], |e| matches!(e, MempoolError::Rejected(TxError::Undecodable { .. }))),
        (vec![0; 70_000], |e| matches!(e, MempoolError::Rejected(TxError::TooLarge { .. }))),
    ];
    for (raw, expected) in cases {
        let err = insert(&mut pool, &c, raw).unwrap_err();
        assert!(expected(&err), "unexpected {err:?}");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(pool.len(), 1, "refusals change nothing");
}

#[test]
fn replayed_nonces_and_unpayable_queues_are_refused() {
    let k = keys(2);
    let mut c = chain(&k);
    let tx = c.tx(&k[0], Msg::Send { to: k[1].address(), amount: Amount(1) });
    c.block(&[tx]);
    let mut pool = Mempool::new(MempoolConfig::default());
    let err = insert(&mut pool, &c, send(&k[0], 0, &k[1])).unwrap_err();
    assert!(matches!(err, MempoolError::Rejected(TxError::NonceReplayed { expected: 1, got: 0 })));

    // An account with money for two transfers (fee and amount) cannot queue a third.
    let poor = SecretKey::from_label("poor");
    let fee = c.params().fee_for(send(&poor, 0, &k[1]).len()).unwrap();
    let tx = c.tx(&k[1], Msg::Send { to: poor.address(), amount: Amount((fee.0 + 1) * 2 + fee.0 / 2) });
    c.block(&[tx]);
    insert(&mut pool, &c, send(&poor, 0, &k[1])).unwrap();
    insert(&mut pool, &c, send(&poor, 1, &k[1])).unwrap();
    let err = insert(&mut pool, &c, send(&poor, 2, &k[1])).unwrap_err();
    assert!(matches!(err, MempoolError::Unfunded { .. }), "{err:?}");
}

#[test]
fn a_full_pool_says_try_later() {
    let k = keys(3);
    let c = chain(&k);
    let mut pool = Mempool::new(MempoolConfig { max_txs: 2, ..MempoolConfig::default() });
    insert(&mut pool, &c, send(&k[0], 0, &k[1])).unwrap();
    insert(&mut pool, &c, send(&k[1], 0, &k[2])).unwrap();
    let err = insert(&mut pool, &c, send(&k[2], 0, &k[0])).unwrap_err();
    assert!(matches!(err, MempoolError::Full { txs: 2, .. }));
    assert!(err.to_string().contains("try again"));
}

#[test]
fn blocks_are_filled_in_nonce_order_with_accounts_taking_turns() {
    let k = keys(3);
    let mut c = chain(&k);
    let mut pool = Mempool::new(MempoolConfig::default());
    // Account 0 queues five transactions (out of order), account 1 two, account 2 one with a gap before it.
    for nonce in [3, 1, 0, 4, 2] {
        insert(&mut pool, &c, send(&k[0], nonce, &k[1])).unwrap();
    }
    insert(&mut pool, &c, send(&k[1], 0, &k[2])).unwrap();
    insert(&mut pool, &c, send(&k[1], 1, &k[2])).unwrap();
    insert(&mut pool, &c, send(&k[2], 1, &k[0])).unwrap();
    let view = View(&c);

    let block = pool.reap(4, usize::MAX, &c.params(), &view);
    let order: Vec<(Address, u64)> = block
        .iter()
        .map(|raw| {
            let tx = SignedTx::decode(raw).unwrap().tx;
            (tx.signer, tx.nonce)
        })
        .collect();
    let a = |i: usize| k[i].address();
    assert_eq!(order, vec![(a(0), 0), (a(1), 0), (a(0), 1), (a(1), 1)], "turns, nonce order, the gap waits");

    // Everything reaped executes, and committing clears it from the pool.
    let all = pool.reap(100, usize::MAX, &c.params(), &view);
    assert_eq!(all.len(), 7);
    let out = c.block(&all);
    assert!(
        out.receipts.iter().all(|r| r.succeeded()),
        "{:?}",
        out.receipts.iter().map(|r| &r.outcome).collect::<Vec<_>>()
    );
    let included: Vec<Hash> = out.receipts.iter().map(|r| r.tx_hash).collect();
    pool.committed(&included, &View(&c));
    assert_eq!(pool.len(), 1, "only the transaction behind the gap is left");
    assert!(pool.reap(10, usize::MAX, &c.params(), &View(&c)).is_empty());
    let bytes = pool.bytes();
    assert!(bytes > 0);
}

#[test]
fn byte_limits_and_expiry() {
    let k = keys(2);
    let c = chain(&k);
    let mut pool = Mempool::new(MempoolConfig { ttl_ms: 1_000, ..MempoolConfig::default() });
    let one = send(&k[0], 0, &k[1]);
    let size = one.len();
    insert(&mut pool, &c, one).unwrap();
    insert(&mut pool, &c, send(&k[1], 0, &k[0])).unwrap();
    assert_eq!(
        pool.reap(10, size, &c.params(), &View(&c)).len(),
        1,
        "a byte budget for one transaction takes one"
    );
    pool.evict_expired(c.now.plus(1_000));
    assert_eq!(pool.len(), 2);
    pool.evict_expired(Timestamp(c.now.0 + 1_001));
    assert!(pool.is_empty());
    assert_eq!(pool.bytes(), 0);
}

#[test]
fn a_batch_from_a_peer_gets_the_same_verdicts_as_one_by_one() {
    let k = keys(3);
    let c = chain(&k);
    let mut forged = SignedTx::decode(&send(&k[1], 0, &k[2])).unwrap();
    forged.signature.0[5] ^= 1;
    let batch = vec![
        send(&k[0], 0, &k[1]),
        forged.encode(),
        b"not a transaction".to_vec(),
        send(&k[2], 0, &k[0]),
        send(&k[0], 0, &k[1]),
        Tx::new("other", k[2].address(), 1, Amount::tgr(1), Msg::Heartbeat).sign(&k[2]).encode(),
        send(&k[0], 1, &k[1]),
    ];
    let mut one_by_one = Mempool::new(MempoolConfig::default());
    let expected: Vec<_> = batch.iter().map(|raw| insert(&mut one_by_one, &c, raw.clone())).collect();
    let mut batched = Mempool::new(MempoolConfig::default());
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let got = batched.insert_batch(batch, TEST_CHAIN_ID, &c.params(), &View(&c), c.now, rng);
    // A transaction repeated within the batch is refused as already known, as one by one.
    assert_eq!(got, expected);
    assert!(matches!(got[1], Err(MempoolError::Rejected(TxError::BadSignature { .. }))), "{:?}", got[1]);
    assert_eq!(batched.len(), 3);
}

fn signed(key: &SecretKey, nonce: u64, tip: u128, msg: Msg) -> Vec<u8> {
    Tx::new(TEST_CHAIN_ID, key.address(), nonce, Amount::tgr(1), msg).with_tip(Amount(tip)).sign(key).encode()
}

fn signers(block: &[Vec<u8>]) -> Vec<(Address, u64)> {
    block
        .iter()
        .map(|raw| {
            let tx = SignedTx::decode(raw).unwrap().tx;
            (tx.signer, tx.nonce)
        })
        .collect()
}

#[test]
fn an_account_that_sends_its_balance_away_cannot_queue_followers_that_would_ride_for_free() {
    // The attack: the first transaction sends the whole balance away, and the account's queued followers
    // would reach a block unable to pay, included as rejected with no fee and indexed forever.
    let k = keys(2);
    let mut c = chain(&k);
    let mut pool = Mempool::new(MempoolConfig::default());
    let balance = c.balance(&k[0].address());
    let probe = signed(&k[0], 0, 0, Msg::Send { to: k[1].address(), amount: Amount(1) });
    let fee = c.params().fee_for(probe.len()).unwrap();
    let everything = Msg::Send { to: k[1].address(), amount: Amount(balance.0 - fee.0 - 50) };
    insert(&mut pool, &c, signed(&k[0], 0, 0, everything)).unwrap();
    for nonce in 1..5 {
        let refused = insert(&mut pool, &c, signed(&k[0], nonce, 0, Msg::Heartbeat)).unwrap_err();
        assert!(matches!(refused, MempoolError::Unfunded { .. }), "{refused:?}");
        assert!(refused.to_string().contains("does not cover"), "{refused}");
    }
    // What is reaped all pays.
    let block = pool.reap(100, usize::MAX, &c.params(), &View(&c));
    let out = c.block(&block);
    assert!(out.receipts.iter().all(|r| r.succeeded() && !r.fee_paid.is_zero()));
    // A proposer that builds such a block anyway is refused by every verifier.
    let k2 = keys(3);
    let c2 = chain(&k2);
    let balance = c2.balance(&k2[0].address());
    let drain =
        signed(&k2[0], 0, 0, Msg::Send { to: k2[1].address(), amount: Amount(balance.0 - fee.0 - 50) });
    let free_riders: Vec<Vec<u8>> = (1..4).map(|n| signed(&k2[0], n, 0, Msg::Heartbeat)).collect();
    let mut block = vec![drain.clone()];
    block.extend(free_riders);
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let verdict = check_block(&block, &[], TEST_CHAIN_ID, &c2.params(), &View(&c2), rng.clone());
    assert!(matches!(verdict, Err(BlockCheckError::Unfunded { index: 1, .. })), "{verdict:?}");
    // The same drain in an uncommitted ancestor counts too.
    let verdict =
        check_block(&block[1..], std::slice::from_ref(&drain), TEST_CHAIN_ID, &c2.params(), &View(&c2), rng);
    assert!(matches!(verdict, Err(BlockCheckError::Unfunded { index: 0, .. })), "{verdict:?}");
}

#[test]
fn a_verifier_refuses_blocks_with_forged_misnumbered_or_foreign_transactions() {
    let k = keys(2);
    let c = chain(&k);
    let rng = || rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let check = |txs: &[Vec<u8>], pending: &[Vec<u8>]| {
        check_block(txs, pending, TEST_CHAIN_ID, &c.params(), &View(&c), rng())
    };
    let good = vec![send(&k[0], 0, &k[1]), send(&k[1], 0, &k[0]), send(&k[0], 1, &k[1])];
    assert_eq!(check(&good, &[]), Ok(()));
    let mut forged = SignedTx::decode(&send(&k[0], 1, &k[1])).unwrap();
    forged.signature.0[3] ^= 1;
    let verdict = check(&[send(&k[0], 0, &k[1]), forged.encode()], &[]);
    assert!(matches!(
        verdict,
        Err(BlockCheckError::Refused { index: 1, error: TxError::BadSignature { .. } })
    ));
    assert!(matches!(
        check(&[send(&k[0], 1, &k[1])], &[]),
        Err(BlockCheckError::OutOfOrder { expected: 0, .. })
    ));
    // A transaction an uncommitted ancestor already carries cannot come again.
    let verdict = check(&[send(&k[0], 0, &k[1])], &[send(&k[0], 0, &k[1])]);
    assert!(matches!(verdict, Err(BlockCheckError::OutOfOrder { expected: 1, got: 0, .. })), "{verdict:?}");
    assert_eq!(check(&[send(&k[0], 1, &k[1])], &[send(&k[0], 0, &k[1])]), Ok(()));
    let foreign = Tx::new("other", k[0].address(), 0, Amount::tgr(1), Msg::Heartbeat).sign(&k[0]).encode();
    assert!(matches!(
        check(&[foreign], &[]),
        Err(BlockCheckError::Refused { error: TxError::WrongChainId { .. }, .. })
    ));
    assert!(matches!(check(&[b"garbage".to_vec()], &[]), Err(BlockCheckError::Refused { .. })));
    let stingy = Tx::new(TEST_CHAIN_ID, k[0].address(), 0, Amount(1), Msg::Heartbeat).sign(&k[0]).encode();
    assert!(matches!(
        check(&[stingy], &[]),
        Err(BlockCheckError::Refused { error: TxError::FeeTooLow { .. }, .. })
    ));
}

#[test]
fn blocks_take_tips_first_and_keep_a_share_for_heartbeats_even_in_a_flood() {
    let k = keys(6);
    let c = chain(&k);
    // A small pool, filled by a flood of plain transfers from four accounts.
    let mut pool = Mempool::new(MempoolConfig { max_txs: 8, max_heartbeats: 2, ..MempoolConfig::default() });
    for who in 0..4 {
        for nonce in 0..2 {
            insert(&mut pool, &c, send(&k[who], nonce, &k[5])).unwrap();
        }
    }
    assert!(matches!(insert(&mut pool, &c, send(&k[4], 0, &k[5])), Err(MempoolError::Full { .. })));
    // A provider's heartbeat still gets in: heartbeats have a lane of their own.
    insert(&mut pool, &c, signed(&k[4], 0, 0, Msg::Heartbeat)).unwrap();
    // And it is in the next block even when the block has room for only four transactions.
    let block = pool.reap(4, usize::MAX, &c.params(), &View(&c));
    assert_eq!(block.len(), 4);
    assert!(signers(&block).contains(&(k[4].address(), 0)), "the heartbeat was starved");

    // A tip moves a transaction ahead of untipped ones from accounts that arrived earlier.
    let mut pool = Mempool::new(MempoolConfig::default());
    for who in 0..3 {
        insert(&mut pool, &c, send(&k[who], 0, &k[5])).unwrap();
    }
    insert(&mut pool, &c, signed(&k[3], 0, 5_000, Msg::Send { to: k[5].address(), amount: Amount(1) }))
        .unwrap();
    let block = pool.reap(2, usize::MAX, &c.params(), &View(&c));
    assert_eq!(signers(&block)[0], (k[3].address(), 0), "the tipped transaction goes first");
    // The tip is charged on top of the fee.
    let mut chain2 = chain(&k);
    let before = chain2.balance(&k[3].address());
    let tipped = signed(&k[3], 0, 5_000, Msg::Send { to: k[5].address(), amount: Amount(1) });
    let size = tipped.len();
    let out = chain2.block(&[tipped]);
    let fee = c.params().fee_for(size).unwrap();
    assert_eq!(out.receipts[0].fee_paid, Amount(fee.0 + 5_000));
    assert_eq!(chain2.balance(&k[3].address()), Amount(before.0 - fee.0 - 5_000 - 1));
}
