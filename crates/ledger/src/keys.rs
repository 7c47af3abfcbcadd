//! The key layout. Integers are big-endian so that byte order is numeric order, which the time-ordered timer
//! index and the paged listings rely on.

use tensorgrid_types::job::JobId;
use tensorgrid_types::market::{BidId, Dseq, OrderId};
use tensorgrid_types::Address;

pub(crate) const ACCOUNT: &[u8] = b"a/";
pub(crate) const PROVIDER: &[u8] = b"p/";
pub(crate) const DEPLOYMENT: &[u8] = b"d/";
pub(crate) const ORDER: &[u8] = b"o/";
pub(crate) const BID: &[u8] = b"b/";
pub(crate) const LEASE: &[u8] = b"l/";
pub(crate) const JOB: &[u8] = b"j/";
pub(crate) const JOB_BID: &[u8] = b"jb/";
pub(crate) const CHANNEL: &[u8] = b"c/";
pub(crate) const MODEL_OFFER: &[u8] = b"mo/";
pub(crate) const IX_MODEL_OF_PROVIDER: &[u8] = b"x/mp/";
pub(crate) const MODEL_PRICE_MEMORY: &[u8] = b"mm/";
pub(crate) const TIMER: &[u8] = b"t/";
pub(crate) const IX_OPEN_ORDER: &[u8] = b"x/oo/";
pub(crate) const IX_DEPLOYMENT_BY_OWNER: &[u8] = b"x/do/";
pub(crate) const IX_LEASE_BY_PROVIDER: &[u8] = b"x/lp/";
pub(crate) const IX_OPEN_JOB: &[u8] = b"x/oj/";
pub(crate) const COMMITTEE: &[u8] = b"k/";
pub(crate) const IX_REFEREE: &[u8] = b"x/rf/";

pub(crate) const CHAIN: &[u8] = b"m/chain";
pub(crate) const PARAMS: &[u8] = b"m/params";
pub(crate) const SUPPLY: &[u8] = b"m/supply";
pub(crate) const SEQ_DSEQ: &[u8] = b"m/seq/dseq";
pub(crate) const SEQ_JOB: &[u8] = b"m/seq/job";
pub(crate) const SEQ_CHANNEL: &[u8] = b"m/seq/channel";
pub(crate) const SEQ_COMMITTEE: &[u8] = b"m/seq/committee";

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub(crate) fn committee(id: tensorgrid_types::committee::CommitteeId) -> Vec<u8> {
    join(&[COMMITTEE, &id.to_be_bytes()])
}

/// Providers that accept committee seats for `runtime`, by address. The runtime enters as its hash, so every
/// runtime's entries share one fixed-length prefix.
pub(crate) fn referees_for(runtime: &str) -> Vec<u8> {
    join(&[IX_REFEREE, tensorgrid_types::Hash::of(runtime.as_bytes()).as_bytes()])
}

pub(crate) fn ix_referee(runtime: &str, provider: &Address) -> Vec<u8> {
    join(&[&referees_for(runtime), provider.as_bytes()])
}

pub(crate) fn account(a: &Address) -> Vec<u8> {
    join(&[ACCOUNT, a.as_bytes()])
}

pub(crate) fn provider(a: &Address) -> Vec<u8> {
    join(&[PROVIDER, a.as_bytes()])
}

pub(crate) fn deployment(dseq: Dseq) -> Vec<u8> {
    join(&[DEPLOYMENT, &dseq.to_be_bytes()])
}

pub(crate) fn order_suffix(id: &OrderId) -> Vec<u8> {
    join(&[&id.dseq.to_be_bytes(), &id.gseq.to_be_bytes()])
}

pub(crate) fn order(id: &OrderId) -> Vec<u8> {
    join(&[ORDER, &order_suffix(id)])
}

pub(crate) fn orders_of(dseq: Dseq) -> Vec<u8> {
    join(&[ORDER, &dseq.to_be_bytes()])
}

