//! Transactions per second through `execute_block`, signature verification included, on one thread.
//!
//! Blocks mix the market's common transactions: 60% transfers, 25% bids on open orders and 15% lease
//! creations (a tenant accepting a bid placed in the previous block). Every transaction is signed before the
//! clock starts. Two baselines are measured in the same run on the same transactions: ed25519 verification
//! one by one, and batched, so the figure can be read against what the signatures alone cost on this machine.
//!
//! Run: `cargo bench -p tensorgrid-ledger --bench execute_block` (pin to one core with `taskset -c 0` for
//! steadier figures). `TG_BENCH_BLOCKS` and `TG_BENCH_TXS` change the shape.

use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::testing::TestChain;
use tensorgrid_ledger::{Ledger, MemStore};
use tensorgrid_types::crypto::verify_batch;
use tensorgrid_types::market::{GroupSpec, OrderId};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::resources::{ResourceUnit, ResourceUnits};
use tensorgrid_types::tx::signing_bytes_of_raw;
use tensorgrid_types::{Amount, BlockContext, Hash, Msg, Params, SecretKey, SignedTx, Timestamp};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn group() -> GroupSpec {
    GroupSpec {
        name: "web".into(),
        requirements: Default::default(),
        resources: vec![ResourceUnit {
            resources: ResourceUnits { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() },
            count: 1,
        }],
        max_price: Amount::tgr(10),
    }
}

struct Prepared {
    base: MemStore,
    start: Timestamp,
    height: u64,
    blocks: Vec<Vec<Vec<u8>>>,
}

/// Builds the starting state (funded accounts, registered providers, one open deployment per tenant, bids on
/// the first orders) and signs the measured blocks.
fn prepare(blocks: usize, per_block: usize) -> Prepared {
    let transfers = per_block * 60 / 100;
    let bids = per_block * 25 / 100;
    let accepts = per_block - transfers - bids;
    let params = Params {
        heartbeat_grace_ms: 1 << 40,
        bid_window_ms: 1 << 40,
        max_bids_per_order: 4,
        ..Params::default()
    };
    let spenders: Vec<SecretKey> =
        (0..transfers).map(|i| SecretKey::from_label(&format!("spender-{i}"))).collect();
    let providers: Vec<SecretKey> =
        (0..bids).map(|i| SecretKey::from_label(&format!("provider-{i}"))).collect();
    let deployments_needed = accepts.max(bids) * (blocks + 1);
    let tenants: Vec<SecretKey> =
        (0..deployments_needed).map(|i| SecretKey::from_label(&format!("tenant-{i}"))).collect();
    let funded: Vec<(&SecretKey, Amount)> =
        spenders.iter().chain(&providers).chain(&tenants).map(|k| (k, Amount::tgr(1_000_000))).collect();
    let mut chain = TestChain::new(&funded, params);

    let register: Vec<Vec<u8>> = providers
        .iter()
        .map(|p| {
            chain.tx(
                p,
                Msg::RegisterProvider {
                    host_uri: "https://provider.example.org".into(),
                    attributes: vec![],
                    info: ProviderInfo::default(),
                    stake: Params::default().min_provider_stake,
                    runtimes: vec!["wasi-p1".into()],
                    referee: false,
                },
            )
        })
        .collect();
    chain.block(&register);
    for chunk in tenants.chunks(2_000) {
        let txs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|t| {
                chain.tx(
                    t,
                    Msg::CreateDeployment {
                        groups: vec![group()],
                        deposit: Amount::tgr(100),
                        manifest_hash: Hash::ZERO,
                    },
                )
            })
            .collect();
        chain.block(&txs);
    }
    // dseq i+1 belongs to tenant i. Orders [0, accepts) get bids now, to be accepted in the first block.
    let bid_on = |chain: &mut TestChain, provider: &SecretKey, dseq: u64| {
        chain.tx(provider, Msg::CreateBid { order: OrderId { dseq, gseq: 1 }, price: Amount::tgr(1) })
    };
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let initial: Vec<Vec<u8>> = (0..accepts)
        .map(|i| {
            let p = i % providers.len();
            pending.push((i, p));
            bid_on(&mut chain, &providers[p], i as u64 + 1)
        })
        .collect();
    chain.block(&initial);

    let base = chain.ledger.store().clone();
    let (start, height) = (chain.now, chain.height);
    let mut next_order = accepts;
    let mut signed = Vec::new();
    for b in 0..blocks {
        let mut txs = Vec::with_capacity(per_block);
        for (i, s) in spenders.iter().enumerate() {
            let to = spenders[(i + 1 + b) % spenders.len()].address();
            txs.push(chain.tx(s, Msg::Send { to, amount: Amount(1_000) }));
        }
        let mut placed = Vec::new();
        for (p, provider) in providers.iter().enumerate() {
            let order = next_order;
            next_order += 1;
            placed.push((order, p));
            txs.push(bid_on(&mut chain, provider, order as u64 + 1));
        }
        for (order, p) in pending.drain(..).take(accepts) {
            let bid = OrderId { dseq: order as u64 + 1, gseq: 1 }.bid(providers[p].address());
            txs.push(chain.tx(&tenants[order], Msg::AcceptBid { bid }));
        }
        pending = placed;
        // Keep the chain's view of nonces moving without executing: the measured run executes these.
        chain.block(&txs);
        signed.push(txs);
    }
    Prepared { base, start, height, blocks: signed }
}

