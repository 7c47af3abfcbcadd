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

pub(crate) fn devnet(
    home: Option<PathBuf>,
    p2p_port: u16,
    rpc_port: u16,
    provider_port: Option<u16>,
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
    if let Some(port) = provider_port {
        start_provider(&dir, &api, port, "provider")?;
    }
    node(&dir)
}

/// Starts a built-in provider (a demo account's key from the keystore in `dir`, WASM jobs) on its own thread
/// and runtime; it waits for the node's API, registers and then bids on work like any other provider.
pub(crate) fn start_provider(dir: &Path, api: &str, port: u16, key_name: &str) -> anyhow::Result<()> {
    let key = Keystore::open(dir.join("keys"))?.unlock(key_name, None)?.key;
    let config = tensorgrid_provider::ProviderConfig {
        key: key_name.into(),
        node: api.to_string(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        host_uri: format!("http://127.0.0.1:{port}"),
        stake: Amount::tgr(100),
        work_dir: dir.join(format!("provider-{key_name}")),
        attributes: [("region".to_string(), "devnet".to_string())].into_iter().collect(),
        email: String::new(),
        website: String::new(),
        pricing: Default::default(),
        // Tenants reach this provider on loopback (its host URI), so its containers publish there too.
        limits: tensorgrid_provider::config::Limits { publish_ip: "127.0.0.1".into(), ..Default::default() },
        models: Vec::new(),
        inference: Default::default(),
    };
    std::thread::Builder::new().name("provider".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "the built-in provider could not start");
                return;
            }
        };
        if let Err(e) = runtime.block_on(tensorgrid_provider::run(config, key)) {
            tracing::error!(error = %e, "the built-in provider stopped");
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
