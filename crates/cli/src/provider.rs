//! `tgrid provider …`: a provider's on-chain life (registration, stake, heartbeats, earnings, leaving). The
//! daemon that bids and runs workloads is its own program; these are the commands its operator types.

use clap::{Args, Subcommand};
use serde::Serialize;
use tensorgrid_types::market::LeaseState;
use tensorgrid_types::provider::{Provider as OnChain, ProviderInfo};
use tensorgrid_types::query::Page;
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Amount, Msg, Timestamp, TxRecord};

use crate::ctx::{tgr, when, Ctx, NotFound};
use crate::{emit_line, print_json, Output};

#[derive(Debug, Subcommand)]
pub(crate) enum Provider {
    /// Run the provider daemon: register (or update) the provider, serve its API, bid on work and run it.
    Run {
        /// The daemon's config file (see the provider crate's documentation for every key).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Register --from as a provider and bond STAKE (at least the chain's minimum).
    Register {
        /// The provider API's base URL (`https://host:port`), where tenants send manifests.
        #[arg(long)]
        host_uri: String,
        #[arg(long)]
        stake: Amount,
        #[command(flatten)]
        details: Details,
    },
    /// Change the registration's host URI, attributes or contact details.
    Update {
        #[arg(long)]
        host_uri: Option<String>,
        #[command(flatten)]
        details: Details,
    },
    /// A provider's on-chain registration, stake, liveness and work (--from's by default).
    Status { who: Option<String> },
    /// Collect what every active lease has accrued so far.
    Withdraw,
    /// Bond more stake.
    Bond { amount: Amount },
    /// Start unbonding stake; it returns after the unbonding period and stays slashable until then.
    Unbond { amount: Amount },
    /// Prove liveness for all leases (the daemon sends these on its own).
    Heartbeat,
    /// Leave the market: needs no active leases or job slots; all stake starts unbonding.
    Deregister,
}

#[derive(Debug, Args)]
pub(crate) struct Details {
    /// An attribute tenants can require, `key=value` (repeat for more): `region=eu-west`, `gpu=a100`.
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    attributes: Vec<Attribute>,
    #[arg(long)]
    email: Option<String>,
    /// A job runtime this provider runs, e.g. `wasi-p1` (repeat for more): what it may be drawn to referee.
    #[arg(long = "runtime", value_name = "RUNTIME")]
    runtimes: Vec<String>,
    /// Accept referee committee seats (`true`) or not (`false`) for those runtimes.
    #[arg(long)]
    referee: Option<bool>,
    #[arg(long)]
    website: Option<String>,
}

fn parse_attribute(text: &str) -> Result<Attribute, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(Attribute::new(key, value)),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// What `tgrid provider status` reports.
#[derive(Debug, Serialize)]
struct Status {
    provider: OnChain,
    chain_time: Timestamp,
    /// Whether the last heartbeat is recent enough for leases to accrue and for bids to win.
    live: bool,
    /// What the provider daemon last declined to bid on and why, from its API; absent when it does not answer.
    no_bid_reasons: Option<serde_json::Value>,
}

pub(crate) fn run(ctx: &Ctx, command: Provider) -> anyhow::Result<()> {
    let client = ctx.client();
    match command {
        Provider::Run { config } => {
            crate::init_logging();
            let config = tensorgrid_provider::ProviderConfig::load(&config)?;
            let key = ctx.unlock(&config.key)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            Ok(runtime.block_on(tensorgrid_provider::run(config, key))?)
        }
        Provider::Register { host_uri, stake, details } => {
            let info = ProviderInfo {
                email: details.email.unwrap_or_default(),
                website: details.website.unwrap_or_default(),
            };
            let msg = Msg::RegisterProvider {
                host_uri,
                attributes: details.attributes,
                info,
                stake,
                runtimes: details.runtimes,
                referee: details.referee.unwrap_or(false),
            };
            let record = ctx.execute(msg)?;
            ctx.show_tx(
                &format!("registered provider {} with {} bonded", ctx.signer_address()?, tgr(stake)),
                &record,
            )
        }
        Provider::Update { host_uri, details } => {
            let info = match (&details.email, &details.website) {
                (None, None) => None,
                _ => {
                    let current = ctx
                        .block_on(client.provider(&ctx.signer_address()?))?
                        .ok_or_else(|| NotFound("--from is not a registered provider".into()))?
                        .info;
                    Some(ProviderInfo {
                        email: details.email.unwrap_or(current.email),
                        website: details.website.unwrap_or(current.website),
                    })
                }
            };
            let attributes = (!details.attributes.is_empty()).then_some(details.attributes);
            let runtimes = (!details.runtimes.is_empty()).then_some(details.runtimes);
            let referee = details.referee;
            if host_uri.is_none()
                && attributes.is_none()
                && info.is_none()
                && runtimes.is_none()
                && referee.is_none()
            {
                anyhow::bail!(
                    "nothing to change: pass --host-uri, --attribute, --email, --website, --runtime or --referee"
                );
            }
            let record =
                ctx.execute(Msg::UpdateProvider { host_uri, attributes, info, runtimes, referee })?;
            ctx.show_tx("updated the provider registration", &record)
        }
        Provider::Status { who } => {
            let address = match who {
                Some(who) => ctx.resolve(&who)?,
                None => ctx.signer_address()?,
            };
            let provider = ctx
                .block_on(client.provider(&address))?
                .ok_or_else(|| NotFound(format!("{address} is not a registered provider")))?;
            let chain = ctx.block_on(client.chain_info())?;
            let params = ctx.block_on(client.params())?;
            let live = chain.time <= provider.last_heartbeat.plus(params.heartbeat_grace_ms);
            // The daemon's own view is a courtesy: a provider whose API does not answer still has a status.
            let api = tensorgrid_client::ProviderClient::new(
                &provider.host_uri,
                tensorgrid_types::SecretKey::from_seed([0; 32]),
            );
            let no_bid_reasons = ctx
                .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(3), api.info()).await })
                .ok()
                .and_then(Result::ok)
                .map(|info| info["no_bid_reasons"].clone());
            let status = Status { provider, chain_time: chain.time, live, no_bid_reasons };
            ctx.show(&status, |s| {
                let p = &s.provider;
                let status = match p.status {
                    tensorgrid_types::provider::ProviderStatus::Active => "active",
                    tensorgrid_types::provider::ProviderStatus::Deregistered => "deregistered",
                };
                let mut text = format!("provider   {}\nstatus     {status}\n", p.address);
                text.push_str(&format!("host       {}\n", p.host_uri));
                text.push_str(&format!("stake      {}\n", tgr(p.stake)));
                for u in &p.unbonding {
                    text.push_str(&format!(
                        "unbonding  {} (matures at {})\n",
                        tgr(u.amount),
                        when(u.matures_at)
                    ));
                }
                text.push_str(&format!(
                    "heartbeat  {} s ago ({})\n",
                    s.chain_time.since(p.last_heartbeat) / 1000,
                    if s.live {
                        "live"
                    } else {
                        "OFFLINE: leases stop accruing; send `tgrid provider heartbeat`"
                    }
                ));
                text.push_str(&format!("leases     {} active\n", p.active_leases));
                text.push_str(&format!(
                    "jobs       {} running, {} completed, {} missed\n",
                    p.active_job_slots, p.jobs_completed, p.jobs_missed
                ));
                let r = &p.record;
                text.push_str(&format!(
                    "record     {} audits passed, {} disputes won, {} lost; slashed {} times, {} in all\n",
                    r.audits_passed,
                    r.disputes_won,
                    r.disputes_lost,
                    r.slashes,
                    tgr(r.slashed_total)
                ));
                text.push_str(&format!(
                    "referee    {} for {}; {} seats, {} deposits forfeited\n",
                    if p.referee { "opted in" } else { "opted out" },
                    if p.runtimes.is_empty() { "no runtime".to_string() } else { p.runtimes.join(", ") },
                    r.referee_seats,
                    r.referee_forfeits
                ));
                if p.jailed {
                    text.push_str("JAILED     slashed below the minimum stake: `tgrid provider bond` to take work again\n");
                }
                for a in &p.attributes {
                    text.push_str(&format!("attribute  {}={}\n", a.key, a.value));
                }
                match &s.no_bid_reasons {
                    None => text.push_str("daemon     not answering at its host URI\n"),
                    Some(serde_json::Value::Array(reasons)) if reasons.is_empty() => {
                        text.push_str("daemon     running; declined nothing lately\n")
                    }
                    Some(serde_json::Value::Array(reasons)) => {
                        text.push_str("daemon     running; lately declined:\n");
                        for r in reasons.iter().take(10) {
                            text.push_str(&format!(
                                "  {}: {} ({})\n",
                                r["work"].as_str().unwrap_or("?"),
                                r["reason"].as_str().unwrap_or("?"),
                                r["component"].as_str().unwrap_or("?")
                            ));
                        }
                    }
                    Some(_) => {}
                }
                text
            })
        }
        Provider::Withdraw => {
            let me = ctx.signer_address()?;
            let mut records: Vec<TxRecord> = Vec::new();
            let mut page = Page::first(200);
            loop {
                let leases = ctx.block_on(client.leases_by_provider(me, page.clone()))?;
                for lease in leases.items.iter().filter(|l| l.state == LeaseState::Active) {
                    records.push(ctx.execute(Msg::WithdrawLease { lease: lease.id })?);
                }
                match leases.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            let paid: Amount = records
                .iter()
                .flat_map(|r| &r.receipt.events)
                .filter_map(|e| match e {
                    tensorgrid_types::Event::LeasePaid { amount, lease, .. } if lease.provider == me => {
                        Some(*amount)
                    }
                    _ => None,
                })
                .fold(Amount::ZERO, |acc, a| acc.saturating_add(a));
            match ctx.output {
                Output::Json => print_json(&serde_json::json!({ "paid": paid, "transactions": records })),
                Output::Text => {
                    emit_line(&format!("withdrew {} from {} active leases", tgr(paid), records.len()))
                }
            }
        }
        Provider::Bond { amount } => {
            let record = ctx.execute(Msg::Bond { amount })?;
            ctx.show_tx(&format!("bonded {}", tgr(amount)), &record)
        }
        Provider::Unbond { amount } => {
            let record = ctx.execute(Msg::Unbond { amount })?;
            ctx.show_tx(&format!("started unbonding {}", tgr(amount)), &record)
        }
        Provider::Heartbeat => {
            let record = ctx.execute(Msg::Heartbeat)?;
            ctx.show_tx("heartbeat", &record)
        }
        Provider::Deregister => {
            let record = ctx.execute(Msg::DeregisterProvider)?;
            ctx.show_tx("deregistered; all stake is unbonding", &record)
        }
    }
}