fn run_blocks(prepared: &Prepared) -> (Duration, usize) {
    let mut ledger = Ledger::new(prepared.base.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut elapsed = Duration::ZERO;
    let mut succeeded = 0;
    for (i, txs) in prepared.blocks.iter().enumerate() {
        let height = prepared.height + 1 + i as u64;
        let ctx = BlockContext {
            height,
            time: prepared.start.plus(1_000 * (i as u64 + 1)),
            randomness: Hash::of(&height.to_le_bytes()),
        };
        let t = Instant::now();
        let out = ledger.execute_block(&ctx, txs, &mut rng).expect("block executes");
        elapsed += t.elapsed();
        succeeded += out.receipts.iter().filter(|r| r.succeeded()).count();
    }
    (elapsed, succeeded)
}

fn time_signatures(prepared: &Prepared, batched: bool) -> Duration {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut elapsed = Duration::ZERO;
    for txs in &prepared.blocks {
        let decoded: Vec<SignedTx> = txs.iter().map(|raw| SignedTx::decode(raw).expect("decodes")).collect();
        let messages: Vec<Vec<u8>> =
            txs.iter().map(|raw| signing_bytes_of_raw(raw).expect("long enough")).collect();
        let t = Instant::now();
        if batched {
            let verdicts = verify_batch(
                decoded.iter().zip(&messages).map(|(tx, m)| (&tx.tx.signer, m.as_slice(), &tx.signature)),
                &mut rng,
            );
            assert!(verdicts.iter().all(Result::is_ok));
        } else {
            for (tx, m) in decoded.iter().zip(&messages) {
                tensorgrid_types::crypto::verify(&tx.tx.signer, m, &tx.signature).expect("valid");
            }
        }
        elapsed += t.elapsed();
    }
    elapsed
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let blocks = env("TG_BENCH_BLOCKS", if quick { 1 } else { 5 });
    let per_block = env("TG_BENCH_TXS", if quick { 200 } else { 2_000 });
    let rounds = if quick { 1 } else { 5 };
    let t = Instant::now();
    let prepared = prepare(blocks, per_block);
    let total = blocks * per_block;
    println!("execute_block benchmark: {blocks} blocks x {per_block} signed txs (60% transfers, 25% bids, 15% lease creations)");
    println!("  setup: {:.1}s, one thread, best of {rounds} rounds", t.elapsed().as_secs_f64());

    let best = |f: &dyn Fn() -> Duration| (0..rounds).map(|_| f()).min().unwrap_or_default();
    let single = best(&|| time_signatures(&prepared, false));
    let batch = best(&|| time_signatures(&prepared, true));
    let exec = best(&|| {
        let (elapsed, succeeded) = run_blocks(&prepared);
        assert_eq!(succeeded, total, "every benchmark transaction succeeds");
        elapsed
    });

    let exec_tps = per_second(total, exec);
    println!("  baseline: ed25519 verification one by one   {:>8.0} tx/s", per_second(total, single));
    println!("  baseline: ed25519 verification batched     {:>8.0} tx/s", per_second(total, batch));
    println!("  execute_block (decode, verify, execute)    {:>8.0} tx/s", exec_tps);
    let per_tx = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
    println!(
        "  per tx: {:.1} us in execute_block, of which {:.1} us batched verification and {:.1} us the rest",
        per_tx(exec),
        per_tx(batch),
        per_tx(exec.saturating_sub(batch))
    );
    println!(
        "  ratio execute_block / batched verification alone: {:.2}",
        exec_tps / per_second(total, batch)
    );
    println!("  target 50000 tx/s: {}", if exec_tps >= 50_000.0 { "met" } else { "missed" });
}
