//! The ledger on disk: same results as in memory, a root per block, recovery after reopening, proofs.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::{Ledger, MemStore, Store};
use tensorgrid_store::{BlockIndex, DiskStore, EMPTY_ROOT};
use tensorgrid_types::{
    Amount, BlockContext, Genesis, GenesisAccount, Hash, Msg, Params, SecretKey, Timestamp, Tx,
};

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tg-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn genesis(keys: &[SecretKey]) -> Genesis {
    Genesis {
        chain_id: "tg-store-test".into(),
        genesis_time: Timestamp(1_000_000),
        params: Params::default(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount { address: k.address(), balance: Amount::tgr(1_000) })
            .collect(),
    }
}

/// Blocks of transfers between the keys, signed with consecutive nonces.
fn blocks(keys: &[SecretKey], count: u64) -> Vec<(BlockContext, Vec<Vec<u8>>)> {
    let mut nonces = vec![0u64; keys.len()];
    (1..=count)
        .map(|height| {
            let txs = (0..keys.len())
                .map(|i| {
                    let to = keys[(i + 1) % keys.len()].address();
                    let tx = Tx::new(
                        "tg-store-test",
                        keys[i].address(),
                        nonces[i],
                        Amount::tgr(1),
                        Msg::Send { to, amount: Amount(height.into()) },
                    );
                    nonces[i] += 1;
                    tx.sign(&keys[i]).encode()
                })
                .collect();
            let ctx = BlockContext {
                height,
                time: Timestamp(1_000_000 + height * 1_000),
                randomness: Hash::of(&height.to_le_bytes()),
            };
            (ctx, txs)
        })
        .collect()
}

fn run<S: Store>(ledger: &mut Ledger<S>, blocks: &[(BlockContext, Vec<Vec<u8>>)]) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for (ctx, txs) in blocks {
        let out = ledger.execute_block(ctx, txs, &mut rng).unwrap();
        assert!(out.receipts.iter().all(|r| r.succeeded()));
    }
}

#[test]
fn the_ledger_on_disk_matches_the_ledger_in_memory() {
    let dir = TempDir::new("match");
    let keys: Vec<SecretKey> = (0..4).map(|i| SecretKey::from_label(&format!("k{i}"))).collect();
    let blocks = blocks(&keys, 20);

    let mut memory = Ledger::new(MemStore::new());
    memory.init_genesis(&genesis(&keys)).unwrap();
    run(&mut memory, &blocks);

    let mut disk = Ledger::new(DiskStore::open(dir.0.join("state.redb")).unwrap());
    assert_eq!(disk.store().root().unwrap(), EMPTY_ROOT);
    disk.init_genesis(&genesis(&keys)).unwrap();
    let genesis_root = disk.store().root().unwrap();
    assert_ne!(genesis_root, EMPTY_ROOT);
    run(&mut disk, &blocks);
    assert_eq!(disk.state_digest().unwrap(), memory.state_digest().unwrap());
    assert_eq!(disk.store().version().unwrap(), Some(20), "genesis is version 0, then one per block");
    assert_ne!(disk.store().root().unwrap(), genesis_root);
    disk.check_invariants().unwrap();
}

