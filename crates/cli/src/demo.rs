//! `tgrid demo`: what tensorgrid does, in under a minute, on this machine alone. First a real chain: one
//! validator running commonware consensus in this process, transfers sent through its HTTP API and waited on
//! until committed. Then the market: the seeded simulation of providers, tenants and jobs (`tgrid sim`).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tensorgrid_client::keystore::key_from_mnemonic;
use tensorgrid_client::{RpcClient, TxBuilder};
use tensorgrid_types::{Amount, Msg};

use crate::chain::{create_demo_accounts, fresh_dir, genesis_accounts};
use crate::{emit, emit_line, print_json, Output};

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn demo(seed: u64, output: Output) -> anyhow::Result<()> {
    let dir = fresh_dir("tgrid-demo");
    let accounts = create_demo_accounts(&dir)?;
    let (p2p, rpc) = (free_port()?, free_port()?);
    tensorgrid_consensus::launch::prepare_devnet(&dir, genesis_accounts(&accounts)?, p2p, rpc)?;
    let home = dir.clone();
    // The validator runs on its own runtime in its own thread for as long as the demo does.
    std::thread::spawn(move || tensorgrid_consensus::node::run(&home));
    let text = output == Output::Text;
    if text {
        emit_line(&format!(
            "1. A chain: one validator (commonware simplex consensus) in this process, state in {}",
            dir.display()
        ))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let chain = runtime.block_on(async {
        let client = RpcClient::new(format!("http://127.0.0.1:{rpc}"));
        let started = Instant::now();
        loop {
            if let Ok(status) = client.status().await {
                if status["chain"]["height"].as_u64().unwrap_or(0) >= 1 {
                    break;
                }
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the validator did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let key = |name: &str| -> anyhow::Result<_> {
            let account = accounts.iter().find(|a| a.name == name).context("demo account")?;
            Ok(key_from_mnemonic(&account.mnemonic)?)
        };
        let (alice, bob, carol) = (key("alice")?, key("bob")?, key("carol")?);

        let sent = Instant::now();
        let one = client
            .send_msg(&alice, Msg::Send { to: bob.address(), amount: Amount::tgr(25) }, Amount::tgr(1), true)
            .await?;
        let record = one.committed.context("the node answered before the commit")?;
        let first_ms = sent.elapsed().as_millis();
        if text {
            emit_line(&format!(
                "   alice sends bob 25 TGR: committed in block {} after {first_ms} ms, fee {}",
                record.height, record.receipt.fee_paid
            ))?;
        }

        let mut builder = TxBuilder::for_account(&client, &carol).await?;
        let burst = Instant::now();
        let mut hashes = Vec::new();
        for i in 0..50u128 {
            let raw = builder.sign_next(&carol, Msg::Send { to: alice.address(), amount: Amount(1_000 + i) }, Amount::tgr(1));
            hashes.push(client.submit(&raw, false).await?.hash);
        }
        let mut heights = Vec::new();
        for hash in &hashes {
            loop {
                if let Some(r) = client.tx(hash).await? {
                    heights.push(r.height);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let burst_ms = burst.elapsed().as_millis();
        let blocks = heights.iter().max().copied().unwrap_or(0) - heights.iter().min().copied().unwrap_or(0) + 1;
        let bob_balance = client.account(&bob.address()).await?.map(|a| a.balance).unwrap_or(Amount::ZERO);
        let status = client.status().await?;
        if text {
            emit_line(&format!("   carol sends alice 50 transfers at once: all committed in {burst_ms} ms, in {blocks} blocks"))?;
            emit_line(&format!("   bob's balance now: {bob_balance}"))?;
            emit_line(&format!(
                "   height {}, finality p50 {} ms; the API stays up while the demo runs: {}/v1/status",
                status["chain"]["height"], status["finality_ms"]["p50"], client.base()
            ))?;
        }
        anyhow::Ok(json!({
            "home": dir,
            "first_transfer": { "height": record.height, "ms": first_ms, "fee": record.receipt.fee_paid },
            "burst": { "transfers": hashes.len(), "ms": burst_ms, "blocks": blocks },
            "bob_balance": bob_balance,
            "status": status,
        }))
    })?;

    let world = tensorgrid_sim::scenario::run_market_tour(seed)?;
    let report = tensorgrid_sim::report::Report::from_world(&world, seed);
    match output {
        Output::Text => {
            emit_line("\n2. The market (seeded simulation on the ledger; `tgrid sim --seed N` replays it):")?;
            emit(&report.to_text())?;
        }
        Output::Json => print_json(&json!({ "chain": chain, "market": report }))?,
    }
    Ok(())
}
