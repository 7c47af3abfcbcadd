//! Fuzzer bytes become blocks: garbage, corrupted and well-signed transactions of every kind, at arbitrary
//! time steps. Block execution must never fail or panic on them, and every invariant must hold after each
//! block.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tensorgrid_ledger::testing::TestChain;
use tensorgrid_types::job::{JobRequirements, result_commitment, JobSpec, Workload, WorkloadKind};
use tensorgrid_types::market::{GroupSpec, OrderId};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::resources::{Attribute, PlacementRequirements, ResourceUnit, ResourceUnits};
use tensorgrid_types::{Amount, Hash, Msg, Params, SecretKey};

const KEYS: usize = 5;

fn params() -> Params {
    Params {
        bid_window_ms: 5_000,
        max_bids_per_order: 2,
        max_bids_per_job: 3,
        max_redundancy: 3,
        min_provider_stake: Amount(1_000),
        min_deployment_deposit: Amount(1_000),
        bid_deposit: Amount(100),
        job_bid_deposit: Amount(50),
        heartbeat_grace_ms: 180_000,
        unbonding_period_ms: 600_000,
        challenge_period_ms: 60_000,
        min_job_window_ms: 1_000,
        ..Params::default()
    }
}

fn amount(u: &mut Unstructured<'_>) -> Result<Amount> {
    Ok(Amount(match u.int_in_range(0..=9u8)? {
        0 => u.arbitrary::<u128>()?,
        1 => 0,
        _ => u128::from(u.int_in_range(1..=5_000_000u32)?),
    }))
}

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.arbitrary::<String>()?,
        _ => format!("https://p{}.example.org", u.int_in_range(0..=9u8)?),
    })
}

fn group(u: &mut Unstructured<'_>, i: usize) -> Result<GroupSpec> {
    let mut attributes = Vec::new();
    if u.ratio(1, 4)? {
        attributes.push(Attribute::new("region", if u.arbitrary()? { "eu" } else { "us" }));
    }
    Ok(GroupSpec {
        name: format!("g{i}"),
        requirements: PlacementRequirements { attributes, ..Default::default() },
        resources: vec![ResourceUnit {
            resources: ResourceUnits {
                cpu_millis: u.int_in_range(0..=4000)?,
                memory_bytes: u.int_in_range(0..=1 << 30)?,
                ..Default::default()
            },
            count: u.int_in_range(0..=3)?,
        }],
        max_price: amount(u)?,
    })
}

