//! The lease market (Akash's model): a deployment holds groups; each group becomes an order; providers bid;
//! the accepted bid becomes a lease paid from the deployment's escrow.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::{Address, Hash};
use crate::limits::{self, Malformed};
use crate::resources::{self, PlacementRequirements, ResourceUnit};
use crate::time::Timestamp;

/// A deployment's global sequence number, assigned by the ledger.
pub type Dseq = u64;

/// One order per group: `dseq/gseq`, with `gseq` counting groups from 1 as Akash does.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct OrderId {
    pub dseq: Dseq,
    pub gseq: u32,
}

/// A provider's bid on an order, named `dseq/gseq/provider` as in Akash. A lease keeps the id of the bid it
/// came from.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct BidId {
    pub dseq: Dseq,
    pub gseq: u32,
    pub provider: Address,
}

pub type LeaseId = BidId;

impl BidId {
    pub fn order(&self) -> OrderId {
        OrderId { dseq: self.dseq, gseq: self.gseq }
    }
}

impl OrderId {
    pub fn bid(&self, provider: Address) -> BidId {
        BidId { dseq: self.dseq, gseq: self.gseq, provider }
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dseq, self.gseq)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.dseq, self.gseq, self.provider)
    }
}

impl fmt::Debug for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {what} id; expected {expected}")]
pub struct IdParseError {
    pub text: String,
    pub what: &'static str,
    pub expected: &'static str,
}

impl FromStr for OrderId {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || IdParseError { text: text.to_string(), what: "order", expected: "`dseq/gseq`" };
        let (dseq, gseq) = text.split_once('/').ok_or_else(err)?;
        Ok(OrderId { dseq: dseq.parse().map_err(|_| err())?, gseq: gseq.parse().map_err(|_| err())? })
    }
}

impl FromStr for BidId {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || IdParseError { text: text.to_string(), what: "bid", expected: "`dseq/gseq/tg1…`" };
        let mut parts = text.splitn(3, '/');
        let (Some(dseq), Some(gseq), Some(provider)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err());
        };
        Ok(BidId {
            dseq: dseq.parse().map_err(|_| err())?,
            gseq: gseq.parse().map_err(|_| err())?,
            provider: provider.parse().map_err(|_| err())?,
        })
    }
}

/// What a tenant asks for in one group: resources, placement, and the most it pays per hour for the group.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub requirements: PlacementRequirements,
    pub resources: Vec<ResourceUnit>,
    /// utgr per hour for the whole group.
    pub max_price: Amount,
}

impl GroupSpec {
    /// Stateless checks on a group (names, counts, sizes, a non-zero price); `field` prefixes the reported path.
    pub fn validate(&self, field: &str) -> Result<(), Malformed> {
        limits::check_name(&format!("{field}.name"), &self.name)?;
        resources::validate_attributes(
            &format!("{field}.requirements.attributes"),
            &self.requirements.attributes,
        )?;
        let auditors = self.requirements.signed_by.all_of.len() + self.requirements.signed_by.any_of.len();
        limits::check_len(&format!("{field}.requirements.signed_by"), auditors, limits::MAX_AUDITORS)?;
        if self.resources.is_empty() {
            return Err(Malformed::new(
                format!("{field}.resources"),
                "is empty; a group needs at least one unit",
            ));
        }
        limits::check_len(&format!("{field}.resources"), self.resources.len(), limits::MAX_RESOURCE_UNITS)?;
        for (i, unit) in self.resources.iter().enumerate() {
            if unit.count == 0 || unit.count > limits::MAX_UNIT_COUNT {
                return Err(Malformed::new(
                    format!("{field}.resources[{i}].count"),
                    format!("is {}; it must be between 1 and {}", unit.count, limits::MAX_UNIT_COUNT),
                ));
            }
            unit.resources.validate(&format!("{field}.resources[{i}].resources"))?;
        }
        if self.max_price.is_zero() {
            return Err(Malformed::new(
                format!("{field}.max_price"),
                "is zero; no provider can bid below it",
            ));
        }
        Ok(())
    }
}

/// Why an order, bid, lease or deployment closed. Every close records one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The tenant closed it.
    TenantClosed,
    /// The provider closed it.
    ProviderClosed,
    /// The escrow could not pay for more time.
    Overdrawn,
    /// The provider stopped sending heartbeats past the grace period.
    ProviderUnresponsive,
    /// Another bid won the order.
    LostAuction,
    /// The provider withdrew its bid.
    BidWithdrawn,
    /// A cheaper bid entered a full bid book and pushed this one out.
    Outbid,
    /// The deployment holding it closed.
    DeploymentClosed,
    /// Every group of the deployment ended, so the deployment closed itself and refunded its escrow.
    AllGroupsClosed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            CloseReason::TenantClosed => "closed by the tenant",
            CloseReason::ProviderClosed => "closed by the provider",
            CloseReason::Overdrawn => "escrow overdrawn",
            CloseReason::ProviderUnresponsive => "provider missed its heartbeats",
            CloseReason::LostAuction => "another bid won",
            CloseReason::BidWithdrawn => "bid withdrawn by the provider",
            CloseReason::Outbid => "outbid in a full bid book",
            CloseReason::DeploymentClosed => "deployment closed",
            CloseReason::AllGroupsClosed => "every group ended",
        };
        f.write_str(text)
    }
}

/// When and why something closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Closure {
    pub reason: CloseReason,
    pub at: Timestamp,
}

