//! `tgrid node`, `tgrid devnet` and `tgrid testnet`: thin wrappers over the consensus crate's validator
//! runner and launchers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::Context as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use tensorgrid_client::keystore::{Backend, Keystore};
use tensorgrid_consensus::launch;
use tensorgrid_types::{Amount, GenesisAccount};

use crate::{emit_line, print_json, Output};

/// A funded account of a local chain, as `demo-accounts.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DemoAccount {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) balance: Amount,
    pub(crate) mnemonic: String,
}

const DEMO_NAMES: [&str; 4] = ["alice", "bob", "carol", "provider"];

/// Makes the demo accounts (fresh keys each time), stores them in the keystore under `dir/keys` with the
/// unencrypted test backend, and records them in `dir/demo-accounts.json`.
pub(crate) fn create_demo_accounts(dir: &Path) -> anyhow::Result<Vec<DemoAccount>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let keystore = Keystore::open(dir.join("keys"))?;
    let mut accounts = Vec::new();
    for name in DEMO_NAMES {
        let (info, phrase) = keystore.add(name, Backend::Test, None, &mut OsRng)?;
        accounts.push(DemoAccount {
            name: name.into(),
            address: info.address.to_string(),
            balance: Amount::tgr(1_000_000),
            mnemonic: phrase.to_string(),
        });
    }
    std::fs::write(dir.join("demo-accounts.json"), serde_json::to_string_pretty(&accounts)?)?;
    Ok(accounts)
}

fn load_demo_accounts(dir: &Path) -> anyhow::Result<Vec<DemoAccount>> {
    let path = dir.join("demo-accounts.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

pub(crate) fn genesis_accounts(accounts: &[DemoAccount]) -> anyhow::Result<Vec<GenesisAccount>> {
    accounts
        .iter()
        .map(|a| {
            Ok(GenesisAccount {
                address: a.address.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
                balance: a.balance,
            })
        })
        .collect()
}

pub(crate) fn fresh_dir(prefix: &str) -> PathBuf {
    let mut tag = [0u8; 4];
    OsRng.fill_bytes(&mut tag);
    std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(tag)))
}

fn print_accounts(accounts: &[DemoAccount], home: &Path, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        return Ok(());
    }
    emit_line("Funded demo accounts (their keys are in the devnet's keystore, unencrypted):")?;
    for a in accounts {
        emit_line(&format!("  {:<9} {}  {}", a.name, a.address, a.balance))?;
        emit_line(&format!("            mnemonic: {}", a.mnemonic))?;
    }
    emit_line(&format!("Use them with: tgrid --home {} keys list", home.display()))?;
    Ok(())
}

pub(crate) fn node(home: &Path) -> anyhow::Result<()> {
    tensorgrid_consensus::node::run(home)?;
    Ok(())
}

/// What `tgrid devnet --model` serves: the built-in provider's models and the gateway in front of them.
#[derive(Clone, Debug)]
pub(crate) struct DevnetInference {
    pub(crate) model: PathBuf,
    pub(crate) embeddings: Option<PathBuf>,
    pub(crate) gateway_port: u16,
}

/// What a client of the devnet's gateway needs, also written to `<home>/gateway.json` for `tgrid chat`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GatewayAccess {
    pub(crate) url: String,
    pub(crate) api_key: String,
    pub(crate) channel: u64,
    pub(crate) account: String,
    /// The chat model's name, what `tgrid chat` asks by default.
    pub(crate) model: String,
}

pub(crate) fn devnet(
    home: Option<PathBuf>,
    p2p_port: u16,
    rpc_port: u16,
    provider_port: Option<u16>,
    inference: Option<DevnetInference>,
    params: tensorgrid_types::Params,
    output: Output,
) -> anyhow::Result<()> {
    let dir = home.unwrap_or_else(|| fresh_dir("tgrid-devnet"));
    let accounts = if dir.join("genesis.json").exists() {
        load_demo_accounts(&dir)?
    } else {
        create_demo_accounts(&dir)?
    };
    params.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = launch::prepare_devnet(&dir, genesis_accounts(&accounts)?, params, p2p_port, rpc_port)?;
    let api = format!("http://127.0.0.1:{rpc_port}");
    match output {
        Output::Json => print_json(&serde_json::json!({
            "home": dir, "new": new, "api": api, "accounts": accounts,
        }))?,
        Output::Text => {
            emit_line(&format!(
                "tensorgrid devnet: one validator, chain tg-devnet, state in {} ({})",
                dir.display(),
                if new { "new" } else { "resumed" }
            ))?;
            print_accounts(&accounts, &dir, output)?;
            emit_line(&format!(
                "API: {api}/v1/status   metrics: {api}/metrics   (Ctrl-C stops; --home {} resumes)",
                dir.display()
            ))?;
            if let Some(port) = provider_port {
                emit_line(&format!(
                    "provider: the `provider` account runs WASM jobs, API http://127.0.0.1:{port}/v1/provider"
                ))?;
            }
        }
    }
    match (provider_port, inference) {
        (Some(port), Some(inference)) => {
            let home = dir.clone();
            start_inference(&dir, &api, port, "provider", inference, move |access| {
                emit_line(&format!(
                    "gateway: {} (OpenAI-compatible)  api key: {}  pays from carol's channel {}",
                    access.url, access.api_key, access.channel
                ))?;
                emit_line(&format!("try: tgrid --home {} chat \"What is 2 + 2?\"", home.display()))?;
                Ok(())
            })?
        }
        (Some(port), None) => start_provider(&dir, &api, port, "provider")?,
        (None, Some(_)) => anyhow::bail!("--model needs the built-in provider (leave out --no-provider)"),
        (None, None) => {}
    }
    node(&dir)
}

