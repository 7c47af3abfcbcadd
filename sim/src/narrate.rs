//! Events told as sentences, with actors' names instead of addresses.

use tensorgrid_types::{Amount, Event};

use crate::world::World;

fn tgr(amount: &Amount) -> String {
    amount.to_tgr_string()
}

/// `+hh:mm:ss` since genesis.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("+{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A sentence for events worth telling; `None` for bookkeeping (fees, transfers, heartbeats).
pub fn describe(world: &World, event: &Event) -> Option<String> {
    let n = |a| world.name(a);
    Some(match event {
        Event::ProviderRegistered { provider, stake } => {
            format!("{} registers as a provider and bonds {}", n(provider), tgr(stake))
        }
        Event::ProviderDeregistered { provider } => format!("{} deregisters", n(provider)),
        Event::DeploymentCreated { dseq, owner, deposit } => {
            format!("{} creates deployment {dseq} with {} in escrow", n(owner), tgr(deposit))
        }
        Event::DeploymentDeposited { dseq, amount, .. } => {
            format!("deployment {dseq} is topped up by {}", tgr(amount))
        }
        Event::DeploymentClosed { dseq, owner, reason, refunded } => {
            format!("deployment {dseq} closes ({reason}); {} goes back to {}", tgr(refunded), n(owner))
        }
        Event::OrderCreated { order, max_price } => {
            format!("order {order} opens for bids, paying at most {}/h", tgr(max_price))
        }
        Event::BidCreated { bid, price } => {
            format!("{} bids {}/h on order {}", n(&bid.provider), tgr(price), bid.order())
        }
        Event::BidClosed { bid, reason } => {
            format!(
                "{}'s bid on {} closes ({reason}); its deposit is returned",
                n(&bid.provider),
                bid.order()
            )
        }
        Event::LeaseCreated { lease, owner, price } => format!(
            "lease {} starts: {} runs {}'s workload for {}/h",
            lease.order(),
            n(&lease.provider),
            n(owner),
            tgr(price)
        ),
        Event::LeasePaid { lease, amount, .. } => {
            format!("escrow pays {} {} for lease {}", n(&lease.provider), tgr(amount), lease.order())
        }
        Event::LeaseClosed { lease, reason, .. } => format!("lease {} ends ({reason})", lease.order()),
        Event::JobSubmitted { job, client, budget } => {
            format!("{} submits job {job} with a budget of {}", n(client), tgr(budget))
        }
        Event::JobBid { job, provider, price } => format!("{} bids {} on job {job}", n(provider), tgr(price)),
        Event::JobAssigned { job, provider, price, .. } => {
            format!("job {job} is assigned to {} at {}", n(provider), tgr(price))
        }
        Event::JobStarted { job, provider, .. } => {
            format!("{} has the module and inputs of job {job} and starts it", n(provider))
        }
        Event::JobContentUnavailable { job, provider } => format!(
            "{} never received job {job}'s content: its slot goes to the next bid, its deposit back to it",
            n(provider)
        ),
        Event::JobCommitted { job, provider } => format!("{} commits to a result for job {job}", n(provider)),
        Event::JobRevealStarted { job, .. } => format!("job {job}: every winner has committed; reveals open"),
        Event::JobRevealed { job, provider, result_hash } => {
            format!("{} reveals result {}… for job {job}", n(provider), &result_hash.to_hex()[..12])
        }
        Event::JobDeadlineMissed { job, provider, forfeited } => format!(
            "{} missed its deadline on job {job}: its {} deposit goes to the client",
            n(provider),
            tgr(forfeited)
        ),
        Event::JobPaid { job, provider, amount } => {
            format!("{} is paid {} for job {job}", n(provider), tgr(amount))
        }
        Event::JobCompleted { job, paid, refunded } => {
            format!("job {job} completes: {} paid out, {} refunded", tgr(paid), tgr(refunded))
        }
        Event::JobDisputed { job } => {
            format!("job {job} is disputed: the budget is held for a referee committee")
        }
        Event::JobAudited { job, committee } => {
            format!("job {job} is drawn for a random audit (committee {committee})")
        }
        Event::CommitteeDrawn { committee, round, members, .. } => format!(
            "committee {committee} draws {} for round {round}",
            members.iter().map(n).collect::<Vec<_>>().join(", ")
        ),
        Event::RefereeRevealed { committee, provider, vote } => {
            format!("{} votes {}… on committee {committee}", n(provider), &vote.to_hex()[..12])
        }
        Event::RefereeForfeited { committee, provider, deposit } => format!(
            "{} loses its {} referee deposit on committee {committee} (silent or outvoted)",
            n(provider),
            tgr(deposit)
        ),
        Event::RefereePaid { committee, provider, fee, reward } => format!(
            "{} is paid {} (and {} of forfeited deposits) for committee {committee}",
            n(provider),
            tgr(fee),
            tgr(reward)
        ),
        Event::CommitteeConcluded { committee, verdict, .. } => match verdict {
            Some(v) => format!("committee {committee} concludes: verdict {}…", &v.to_hex()[..12]),
            None => format!("committee {committee} concludes with no verdict"),
        },
        Event::ProviderSlashed { provider, job, stake, deposit } => format!(
            "{} is slashed {} of stake and {} of deposit for a wrong result on job {job}",
            n(provider),
            tgr(stake),
            tgr(deposit)
        ),
        Event::ProviderJailed { provider } => {
            format!("{} is jailed: its stake is below the minimum", n(provider))
        }
        Event::ProviderUnjailed { provider } => format!("{} bonds enough to leave jail", n(provider)),
        Event::JobChallengeStarted { job, .. } => format!("job {job}: one result, open to challenge"),
        Event::JobFailed { job, reason, refunded } => {
            format!("job {job} fails ({reason}); {} refunded", tgr(refunded))
        }
        Event::JobCancelled { job, refunded } => {
            format!("job {job} is cancelled; {} refunded", tgr(refunded))
        }
        Event::UnbondingStarted { provider, amount, .. } => {
            format!("{} starts unbonding {}", n(provider), tgr(amount))
        }
        Event::UnbondingCompleted { provider, amount } => {
            format!("{} gets {} of stake back", n(provider), tgr(amount))
        }
        Event::ChannelOpened { channel, client, provider, deposit } => {
            format!("{} opens payment channel {channel} to {} with {}", n(client), n(provider), tgr(deposit))
        }
        Event::VoucherRedeemed { channel, provider, amount, .. } => {
            format!("{} redeems {} from channel {channel}", n(provider), tgr(amount))
        }
        Event::ChannelClosed { channel, client, refunded } => {
            format!("channel {channel} closes; {} goes back to {}", tgr(refunded), n(client))
        }
        Event::RecordRemoved { record, owner, refunded } => format!(
            "{record} is removed from the state after its retention period; its storage deposit of {} goes back \
             to {}",
            tgr(refunded),
            n(owner)
        ),
        Event::ModelAnnounced { provider, name, .. } => format!("{} offers model {name}", n(provider)),
        Event::ChannelToppedUp { .. }
        | Event::ChannelClosing { .. }
        | Event::ModelWithdrawn { .. }
        | Event::Transfer { .. }
        | Event::FeePaid { .. }
        | Event::OrderClosed { .. }
        | Event::ProviderUpdated { .. }
        | Event::StakeBonded { .. }
        | Event::JobBidReturned { .. }
        | Event::CommitteeRevealStarted { .. }
        | Event::RefereeCommitted { .. }
        | Event::JobVerdict { .. } => return None,
    })
}