/// The escrow that funds every lease of one deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Escrow {
    /// What the escrow holds now, after the last settlement.
    pub balance: Amount,
    pub total_deposited: Amount,
    pub total_paid: Amount,
    pub refunded: Amount,
    /// When the escrow runs dry at the current rates; `None` when nothing accrues.
    pub dry_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeploymentState {
    Active,
    Closed { reason: CloseReason, at: Timestamp },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Deployment {
    pub dseq: Dseq,
    pub owner: Address,
    /// blake3 of the canonical JSON of the mapped deployment; providers recompute it from the manifest they
    /// receive and refuse a mismatch.
    pub manifest_hash: Hash,
    pub state: DeploymentState,
    pub created_at: Timestamp,
    pub groups: u32,
    /// Orders ever created for it: the groups at creation, plus one for each group a provider's close put
    /// back on the market. The next order's `gseq` is this plus one.
    #[serde(default)]
    pub orders: u32,
    pub escrow: Escrow,
    /// Locked from the owner for as long as the record is stored; refunded when it is removed, a
    /// retention period after the deployment closed.
    #[serde(default)]
    pub storage_deposit: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    /// Taking bids.
    Open,
    /// A bid won; the lease is running.
    Active,
    Closed {
        reason: CloseReason,
        at: Timestamp,
    },
}

/// A bid in a bounded book of live bids (an order's or a job's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct LiveBid {
    pub provider: Address,
    pub price: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub owner: Address,
    /// Which of the deployment's groups (1-based, the manifest's order) it serves: its own `gseq` for the
    /// orders a deployment starts with; an order posted again after a provider closed its lease keeps the
    /// group of the order it replaces under a new `gseq`.
    #[serde(default)]
    pub group: u32,
    pub spec: GroupSpec,
    pub state: OrderState,
    pub created_at: Timestamp,
    /// When the bidding window closes and the lowest live bid is taken. `None` while no window runs: after a
    /// window closed without bids, the next bid opens a new one.
    pub window_ends: Option<Timestamp>,
    /// Live (open) bids, at most `max_bids_per_order`.
    pub live_bids: Vec<LiveBid>,
}

impl Order {
    /// The deployment group (1-based, the manifest's order) this order serves; orders written before
    /// `group` existed serve the group of their own `gseq`.
    pub fn group_number(&self) -> u32 {
        if self.group == 0 {
            self.id.gseq
        } else {
            self.group
        }
    }
}

impl LiveBid {
    /// Makes room for a bid at `price` in a book holding at most `max` live bids. With room to spare, nothing
    /// changes. In a full book the new bid must be strictly cheaper than the worst (highest price, then highest
    /// address), which is removed and returned so the caller can close it; otherwise `Err(worst price)`.
    pub fn make_room(book: &mut Vec<LiveBid>, max: usize, price: Amount) -> Result<Option<LiveBid>, Amount> {
        if book.len() < max {
            return Ok(None);
        }
        let Some(worst) = book.iter().copied().max_by_key(|b| (b.price, b.provider)) else {
            return Ok(None);
        };
        if price >= worst.price {
            return Err(worst.price);
        }
        book.retain(|b| b.provider != worst.provider);
        Ok(Some(worst))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BidState {
    Open,
    /// The bid won; its lease is running.
    Active,
    Closed {
        reason: CloseReason,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Bid {
    pub id: BidId,
    /// utgr per hour.
    pub price: Amount,
    /// Locked from the provider while the bid is open or active; returned when it closes.
    pub deposit: Amount,
    pub state: BidState,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseState {
    Active,
    Closed { reason: CloseReason, at: Timestamp },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub owner: Address,
    /// utgr per hour.
    pub price: Amount,
    pub state: LeaseState,
    /// Accrual starts here.
    pub started_at: Timestamp,
    /// What the provider has been paid so far. Accrual is cumulative:
    /// `owed = ⌊price × (end − started_at) / 1 h⌋ − paid`, so settling more or less often never changes
    /// the total.
    pub paid: Amount,
    /// The time up to which `paid` covers the lease.
    pub settled_to: Timestamp,
}

/// `⌊price × elapsed / 1 h⌋`: what a lease has accrued in total after running `elapsed_ms` (the ledger's rule;
/// clients use it to show what a lease owes between settlements). `None` on overflow.
pub fn accrued(price_per_hour: Amount, elapsed_ms: u64) -> Option<Amount> {
    price_per_hour
        .0
        .checked_mul(u128::from(elapsed_ms))
        .map(|v| Amount(v / u128::from(crate::time::MS_PER_HOUR)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn a_full_book_admits_only_a_cheaper_bid_and_evicts_the_worst() {
        let who = |i: u8| SecretKey::from_label(&format!("p{i}")).address();
        let bid = |i: u8, price: u128| LiveBid { provider: who(i), price: Amount(price) };
        let mut book = vec![bid(0, 10), bid(1, 30), bid(2, 20)];
        assert_eq!(LiveBid::make_room(&mut book, 4, Amount(99)), Ok(None), "room to spare");
        assert_eq!(
            LiveBid::make_room(&mut book, 3, Amount(30)),
            Err(Amount(30)),
            "a tie with the worst is refused"
        );
        assert_eq!(book.len(), 3);
        assert_eq!(LiveBid::make_room(&mut book, 3, Amount(29)), Ok(Some(bid(1, 30))));
        assert_eq!(book, vec![bid(0, 10), bid(2, 20)]);
        // Among equal worst prices, the higher address goes first, so eviction never depends on arrival.
        let mut tied = vec![bid(3, 50), bid(4, 50)];
        let evicted = LiveBid::make_room(&mut tied, 2, Amount(1)).unwrap().unwrap();
        assert_eq!(evicted.provider, who(3).max(who(4)));
    }
}