fn provider_config(dir: &Path, api: &str, port: u16, key_name: &str) -> tensorgrid_provider::ProviderConfig {
    tensorgrid_provider::ProviderConfig {
        key: key_name.into(),
        node: api.to_string(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        host_uri: format!("http://127.0.0.1:{port}"),
        // Above the minimum by enough for a few referee deposits, so built-in providers can sit on committees.
        stake: Amount::tgr(110),
        work_dir: dir.join(format!("provider-{key_name}")),
        attributes: [("region".to_string(), "devnet".to_string())].into_iter().collect(),
        email: String::new(),
        website: String::new(),
        pricing: Default::default(),
        // Tenants reach this provider on loopback (its host URI), so its containers publish there too.
        // Its peers are on loopback too, so a referee may fetch a job's content from them.
        limits: tensorgrid_provider::config::Limits {
            publish_ip: "127.0.0.1".into(),
            private_peers: true,
            ..Default::default()
        },
        models: Vec::new(),
        inference: Default::default(),
        referee: true,
    }
}

/// The devnet's inference prices: 0.1 TGR per million input tokens, 0.4 TGR per million output tokens.
const DEVNET_PRICE_INPUT_PER_M: Amount = Amount(100_000);
const DEVNET_PRICE_OUTPUT_PER_M: Amount = Amount(400_000);
/// What the gateway's account puts in its channel to the built-in provider.
const DEVNET_CHANNEL_DEPOSIT: Amount = Amount(100_000_000);

/// A built-in provider (the demo account `key_name`) serving models, a channel from `carol` to it, and the
/// gateway with an API key for carol, all on one thread and runtime. Once the gateway answers, `ready` is
/// called with what a client needs (also written to `<dir>/gateway.json`); a failure is logged.
pub(crate) fn start_inference(
    dir: &Path,
    api: &str,
    port: u16,
    key_name: &str,
    inference: DevnetInference,
    ready: impl FnOnce(&GatewayAccess) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let keystore = Keystore::open(dir.join("keys"))?;
    let provider_key = keystore.unlock(key_name, None)?.key;
    let client_key = keystore.unlock("carol", None)?.key;
    let mut config = provider_config(dir, api, port, key_name);
    let model = |path: PathBuf, output: Amount| tensorgrid_provider::config::ModelConfig {
        name: Some(model_name(&path)),
        path,
        price_input_per_m: DEVNET_PRICE_INPUT_PER_M,
        price_output_per_m: output,
        throughput_tps: 0,
    };
    config.models.push(model(inference.model.clone(), DEVNET_PRICE_OUTPUT_PER_M));
    if let Some(embeddings) = &inference.embeddings {
        config.models.push(model(embeddings.clone(), Amount::ZERO));
    }
    // Vouchers reach the chain within seconds, so balances on the devnet follow requests closely.
    config.inference.redeem_interval = std::time::Duration::from_secs(2);
    let mut token = [0u8; 24];
    OsRng.fill_bytes(&mut token);
    let api_key = format!("tg-{}", hex::encode(token));
    let api = api.to_string();
    let dir = dir.to_path_buf();
    spawn_provider(async move {
        let provider = tensorgrid_provider::start(config, provider_key).await?;
        let rpc = tensorgrid_client::RpcClient::new(&api);
        let access_path = dir.join("gateway.json");
        // A resumed devnet keeps its channel; a new one opens it.
        let previous: Option<GatewayAccess> =
            std::fs::read(&access_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let (channel, api_key) = match previous {
            Some(p) => (p.channel, p.api_key),
            None => {
                let record = rpc
                    .execute(
                        &client_key,
                        tensorgrid_types::Msg::OpenChannel {
                            provider: provider.shared.address(),
                            deposit: DEVNET_CHANNEL_DEPOSIT,
                        },
                        Amount(1_000_000),
                    )
                    .await?;
                let channel = record
                    .receipt
                    .opened_channel()
                    .ok_or_else(|| anyhow::anyhow!("no channel was opened"))?;
                (channel, api_key)
            }
        };
        let gateway = tensorgrid_gateway::start(tensorgrid_gateway::GatewayConfig {
            node: api.clone(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], inference.gateway_port)),
            keys: vec![tensorgrid_gateway::ApiKey {
                token: api_key.clone(),
                account: client_key.clone(),
                channels: vec![channel],
                ceiling: Default::default(),
            }],
            refresh: std::time::Duration::from_secs(5),
            data_dir: Some(dir.join("gateway")),
            models: Vec::new(),
            limits: Default::default(),
            // The devnet's providers listen on this machine.
            allow_private_providers: true,
        })
        .await?;
        let model = provider
            .shared
            .inference
            .as_ref()
            .and_then(|i| i.models.first())
            .map(|m| m.offer.name.clone())
            .unwrap_or_default();
        let access = GatewayAccess {
            model,
            url: format!("http://{}/v1", gateway.addr),
            api_key,
            channel,
            account: client_key.address().to_string(),
        };
        std::fs::write(&access_path, serde_json::to_vec_pretty(&access)?)?;
        ready(&access)?;
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// A model's name from its file: the stem without a quantization suffix (`SmolLM2-135M-Instruct.Q4_1.gguf`
/// is `SmolLM2-135M-Instruct`), or a directory's name.
fn model_name(path: &Path) -> String {
    let stem = if path.is_dir() { path.file_name() } else { path.file_stem() };
    let stem = stem.map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    match stem.rsplit_once('.') {
        Some((name, quant)) if quant.to_ascii_uppercase().starts_with(['Q', 'F']) => name.to_string(),
        _ => stem,
    }
}

/// Starts a built-in provider (a demo account's key from the keystore in `dir`, WASM jobs) on its own thread
/// and runtime; it waits for the node's API, registers and then bids on work like any other provider.
pub(crate) fn start_provider(dir: &Path, api: &str, port: u16, key_name: &str) -> anyhow::Result<()> {
    let key = Keystore::open(dir.join("keys"))?.unlock(key_name, None)?.key;
    let config = provider_config(dir, api, port, key_name);
    spawn_provider(async move { Ok(tensorgrid_provider::run(config, key).await?) })
}

/// Runs a built-in provider's work on a thread and runtime of its own, so that it goes on beside the
/// validator; how it ended is logged, since nobody waits for it.
fn spawn_provider(
    work: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::Builder::new().name("provider".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "the built-in provider could not start");
                return;
            }
        };
        if let Err(e) = runtime.block_on(work) {
            tracing::error!(error = %format!("{e:#}"), "the built-in provider stopped");
        }
    })?;
    Ok(())
}

