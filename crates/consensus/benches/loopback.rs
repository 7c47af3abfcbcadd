//! Four validators on loopback TCP (real p2p, real consensus, real disk), one process: how many
//! transactions per second the chain sustains and how long blocks take to finalize under that load.
//!
//! `cargo bench -p tensorgrid-consensus --bench loopback` (env: `TG_BENCH_ACCOUNTS`, `TG_BENCH_TXS_PER_ACCOUNT`).
//! Transfers are signed before the clock starts and handed to the validators' mempools directly (as the API
//! would after decoding), spread over the four; gossip spreads them further. The figures are for one 2-core
//! machine running all four validators, so each validator has half a core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commonware_runtime::Runner as _;
use tensorgrid_consensus::launch::prepare_testnet;
use tensorgrid_consensus::node::{start_validator, Home};
use tensorgrid_consensus::Chain;
use tensorgrid_types::{Amount, GenesisAccount, Msg, SecretKey, SignedTx, Timestamp, Tx};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nonce(chain: &Chain, key: &SecretKey) -> u64 {
    chain.core().lock().ledger().account(&key.address()).ok().flatten().map(|a| a.nonce).unwrap_or(0)
}

// A benchmark reports on stdout.
#[allow(clippy::print_stdout)]
fn main() {
    let accounts = env("TG_BENCH_ACCOUNTS", 1_000);
    let per_account = env("TG_BENCH_TXS_PER_ACCOUNT", 40).min(60);
    let dir = tempfile::tempdir().expect("temp dir");
    let keys: Vec<SecretKey> = (0..accounts).map(|i| SecretKey::from_label(&format!("bench-{i}"))).collect();
    let funded = keys
        .iter()
        .map(|k| GenesisAccount { address: k.address(), balance: Amount::tgr(1_000_000) })
        .collect();
    let base_port = 29_000 + (std::process::id() % 500) as u16 * 8;
    let nodes = prepare_testnet(dir.path(), 4, base_port, funded, 1_000).expect("homes");
    let homes: Vec<Home> = nodes.iter().map(|n| Home::load(&n.home).expect("home loads")).collect();
    let chain_id = homes[0].spec.genesis.chain_id.clone();

    println!("signing {} transfers from {accounts} accounts …", accounts * per_account);
    let mut txs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); per_account];
    for (round, batch) in txs.iter_mut().enumerate() {
        for (i, key) in keys.iter().enumerate() {
            let to = keys[(i + 1) % accounts].address();
            let msg = Msg::Send { to, amount: Amount(1) };
            batch.push(
                Tx::new(chain_id.clone(), key.address(), round as u64, Amount::tgr(1), msg)
                    .sign(key)
                    .encode(),
            );
        }
    }
    let total = accounts * per_account;

    // Baseline in the same run, since the machine's speed drifts between runs: one-by-one signature checks
    // per second on one thread, the unit the chain spends most of its time in.
    let sample: Vec<SignedTx> =
        txs[0].iter().take(2_000).map(|raw| SignedTx::decode(raw).expect("decodes")).collect();
    let started = Instant::now();
    let mut checks = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        for tx in &sample {
            tx.verify().expect("valid");
            checks += 1;
        }
    }
    let verify_rate = checks as f64 / started.elapsed().as_secs_f64();
    println!("baseline: {verify_rate:.0} signature checks/s on one thread");

    let storage = dir.path().join("runtime");
    let config =
        commonware_runtime::tokio::Config::new().with_worker_threads(2).with_storage_directory(storage);
    commonware_runtime::tokio::Runner::new(config).start(|context| async move {
        let mut validators = Vec::new();
        for (i, home) in homes.iter().enumerate() {
            let v = start_validator(&context, home, &format!("validator-{i}")).await.expect("validator starts");
            validators.push(v);
        }
        let chains: Vec<Arc<Chain>> = validators.iter().map(|v| v.chain.clone()).collect();
        for chain in &chains {
            chain.wait_committed(3).await;
        }
        let idle_height = chains[0].committed_height();
        let idle_stats = chains[0].stats();
        println!(
            "4 validators up at height {idle_height}; idle finality p50 {} ms",
            idle_stats.finality_quantile(0.5).unwrap_or(0)
        );

        let start = Instant::now();
        let start_height = chains[0].committed_height();
        let submitted_before = chains[0].stats().blocks;
        for (round, batch) in txs.into_iter().enumerate() {
            for (i, raw) in batch.into_iter().enumerate() {
                let v = &validators[i % 4];
                let admitted = v.chain.core().lock().submit(raw.clone(), Timestamp::from_millis(0));
                if admitted.is_ok() {
                    v.gossip.send(raw);
                }
            }
            // Let the consensus tasks run between rounds.
            if round % 4 == 3 {
                tokio::task::yield_now().await;
            }
        }
        let submit_time = start.elapsed();
        let last = keys.last().expect("accounts");
        loop {
            let done = chains.iter().all(|c| nonce(c, last) >= per_account as u64 && nonce(c, &keys[0]) >= per_account as u64);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        let stats = chains[0].stats();
        let loaded_blocks = (stats.blocks - submitted_before) as usize;
        let finality: Vec<u64> = stats.finality_ms.iter().rev().take(loaded_blocks.max(1)).copied().collect();
        let mut sorted = finality.clone();
        sorted.sort_unstable();
        let q = |p: f64| sorted.get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(0);
        let tps = total as f64 / elapsed.as_secs_f64();
        println!("submitted {total} transfers in {:.2} s (admission with signature checks on the receiving validator)", submit_time.as_secs_f64());
        println!(
            "committed on all 4 validators in {:.2} s over {} blocks (heights {}..{})",
            elapsed.as_secs_f64(),
            chains[0].committed_height() - start_height,
            start_height + 1,
            chains[0].committed_height()
        );
        println!("sustained throughput: {tps:.0} tx/s (target 10,000: ratio {:.2})", tps / 10_000.0);
        println!(
            "  = {:.3} transactions per one-thread signature check of the baseline (machine-speed independent)",
            tps / verify_rate
        );
        println!(
            "finality under load (block timestamp → commit at validator 0): p50 {} ms, p99 {} ms (target p50 ≤ 300 ms: ratio {:.2})",
            q(0.5),
            q(0.99),
            q(0.5) as f64 / 300.0
        );
        for v in validators {
            v.abort();
        }
    });
}
