//! `tgrid deploy create|show|list|deposit|close`: deployments from Akash SDL files through a node's API.

use std::path::Path;

use anyhow::Context as _;
use tensorgrid_types::market::Dseq;
use tensorgrid_types::query::Page;
use tensorgrid_types::{Amount, Msg};

use crate::ctx::{state_text, tgr, Ctx, NotFound};
use crate::{emit_line, print_json, Output};

fn parse_sdl(file: &Path) -> anyhow::Result<tensorgrid_sdl::Mapped> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    Ok(tensorgrid_sdl::parse(&name, &text, &tensorgrid_sdl::SdlOptions::default())?)
}

pub(crate) fn create(ctx: &Ctx, file: &Path, deposit: Amount) -> anyhow::Result<()> {
    let mapped = parse_sdl(file)?;
    let msg = Msg::CreateDeployment {
        groups: mapped.deployment.groups.clone(),
        deposit,
        manifest_hash: mapped.manifest_hash,
    };
    let record = ctx.execute(msg)?;
    let dseq = record.receipt.created_deployment().context("the receipt names no new deployment")?;
    match ctx.output {
        Output::Json => print_json(&serde_json::json!({
            "dseq": dseq, "height": record.height, "tx": record.hash, "fee": record.receipt.fee_paid,
            "manifest_hash": mapped.manifest_hash, "warnings": mapped.warnings,
        })),
        Output::Text => {
            for warning in &mapped.warnings {
                emit_line(&format!("warning: {warning}"))?;
            }
            emit_line(&format!(
                "deployment {dseq} created in block {} with {} in escrow ({} orders open for bids)",
                record.height,
                tgr(deposit),
                mapped.deployment.groups.len()
            ))?;
            emit_line(&format!(
                "see the bids with `tgrid market bids {dseq}/1`, accept one with `tgrid lease create --bid …`"
            ))
        }
    }
}

pub(crate) fn show(ctx: &Ctx, dseq: Dseq) -> anyhow::Result<()> {
    let info = ctx
        .block_on(ctx.client().deployment(dseq))?
        .ok_or_else(|| NotFound(format!("no deployment {dseq}")))?;
    ctx.show(&info, |info| {
        let d = &info.deployment;
        let e = &d.escrow;
        let mut text = format!("deployment {}  owner {}  {}\n", d.dseq, d.owner, state_text(&d.state));
        text.push_str(&format!(
            "escrow     balance {}  deposited {}  paid {}  refunded {}\n",
            tgr(e.balance),
            tgr(e.total_deposited),
            tgr(e.total_paid),
            tgr(e.refunded)
        ));
        for order in &info.orders {
            text.push_str(&format!(
                "order {}  {}  max {}/h  {} live bids\n",
                order.id,
                state_text(&order.state),
                tgr(order.spec.max_price),
                order.live_bids.len()
            ));
        }
        for lease in &info.leases {
            text.push_str(&format!(
                "lease {}  {}  {}/h  paid {}\n",
                lease.id,
                state_text(&lease.state),
                tgr(lease.price),
                tgr(lease.paid)
            ));
        }
        text
    })
}

pub(crate) fn list(ctx: &Ctx, owner: Option<&str>) -> anyhow::Result<()> {
    let owner = match owner {
        Some(owner) => ctx.resolve(owner)?,
        None => ctx.signer_address()?,
    };
    let query = tensorgrid_types::query::Query::DeploymentsByOwner { owner, page: Page::default() };
    let page = match ctx.block_on(ctx.client().query(&query))? {
        tensorgrid_types::query::QueryResponse::Deployments(page) => page,
        other => anyhow::bail!("unexpected answer from the node: {other:?}"),
    };
    ctx.show(&page, |page| {
        if page.items.is_empty() {
            return format!("{owner} has no deployments");
        }
        page.items
            .iter()
            .map(|d| {
                format!(
                    "{}\t{}\t{} groups\tescrow {}\n",
                    d.dseq,
                    state_text(&d.state),
                    d.groups,
                    tgr(d.escrow.balance)
                )
            })
            .collect()
    })
}
