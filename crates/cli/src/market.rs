//! `tgrid market …` (orders, bids, bidding) and `tgrid lease …` (accept a bid, see, close, withdraw).

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use tensorgrid_types::market::{
    accrued, BidId, BidState, Lease as OnChainLease, LeaseId, LeaseState, OrderId,
};
use tensorgrid_types::query::{Page, Query, QueryResponse};
use tensorgrid_types::{Address, Amount, Msg, Timestamp};

use crate::ctx::{state_text, tgr, when, Ctx, NotFound};

#[derive(Debug, Subcommand)]
pub(crate) enum Market {
    /// Orders open for bids.
    Orders {
        /// How many (at most 200 per page).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed at the end of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// The bids on an order (`DSEQ/GSEQ`), cheapest first.
    Bids { order: OrderId },
    /// Bid on an order as the provider --from, at PRICE utgr per hour; a bid deposit is locked until the bid
    /// closes.
    Bid {
        order: OrderId,
        #[arg(long)]
        price: Amount,
    },
    /// Withdraw an open bid (`DSEQ/GSEQ/PROVIDER`); its deposit comes back.
    CloseBid { bid: BidId },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Lease {
    /// Accept a bid on your order: the lease starts now and accrues from the deployment's escrow.
    Create {
        /// The bid, `DSEQ/GSEQ/PROVIDER` (see `tgrid market bids DSEQ/GSEQ`).
        #[arg(long)]
        bid: BidId,
        /// The deployment's SDL file: sent to the provider once the lease exists, so the workloads start.
        #[arg(long)]
        manifest: Option<std::path::PathBuf>,
    },
    /// Send a lease's manifest (the deployment's SDL file) to its provider, which starts the workloads.
    SendManifest { lease: String, file: std::path::PathBuf },
    /// Leases of --from's deployments, or of a provider.
    List {
        /// List the leases this provider (address or key name) serves instead.
        #[arg(long)]
        provider: Option<String>,
    },
    /// A lease's on-chain state, what it has accrued and what its escrow holds.
    Status { lease: String },
    /// The workload's logs, from the provider.
    Logs {
        lease: String,
        /// Lines per service instance.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// End a lease (as its tenant or its provider); the provider is paid up to now.
    Close { lease: String },
    /// As the provider, collect what a lease has accrued so far.
    Withdraw { lease: String },
}

pub(crate) fn market(ctx: &Ctx, command: Market) -> anyhow::Result<()> {
    let client = ctx.client();
    match command {
        Market::Orders { limit, after } => {
            let page = ctx.block_on(client.open_orders(Page { after, limit }))?;
            ctx.show(&page, |page| {
                if page.items.is_empty() {
                    return "no open orders".into();
                }
                let mut text: String = page
                    .items
                    .iter()
                    .map(|o| {
                        format!(
                            "{}\towner {}\tmax {}/h\t{} live bids\n",
                            o.id,
                            o.owner,
                            tgr(o.spec.max_price),
                            o.live_bids.len()
                        )
                    })
                    .collect();
                if let Some(next) = &page.next {
                    text.push_str(&format!("more: tgrid market orders --after {next}\n"));
                }
                text
            })
        }
        Market::Bids { order } => {
            if ctx.block_on(client.order(order))?.is_none() {
                return Err(NotFound(format!("no order {order}")).into());
            }
            let mut bids = ctx.block_on(client.bids(order))?;
            bids.sort_by_key(|b| (b.price, b.id.provider));
            ctx.show(&bids, |bids| {
                if bids.is_empty() {
                    return format!("no bids on order {order} yet");
                }
                bids.iter()
                    .map(|b| {
                        let state = match b.state {
                            BidState::Active => "active (leased)".to_string(),
                            other => state_text(&other),
                        };
                        format!("{}\t{}/h\t{state}\n", b.id, tgr(b.price))
                    })
                    .collect()
            })
        }
        Market::Bid { order, price } => {
            let record = ctx.execute(Msg::CreateBid { order, price })?;
            let bid = order.bid(ctx.signer_address()?);
            ctx.show_tx(&format!("bid {bid} at {}/h", tgr(price)), &record)
        }
        Market::CloseBid { bid } => {
            let record = ctx.execute(Msg::CloseBid { bid })?;
            ctx.show_tx(&format!("closed bid {bid}"), &record)
        }
    }
}

/// A lease named in full (`DSEQ/GSEQ/PROVIDER`), or by its order (`DSEQ/GSEQ`) when that order has one lease.
fn lease_id(ctx: &Ctx, text: &str) -> anyhow::Result<LeaseId> {
    if let Ok(id) = text.parse::<LeaseId>() {
        return Ok(id);
    }
    let order: OrderId = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "`{text}` is not a lease; expected `DSEQ/GSEQ/PROVIDER` (or `DSEQ/GSEQ` if it has one)"
        )
    })?;
    let info = ctx
        .block_on(ctx.client().deployment(order.dseq))?
        .ok_or_else(|| NotFound(format!("no deployment {}", order.dseq)))?;
    let mut leases: Vec<&OnChainLease> = info.leases.iter().filter(|l| l.id.order() == order).collect();
    if leases.len() > 1 {
        // The active one is what people mean; closed ones stay on file.
        leases.retain(|l| l.state == LeaseState::Active);
    }
    match leases.as_slice() {
        [lease] => Ok(lease.id),
        [] => Err(NotFound(format!("order {order} has no lease")).into()),
        many => anyhow::bail!(
            "order {order} has {} leases; name one in full: {}",
            many.len(),
            many.iter().map(|l| l.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What `tgrid lease status` reports.
#[derive(Debug, Serialize)]
struct LeaseStatus {
    lease: OnChainLease,
    /// The chain's time when this was read.
    chain_time: Timestamp,
    /// Accrued by the provider and not yet paid out of escrow, as of `chain_time` (what settling now would
    /// pay, capped by the provider's heartbeat grace and by the escrow).
    unsettled: Amount,
    escrow_balance: Amount,
    /// When the escrow runs dry at the current prices, if it will.
    escrow_dry_at: Option<Timestamp>,
    provider_host_uri: Option<String>,
    /// The workload's own state, from the provider's API (absent when it does not answer; see the note).
    workload: Option<tensorgrid_types::provider_api::LeaseStatus>,
    workload_note: Option<String>,
}

fn lease_status(ctx: &Ctx, id: LeaseId) -> anyhow::Result<LeaseStatus> {
    let client = ctx.client();
    let lease = ctx.block_on(client.lease(id))?.ok_or_else(|| NotFound(format!("no lease {id}")))?;
    let info = ctx
        .block_on(client.deployment(id.dseq))?
        .ok_or_else(|| NotFound(format!("no deployment {}", id.dseq)))?;
    let chain = ctx.block_on(client.chain_info())?;
    let provider = ctx.block_on(client.provider(&id.provider))?;
    let params = ctx.block_on(client.params())?;
    let unsettled = match lease.state {
        LeaseState::Active => {
            let alive_until = provider
                .as_ref()
                .map(|p| p.last_heartbeat.plus(params.heartbeat_grace_ms))
                .unwrap_or(chain.time);
            let end = chain.time.min(alive_until).max(lease.settled_to);
            let total = accrued(lease.price, end.since(lease.started_at)).unwrap_or(Amount(u128::MAX));
            total.saturating_sub(lease.paid).min(info.deployment.escrow.balance)
        }
        LeaseState::Closed { .. } => Amount::ZERO,
    };
    // The provider's view is asked only of active leases, and only the owner may ask.
    let (workload, workload_note) = match (lease.state, ctx.signer()) {
        (LeaseState::Active, Ok(key)) if key.address() == lease.owner => {
            let uri = provider.as_ref().map(|p| p.host_uri.clone()).unwrap_or_default();
            let api = tensorgrid_client::ProviderClient::new(uri, key);
            match ctx.block_on(api.lease_status(&id)) {
                Ok(status) => (Some(status), None),
                Err(e) => (None, Some(format!("the provider did not answer: {e}"))),
            }
        }
        (LeaseState::Active, _) => {
            (None, Some("pass --from with the lease owner's key to ask the provider".into()))
        }
        _ => (None, None),
    };
    Ok(LeaseStatus {
        chain_time: chain.time,
        unsettled,
        escrow_balance: info.deployment.escrow.balance,
        escrow_dry_at: info.deployment.escrow.dry_at,
        provider_host_uri: provider.map(|p| p.host_uri),
        workload,
        workload_note,
        lease,
    })
}

pub(crate) fn lease(ctx: &Ctx, command: Lease) -> anyhow::Result<()> {
    let client = ctx.client();
    match command {
        Lease::Create { bid, manifest } => {
            let record = ctx.execute(Msg::AcceptBid { bid })?;
            let Some(file) = manifest else {
                return ctx.show_tx(&format!("lease {bid} created"), &record);
            };
            let status = send_manifest(ctx, bid, &file)?;
            ctx.show(&serde_json::json!({ "tx": record, "workload": status }), |_| {
                format!("lease {bid} created in block {}\n{}", record.height, workload_text(&status))
            })
        }
        Lease::SendManifest { lease, file } => {
            let id = lease_id(ctx, &lease)?;
            let status = send_manifest(ctx, id, &file)?;
            ctx.show(&status, workload_text)
        }
        Lease::List { provider } => {
            let leases = match provider {
                Some(who) => {
                    let provider: Address = ctx.resolve(&who)?;
                    ctx.block_on(client.leases_by_provider(provider, Page::first(200)))?.items
                }
                None => {
                    let owner = ctx.signer_address()?;
                    let query = Query::DeploymentsByOwner { owner, page: Page::first(200) };
                    let deployments = match ctx.block_on(client.query(&query))? {
                        QueryResponse::Deployments(page) => page.items,
                        other => anyhow::bail!("unexpected answer from the node: {other:?}"),
                    };
                    let mut leases = Vec::new();
                    for d in deployments {
                        if let Some(info) = ctx.block_on(client.deployment(d.dseq))? {
                            leases.extend(info.leases);
                        }
                    }
                    leases
                }
            };
            ctx.show(&leases, |leases| {
                if leases.is_empty() {
                    return "no leases".into();
                }
                leases
                    .iter()
                    .map(|l| {
                        format!(
                            "{}\t{}\t{}/h\tpaid {}\n",
                            l.id,
                            state_text(&l.state),
                            tgr(l.price),
                            tgr(l.paid)
                        )
                    })
                    .collect()
            })
        }
        Lease::Status { lease } => {
            let status = lease_status(ctx, lease_id(ctx, &lease)?)?;
            ctx.show(&status, |s| {
                let l = &s.lease;
                let state = state_text(&l.state);
                let mut text = format!("lease     {}\nstate     {state}\nowner     {}\n", l.id, l.owner);
                text.push_str(&format!("price     {}/h\n", tgr(l.price)));
                text.push_str(&format!(
                    "paid      {} (settled to {}; started {} s ago)\n",
                    tgr(l.paid),
                    when(l.settled_to),
                    s.chain_time.since(l.started_at) / 1000
                ));
                text.push_str(&format!("unsettled {}\n", tgr(s.unsettled)));
                text.push_str(&format!("escrow    {}", tgr(s.escrow_balance)));
                if let Some(dry) = s.escrow_dry_at {
                    text.push_str(&format!(" (runs dry at {})", when(dry)));
                }
                text.push('\n');
                if let Some(uri) = &s.provider_host_uri {
                    text.push_str(&format!("provider  {uri}\n"));
                }
                match (&s.workload, &s.workload_note) {
                    (Some(w), _) => text.push_str(&workload_text(w)),
                    (None, Some(note)) => text.push_str(&format!("workload  unknown: {note}\n")),
                    (None, None) => {}
                }
                text
            })
        }
        Lease::Logs { lease, tail } => {
            let id = lease_id(ctx, &lease)?;
            let api = provider_api(ctx, &id)?;
            let logs = ctx
                .block_on(api.lease_logs(&id, tail))
                .with_context(|| format!("asking {} for the logs", api.base()))?;
            match ctx.output {
                crate::Output::Json => crate::print_json(&serde_json::json!({ "lease": id, "logs": logs })),
                crate::Output::Text => crate::emit(&logs),
            }
        }
        Lease::Close { lease } => {
            let id = lease_id(ctx, &lease)?;
            let record = ctx.execute(Msg::CloseLease { lease: id })?;
            ctx.show_tx(&format!("closed lease {id}"), &record)
        }
        Lease::Withdraw { lease } => {
            let id = lease_id(ctx, &lease)?;
            let record = ctx.execute(Msg::WithdrawLease { lease: id })?;
            ctx.show_tx(&format!("withdrew from lease {id}"), &record)
        }
    }
}

/// The lease's provider API, acting as --from.
fn provider_api(ctx: &Ctx, lease: &LeaseId) -> anyhow::Result<tensorgrid_client::ProviderClient> {
    let key = ctx.signer()?;
    let provider = ctx
        .block_on(ctx.client().provider(&lease.provider))?
        .ok_or_else(|| NotFound(format!("{} is not a registered provider", lease.provider)))?;
    Ok(tensorgrid_client::ProviderClient::new(provider.host_uri, key))
}

/// Reads an SDL file, maps it, and sends the manifest to the lease's provider.
fn send_manifest(
    ctx: &Ctx,
    lease: LeaseId,
    file: &std::path::Path,
) -> anyhow::Result<tensorgrid_types::provider_api::LeaseStatus> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mapped =
        tensorgrid_sdl::parse(&file.display().to_string(), &text, &tensorgrid_sdl::SdlOptions::default())?;
    let api = provider_api(ctx, &lease)?;
    ctx.block_on(api.send_manifest(&lease, &mapped.deployment))
        .with_context(|| format!("sending the manifest to {}", api.base()))
}

/// What runs for a lease, as text.
fn workload_text(status: &tensorgrid_types::provider_api::LeaseStatus) -> String {
    let mut text = format!("workload  {}\n", state_text(&status.state));
    for service in &status.services {
        text.push_str(&format!("  {}  {}/{} ready", service.name, service.ready, service.total));
        for (port, endpoint) in &service.endpoints {
            text.push_str(&format!("  {port} → {endpoint}"));
        }
        text.push('\n');
    }
    text
}
