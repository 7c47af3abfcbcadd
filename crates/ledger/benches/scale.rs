//! Per-block execution time must not grow with the number of active leases (escrow settles lazily; deadlines
//! live in a time index). This grows the chain to increasing numbers of active leases and, at each size, times
//! the same kinds of blocks: empty ones (deadline handling only) and busy ones (a heartbeat from every
//! provider's share, transfers, and providers withdrawing from leases, which settles whole escrows).
//!
//! Run: `cargo bench -p tensorgrid-ledger --bench scale`. `TG_SCALE_LEASES=10000,100000,1000000` and
//! `TG_SCALE_PROVIDERS=10000` set the sizes (the defaults keep it to a couple of minutes).

use std::time::{Duration, Instant};

use tensorgrid_ledger::testing::TestChain;
use tensorgrid_types::market::{GroupSpec, OrderId};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::resources::{ResourceUnit, ResourceUnits};
use tensorgrid_types::{Amount, Hash, Msg, Params, SecretKey};

const GROUPS: usize = 20;

fn group(i: usize) -> GroupSpec {
    GroupSpec {
        name: format!("g{i}"),
        requirements: Default::default(),
        resources: vec![ResourceUnit {
            resources: ResourceUnits { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() },
            count: 1,
        }],
        max_price: Amount::tgr(1),
    }
}

struct Grid {
    chain: TestChain,
    providers: Vec<SecretKey>,
    tenants: Vec<SecretKey>,
    spenders: Vec<SecretKey>,
    leases: usize,
    /// (dseq, gseq, provider index) of every lease made.
    made: Vec<(u64, u32, usize)>,
    /// Time spent in blocks whose only work was closing bid windows, and how many leases they created.
    window_blocks: (Duration, usize),
}

impl Grid {
    fn new(providers: usize, max_leases: usize) -> Grid {
        let params = Params {
            // Long windows and grace keep setup free of deadlines; busy blocks still send heartbeats.
            bid_window_ms: 1_000,
            heartbeat_grace_ms: 1 << 40,
            max_bids_per_order: 2,
            ..Params::default()
        };
        let providers: Vec<SecretKey> =
            (0..providers).map(|i| SecretKey::from_label(&format!("p{i}"))).collect();
        let tenants: Vec<SecretKey> =
            (0..max_leases.div_ceil(GROUPS)).map(|i| SecretKey::from_label(&format!("t{i}"))).collect();
        let spenders: Vec<SecretKey> = (0..1_000).map(|i| SecretKey::from_label(&format!("s{i}"))).collect();
        let funded: Vec<(&SecretKey, Amount)> =
            providers.iter().chain(&tenants).chain(&spenders).map(|k| (k, Amount::tgr(1_000_000))).collect();
        let mut chain = TestChain::new(&funded, params);
        for chunk in providers.chunks(5_000) {
            let txs: Vec<Vec<u8>> = chunk
                .iter()
                .map(|p| {
                    chain.tx(
                        p,
                        Msg::RegisterProvider {
                            host_uri: "https://p.example.org".into(),
                            attributes: vec![],
                            info: ProviderInfo::default(),
                            stake: Params::default().min_provider_stake,
                            runtimes: vec!["wasi-p1".into()],
                            referee: false,
                        },
                    )
                })
                .collect();
            chain.block(&txs);
        }
        Grid {
            chain,
            providers,
            tenants,
            spenders,
            leases: 0,
            made: Vec::new(),
            window_blocks: (Duration::ZERO, 0),
        }
    }

