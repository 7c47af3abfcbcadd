//! `tgrid channel …` (payment channels for inference) and `tgrid model …` (model offers).
//!
//! A gateway does all of this on its own; these commands are for people who pay or serve directly and for
//! seeing what the chain holds: open a channel to a provider, sign a voucher (a cumulative amount the
//! provider may take), redeem one as the provider, top up, close.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use tensorgrid_types::channel::{ChannelId, ChannelState, Voucher};
use tensorgrid_types::model::ModelOffer;
use tensorgrid_types::query::Page;
use tensorgrid_types::{Amount, Hash, Msg};

use crate::ctx::{state_text, tgr, Ctx, NotFound};

#[derive(Debug, Subcommand)]
pub(crate) enum Channel {
    /// Lock DEPOSIT from --from for PROVIDER (an address or a key name).
    Open {
        provider: String,
        #[arg(long)]
        deposit: Amount,
    },
    /// Add to a channel's deposit (as its client).
    TopUp { channel: ChannelId, amount: Amount },
    /// Sign a voucher as the channel's client: the provider may take CUMULATIVE in total. Prints it as JSON.
    Voucher { channel: ChannelId, cumulative: Amount },
    /// Redeem a voucher (JSON from `tgrid channel voucher`, a file or `-` for stdin) as the provider.
    Redeem { voucher: PathBuf },
    /// Close: as the client after the challenge period, as the provider at once; the rest goes back to the
    /// client.
    Close { channel: ChannelId },
    /// A channel's deposit, what was redeemed, and its state.
    Show { channel: ChannelId },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Model {
    /// The models on offer (all, or one by its hash), with who serves them at what price.
    List {
        #[arg(long)]
        model_hash: Option<Hash>,
    },
    /// Offer a model as the provider --from (the offer as JSON: model_hash, name, source_hash, quantization,
    /// tokenizer_hash, context_length, price_input_per_m, price_output_per_m, throughput_tps). A price rise
    /// takes effect after the chain's notice period.
    Announce { offer: PathBuf },
    /// Stop offering a model.
    Withdraw { model_hash: Hash },
}

fn read_json<T: serde::de::DeserializeOwned>(path: &PathBuf, what: &str) -> anyhow::Result<T> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not a {what} as JSON", path.display()))
}

pub(crate) fn channel(ctx: &Ctx, command: Channel) -> anyhow::Result<()> {
    let client = ctx.client();
    match command {
        Channel::Open { provider, deposit } => {
            let provider = ctx.resolve(&provider)?;
            let record = ctx.execute(Msg::OpenChannel { provider, deposit })?;
            ctx.show_tx(&format!("opened a payment channel to {provider} with {}", tgr(deposit)), &record)
        }
        Channel::TopUp { channel, amount } => {
            let record = ctx.execute(Msg::TopUpChannel { channel, amount })?;
            ctx.show_tx(&format!("topped up channel {channel} by {}", tgr(amount)), &record)
        }
        Channel::Voucher { channel, cumulative } => {
            let key = ctx.signer()?;
            let info = ctx.block_on(client.chain_info())?;
            let on_chain = ctx
                .block_on(client.channel(channel))?
                .ok_or_else(|| NotFound(format!("no channel {channel}")))?;
            anyhow::ensure!(
                on_chain.client == key.address(),
                "only channel {channel}'s client ({}) signs its vouchers",
                on_chain.client
            );
            let voucher = Voucher::sign(&key, &info.chain_id, channel, cumulative);
            crate::print_json(&voucher)
        }
        Channel::Redeem { voucher } => {
            let voucher: Voucher = read_json(&voucher, "voucher")?;
            let record = ctx.execute(Msg::RedeemVoucher { voucher })?;
            ctx.show_tx(&format!("redeemed a voucher of channel {}", voucher.channel), &record)
        }
        Channel::Close { channel } => {
            let record = ctx.execute(Msg::CloseChannel { channel })?;
            ctx.show_tx(&format!("close of channel {channel}"), &record)
        }
        Channel::Show { channel } => {
            let c = ctx
                .block_on(client.channel(channel))?
                .ok_or_else(|| NotFound(format!("no channel {channel}")))?;
            ctx.show(&c, |c| {
                let state = match c.state {
                    ChannelState::Closing { ends_at } => format!("closing at {}", crate::ctx::when(ends_at)),
                    other => state_text(&other),
                };
                format!(
                    "channel  {}\nclient   {}\nprovider {}\ndeposit  {}\nredeemed {}\nbalance  {}\nstate    {state}",
                    c.id,
                    c.client,
                    c.provider,
                    tgr(c.deposit),
                    tgr(c.redeemed),
                    tgr(c.balance())
                )
            })
        }
    }
}

pub(crate) fn model(ctx: &Ctx, command: Model) -> anyhow::Result<()> {
    match command {
        Model::List { model_hash } => {
            let offers = ctx.block_on(ctx.client().model_offers(model_hash, Page::first(200)))?;
            ctx.show(&offers, |offers| {
                if offers.items.is_empty() {
                    return "no model offers".into();
                }
                offers
                    .items
                    .iter()
                    .map(|l| {
                        format!(
                            "{} ({}, {} ctx)  {}  in {}/M out {}/M  {} tok/s  {}\n",
                            l.offer.name,
                            l.offer.quantization,
                            l.offer.context_length,
                            l.provider,
                            tgr(l.offer.price_input_per_m),
                            tgr(l.offer.price_output_per_m),
                            l.offer.throughput_tps,
                            l.offer.model_hash
                        )
                    })
                    .collect()
            })
        }
        Model::Announce { offer } => {
            let offer: ModelOffer = read_json(&offer, "model offer")?;
            let name = offer.name.clone();
            let record = ctx.execute(Msg::AnnounceModel { offer })?;
            ctx.show_tx(&format!("offering {name}"), &record)
        }
        Model::Withdraw { model_hash } => {
            let record = ctx.execute(Msg::WithdrawModel { model_hash })?;
            ctx.show_tx(&format!("withdrew model {model_hash}"), &record)
        }
    }
}
