//! End to end over real processes: `tgrid testnet --validators 4` writes the homes, four `tgrid node`
//! processes run them on loopback, transactions go in through the HTTP API, one validator is killed with
//! SIGKILL and restarted, and all four end on the same state. Bad input over the API gets typed errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::Value;
use tensorgrid_client::keystore::key_from_mnemonic;
use tensorgrid_client::{RpcClient, TxBuilder};
use tensorgrid_types::{Amount, Event, Hash, Msg, SecretKey};

const TGRID: &str = env!("CARGO_BIN_EXE_tgrid");

/// The validator processes; killed when the test ends, however it ends.
struct Nodes {
    homes: Vec<PathBuf>,
    children: Vec<Option<Child>>,
}

impl Nodes {
    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.homes[i].join("node.log"))
            .expect("log file");
        let child = Command::new(TGRID)
            .arg("--home")
            .arg(&self.homes[i])
            .arg("node")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tgrid node starts");
        self.children[i] = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("kill");
            child.wait().expect("reap");
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.homes[i].join("node.log")).unwrap_or_default();
        text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

fn testnet_homes(dir: &Path, base_port: u16) -> Value {
    let out = Command::new(TGRID)
        // Epochs of 15 blocks: the run crosses several boundaries, one of them while a validator is down.
        .args([
            "--output",
            "json",
            "testnet",
            "--validators",
            "4",
            "--dry-run",
            "--blocks-per-epoch",
            "15",
            "--base-port",
        ])
        .arg(base_port.to_string())
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("tgrid testnet runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("testnet --output json prints JSON")
}

async fn height(client: &RpcClient) -> Option<u64> {
    client.status().await.ok()?["chain"]["height"].as_u64()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_committed(client: &RpcClient, hashes: &[Hash]) {
    for hash in hashes {
        wait_for(&format!("{hash} to commit on {}", client.base()), Duration::from_secs(60), async || {
            matches!(client.tx(hash).await, Ok(Some(_)))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validator_processes_survive_kill_dash_nine() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Below the kernel's ephemeral range (32768 and up), where an outgoing connection could hold a port.
    let base_port = 20_000 + (std::process::id() % 1_000) as u16 * 8;
    let plan = testnet_homes(dir.path(), base_port);
    let validators = plan["validators"].as_array().expect("validators");
    assert_eq!(validators.len(), 4);
    let homes: Vec<PathBuf> = validators.iter().map(|v| PathBuf::from(v["home"].as_str().unwrap())).collect();
    let clients: Vec<RpcClient> =
        validators.iter().map(|v| RpcClient::new(v["api"].as_str().unwrap())).collect();
    let key = |name: &str| -> SecretKey {
        let account = plan["accounts"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap();
        key_from_mnemonic(account["mnemonic"].as_str().unwrap()).unwrap()
    };
    let (alice, bob) = (key("alice"), key("bob"));

    let mut nodes = Nodes { homes, children: (0..4).map(|_| None).collect() };
    for i in 0..4 {
        nodes.start(i);
    }
    for (i, client) in clients.iter().enumerate() {
        let limit = Duration::from_secs(90);
        let start = Instant::now();
        while height(client).await.unwrap_or(0) < 3 {
            assert!(start.elapsed() < limit, "validator {i} made no progress:\n{}", nodes.log_tail(i));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Watch bob's transfers on validator 1's event stream while they happen.
    let events_url = format!("{}/v1/events?kind=transfer&account={}", clients[1].base(), bob.address());
    let mut stream = reqwest::get(&events_url).await.expect("event stream opens");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    // Transfers through every validator's API; gossip carries them to whoever leads.
    let amount = Amount(1_000);
    let mut builder = TxBuilder::for_account(&clients[0], &alice).await.expect("nonce");
    let mut hashes = Vec::new();
    for i in 0..20 {
        let raw = builder.sign_next(&alice, Msg::Send { to: bob.address(), amount }, Amount::tgr(1));
        hashes.push(clients[i % 4].submit(&raw, false).await.expect("admitted").hash);
    }
    for client in &clients {
        wait_committed(client, &hashes).await;
    }
    let mut seen = 0;
    let mut buffer = String::new();
    while seen < 20 {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk())
            .await
            .expect("the stream delivers within 30 s")
            .expect("the stream stays open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let Some(data) = message.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
            let block: Value = serde_json::from_str(data.trim()).expect("event data is JSON");
            for event in block["events"].as_array().expect("events") {
                assert_eq!(event["kind"], "transfer", "{event}");
                if event["to"] == bob.address().to_string() && event["from"] == alice.address().to_string() {
                    seen += 1;
                }
            }
        }
    }
    // A subscriber that was away: resuming from height 1, the node replays every block it missed before the
    // live ones, so all 20 transfers arrive although they committed before it subscribed.
    let replay = clients[3].blocks_from(&["transfer"], Some(&bob.address()), Some(1)).await.expect("resumes");
    let mut replay = Box::pin(replay);
    let (mut replayed, mut last_height) = (0, 0);
    while replayed < 20 {
        let block = tokio::time::timeout(Duration::from_secs(30), replay.next())
            .await
            .expect("the replay delivers within 30 s")
            .expect("the stream stays open")
            .expect("a block");
        assert!(block.height > last_height, "blocks come once each, in order");
        last_height = block.height;
        replayed += block
            .events
            .iter()
            .filter(|e| matches!(e, Event::Transfer { from, to, .. } if *from == alice.address() && *to == bob.address()))
            .count();
    }
    assert_eq!(replayed, 20);

    let metrics = reqwest::get(format!("{}/metrics", clients[2].base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "tensorgrid_height",
        "tensorgrid_finality_p50_ms",
        "tensorgrid_mempool_txs",
        "tensorgrid_tx_per_second",
    ] {
        assert!(
            metrics.contains(&format!("\n{name} ")) || metrics.starts_with(&format!("# HELP {name}")),
            "{name} missing"
        );
    }

    // Bad input over the API: typed errors, and the node keeps going.
    let garbage = clients[0].submit(&[0xde, 0xad, 0xbe, 0xef], false).await.expect_err("garbage is refused");
    assert_eq!(garbage.code(), Some("undecodable"), "{garbage}");
    let other_chain = tensorgrid_types::Tx::new(
        "some-other-chain",
        alice.address(),
        builder.next_nonce(),
        Amount::tgr(1),
        Msg::Send { to: bob.address(), amount },
    )
    .sign(&alice)
    .encode();
    let wrong = clients[0].submit(&other_chain, false).await.expect_err("wrong chain id is refused");
    assert_eq!(wrong.code(), Some("wrong_chain_id"), "{wrong}");
    let mut forged = builder.sign(&alice, Msg::Send { to: bob.address(), amount }, Amount::tgr(1));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let bad_sig = clients[0].submit(&forged, false).await.expect_err("a bad signature is refused");
    assert_eq!(bad_sig.code(), Some("bad_signature"), "{bad_sig}");
    let huge = vec![0u8; 300 * 1024];
    let too_big = clients[0].submit(&huge, false).await.expect_err("an oversized body is refused");
    assert_eq!(too_big.code(), Some("too_large"), "{too_big}");

    // SIGKILL validator 3, keep going without it, then bring it back.
    nodes.kill(3);
    let mut more = Vec::new();
    for i in 0..20 {
        let raw = builder.sign_next(&alice, Msg::Send { to: bob.address(), amount }, Amount::tgr(1));
        more.push(clients[i % 3].submit(&raw, false).await.expect("admitted").hash);
    }
    for client in &clients[..3] {
        wait_committed(client, &more).await;
    }
    let reached = height(&clients[0]).await.expect("height");
    nodes.start(3);
    let start = Instant::now();
    while height(&clients[3]).await.unwrap_or(0) < reached {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "validator 3 did not catch up:\n{}",
            nodes.log_tail(3)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_committed(&clients[3], &more).await;

    // Past at least two epoch boundaries on every validator.
    for (i, client) in clients.iter().enumerate() {
        let start = Instant::now();
        while height(client).await.unwrap_or(0) < 35 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "validator {i} stalled:\n{}",
                nodes.log_tail(i)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // All four agree: the same block and state root at a common height, and the same balances.
    let common = {
        let mut heights = Vec::new();
        for c in &clients {
            heights.push(height(c).await.expect("height"));
        }
        heights.into_iter().min().unwrap_or(0)
    };
    let mut roots = Vec::new();
    for c in &clients {
        let block = c.block(Some(common)).await.expect("block").expect("block exists");
        roots.push((block.digest, block.app_root));
    }
    assert!(roots.iter().all(|r| *r == roots[0]), "validators disagree at height {common}: {roots:?}");
    for c in &clients {
        let balance = c.account(&bob.address()).await.expect("account").expect("bob exists").balance;
        assert_eq!(balance, Amount::tgr(1_000_000).checked_add(Amount(40 * 1_000)).unwrap());
    }

    // Every validator indexed bob's history the same way, including validator 3, which executed the second
    // half after its restart: the 40 transfers, newest first, in pages that join up.
    let mut histories = Vec::new();
    for c in &clients {
        let first = c.account_txs(&bob.address(), None, 25).await.expect("history");
        let cursor = first.next.clone().expect("a second page");
        let rest = c.account_txs(&bob.address(), Some(&cursor), 25).await.expect("history");
        assert_eq!(rest.next, None);
        let hashes: Vec<Hash> = first.items.iter().chain(&rest.items).map(|r| r.hash).collect();
        histories.push(hashes);
    }
    assert_eq!(histories[0].len(), 40);
    assert!(histories.iter().all(|h| *h == histories[0]), "validators index bob's history differently");
    let mut all: Vec<Hash> = hashes.iter().chain(&more).copied().collect();
    let mut indexed = histories[0].clone();
    indexed.sort();
    all.sort();
    assert_eq!(indexed, all, "the history is exactly bob's 40 transfers");
    let http = reqwest::Client::new();
    let bad = http
        .get(format!("{}/v1/accounts/{}/txs?after=yesterday", clients[0].base(), bob.address()))
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    let not_an_address =
        http.get(format!("{}/v1/accounts/tg1nope/txs", clients[0].base())).send().await.expect("answer");
    assert_eq!(not_an_address.status(), 400);
}
