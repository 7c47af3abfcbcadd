//! `tgrid status` and `tgrid account …`: the chain and accounts through a node's API, with the SDK's client.

use clap::Subcommand;
use tensorgrid_types::{Address, Amount, Event, Msg, TxRecord};

use crate::ctx::{tgr, when, Ctx};
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
            text.push_str(&format!("block time {}\n", when(tensorgrid_types::Timestamp::from_millis(time))));
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
fn who_or_from(ctx: &Ctx, who: Option<&str>) -> anyhow::Result<Address> {
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
            ctx.show(&value, |_| format!("{address}  {}  (nonce {nonce})", tgr(balance)))
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
            ctx.show_tx(&format!("sent {} to {to}", tgr(amount)), &record)
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

/// What a transaction did to `account`'s balance: transfers in, less transfers out and the fee it paid.
fn balance_change(record: &TxRecord, account: &Address) -> (bool, Amount) {
    let (mut gained, mut lost) = (Amount::ZERO, Amount::ZERO);
    for event in &record.receipt.events {
        match event {
            Event::Transfer { from, to, amount } => {
                if to == account {
                    gained = gained.saturating_add(*amount);
                }
                if from == account {
                    lost = lost.saturating_add(*amount);
                }
            }
            Event::FeePaid { payer, amount } if payer == account => lost = lost.saturating_add(*amount),
            _ => {}
        }
    }
    if gained >= lost {
        (true, gained.saturating_sub(lost))
    } else {
        (false, lost.saturating_sub(gained))
    }
}

/// One transaction of an account's history: where, when, what it did to the balance, what happened, and the
/// hash to look it up by.
fn history_line(record: &TxRecord, account: &Address) -> String {
    let role = if record.receipt.signer.as_ref() == Some(account) { "signed" } else { "named" };
    let (up, change) = balance_change(record, account);
    let change = format!("{}{}", if up { "+" } else { "-" }, tgr(change));
    let what = match record.receipt.error() {
        None => {
            let kinds: Vec<String> = record
                .receipt
                .events
                .iter()
                .filter(|e| !matches!(e, Event::FeePaid { .. }))
                .filter_map(|e| serde_json::to_value(e).ok()?["kind"].as_str().map(str::to_string))
                .fold(Vec::new(), |mut kinds, kind| {
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                    kinds
                });
            kinds.join(", ")
        }
        Some(error) => format!("FAILED: {error}"),
    };
    format!(
        "{:>8}  {}  {role:<6}  {change:>16}  {what}\n          tx {}",
        record.height,
        when(record.block_time),
        record.hash
    )
}