pub(crate) fn bid(id: &BidId) -> Vec<u8> {
    join(&[BID, &order_suffix(&id.order()), id.provider.as_bytes()])
}

pub(crate) fn bids_of(order: &OrderId) -> Vec<u8> {
    join(&[BID, &order_suffix(order)])
}

pub(crate) fn bids_of_deployment(dseq: Dseq) -> Vec<u8> {
    join(&[BID, &dseq.to_be_bytes()])
}

pub(crate) fn lease(id: &BidId) -> Vec<u8> {
    join(&[LEASE, &order_suffix(&id.order()), id.provider.as_bytes()])
}

pub(crate) fn leases_of(dseq: Dseq) -> Vec<u8> {
    join(&[LEASE, &dseq.to_be_bytes()])
}

pub(crate) fn job(id: JobId) -> Vec<u8> {
    join(&[JOB, &id.to_be_bytes()])
}

pub(crate) fn channel(id: tensorgrid_types::channel::ChannelId) -> Vec<u8> {
    join(&[CHANNEL, &id.to_be_bytes()])
}

pub(crate) fn model_offer(model_hash: &tensorgrid_types::Hash, provider: &Address) -> Vec<u8> {
    join(&[MODEL_OFFER, model_hash.as_bytes(), provider.as_bytes()])
}

pub(crate) fn model_offers_of(model_hash: &tensorgrid_types::Hash) -> Vec<u8> {
    join(&[MODEL_OFFER, model_hash.as_bytes()])
}

/// The price of a withdrawn offer, remembered for the notice period so that withdrawing and announcing again
/// is no way around the notice a price rise must give.
pub(crate) fn model_price_memory(model_hash: &tensorgrid_types::Hash, provider: &Address) -> Vec<u8> {
    join(&[MODEL_PRICE_MEMORY, model_hash.as_bytes(), provider.as_bytes()])
}

pub(crate) fn ix_model_of_provider(provider: &Address, model_hash: &tensorgrid_types::Hash) -> Vec<u8> {
    join(&[IX_MODEL_OF_PROVIDER, provider.as_bytes(), model_hash.as_bytes()])
}

pub(crate) fn ix_models_of_provider(provider: &Address) -> Vec<u8> {
    join(&[IX_MODEL_OF_PROVIDER, provider.as_bytes()])
}

pub(crate) fn job_bid(id: JobId, provider: &Address) -> Vec<u8> {
    join(&[JOB_BID, &id.to_be_bytes(), provider.as_bytes()])
}

pub(crate) fn job_bids_of(id: JobId) -> Vec<u8> {
    join(&[JOB_BID, &id.to_be_bytes()])
}

pub(crate) fn ix_open_order(id: &OrderId) -> Vec<u8> {
    join(&[IX_OPEN_ORDER, &order_suffix(id)])
}

pub(crate) fn ix_deployment_by_owner(owner: &Address, dseq: Dseq) -> Vec<u8> {
    join(&[IX_DEPLOYMENT_BY_OWNER, owner.as_bytes(), &dseq.to_be_bytes()])
}

pub(crate) fn ix_deployments_of_owner(owner: &Address) -> Vec<u8> {
    join(&[IX_DEPLOYMENT_BY_OWNER, owner.as_bytes()])
}

pub(crate) fn ix_lease_by_provider(id: &BidId) -> Vec<u8> {
    join(&[IX_LEASE_BY_PROVIDER, id.provider.as_bytes(), &order_suffix(&id.order())])
}

pub(crate) fn ix_leases_of_provider(provider: &Address) -> Vec<u8> {
    join(&[IX_LEASE_BY_PROVIDER, provider.as_bytes()])
}

pub(crate) fn ix_open_job(id: JobId) -> Vec<u8> {
    join(&[IX_OPEN_JOB, &id.to_be_bytes()])
}

pub(crate) fn timer(at_ms: u64, kind_bytes: &[u8]) -> Vec<u8> {
    join(&[TIMER, &at_ms.to_be_bytes(), kind_bytes])
}