fn msg(u: &mut Unstructured<'_>, keys: &[SecretKey], signer: usize) -> Result<Msg> {
    let who = |u: &mut Unstructured<'_>| -> Result<usize> { u.choose_index(keys.len()) };
    let dseq = |u: &mut Unstructured<'_>| -> Result<u64> { u.int_in_range(0..=6) };
    let job = |u: &mut Unstructured<'_>| -> Result<u64> { u.int_in_range(0..=6) };
    let order = |u: &mut Unstructured<'_>| -> Result<OrderId> {
        Ok(OrderId { dseq: u.int_in_range(0..=6)?, gseq: u.int_in_range(0..=3)? })
    };
    Ok(match u.int_in_range(0..=20u8)? {
        0 => {
            // Now and then to a module's account, which must refuse it and keep its invariant.
            const MODULES: [&str; 6] = ["escrow", "bonds", "bid-deposits", "jobs", "fee-collector", "channels"];
            let to = if u.ratio(1u8, 4u8)? {
                tensorgrid_types::Address::module(MODULES[u.choose_index(MODULES.len())?])
            } else {
                keys[who(u)?].address()
            };
            Msg::Send { to, amount: amount(u)? }
        }
        1 => Msg::RegisterProvider {
            host_uri: text(u)?,
            attributes: vec![Attribute::new("region", if u.arbitrary()? { "eu" } else { "us" })],
            info: ProviderInfo::default(),
            stake: amount(u)?,
            runtimes: vec!["wasi-p1".into()],
            referee: u.arbitrary()?,
        },
        2 => Msg::UpdateProvider {
            host_uri: Some(text(u)?),
            attributes: None,
            info: None,
            runtimes: None,
            referee: u.arbitrary()?,
        },
        3 => Msg::DeregisterProvider,
        4 => Msg::Bond { amount: amount(u)? },
        5 => Msg::Unbond { amount: amount(u)? },
        6 | 7 => Msg::Heartbeat,
        8 => {
            let n = u.int_in_range(0..=3)?;
            let groups = (0..n).map(|i| group(u, i)).collect::<Result<Vec<_>>>()?;
            Msg::CreateDeployment { groups, deposit: amount(u)?, manifest_hash: Hash::ZERO }
        }
        9 => Msg::DepositDeployment { dseq: dseq(u)?, amount: amount(u)? },
        10 => Msg::CloseDeployment { dseq: dseq(u)? },
        11 | 12 => Msg::CreateBid { order: order(u)?, price: amount(u)? },
        13 => Msg::CloseBid { bid: order(u)?.bid(keys[who(u)?].address()) },
        14 => Msg::AcceptBid { bid: order(u)?.bid(keys[who(u)?].address()) },
        15 => Msg::CloseLease { lease: order(u)?.bid(keys[who(u)?].address()) },
        16 => Msg::WithdrawLease { lease: order(u)?.bid(keys[who(u)?].address()) },
        17 => Msg::SubmitJob {
            spec: JobSpec {
                workload: Workload {
                    kind: WorkloadKind::Wasm,
                    hash: Hash::ZERO,
                    runtime: "wasi-p1".into(),
                    args: vec![],
                },
                inputs: vec![],
                resources: ResourceUnits { cpu_millis: 1000, memory_bytes: 1 << 20, ..Default::default() },
                max_fuel: u.int_in_range(0..=10)?,
                redundancy: u.int_in_range(0..=4)?,
                budget: amount(u)?,
                bid_window_ms: u.int_in_range(0..=60_000)?,
                run_timeout_ms: u.int_in_range(0..=60_000)?,
                reveal_window_ms: u.int_in_range(0..=60_000)?,
                requirements: JobRequirements {
                    min_completed: u.int_in_range(0..=2)?,
                    max_slashes: u.arbitrary()?,
                },
            },
        },
        18 => Msg::BidJob { job: job(u)?, price: amount(u)? },
        19 => {
            let result = Hash::of(&[u.int_in_range(0..=1u8)?]);
            Msg::CommitResult { job: job(u)?, commitment: result_commitment(&result, &keys[signer].address(), &[1; 32]) }
        }
        _ => match u.int_in_range(0..=3u8)? {
            0 => Msg::CancelJob { job: job(u)? },
            1 => Msg::DisputeJob { job: job(u)?, deposit: amount(u)? },
            2 => Msg::ConfirmJobContent { job: job(u)? },
            _ => Msg::RevealResult { job: job(u)?, result_hash: Hash::of(&[u.int_in_range(0..=1u8)?]), salt: [1; 32] },
        },
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let keys: Vec<SecretKey> = (0..KEYS).map(|i| SecretKey::from_label(&format!("fuzz-{i}"))).collect();
    let funded: Vec<(&SecretKey, Amount)> = keys.iter().map(|k| (k, Amount::tgr(1_000))).collect();
    let mut chain = TestChain::with_seed(&funded, params(), 0);
    for _ in 0..u.int_in_range(1..=8u8)? {
        let step = u.int_in_range(1..=400_000u64)?;
        let mut txs = Vec::new();
        for _ in 0..u.int_in_range(0..=6u8)? {
            let signer = u.choose_index(KEYS)?;
            let tx = match u.int_in_range(0..=9u8)? {
                0 => {
                    let len = u.int_in_range(0..=200usize)?;
                    u.bytes(len)?.to_vec()
                }
                1 => {
                    let mut tx = chain.tx(&keys[signer], Msg::Heartbeat);
                    let at = u.choose_index(tx.len())?;
                    tx[at] ^= u.int_in_range(1..=255u8)?;
                    tx
                }
                _ => {
                    let m = msg(&mut u, &keys, signer)?;
                    chain.tx(&keys[signer], m)
                }
            };
            txs.push(tx);
        }
        let at = chain.now.plus(step);
        chain.try_block_at(at, &txs).unwrap_or_else(|e| panic!("block execution failed: {e}"));
        chain.ledger.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