#[test]
fn two_nodes_executing_the_same_blocks_agree_on_every_root() {
    let (a_dir, b_dir) = (TempDir::new("a"), TempDir::new("b"));
    let keys: Vec<SecretKey> = (0..3).map(|i| SecretKey::from_label(&format!("n{i}"))).collect();
    let blocks = blocks(&keys, 10);
    let mut a = Ledger::new(DiskStore::open(a_dir.0.join("s.redb")).unwrap());
    let mut b = Ledger::new(DiskStore::open(b_dir.0.join("s.redb")).unwrap());
    a.init_genesis(&genesis(&keys)).unwrap();
    b.init_genesis(&genesis(&keys)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut roots = std::collections::BTreeSet::new();
    for (ctx, txs) in &blocks {
        a.execute_block(ctx, txs, &mut rng).unwrap();
        b.execute_block(ctx, txs, &mut rng).unwrap();
        let root = a.store().root().unwrap();
        assert_eq!(root, b.store().root().unwrap(), "height {}", ctx.height);
        roots.insert(root);
    }
    assert_eq!(roots.len(), blocks.len(), "every block moves the root");
}

#[test]
fn a_reopened_store_continues_where_it_stopped() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("state.redb");
    let keys: Vec<SecretKey> = (0..3).map(|i| SecretKey::from_label(&format!("r{i}"))).collect();
    let all = blocks(&keys, 12);
    let (root, digest) = {
        let mut ledger = Ledger::new(DiskStore::open(&path).unwrap());
        ledger.init_genesis(&genesis(&keys)).unwrap();
        run(&mut ledger, &all[..6]);
        (ledger.store().root().unwrap(), ledger.state_digest().unwrap())
    };
    let mut ledger = Ledger::new(DiskStore::open(&path).unwrap());
    assert_eq!(ledger.store().root().unwrap(), root);
    assert_eq!(ledger.state_digest().unwrap(), digest);
    assert_eq!(ledger.chain_info().unwrap().height, 6);
    run(&mut ledger, &all[6..]);

    let mut straight = Ledger::new(MemStore::new());
    straight.init_genesis(&genesis(&keys)).unwrap();
    run(&mut straight, &all);
    assert_eq!(ledger.state_digest().unwrap(), straight.state_digest().unwrap());
}

#[test]
fn values_and_absences_are_proven_against_the_root() {
    let dir = TempDir::new("proof");
    let mut store = DiskStore::open(dir.0.join("s.redb")).unwrap();
    store
        .write_batch(vec![
            (b"a/alice".to_vec(), Some(b"100".to_vec())),
            (b"a/bob".to_vec(), Some(b"7".to_vec())),
        ])
        .unwrap();
    store.write_batch(vec![(b"a/bob".to_vec(), None), (b"a/carol".to_vec(), Some(b"3".to_vec()))]).unwrap();

    let alice = store.get_proven(b"a/alice").unwrap();
    assert_eq!(alice.value.as_deref(), Some(&b"100"[..]));
    assert!(alice.verify(b"a/alice"));
    assert!(!alice.verify(b"a/carol"), "a proof is for its own key");

    let bob = store.get_proven(b"a/bob").unwrap();
    assert_eq!(bob.value, None);
    assert!(bob.verify(b"a/bob"), "absence is proven too");

    let mut forged = store.get_proven(b"a/carol").unwrap();
    forged.value = Some(b"3000".to_vec());
    assert!(!forged.verify(b"a/carol"), "a changed value does not verify");
    assert_eq!(store.version().unwrap(), Some(1));
}

