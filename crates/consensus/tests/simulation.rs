//! Seeded deterministic simulations of four validators (commonware's deterministic runtime and simulated
//! network) under random transaction load: all honest, one crashing and restarting, one partitioned and
//! healed, and lossy links. Each checks that every validator finalizes the same blocks with the same state
//! roots, that every admitted transaction commits exactly once, that progress resumes after the fault, and
//! that the same seed gives the same chain twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::Signer as _;
use commonware_p2p::simulated::{self, Link, Network as SimNetwork, Oracle};
use commonware_runtime::{deterministic, Clock, Quota, Runner as _, Supervisor as _};
use commonware_utils::{NZUsize, NZU32};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tensorgrid_consensus::{Chain, EngineConfig, Network, Validator};
use tensorgrid_node::mempool::MempoolConfig;
use tensorgrid_store::MIN_HISTORY;
use tensorgrid_types::{Amount, Genesis, GenesisAccount, Hash, Msg, Params, SecretKey, Timestamp, Tx};

const VALIDATORS: usize = 4;
const ACCOUNTS: usize = 8;
const CHAIN_ID: &str = "tg-sim";
const BLOCKS_PER_EPOCH: u64 = 20;
const QUOTA: Quota = Quota::per_second(NZU32!(2_000));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Validator 3 crashes (all its tasks aborted) and restarts from its disk.
    CrashRestart,
    /// Validator 3 loses every link for a while, then they come back.
    Partition,
    /// Every link has latency, jitter and 20% loss.
    Lossy,
}

/// What a run finalized: per validator, height → state root after it, and height → block digest for the
/// heights it committed since it last started.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    roots: Vec<BTreeMap<u64, Hash>>,
    digests: Vec<BTreeMap<u64, String>>,
    admitted: usize,
    healed_at: u64,
    top: u64,
}

fn link(fault: Fault) -> Link {
    match fault {
        Fault::Lossy => Link {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(40),
            success_rate: commonware_utils::probability!(0.8),
        },
        _ => Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: commonware_utils::probability!(1.0),
        },
    }
}

async fn connect(
    oracle: &mut Oracle<PublicKey, deterministic::Context>,
    a: &PublicKey,
    b: &PublicKey,
    link: Link,
) {
    let _ = oracle.add_link(a.clone(), b.clone(), link.clone()).await;
    let _ = oracle.add_link(b.clone(), a.clone(), link).await;
}

async fn disconnect(oracle: &mut Oracle<PublicKey, deterministic::Context>, a: &PublicKey, b: &PublicKey) {
    let _ = oracle.remove_link(a.clone(), b.clone()).await;
    let _ = oracle.remove_link(b.clone(), a.clone()).await;
}

