//! `tgrid demo`: what tensorgrid does, in under a minute, on this machine alone. First a real chain: one
//! validator running commonware consensus in this process, transfers sent through its HTTP API and waited on
//! until committed. Then a real job: two provider daemons bid on a WASM module, run it in their sandboxes,
//! commit and reveal the same result hash, and are paid; the client downloads the output and checks it.
//! Then inference: one of those providers also serves an open LLM, and a chat request through the
//! OpenAI-compatible gateway is paid from a payment channel by a voucher the provider redeems on chain.
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

use crate::chain::{
    create_demo_accounts, fresh_dir, genesis_accounts, start_inference, start_provider, DevnetInference,
    GatewayAccess,
};

/// The demo's job: a WASI module (WAT text) that prints `hello` and copies its input to `/out/result.txt`.
const COPY_WAT: &str = include_str!("../../../testdata/wasm/copy.wat");
use crate::{emit, emit_line, print_json, Output};

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The model the demo serves unless told otherwise: the one `scripts/fetch-models` fetches.
fn default_model() -> std::path::PathBuf {
    tensorgrid_provider::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub(crate) fn demo(seed: u64, model: Option<std::path::PathBuf>, output: Output) -> anyhow::Result<()> {
    // Without a model file the demo still shows the chain, a job and the market, and says how to add inference.
    let model = model.unwrap_or_else(default_model);
    let serve_model = model.is_file();
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
    // Two providers (the `provider` and `bob` demo accounts) start beside it and register once it answers;
    // `provider` also serves the model, behind a gateway that pays it from carol's channel.
    let api = format!("http://127.0.0.1:{rpc}");
    let (gateway_tx, gateway_rx) = tokio::sync::oneshot::channel::<GatewayAccess>();
    if serve_model {
        let inference =
            DevnetInference { model: model.clone(), embeddings: None, gateway_port: free_port()? };
        start_inference(&dir, &api, free_port()?, "provider", inference, move |access| {
            // The demo may have given up waiting already; then nobody needs to know.
            let _ = gateway_tx.send(access.clone());
            Ok(())
        })?;
    } else {
        start_provider(&dir, &api, free_port()?, "provider")?;
    }
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
        let inference = if serve_model {
            chat(&client, gateway_rx, text).await?
        } else {
            if text {
                emit_line(&format!(
                    "\n3. Inference: skipped, there is no model at {} (`bash scripts/fetch-models` fetches \
                     SmolLM2-135M-Instruct once; then run the demo again)",
                    model.display()
                ))?;
            }
            json!({ "skipped": format!("no model at {}", model.display()) })
        };
        anyhow::Ok(json!({
            "home": dir,
            "first_transfer": { "height": record.height, "ms": first_ms, "fee": record.receipt.fee_paid },
            "burst": { "transfers": hashes.len(), "ms": burst_ms, "blocks": blocks },
            "bob_balance": bob_balance,
            "status": status,
            "job": job,
            "inference": inference,
        }))
    })?;

    let world = tensorgrid_sim::scenario::run_market_tour(seed)?;
    let report = tensorgrid_sim::report::Report::from_world(&world, seed);
    match output {
        Output::Text => {
            emit_line("\n4. The market (seeded simulation on the ledger; `tgrid sim --seed N` replays it):")?;
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
        // Results are settled at the reveal deadline (where the audit draw happens): keep it short.
        reveal_window_ms: 3_000,
        requirements: Default::default(),
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
        for slot in job.slots.iter().filter(|s| s.state == SlotState::AwaitingContent) {
            if !uploaded.contains(&slot.provider)
                && tensorgrid_client::jobs::upload(client, alice, id, &slot.provider, &content).await.is_ok()
            {
                uploaded.push(slot.provider);
            }
        }
        if job.state.is_final() {
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
            "   both results agree: {} paid in all; alice spent {} with the fee and the audit fee, the rest of the budget came back",
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

/// One chat request through the gateway with the official API's shape, then the money: what the response
/// costs at the provider's on-chain offer, and the channel paying exactly that once the provider has redeemed
/// the gateway's voucher.
async fn chat(
    client: &RpcClient,
    gateway: tokio::sync::oneshot::Receiver<GatewayAccess>,
    text: bool,
) -> anyhow::Result<serde_json::Value> {
    if text {
        emit_line("\n3. Inference: the `provider` daemon also serves an open LLM behind the OpenAI-compatible gateway")?;
    }
    let access = tokio::time::timeout(Duration::from_secs(120), gateway)
        .await
        .context("the model and gateway did not start within 2 minutes")?
        .context("the provider serving the model stopped; run `tgrid devnet --model` to see why")?;
    let channel = client.channel(access.channel).await?.context("the gateway's channel is not on chain")?;
    let offers = client.model_offers(None, tensorgrid_types::query::Page::default()).await?;
    let offer = offers
        .items
        .iter()
        .find(|o| o.provider == channel.provider && o.offer.name == access.model)
        .context("the provider's model offer is not on chain")?
        .offer
        .clone();
    if text {
        emit_line(&format!(
            "   {} offers {} ({}, file {}…) at {} per million input tokens, {} per million output tokens",
            channel.provider,
            offer.name,
            offer.quantization,
            offer.model_hash.to_string().get(..8).unwrap_or_default(),
            crate::ctx::tgr(offer.price_input_per_m),
            crate::ctx::tgr(offer.price_output_per_m)
        ))?;
        emit_line(&format!(
            "   carol's gateway has channel {} to it with {} deposited; POST {}/chat/completions:",
            channel.id,
            crate::ctx::tgr(channel.deposit),
            access.url
        ))?;
    }
    let question = "What is the capital of France? Answer in one sentence.";
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", access.url))
        .bearer_auth(&access.api_key)
        .json(&json!({
            "model": access.model,
            "messages": [{ "role": "user", "content": question }],
            "temperature": 0,
            "max_tokens": 48,
        }))
        .send()
        .await
        .context("cannot reach the gateway")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("the gateway's answer is not JSON")?;
    anyhow::ensure!(status.is_success(), "the gateway answered {status}: {}", body["error"]["message"]);
    let ms = started.elapsed().as_millis();
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default().trim().to_string();
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().context("no usage in the answer")?;
    let completion_tokens = body["usage"]["completion_tokens"].as_u64().context("no usage in the answer")?;
    let cost = offer.cost(prompt_tokens, completion_tokens).context("the cost overflows")?;
    if text {
        emit_line(&format!("   carol: {question}"))?;
        emit_line(&format!("   {}: {answer}", offer.name))?;
        emit_line(&format!(
            "   {prompt_tokens} prompt + {completion_tokens} completion tokens in {ms} ms; at the offer's prices \
             that is {}, signed to the provider as a voucher on the channel",
            crate::ctx::tgr(cost)
        ))?;
    }
    // The provider redeems the best voucher it holds every 2 s on the demo's chain.
    let redeem_started = Instant::now();
    let redeemed_now = || async {
        Ok::<_, anyhow::Error>(client.channel(channel.id).await?.map(|c| c.redeemed).unwrap_or(Amount::ZERO))
    };
    wait_until("the provider's redemption of the voucher", Duration::from_secs(60), || async {
        Ok(redeemed_now().await? >= cost)
    })
    .await?;
    let redeemed = redeemed_now().await?;
    anyhow::ensure!(redeemed == cost, "the channel paid {redeemed}, the tokens cost {cost}");
    if text {
        emit_line(&format!(
            "   the provider redeemed the voucher on chain after {} ms: channel {} paid exactly {}; \
             nothing else touched the chain",
            redeem_started.elapsed().as_millis(),
            channel.id,
            crate::ctx::tgr(redeemed)
        ))?;
    }
    Ok(json!({
        "model": offer.name,
        "provider": channel.provider,
        "channel": channel.id,
        "question": question,
        "answer": answer,
        "usage": body["usage"],
        "ms": ms,
        "cost": cost,
        "redeemed": redeemed,
    }))
}