#[test]
fn a_simulated_block_previews_the_root_its_execution_commits() {
    let dir = TempDir::new("preview");
    let keys: Vec<SecretKey> = (0..3).map(|i| SecretKey::from_label(&format!("p{i}"))).collect();
    let blocks = blocks(&keys, 3);
    let mut ledger = Ledger::new(DiskStore::open(dir.0.join("s.redb")).unwrap());
    ledger.init_genesis(&genesis(&keys)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for (ctx, txs) in &blocks {
        let (before_root, before_digest) = (ledger.store().root().unwrap(), ledger.state_digest().unwrap());
        let (simulated, writes) = ledger.simulate_block(ctx, txs, &mut rng).unwrap();
        let preview = ledger.store().preview_root(&writes).unwrap();
        assert_eq!(ledger.store().root().unwrap(), before_root, "simulating writes nothing");
        assert_eq!(ledger.state_digest().unwrap(), before_digest);
        assert_ne!(preview, before_root);
        let executed = ledger.execute_block(ctx, txs, &mut rng).unwrap();
        assert_eq!(executed, simulated, "same receipts and events");
        assert_eq!(ledger.store().root().unwrap(), preview, "the preview is the committed root");
    }
}

#[test]
fn index_records_commit_with_the_next_batch_and_roots_stay_readable_per_height() {
    let dir = TempDir::new("index");
    let mut store = DiskStore::open(dir.0.join("state.redb")).unwrap();
    store.write_batch(vec![(b"a".to_vec(), Some(b"1".to_vec()))]).unwrap();
    let first_root = store.root().unwrap();
    let tx = Hash::of(b"tx");
    store.stage_index(BlockIndex {
        height: 1,
        block: b"block one".to_vec(),
        txs: vec![(tx, b"record".to_vec())],
        accounts: vec![],
    });
    // Staged records are invisible until the batch they ride with commits.
    assert_eq!(store.indexed_block(1).unwrap(), None);
    assert_eq!(store.indexed_tx(&tx).unwrap(), None);
    store.write_batch(vec![(b"a".to_vec(), Some(b"2".to_vec()))]).unwrap();
    assert_eq!(store.indexed_block(1).unwrap(), Some(b"block one".to_vec()));
    assert_eq!(store.indexed_tx(&tx).unwrap(), Some(b"record".to_vec()));
    assert_eq!(store.root_at(0).unwrap(), Some(first_root));
    assert_eq!(store.root_at(1).unwrap(), Some(store.root().unwrap()));
    assert_eq!(store.root_at(2).unwrap(), None);
    drop(store);
    let reopened = DiskStore::open(dir.0.join("state.redb")).unwrap();
    assert_eq!(reopened.indexed_tx(&tx).unwrap(), Some(b"record".to_vec()));
    assert_eq!(reopened.root_at(0).unwrap(), Some(first_root));
}

#[test]
fn an_accounts_history_pages_newest_first_and_stays_apart_from_other_accounts() {
    let dir = TempDir::new("account-index");
    let mut store = DiskStore::open(dir.0.join("state.redb")).unwrap();
    let alice = SecretKey::from_label("alice").address();
    let bob = SecretKey::from_label("bob").address();
    let tx = |h: u64, i: u32| Hash::of(format!("{h}/{i}").as_bytes());
    assert_eq!(store.account_txs(&alice, None, 10).unwrap(), vec![], "nothing indexed yet");
    for height in 1..=3u64 {
        // Alice appears twice in each block, bob once (in the middle); the transfer between them names both.
        store.stage_index(BlockIndex {
            height,
            block: vec![],
            txs: vec![],
            accounts: vec![(alice, 0, tx(height, 0)), (alice, 1, tx(height, 1)), (bob, 1, tx(height, 1))],
        });
        store.write_batch(vec![(b"h".to_vec(), Some(height.to_be_bytes().to_vec()))]).unwrap();
    }
    let first = store.account_txs(&alice, None, 4).unwrap();
    let positions: Vec<_> = first.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, vec![(3, 1), (3, 0), (2, 1), (2, 0)]);
    assert_eq!(first[0].1, tx(3, 1));
    let rest = store.account_txs(&alice, Some((2, 0)), 4).unwrap();
    assert_eq!(rest.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![(1, 1), (1, 0)]);
    let bobs = store.account_txs(&bob, None, 10).unwrap();
    assert_eq!(bobs, vec![((3, 1), tx(3, 1)), ((2, 1), tx(2, 1)), ((1, 1), tx(1, 1))]);
    let nobody = SecretKey::from_label("carol").address();
    assert_eq!(store.account_txs(&nobody, None, 10).unwrap(), vec![]);
}

/// Applies the same batch to both stores and checks they agree on the new root.
fn apply_both(a: &mut DiskStore, b: &mut DiskStore, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    a.write_batch(batch.clone()).unwrap();
    b.write_batch(batch).unwrap();
    assert_eq!(a.root().unwrap(), b.root().unwrap());
}