fn pick(rng: &mut ChaCha20Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn tx_keys() -> Vec<SecretKey> {
    (0..ACCOUNTS).map(|i| SecretKey::from_label(&format!("sim-account-{i}"))).collect()
}

async fn start_validator(
    context: &deterministic::Context,
    oracle: &Oracle<PublicKey, deterministic::Context>,
    index: usize,
    signer: &PrivateKey,
    participants: &[PublicKey],
    home: &Path,
    genesis: &Genesis,
) -> Validator {
    let (chain, genesis_block) =
        Chain::open(&home.join("state.redb"), genesis, MempoolConfig::default(), Some(MIN_HISTORY))
            .expect("the ledger opens");
    let me = signer.public_key();
    let control = oracle.control(me.clone());
    let network = Network::register(
        |channel| {
            let control = control.clone();
            async move { control.register(channel, QUOTA).await.expect("channel registers") }
        },
        oracle.manager(),
        oracle.control(me.clone()),
    )
    .await;
    let mut config =
        EngineConfig::new(signer.clone(), participants.to_vec(), format!("validator-{index}"), genesis_block);
    config.leader_timeout = Duration::from_millis(500);
    config.certification_timeout = Duration::from_secs(1);
    config.timeout_retry = Duration::from_secs(2);
    config.block_interval = Duration::from_millis(50);
    // Short epochs, so every run crosses several boundaries (and the crash and partition straddle some).
    config.blocks_per_epoch = BLOCKS_PER_EPOCH;
    tensorgrid_consensus::start(
        context.child("validator").with_attribute("index", index),
        config,
        chain,
        network,
    )
    .await
}

fn run(seed: u64, fault: Fault) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(900)));
    let runner = deterministic::Runner::new(config);
    let root = dir.path().to_path_buf();
    runner.start(|context| async move {
        let signers: Vec<PrivateKey> =
            (0..VALIDATORS as u64).map(|i| PrivateKey::from_seed(1000 + i)).collect();
        let mut participants: Vec<PublicKey> = signers.iter().map(|s| s.public_key()).collect();
        participants.sort();
        let keys = tx_keys();
        let now_ms = context.current().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            genesis_time: Timestamp::from_millis(now_ms),
            params: Params::default(),
            accounts: keys
                .iter()
                .map(|k| GenesisAccount { address: k.address(), balance: Amount::tgr(1_000_000) })
                .collect(),
        };

        let (network, mut oracle) = SimNetwork::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 8 << 20,
                max_peers_per_set: NZUsize!(VALIDATORS),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            participants.clone(),
        )
        .await;
        network.start();
        for (i, a) in participants.iter().enumerate() {
            for b in participants.iter().skip(i + 1) {
                connect(&mut oracle, a, b, link(fault)).await;
            }
        }

        let homes: Vec<PathBuf> = (0..VALIDATORS).map(|i| root.join(format!("v{i}"))).collect();
        for home in &homes {
            std::fs::create_dir_all(home).expect("home dir");
        }
        let mut validators: Vec<Option<Validator>> = Vec::new();
        for i in 0..VALIDATORS {
            let v =
                start_validator(&context, &oracle, i, &signers[i], &participants, &homes[i], &genesis).await;
            validators.push(Some(v));
        }
        let faulty = 3usize;
        let faulty_key = signers[faulty].public_key();

        // Load: each account sends to a random other account through a random live validator (the faulty one
        // only while it is up), one transaction at a time per account, waiting until the last one commits.
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut next_nonce = vec![0u64; ACCOUNTS];
        let mut admitted: BTreeMap<Hash, (usize, u64)> = BTreeMap::new();
        let mut faulty_down = false;
        let mut healed_at = 0u64;
        let highest = |validators: &[Option<Validator>]| {
            validators.iter().flatten().map(|v| v.chain.committed_height()).max().unwrap_or(0)
        };
        let mut step = 0u64;
        let load_steps = 120u64;
        while step < load_steps {
            step += 1;
            context.sleep(Duration::from_millis(100)).await;
            match (fault, step) {
                (Fault::CrashRestart, 30) => {
                    if let Some(v) = validators[faulty].take() {
                        v.abort();
                    }
                    faulty_down = true;
                }
                (Fault::CrashRestart, 70) => {
                    let v = start_validator(
                        &context,
                        &oracle,
                        faulty,
                        &signers[faulty],
                        &participants,
                        &homes[faulty],
                        &genesis,
                    )
                    .await;
                    validators[faulty] = Some(v);
                    faulty_down = false;
                    healed_at = highest(&validators);
                }
                (Fault::Partition, 30) => {
                    for other in participants.iter().filter(|p| **p != faulty_key) {
                        disconnect(&mut oracle, &faulty_key, other).await;
                    }
                    faulty_down = true;
                }
                (Fault::Partition, 70) => {
                    for other in participants.iter().filter(|p| **p != faulty_key) {
                        connect(&mut oracle, &faulty_key, other, link(fault)).await;
                    }
                    faulty_down = false;
                    healed_at = highest(&validators);
                }
                _ => {}
            }
            let from = pick(&mut rng, ACCOUNTS);
            let chain = {
                let live: Vec<usize> = (0..VALIDATORS).filter(|i| !(faulty_down && *i == faulty)).collect();
                let pick = live[pick(&mut rng, live.len())];
                validators[pick].as_ref().map(|v| (v.chain.clone(), v.gossip.clone()))
            };
            let Some((chain, gossip)) = chain else { continue };
            let committed_nonce = {
                let core = chain.core().lock();
                core.ledger().account(&keys[from].address()).ok().flatten().map(|a| a.nonce).unwrap_or(0)
            };
            if committed_nonce < next_nonce[from] {
                continue;
            }
            let to = keys[(from + 1 + pick(&mut rng, ACCOUNTS - 1)) % ACCOUNTS].address();
            let amount = Amount(1 + pick(&mut rng, 1_000) as u128);
            let raw = Tx::new(
                CHAIN_ID,
                keys[from].address(),
                next_nonce[from],
                Amount::tgr(1),
                Msg::Send { to, amount },
            )
            .sign(&keys[from])
            .encode();
            let submitted = chain.core().lock().submit(raw.clone(), Timestamp::from_millis(0));
            if let Ok(hash) = submitted {
                gossip.send(raw);
                admitted.insert(hash, (from, next_nonce[from]));
                next_nonce[from] += 1;
            }
        }

        // Drain: every validator reaches the height at which every admitted transaction is committed.
        let target_nonces = next_nonce.clone();
        let mut waited = 0;
        loop {
            let done = validators.iter().flatten().all(|v| {
                let core = v.chain.core().lock();
                keys.iter().zip(&target_nonces).all(|(k, n)| {
                    core.ledger().account(&k.address()).ok().flatten().map(|a| a.nonce).unwrap_or(0) >= *n
                })
            });
            if done {
                break;
            }
            waited += 1;
            assert!(
                waited < 600,
                "{fault:?}: admitted transactions did not all commit within 60 s of load ending"
            );
            context.sleep(Duration::from_millis(100)).await;
        }
        let top = validators.iter().flatten().map(|v| v.chain.committed_height()).max().unwrap_or(0);
        for v in validators.iter().flatten() {
            v.chain.wait_committed(top).await;
            assert!(v.chain.halted().is_none(), "{fault:?}: a validator halted: {:?}", v.chain.halted());
        }
        // Progress resumed after the fault: blocks were finalized after it healed.
        assert!(top >= healed_at + 5, "{fault:?}: {top} blocks finalized, {healed_at} when the fault healed");

        let (mut roots, mut digests) = (Vec::new(), Vec::new());
        for v in validators.iter().flatten() {
            let mut by_height = BTreeMap::new();
            let mut digest_by_height = BTreeMap::new();
            // The validators prune their state trees to the last MIN_HISTORY versions while they run; the
            // roots of every height stay and agree across validators.
            for h in 1..=top {
                let root =
                    v.chain.root_at(h).expect("root reads").expect("root exists at every committed height");
                by_height.insert(h, root);
                if let Some(c) = v.chain.recent(h) {
                    assert_eq!(c.state_root, root);
                    digest_by_height.insert(h, c.digest.to_string());
                }
            }
            roots.push(by_height);
            digests.push(digest_by_height);
        }
        // Every admitted transaction committed exactly once: each account's nonce is exactly the number of its
        // admitted transactions, on every validator.
        let mut per_account = [0u64; ACCOUNTS];
        for (from, _) in admitted.values() {
            per_account[*from] += 1;
        }
        for v in validators.iter().flatten() {
            let core = v.chain.core().lock();
            for (i, k) in keys.iter().enumerate() {
                let nonce = core.ledger().account(&k.address()).ok().flatten().map(|a| a.nonce).unwrap_or(0);
                assert_eq!(nonce, per_account[i], "{fault:?}: account {i} nonce");
            }
        }
        let admitted_count = admitted.len();
        for v in validators.into_iter().flatten() {
            v.abort();
        }
        Outcome { roots, digests, admitted: admitted_count, healed_at, top }
    })
}

