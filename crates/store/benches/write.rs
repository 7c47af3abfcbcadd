//! What persistence and the state root cost: the same signed blocks through `execute_block` on the in-memory
//! store (baseline) and on the redb + Jellyfish Merkle store, in one run; plus raw batch commits.
//!
//! Run: `cargo bench -p tensorgrid-store --bench write`.

use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::{Ledger, MemStore, Store};
use tensorgrid_store::DiskStore;
use tensorgrid_types::{
    Amount, BlockContext, Genesis, GenesisAccount, Hash, Msg, Params, SecretKey, Timestamp, Tx,
};

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (accounts, blocks, per_block) = if quick { (50, 2, 50) } else { (2_000, 10, 2_000) };
    let keys: Vec<SecretKey> = (0..accounts).map(|i| SecretKey::from_label(&format!("w{i}"))).collect();
    let genesis = Genesis {
        chain_id: "tg-bench".into(),
        genesis_time: Timestamp(1_000),
        params: Params::default(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount { address: k.address(), balance: Amount::tgr(1_000_000) })
            .collect(),
    };
    let mut nonces = vec![0u64; accounts];
    let prepared: Vec<(BlockContext, Vec<Vec<u8>>)> = (1..=blocks as u64)
        .map(|height| {
            let txs = (0..per_block)
                .map(|i| {
                    let from = i % accounts;
                    let to = keys[(i * 7 + 1) % accounts].address();
                    let tx = Tx::new(
                        "tg-bench",
                        keys[from].address(),
                        nonces[from],
                        Amount::tgr(1),
                        Msg::Send { to, amount: Amount(1) },
                    );
                    nonces[from] += 1;
                    tx.sign(&keys[from]).encode()
                })
                .collect();
            (
                BlockContext {
                    height,
                    time: Timestamp(1_000 + height * 1_000),
                    randomness: Hash::of(&height.to_le_bytes()),
                },
                txs,
            )
        })
        .collect();

    fn run<S: Store>(
        mut ledger: Ledger<S>,
        genesis: &Genesis,
        blocks: &[(BlockContext, Vec<Vec<u8>>)],
    ) -> Duration {
        ledger.init_genesis(genesis).expect("genesis");
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let t = Instant::now();
        for (ctx, txs) in blocks {
            ledger.execute_block(ctx, txs, &mut rng).expect("block");
        }
        t.elapsed()
    }

    let dir = std::env::temp_dir().join(format!("tg-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let memory = run(Ledger::new(MemStore::new()), &genesis, &prepared);
    let disk = run(Ledger::new(DiskStore::open(dir.join("a.redb")).expect("open")), &genesis, &prepared);
    let total = blocks * per_block;
    let tps = |d: Duration| total as f64 / d.as_secs_f64();
    println!("store benchmark: {blocks} blocks x {per_block} transfers among {accounts} accounts");
    println!(
        "  execute_block on MemStore (baseline)       {:>8.0} tx/s  {:>7.1} ms/block",
        tps(memory),
        memory.as_secs_f64() * 1e3 / blocks as f64
    );
    println!(
        "  execute_block on DiskStore (redb + JMT)    {:>8.0} tx/s  {:>7.1} ms/block",
        tps(disk),
        disk.as_secs_f64() * 1e3 / blocks as f64
    );
    println!("  ratio disk / memory: {:.2}", tps(disk) / tps(memory));

    // Raw commits: batches of distinct 40-byte keys with 200-byte values, each one durable transaction.
    let mut store = DiskStore::open(dir.join("b.redb")).expect("open");
    let (batches, per_batch) = if quick { (2, 100) } else { (20, 5_000) };
    let t = Instant::now();
    for b in 0..batches {
        let batch = (0..per_batch)
            .map(|i| {
                (
                    Hash::of(&[b as u8, (i >> 8) as u8, i as u8])
                        .0
                        .iter()
                        .chain(&[0u8; 8])
                        .copied()
                        .collect::<Vec<u8>>(),
                    Some(vec![7u8; 200]),
                )
            })
            .collect();
        store.write_batch(batch).expect("commit");
    }
    let raw = t.elapsed();
    println!(
        "  raw write_batch: {:.0} keys/s ({} batches of {per_batch}, {:.1} ms per batch incl. tree update and fsync)",
        (batches * per_batch) as f64 / raw.as_secs_f64(),
        batches,
        raw.as_secs_f64() * 1e3 / batches as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