/// Version `v`'s writes: a rotating set of long-lived keys is overwritten, one of them deleted, and a
/// short-lived key is created and the previous one deleted, so the tree sees updates, deletions and
/// re-creations of the same key.
fn churn(v: u64) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut batch = vec![
        (format!("k{:02}", v % 50).into_bytes(), Some(v.to_be_bytes().to_vec())),
        (format!("k{:02}", (v + 25) % 50).into_bytes(), None),
        (format!("tmp{v}").into_bytes(), Some(b"short-lived".to_vec())),
    ];
    if v > 0 {
        batch.push((format!("tmp{}", v - 1).into_bytes(), None));
    }
    batch.sort();
    batch
}

#[test]
fn a_pruning_store_keeps_its_window_provable_and_its_tree_bounded() {
    let (a_dir, b_dir) = (TempDir::new("archive"), TempDir::new("pruned"));
    let history = tensorgrid_store::MIN_HISTORY;
    let mut archive = DiskStore::open(a_dir.0.join("s.redb")).unwrap();
    let pruned_path = b_dir.0.join("s.redb");
    let mut pruned = DiskStore::open(&pruned_path).unwrap().with_history(Some(history));
    let mut nodes_at = Vec::new();
    for v in 0..400 {
        apply_both(&mut archive, &mut pruned, churn(v));
        if v == 199 || v == 399 {
            nodes_at.push(pruned.tree_nodes().unwrap());
        }
    }
    let latest = pruned.version().unwrap().unwrap();
    let oldest = pruned.oldest_version().unwrap();
    assert_eq!(oldest, latest + 1 - history);
    for v in oldest..=latest {
        assert_eq!(pruned.root_at(v).unwrap(), archive.root_at(v).unwrap(), "version {v} is in the window");
    }
    // Older versions' trees are pruned, their roots kept (32 bytes a block, what headers are checked against).
    for v in [0, 1, oldest - 1] {
        assert_eq!(pruned.root_at(v).unwrap(), archive.root_at(v).unwrap(), "version {v}'s root is kept");
    }
    // Every key, present or deleted, is still proven against the current root.
    for key in (0..50).map(|i| format!("k{i:02}")).chain(["tmp398".into(), "tmp399".into()]) {
        let (p, a) =
            (pruned.get_proven(key.as_bytes()).unwrap(), archive.get_proven(key.as_bytes()).unwrap());
        assert!(p.verify(key.as_bytes()), "{key}");
        assert_eq!(p.value, a.value, "{key}");
    }
    // The archive grows with every version; the pruned tree stays the size of its window.
    let (archived, kept) = (archive.tree_nodes().unwrap(), pruned.tree_nodes().unwrap());
    assert!(kept * 3 < archived, "pruned {kept} nodes, archive {archived}");
    assert!(nodes_at[1] <= nodes_at[0] + nodes_at[0] / 10, "the pruned tree grew: {nodes_at:?}");

    // Reopened, it goes on pruning and agreeing.
    drop(pruned);
    let mut pruned = DiskStore::open(&pruned_path).unwrap().with_history(Some(history));
    for v in 400..420 {
        apply_both(&mut archive, &mut pruned, churn(v));
    }
    assert_eq!(pruned.oldest_version().unwrap(), 420 - history);
    assert!(pruned.tree_nodes().unwrap() <= nodes_at[1] + nodes_at[1] / 10);
}

#[test]
fn an_archive_that_starts_pruning_catches_up_a_bounded_amount_per_block() {
    let dir = TempDir::new("catch-up");
    let path = dir.0.join("s.redb");
    let mut store = DiskStore::open(&path).unwrap();
    for v in 0..300 {
        store.write_batch(churn(v)).unwrap();
    }
    let stale = store.stale_entries().unwrap();
    let nodes = store.tree_nodes().unwrap();
    drop(store);
    let mut store = DiskStore::open(&path).unwrap().with_history(Some(tensorgrid_store::MIN_HISTORY));
    store.write_batch(churn(300)).unwrap();
    assert_eq!(store.oldest_version().unwrap(), 301 - tensorgrid_store::MIN_HISTORY);
    assert!(store.tree_nodes().unwrap() < nodes, "the first block pruned");
    assert!(store.stale_entries().unwrap() < stale);
    assert!(store.get_proven(b"k00").unwrap().verify(b"k00"));
}