pub(crate) fn testnet(
    dir: Option<PathBuf>,
    validators: usize,
    base_port: u16,
    blocks_per_epoch: u64,
    dry_run: bool,
    output: Output,
) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| fresh_dir("tgrid-testnet"));
    let accounts = create_demo_accounts(&dir)?;
    let nodes =
        launch::prepare_testnet(&dir, validators, base_port, genesis_accounts(&accounts)?, blocks_per_epoch)?;
    let exe = std::env::current_exe().context("cannot find the tgrid executable")?;
    let commands: Vec<String> =
        nodes.iter().map(|n| format!("{} --home {} node", exe.display(), n.home.display())).collect();
    match output {
        Output::Json => print_json(&serde_json::json!({
            "dir": dir,
            "accounts": accounts,
            "validators": nodes.iter().zip(&commands).map(|(n, c)| serde_json::json!({
                "home": n.home, "p2p": n.p2p.to_string(), "api": format!("http://{}", n.rpc), "command": c,
            })).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            emit_line(&format!("tensorgrid testnet: {validators} validators, homes in {}", dir.display()))?;
            print_accounts(&accounts, &dir, output)?;
            for (n, c) in nodes.iter().zip(&commands) {
                emit_line(&format!("  API http://{}   {c}", n.rpc))?;
            }
        }
    }
    if dry_run {
        return Ok(());
    }
    let mut children: Vec<Child> = Vec::new();
    for n in &nodes {
        let log = std::fs::File::create(n.home.join("node.log"))?;
        let child = Command::new(&exe)
            .arg("--home")
            .arg(&n.home)
            .arg("node")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the validator in {}", n.home.display()))?;
        children.push(child);
    }
    emit_line("validators started (logs in each home's node.log); Ctrl-C stops them all")?;
    // When any validator exits, the testnet is broken: stop the others and report which one.
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                for other in children.iter_mut() {
                    let _ = other.kill();
                }
                anyhow::bail!(
                    "validator-{i} exited ({status}); see {}",
                    nodes[i].home.join("node.log").display()
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
