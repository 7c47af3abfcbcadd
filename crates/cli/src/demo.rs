//! `tgrid demo`: what tensorgrid does, in under a minute, on this machine alone. First a real chain: one
//! validator running commonware consensus in this process, transfers sent through its HTTP API and waited on
//! until committed. Then a real job: two provider daemons bid on a WASM module, run it in their sandboxes,
//! commit and reveal the same result hash, and are paid; the client downloads the output and checks it.
//! Then the market at scale: the seeded simulation of providers, tenants and jobs (`tgrid sim`).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tensorgrid_client::keystore::key_from_mnemonic;
use tensorgrid_client::{RpcClient, TxBuilder};
use tensorgrid_types::job::{JobSpec, JobState, SlotState, Workload, WorkloadKind};
use tensorgrid_types::resources::ResourceUnits;
use tensorgrid_types::{Amount, Hash, Msg, SecretKey};

use crate::chain::{create_demo_accounts, fresh_dir, genesis_accounts, start_provider};

/// The demo's job: a WASI module (WAT text) that prints `hello` and copies its input to `/out/result.txt`.
const COPY_WAT: &str = include_str!("../../../testdata/wasm/copy.wat");
use crate::{emit, emit_line, print_json, Output};

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn demo(seed: u64, output: Output) -> anyhow::Result<()> {
    let dir = fresh_dir("tgrid-demo");
    let accounts = create_demo_accounts(&dir)?;
    let (p2p, rpc) = (free_port()?, free_port()?);
    tensorgrid_consensus::launch::prepare_devnet(
        &dir,
        genesis_accounts(&accounts)?,
        tensorgrid_types::Params::default(),
        p2p,
        rpc,
    )?;
    let home = dir.clone();
    // The validator runs on its own runtime in its own thread for as long as the demo does.
    std::thread::spawn(move || tensorgrid_consensus::node::run(&home));
    // Two providers (the `provider` and `bob` demo accounts) start beside it and register once it answers.
    let api = format!("http://127.0.0.1:{rpc}");
    start_provider(&dir, &api, free_port()?, "provider")?;
    start_provider(&dir, &api, free_port()?, "bob")?;
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
                record.height,
                crate::ctx::tgr(record.receipt.fee_paid)
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
            emit_line(&format!(
                "   height {}, finality p50 {} ms; the API stays up while the demo runs: {}/v1/status",
                status["chain"]["height"], status["finality_ms"]["p50"], client.base()
            ))?;
        }
        let job = run_job(&client, &alice, &[key("provider")?.address(), key("bob")?.address()], text).await?;
        anyhow::Ok(json!({
            "home": dir,
            "first_transfer": { "height": record.height, "ms": first_ms, "fee": record.receipt.fee_paid },
            "burst": { "transfers": hashes.len(), "ms": burst_ms, "blocks": blocks },
            "bob_balance": bob_balance,
            "status": status,
            "job": job,
        }))
    })?;

    let world = tensorgrid_sim::scenario::run_market_tour(seed)?;
    let report = tensorgrid_sim::report::Report::from_world(&world, seed);
    match output {
        Output::Text => {
            emit_line("\n3. The market (seeded simulation on the ledger; `tgrid sim --seed N` replays it):")?;
            emit(&report.to_text())?;
        }
        Output::Json => print_json(&json!({ "chain": chain, "market": report }))?,
    }
    Ok(())
}

/// Waits for `check` to hold, polling; fails after `limit` saying what it waited for.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        anyhow::ensure!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Alice posts a real WASM job for two providers and follows it to payment, uploading the module and input
/// when the providers are assigned and downloading the checked output at the end.
async fn run_job(
    client: &RpcClient,
    alice: &SecretKey,
    providers: &[tensorgrid_types::Address],
    text: bool,
) -> anyhow::Result<serde_json::Value> {
    if text {
        emit_line("\n2. A job on real providers: two provider daemons run WASM jobs in their sandboxes")?;
    }
    for provider in providers {
        wait_until("a provider's registration", Duration::from_secs(60), || async {
            Ok(client.provider(provider).await?.is_some())
        })
        .await?;
    }
    let module = COPY_WAT.as_bytes().to_vec();
    let input = b"hello from alice's input file".to_vec();
    let content = vec![(Hash::of(&module), module), (Hash::of(&input), input.clone())];
    let before = client.account(&alice.address()).await?.map(|a| a.balance).unwrap_or(Amount::ZERO);
    let spec = JobSpec {
        workload: Workload {
            kind: WorkloadKind::Wasm,
            hash: content[0].0,
            runtime: "wasi-p1".into(),
            args: vec![],
        },
        inputs: vec![content[1].0],
        resources: ResourceUnits { cpu_millis: 1000, memory_bytes: 64 << 20, ..ResourceUnits::default() },
        max_fuel: 100_000_000,
        redundancy: 2,
        budget: Amount::tgr(2),
        bid_window_ms: 2_000,
        run_timeout_ms: 60_000,
        reveal_window_ms: 30_000,
    };
    let submitted = client.execute(alice, Msg::SubmitJob { spec }, Amount::tgr(1)).await?;
    let id = submitted.receipt.created_job().context("the receipt names no job")?;
    let started = Instant::now();
    if text {
        emit_line(&format!(
            "   alice posts job {id}: a WASI module and one input by hash, k = 2, budget 2 TGR, 2 s to bid"
        ))?;
    }
    let mut uploaded = Vec::new();
    let job = loop {
        let job = client.job(id).await?.context("the job vanished")?;
        for slot in job.slots.iter().filter(|s| s.state == SlotState::Running) {
            if !uploaded.contains(&slot.provider)
                && tensorgrid_client::jobs::upload(client, alice, id, &slot.provider, &content).await.is_ok()
            {
                uploaded.push(slot.provider);
            }
        }
        if job.state.is_final() || job.state == JobState::Disputed {
            break job;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "job {id} did not finish within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anyhow::ensure!(job.state == JobState::Completed, "job {id} ended {:?}", job.state);
    let result = job.slots.first().and_then(|s| s.result).context("no result revealed")?;
    let done = tensorgrid_client::jobs::download(client, alice, &job, result).await?;
    let output =
        done.files.iter().find(|(p, _)| p == "result.txt").map(|(_, b)| b.clone()).unwrap_or_default();
    let after = client.account(&alice.address()).await?.map(|a| a.balance).unwrap_or(Amount::ZERO);
    let spent = before.saturating_sub(after);
    if text {
        for slot in &job.slots {
            emit_line(&format!(
                "   {} bid {}, ran it, revealed {}",
                slot.provider,
                crate::ctx::tgr(slot.price),
                result
            ))?;
        }
        emit_line(&format!(
            "   both results agree: {} paid in all; alice spent {} with the fee, the rest of the budget came back",
            crate::ctx::tgr(job.paid),
            crate::ctx::tgr(spent)
        ))?;
        emit_line(&format!(
            "   alice downloads the output, checks it against the result hash: result.txt = {:?}, stdout = {:?} ({} ms in all)",
            String::from_utf8_lossy(&output),
            String::from_utf8_lossy(&done.stdout),
            started.elapsed().as_millis()
        ))?;
    }
    anyhow::ensure!(output == input, "the job's output is not its input");
    Ok(json!({
        "id": id,
        "result_hash": result,
        "paid": job.paid,
        "providers": job.slots.iter().map(|s| json!({ "provider": s.provider, "price": s.price })).collect::<Vec<_>>(),
        "alice_spent": spent,
        "output": String::from_utf8_lossy(&output),
        "ms": started.elapsed().as_millis(),
    }))
}
