//! The mempool admits what the ledger would admit, bounds itself, and fills blocks fairly and in nonce order.

use rand_chacha::rand_core::SeedableRng;
use tensorgrid_ledger::testing::{TestChain, TEST_CHAIN_ID};
use tensorgrid_node::mempool::{AccountView, Mempool, MempoolConfig, MempoolError};
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

    // An account with money for two fees cannot queue a third transaction.
    let poor = SecretKey::from_label("poor");
    let fee = c.params().fee_for(send(&poor, 0, &k[1]).len()).unwrap();
    let tx = c.tx(&k[1], Msg::Send { to: poor.address(), amount: Amount(fee.0 * 2 + fee.0 / 2) });
    c.block(&[tx]);
    insert(&mut pool, &c, send(&poor, 0, &k[1])).unwrap();
    insert(&mut pool, &c, send(&poor, 1, &k[1])).unwrap();
    let err = insert(&mut pool, &c, send(&poor, 2, &k[1])).unwrap_err();
    assert!(matches!(err, MempoolError::Rejected(TxError::CannotPayFee { .. })), "{err:?}");
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

    let block = pool.reap(4, usize::MAX, &view);
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
    let all = pool.reap(100, usize::MAX, &view);
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
    assert!(pool.reap(10, usize::MAX, &View(&c)).is_empty());
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
    assert_eq!(pool.reap(10, size, &View(&c)).len(), 1, "a byte budget for one transaction takes one");
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