    /// Adds deployments of 20 groups until `target` leases are active; each order gets one bid and the
    /// bidding window's close turns it into a lease.
    fn grow_to(&mut self, target: usize) {
        while self.leases < target {
            let deployments = ((target - self.leases) / GROUPS).clamp(1, 500);
            let first_tenant = self.leases / GROUPS;
            let txs: Vec<Vec<u8>> = (first_tenant..first_tenant + deployments)
                .map(|t| {
                    let groups = (0..GROUPS).map(group).collect();
                    self.chain.tx(
                        &self.tenants[t],
                        Msg::CreateDeployment {
                            groups,
                            deposit: Amount::tgr(10_000),
                            manifest_hash: Hash::ZERO,
                        },
                    )
                })
                .collect();
            let out = self.chain.block(&txs);
            let dseqs: Vec<u64> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    tensorgrid_types::Event::DeploymentCreated { dseq, .. } => Some(*dseq),
                    _ => None,
                })
                .collect();
            let mut bids = Vec::new();
            for dseq in dseqs {
                for gseq in 1..=GROUPS as u32 {
                    let p = self.made.len() % self.providers.len();
                    self.made.push((dseq, gseq, p));
                    let order = OrderId { dseq, gseq };
                    bids.push(
                        self.chain.tx(&self.providers[p], Msg::CreateBid { order, price: Amount(100_000) }),
                    );
                }
            }
            self.chain.block(&bids);
            // The next block only closes those orders' bidding windows, turning every bid into a lease: a block
            // with thousands of deadlines due at once.
            let t = Instant::now();
            self.chain.advance(self.chain.params().bid_window_ms);
            self.window_blocks.0 += t.elapsed();
            self.window_blocks.1 += deployments * GROUPS;
            self.leases += deployments * GROUPS;
        }
    }

    fn time_block(&mut self, txs: Vec<Vec<u8>>) -> Duration {
        let t = Instant::now();
        self.chain.block(&txs);
        t.elapsed()
    }

    fn busy_block(&mut self, round: usize) -> Vec<Vec<u8>> {
        let mut txs = Vec::new();
        let n = self.providers.len();
        for i in 0..1_000.min(n) {
            let p = (round * 1_000 + i) % n;
            txs.push(self.chain.tx(&self.providers[p].clone(), Msg::Heartbeat));
        }
        for (i, s) in self.spenders.clone().iter().enumerate().take(500) {
            let to = self.spenders[(i + round + 1) % self.spenders.len()].address();
            txs.push(self.chain.tx(s, Msg::Send { to, amount: Amount(1) }));
        }
        for i in 0..100 {
            let (dseq, gseq, p) = self.made[(round * 7_919 + i * 104_729) % self.made.len()];
            let lease = OrderId { dseq, gseq }.bid(self.providers[p].address());
            txs.push(self.chain.tx(&self.providers[p].clone(), Msg::WithdrawLease { lease }));
        }
        txs
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("TG_SCALE_LEASES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| if quick { vec![200, 400] } else { vec![10_000, 100_000] });
    let providers: usize = std::env::var("TG_SCALE_PROVIDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 10_000 });
    let rounds = if quick { 2 } else { 15 };
    let max = sizes.iter().copied().max().unwrap_or(0);
    let t = Instant::now();
    let mut grid = Grid::new(providers, max);
    println!("scale benchmark: {providers} providers; per-block time as active leases grow (median of {rounds} blocks)");
    println!(
        "  {:>10} {:>14} {:>26} {:>28}",
        "leases", "empty block", "busy block (1600 txs)", "deadline-heavy blocks"
    );
    let mut rows = Vec::new();
    for size in sizes {
        grid.grow_to(size);
        let empty = median((0..rounds).map(|_| grid.time_block(Vec::new())).collect());
        let busy = median(
            (0..rounds)
                .map(|r| {
                    let txs = grid.busy_block(r);
                    grid.time_block(txs)
                })
                .collect(),
        );
        let (window_time, window_leases) = std::mem::take(&mut grid.window_blocks);
        println!(
            "  {:>10} {:>11.3} ms {:>23.3} ms {:>17.1} us per lease",
            grid.leases,
            empty.as_secs_f64() * 1e3,
            busy.as_secs_f64() * 1e3,
            window_time.as_secs_f64() * 1e6 / window_leases.max(1) as f64
        );
        rows.push((grid.leases, empty, busy));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "  busy-block time at {} leases / at {} leases: {:.2} (flat means close to 1; a per-lease scan would be {:.0})",
            last.0,
            first.0,
            last.2.as_secs_f64() / first.2.as_secs_f64(),
            last.0 as f64 / first.0 as f64
        );
    }
    println!("  total time {:.0}s", t.elapsed().as_secs_f64());
}
