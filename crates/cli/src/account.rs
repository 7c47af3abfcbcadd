//! `tgrid status` and `tgrid account …`: the chain and accounts through a node's API, with the SDK's client.

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use tensorgrid_client::{Backend, Keystore, RpcClient};
use tensorgrid_types::{Address, Amount, Msg, SecretKey};

use crate::{emit_line, print_json, Output};

#[derive(Debug, Subcommand)]
pub(crate) enum Account {
    /// An account's balance and nonce. WHO is an address (tg1…) or the name of a key in the keystore.
    Balance { who: String },
    /// Send TGR: `tgrid account send --from alice tg1… 1.5tgr` (amounts as `1.5tgr` or `1500000utgr`).
    Send {
        /// The key that signs and pays (a name in the keystore).
        #[arg(long)]
        from: String,
        /// Recipient: an address or a key name.
        to: String,
        amount: Amount,
        /// The most fee this transaction may pay.
        #[arg(long, default_value = "1tgr")]
        max_fee: Amount,
        /// Return once the transaction is in the mempool instead of once it is committed.
        #[arg(long)]
        no_wait: bool,
    },
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// An address, or the address of a key in the keystore.
pub(crate) fn resolve(who: &str, home: &Path) -> anyhow::Result<Address> {
    if let Ok(address) = who.parse::<Address>() {
        return Ok(address);
    }
    let store = Keystore::open(home.join("keys"))?;
    let info = store.show(who).with_context(|| {
        format!("`{who}` is neither an address (tg1…) nor a key in {}", store.dir().display())
    })?;
    Ok(info.address)
}

pub(crate) fn unlock(name: &str, home: &Path) -> anyhow::Result<SecretKey> {
    let store = Keystore::open(home.join("keys"))?;
    let info = store.show(name).with_context(|| format!("no key `{name}`; see `tgrid keys list`"))?;
    let pass = match info.backend {
        Backend::File => Some(crate::keys::passphrase(false)?),
        Backend::Test => None,
    };
    Ok(store.unlock(name, pass.as_deref().map(String::as_str))?.key)
}

pub(crate) fn unreachable_hint(e: tensorgrid_client::RpcError, node: &str) -> anyhow::Error {
    match e {
        tensorgrid_client::RpcError::Transport { .. } => {
            anyhow::anyhow!("{e}\nis a node running there? start one with `tgrid devnet`, or pass --node URL")
        }
        other => anyhow::anyhow!("{other} (node {node})"),
    }
}

pub(crate) fn status(node: &str, output: Output) -> anyhow::Result<()> {
    let client = RpcClient::new(node);
    let status = runtime()?.block_on(client.status()).map_err(|e| unreachable_hint(e, node))?;
    match output {
        Output::Json => print_json(&status),
        Output::Text => {
            emit_line(&format!("chain     {}", status["chain"]["chain_id"].as_str().unwrap_or("?")))?;
            emit_line(&format!("height    {}", status["chain"]["height"]))?;
            emit_line(&format!("time      {} ms since the epoch", status["chain"]["time"]))?;
            if let Some(validators) = status["validators"].as_array() {
                let names: Vec<&str> = validators.iter().filter_map(|v| v.as_str()).collect();
                emit_line(&format!("validators {} ({})", names.len(), names.join(", ")))?;
            }
            emit_line(&format!("mempool   {} transactions", status["mempool_txs"]))?;
            if let Some(version) = status["node"]["version"].as_str() {
                emit_line(&format!("node      {} {version}", status["node"]["name"].as_str().unwrap_or("")))?;
            }
            if let Some(halted) = status["halted"].as_str() {
                emit_line(&format!("HALTED    {halted}"))?;
            }
            Ok(())
        }
    }
}

pub(crate) fn run(command: Account, node: &str, home: &Path, output: Output) -> anyhow::Result<()> {
    let client = RpcClient::new(node);
    let rt = runtime()?;
    match command {
        Account::Balance { who } => {
            let address = resolve(&who, home)?;
            let account = rt.block_on(client.account(&address)).map_err(|e| unreachable_hint(e, node))?;
            let (balance, nonce) = account.map(|a| (a.balance, a.nonce)).unwrap_or((Amount::ZERO, 0));
            match output {
                Output::Json => {
                    print_json(&serde_json::json!({ "address": address, "balance": balance, "nonce": nonce }))
                }
                Output::Text => emit_line(&format!("{address}  {balance}  (nonce {nonce})")),
            }
        }
        Account::Send { from, to, amount, max_fee, no_wait } => {
            let key = unlock(&from, home)?;
            let to = resolve(&to, home)?;
            let sent = rt
                .block_on(client.send_msg(&key, Msg::Send { to, amount }, max_fee, !no_wait))
                .map_err(|e| unreachable_hint(e, node))?;
            if let Some(record) = &sent.committed {
                if let Some(error) = record.receipt.error() {
                    match output {
                        Output::Json => print_json(&record)?,
                        Output::Text => {}
                    }
                    anyhow::bail!(
                        "transaction {} was committed in block {} but failed: {error}",
                        sent.hash,
                        record.height
                    );
                }
            }
            match (output, &sent.committed) {
                (Output::Json, _) => {
                    print_json(&serde_json::json!({ "hash": sent.hash, "committed": sent.committed }))
                }
                (Output::Text, Some(record)) => emit_line(&format!(
                    "sent {amount} to {to}: committed in block {} (fee {}), tx {}",
                    record.height, record.receipt.fee_paid, sent.hash
                )),
                (Output::Text, None) => {
                    emit_line(&format!("submitted {}; see it with GET /v1/tx/{}", sent.hash, sent.hash))
                }
            }
        }
    }
}
