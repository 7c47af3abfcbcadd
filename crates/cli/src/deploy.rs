//! `tgrid deploy create|show|list|deposit|close` and `tgrid market orders`: deployments from Akash SDL files
//! through a node's API.

use std::path::Path;

use anyhow::Context as _;
use tensorgrid_client::RpcClient;
use tensorgrid_types::market::Dseq;
use tensorgrid_types::query::{Page, Query, QueryResponse};
use tensorgrid_types::{Amount, Event, Msg};

use crate::account::{resolve, runtime, unlock, unreachable_hint};
use crate::{emit_line, print_json, Output};

fn parse_sdl(file: &Path) -> anyhow::Result<tensorgrid_sdl::Mapped> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    Ok(tensorgrid_sdl::parse(&name, &text, &tensorgrid_sdl::SdlOptions::default())?)
}

/// Sends `msg` from the key `from`, waits for the commit and fails (exit 1) if the transaction failed.
fn send(
    node: &str,
    home: &Path,
    from: &str,
    msg: Msg,
    max_fee: Amount,
) -> anyhow::Result<tensorgrid_types::TxRecord> {
    let key = unlock(from, home)?;
    let client = RpcClient::new(node);
    let sent = runtime()?
        .block_on(client.send_msg(&key, msg, max_fee, true))
        .map_err(|e| unreachable_hint(e, node))?;
    let record = sent.committed.context("the node answered before the commit")?;
    if let Some(error) = record.receipt.error() {
        anyhow::bail!(
            "transaction {} was committed in block {} but failed: {error}",
            sent.hash,
            record.height
        );
    }
    Ok(record)
}

fn query(node: &str, query: Query) -> anyhow::Result<QueryResponse> {
    let client = RpcClient::new(node);
    runtime()?.block_on(client.query(&query)).map_err(|e| unreachable_hint(e, node))
}

pub(crate) fn create(
    file: &Path,
    from: &str,
    deposit: Amount,
    max_fee: Amount,
    node: &str,
    home: &Path,
    output: Output,
) -> anyhow::Result<()> {
    let mapped = parse_sdl(file)?;
    let msg = Msg::CreateDeployment {
        groups: mapped.deployment.groups.clone(),
        deposit,
        manifest_hash: mapped.manifest_hash,
    };
    let record = send(node, home, from, msg, max_fee)?;
    let dseq = record
        .receipt
        .events
        .iter()
        .find_map(|e| match e {
            Event::DeploymentCreated { dseq, .. } => Some(*dseq),
            _ => None,
        })
        .context("the receipt names no new deployment")?;
    match output {
        Output::Json => print_json(&serde_json::json!({
            "dseq": dseq, "height": record.height, "tx": record.hash, "fee": record.receipt.fee_paid,
            "manifest_hash": mapped.manifest_hash, "warnings": mapped.warnings,
        })),
        Output::Text => {
            emit_line(&format!(
                "deployment {dseq} created in block {} with {deposit} in escrow ({} orders open for bids)",
                record.height,
                mapped.deployment.groups.len()
            ))?;
            emit_line(&format!("watch the bids with: tgrid market orders   (and: tgrid deploy show {dseq})"))
        }
    }
}

pub(crate) fn show(dseq: Dseq, node: &str, output: Output) -> anyhow::Result<()> {
    match query(node, Query::Deployment { dseq })? {
        QueryResponse::Deployment(Some(info)) => match output {
            Output::Json => print_json(&info),
            Output::Text => {
                let d = &info.deployment;
                emit_line(&format!("deployment {}  owner {}  {:?}", d.dseq, d.owner, d.state))?;
                emit_line(&format!("escrow      {}", serde_json::to_string(&d.escrow)?))?;
                for order in &info.orders {
                    emit_line(&format!(
                        "order {}/{}  {:?}  {} live bids",
                        order.id.dseq,
                        order.id.gseq,
                        order.state,
                        order.live_bids.len()
                    ))?;
                }
                for lease in &info.leases {
                    emit_line(&format!("lease {}", serde_json::to_string(lease)?))?;
                }
                Ok(())
            }
        },
        QueryResponse::Deployment(None) => anyhow::bail!("no deployment {dseq}"),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

pub(crate) fn list(owner: &str, node: &str, home: &Path, output: Output) -> anyhow::Result<()> {
    let owner = resolve(owner, home)?;
    match query(node, Query::DeploymentsByOwner { owner, page: Page::default() })? {
        QueryResponse::Deployments(page) => match output {
            Output::Json => print_json(&page),
            Output::Text => {
                if page.items.is_empty() {
                    emit_line(&format!("{owner} has no deployments"))?;
                }
                for d in &page.items {
                    emit_line(&format!("{}\t{:?}\t{} groups", d.dseq, d.state, d.groups))?;
                }
                Ok(())
            }
        },
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

pub(crate) fn tx(
    from: &str,
    msg: Msg,
    max_fee: Amount,
    node: &str,
    home: &Path,
    output: Output,
) -> anyhow::Result<()> {
    let what = msg.name();
    let record = send(node, home, from, msg, max_fee)?;
    match output {
        Output::Json => print_json(&record),
        Output::Text => {
            emit_line(&format!(
                "{what}: committed in block {} (fee {})",
                record.height, record.receipt.fee_paid
            ))?;
            for event in &record.receipt.events {
                emit_line(&format!("  {}", serde_json::to_string(event)?))?;
            }
            Ok(())
        }
    }
}

pub(crate) fn orders(node: &str, output: Output) -> anyhow::Result<()> {
    match query(node, Query::OpenOrders { page: Page::default() })? {
        QueryResponse::Orders(page) => match output {
            Output::Json => print_json(&page),
            Output::Text => {
                if page.items.is_empty() {
                    emit_line("no open orders")?;
                }
                for o in &page.items {
                    emit_line(&format!(
                        "{}/{}\towner {}\tmax {}/h\t{} live bids",
                        o.id.dseq,
                        o.id.gseq,
                        o.owner,
                        o.spec.max_price,
                        o.live_bids.len()
                    ))?;
                }
                Ok(())
            }
        },
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}
