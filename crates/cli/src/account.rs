//! `tgrid status` and `tgrid account …`: the chain and accounts through a node's API, with the SDK's client.

use clap::Subcommand;
use tensorgrid_types::{Amount, Msg, TxRecord};

use crate::ctx::{event_text, Ctx};
use crate::{emit_line, print_json, Output};

#[derive(Debug, Subcommand)]
pub(crate) enum Account {
    /// An account's balance and nonce. WHO is an address (tg1…) or a key name; --from's by default.
    Balance { who: Option<String> },
    /// Send TGR from --from: `tgrid account send --from alice tg1… 1.5tgr` (or `1500000utgr`).
    Send {
        /// Recipient: an address or a key name.
        to: String,
        amount: Amount,
        /// Return once the transaction is in the mempool instead of once it is committed.
        #[arg(long)]
        no_wait: bool,
    },
    /// The transactions an account signed or that named it (transfers in, leases, bids, …), newest first.
    History {
        /// An address or a key name; --from's by default.
        who: Option<String>,
        /// How many transactions (at most 200 per page).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue after this cursor (printed at the end of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
}

pub(crate) fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let status = ctx.block_on(ctx.client().status())?;
    ctx.show(&status, |status| {
        let mut text = format!("chain      {}\n", status["chain"]["chain_id"].as_str().unwrap_or("?"));
        text.push_str(&format!("height     {}\n", status["chain"]["height"]));
        if let Some(time) = status["chain"]["time"].as_u64() {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time);
            text.push_str(&format!("block time {}\n", humantime::format_rfc3339_millis(when)));
        }
        if let Some(validators) = status["validators"].as_array() {
            let names: Vec<&str> = validators.iter().filter_map(|v| v.as_str()).collect();
            text.push_str(&format!("validators {} ({})\n", names.len(), names.join(", ")));
        }
        text.push_str(&format!("mempool    {} transactions\n", status["mempool_txs"]));
        if let Some(version) = status["node"]["version"].as_str() {
            text.push_str(&format!(
                "node       {} {version}\n",
                status["node"]["name"].as_str().unwrap_or("")
            ));
        }
        if let Some(halted) = status["halted"].as_str() {
            text.push_str(&format!("HALTED     {halted}\n"));
        }
        text
    })
}

/// The key named, or `--from`'s.
fn who_or_from(ctx: &Ctx, who: Option<&str>) -> anyhow::Result<tensorgrid_types::Address> {
    match who {
        Some(who) => ctx.resolve(who),
        None => ctx.signer_address(),
    }
}

pub(crate) fn run(ctx: &Ctx, command: Account) -> anyhow::Result<()> {
    let client = ctx.client();
    match command {
        Account::Balance { who } => {
            let address = who_or_from(ctx, who.as_deref())?;
            let account = ctx.block_on(client.account(&address))?;
            let (balance, nonce) = account.map(|a| (a.balance, a.nonce)).unwrap_or((Amount::ZERO, 0));
            let value = serde_json::json!({ "address": address, "balance": balance, "nonce": nonce });
            ctx.show(&value, |_| format!("{address}  {balance}  (nonce {nonce})"))
        }
        Account::Send { to, amount, no_wait } => {
            let to = ctx.resolve(&to)?;
            if no_wait {
                let key = ctx.signer()?;
                let sent =
                    ctx.block_on(client.send_msg(&key, Msg::Send { to, amount }, ctx.max_fee, false))?;
                let value = serde_json::json!({ "hash": sent.hash });
                return ctx.show(&value, |_| {
                    format!("submitted {}; follow it with `tgrid account history`", sent.hash)
                });
            }
            let record = ctx.execute(Msg::Send { to, amount })?;
            ctx.show_tx(&format!("sent {amount} to {to}"), &record)
        }
        Account::History { who, limit, after } => {
            let address = who_or_from(ctx, who.as_deref())?;
            let page = ctx.block_on(client.account_txs(&address, after.as_deref(), limit))?;
            match ctx.output {
                Output::Json => print_json(&page),
                Output::Text => {
                    if page.items.is_empty() {
                        emit_line(&format!("no transactions for {address}"))?;
                    }
                    for record in &page.items {
                        emit_line(&history_line(record, &address))?;
                    }
                    if let Some(next) = &page.next {
                        emit_line(&format!("more: tgrid account history {address} --after {next}"))?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// One transaction of an account's history: where, what, and whether it worked.
fn history_line(record: &TxRecord, account: &tensorgrid_types::Address) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.block_time.millis());
    let role = if record.receipt.signer.as_ref() == Some(account) { "signed" } else { "named" };
    let status = match record.receipt.error() {
        None => "ok".to_string(),
        Some(error) => format!("FAILED: {error}"),
    };
    let events: Vec<String> = record
        .receipt
        .events
        .iter()
        .filter(|e| !matches!(e, tensorgrid_types::Event::FeePaid { .. }))
        .map(event_text)
        .collect();
    format!(
        "{:>8}  {}  {role:<6}  fee {:<10}  {status}  {}\n          tx {}",
        record.height,
        humantime::format_rfc3339_seconds(when),
        record.receipt.fee_paid.to_string(),
        events.join("; "),
        record.hash
    )
}