fn check(seed: u64, fault: Fault) {
    let first = run(seed, fault);
    for (i, roots) in first.roots.iter().enumerate() {
        assert_eq!(roots, &first.roots[0], "{fault:?}: validator {i} committed different state");
    }
    // Digests are known for the heights each validator committed since it (re)started; wherever two
    // validators both know a height, they finalized the same block there.
    for (i, digests) in first.digests.iter().enumerate() {
        for (h, d) in digests {
            for (j, other) in first.digests.iter().enumerate() {
                if let Some(o) = other.get(h) {
                    assert_eq!(d, o, "{fault:?}: validators {i} and {j} finalized different blocks at {h}");
                }
            }
        }
    }
    println!(
        "{fault:?} seed {seed}: {} blocks finalized ({} when the fault healed), {} transactions",
        first.top, first.healed_at, first.admitted
    );
    assert!(first.admitted > 20, "{fault:?}: only {} transactions admitted", first.admitted);
    let second = run(seed, fault);
    assert_eq!(first, second, "{fault:?}: the same seed gave a different result");
}

#[test]
fn four_honest_validators_agree() {
    check(1, Fault::None);
}

#[test]
fn a_crashed_validator_restarts_and_catches_up() {
    check(2, Fault::CrashRestart);
}

#[test]
fn a_partitioned_validator_catches_up_after_healing() {
    check(3, Fault::Partition);
}

#[test]
fn lossy_links_still_finalize() {
    check(4, Fault::Lossy);
}
