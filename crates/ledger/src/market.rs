//! Deployments, orders, bids and leases (Akash's model).

use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::market::{
    Bid, BidId, BidState, CloseReason, Deployment, DeploymentState, Dseq, Escrow, GroupSpec, Lease,
    LeaseState, LiveBid, Order, OrderId, OrderState,
};
use tensorgrid_types::{Address, Amount, Event, Hash, TxError};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

/// The most orders a deployment gets per group: the first, and reposts after providers closed leases.
pub(crate) const MAX_ORDERS_PER_GROUP: u32 = 4;

impl<S: Store + ?Sized> State<'_, S> {
    // --- records

    pub(crate) fn deployment(&self, dseq: Dseq) -> ExecResult<Option<Deployment>> {
        Ok(self.get(&keys::deployment(dseq))?)
    }

    pub(crate) fn put_deployment(&mut self, deployment: &Deployment) {
        self.put(keys::deployment(deployment.dseq), deployment);
    }

    pub(crate) fn must_deployment(&self, dseq: Dseq) -> ExecResult<Deployment> {
        Ok(self.deployment(dseq)?.ok_or(TxError::DeploymentNotFound { dseq })?)
    }

    pub(crate) fn order(&self, id: &OrderId) -> ExecResult<Option<Order>> {
        Ok(self.get(&keys::order(id))?)
    }

    pub(crate) fn must_order(&self, id: &OrderId) -> ExecResult<Order> {
        Ok(self.order(id)?.ok_or(TxError::OrderNotFound { order: *id })?)
    }

    pub(crate) fn put_order(&mut self, order: &Order) {
        self.put(keys::order(&order.id), order);
    }

    pub(crate) fn bid(&self, id: &BidId) -> ExecResult<Option<Bid>> {
        Ok(self.get(&keys::bid(id))?)
    }

    pub(crate) fn must_bid(&self, id: &BidId) -> ExecResult<Bid> {
        Ok(self.bid(id)?.ok_or(TxError::BidNotFound { bid: *id })?)
    }

    pub(crate) fn lease(&self, id: &BidId) -> ExecResult<Option<Lease>> {
        Ok(self.get(&keys::lease(id))?)
    }

    pub(crate) fn must_lease(&self, id: &BidId) -> ExecResult<Lease> {
        Ok(self.lease(id)?.ok_or(TxError::LeaseNotFound { lease: *id })?)
    }

    pub(crate) fn active_leases_of(&self, dseq: Dseq) -> ExecResult<Vec<Lease>> {
        let leases: Vec<Lease> = self.scan_values(&keys::leases_of(dseq))?;
        Ok(leases.into_iter().filter(|l| l.state == LeaseState::Active).collect())
    }

    pub(crate) fn next_seq(&mut self, key: &[u8]) -> ExecResult<u64> {
        let current: u64 = self.get(key)?.unwrap_or(0);
        let next = current.checked_add(1).ok_or_else(|| overflow("sequence"))?;
        self.put(key.to_vec(), &next);
        Ok(next)
    }

    // --- transactions

    pub(crate) fn create_deployment(
        &mut self,
        owner: Address,
        groups: Vec<GroupSpec>,
        deposit: Amount,
        manifest_hash: Hash,
    ) -> ExecResult<()> {
        if deposit < self.params.min_deployment_deposit {
            return Err(
                TxError::DepositTooSmall { deposit, minimum: self.params.min_deployment_deposit }.into()
            );
        }
        for group in &groups {
            if group.max_price > self.params.max_price_per_hour {
                return Err(TxError::PriceTooHigh {
                    price: group.max_price,
                    max: self.params.max_price_per_hour,
                }
                .into());
            }
        }
        self.lock(&owner, Module::Escrow, deposit)?;
        let storage_deposit = self.lock_storage_deposit(&owner)?;
        let dseq = self.next_seq(keys::SEQ_DSEQ)?;
        let now = self.now;
        let deployment = Deployment {
            dseq,
            owner,
            manifest_hash,
            state: DeploymentState::Active,
            created_at: now,
            groups: groups.len() as u32,
            orders: groups.len() as u32,
            escrow: Escrow { balance: deposit, total_deposited: deposit, ..Escrow::default() },
            storage_deposit,
        };
        self.put_deployment(&deployment);
        self.put_raw(keys::ix_deployment_by_owner(&owner, dseq), Vec::new());
        self.emit(Event::DeploymentCreated { dseq, owner, deposit });
        for (i, spec) in groups.into_iter().enumerate() {
            let gseq = i as u32 + 1;
            self.post_order(OrderId { dseq, gseq }, owner, gseq, spec);
        }
        Ok(())
    }

    /// Opens an order for one of a deployment's groups, its bidding window starting now.
    fn post_order(&mut self, id: OrderId, owner: Address, group: u32, spec: GroupSpec) {
        let window_ends = self.now.plus(self.params.bid_window_ms);
        let max_price = spec.max_price;
        let order = Order {
            id,
            owner,
            group,
            spec,
            state: OrderState::Open,
            created_at: self.now,
            window_ends: Some(window_ends),
            live_bids: Vec::new(),
        };
        self.put_order(&order);
        self.put_raw(keys::ix_open_order(&id), Vec::new());
        self.set_timer(window_ends, Timer::OrderWindow(id));
        self.emit(Event::OrderCreated { order: id, max_price });
    }

    /// A provider closed its lease: the group goes back on the market as a new order (a new `gseq`, the
    /// closed records stay closed) funded by the same escrow, so a provider that wins and walks away cannot
    /// close the tenant's deployment. A deployment gets at most [`MAX_ORDERS_PER_GROUP`] orders per group in
    /// all, so a tenant that never sends its manifest (providers close such leases) is not charged for the
    /// wait over and over.
    fn repost_group(&mut self, closed: &OrderId) -> ExecResult<()> {
        let order = self.must_order(closed)?;
        let mut deployment = self.must_deployment(closed.dseq)?;
        let most = deployment.groups.saturating_mul(MAX_ORDERS_PER_GROUP);
        if deployment.state != DeploymentState::Active || deployment.orders >= most {
            return Ok(());
        }
        deployment.orders = deployment.orders.checked_add(1).ok_or_else(|| overflow("order count"))?;
        let id = OrderId { dseq: closed.dseq, gseq: deployment.orders };
        self.put_deployment(&deployment);
        self.post_order(id, order.owner, order.group_number(), order.spec);
        Ok(())
    }

    fn owned_active_deployment(&self, signer: Address, dseq: Dseq) -> ExecResult<Deployment> {
        let deployment = self.must_deployment(dseq)?;
        if deployment.owner != signer {
            return Err(TxError::NotOwner {
                signer,
                owner: deployment.owner,
                what: format!("deployment {dseq}"),
            }
            .into());
        }
        if deployment.state != DeploymentState::Active {
            return Err(TxError::DeploymentClosed { dseq }.into());
        }
        Ok(deployment)
    }

    pub(crate) fn deposit_deployment(
        &mut self,
        signer: Address,
        dseq: Dseq,
        amount: Amount,
    ) -> ExecResult<()> {
        self.owned_active_deployment(signer, dseq)?;
        self.settle(dseq)?;
        self.lock(&signer, Module::Escrow, amount)?;
        let mut deployment = self.must_deployment(dseq)?;
        let escrow = &mut deployment.escrow;
        escrow.balance = escrow.balance.checked_add(amount).ok_or_else(|| overflow("escrow balance"))?;
        escrow.total_deposited =
            escrow.total_deposited.checked_add(amount).ok_or_else(|| overflow("escrow deposits"))?;
        let balance = escrow.balance;
        self.put_deployment(&deployment);
        self.reschedule_dry(dseq)?;
        self.emit(Event::DeploymentDeposited { dseq, amount, balance });
        Ok(())
    }

    pub(crate) fn close_deployment_by_owner(&mut self, signer: Address, dseq: Dseq) -> ExecResult<()> {
        self.owned_active_deployment(signer, dseq)?;
        self.close_deployment(dseq, CloseReason::TenantClosed)
    }

    pub(crate) fn create_bid(&mut self, signer: Address, order_id: OrderId, price: Amount) -> ExecResult<()> {
        let provider = self.live_provider(&signer)?;
        let mut order = self.must_order(&order_id)?;
        if order.state != OrderState::Open {
            return Err(TxError::OrderNotOpen { order: order_id }.into());
        }
        if price > order.spec.max_price {
            return Err(TxError::PriceTooHigh { price, max: order.spec.max_price }.into());
        }
        if let Some(missing) = order.spec.requirements.first_unmet(&provider.attributes) {
            return Err(
                TxError::AttributeNotMet { key: missing.key.clone(), value: missing.value.clone() }.into()
            );
        }
        let bid_id = order_id.bid(signer);
        if self.bid(&bid_id)?.is_some() {
            return Err(TxError::DuplicateBid { order: order_id }.into());
        }
        let room = LiveBid::make_room(&mut order.live_bids, self.params.max_bids_per_order as usize, price);
        if let Some(evicted) = room.map_err(|worst| TxError::BidNotCompetitive { price, worst })? {
            self.close_bid_record(&order_id.bid(evicted.provider), CloseReason::Outbid)?;
        }
        let deposit = self.params.bid_deposit;
        self.lock(&signer, Module::BidDeposits, deposit)?;
        let now = self.now;
        self.put(
            keys::bid(&bid_id),
            &Bid { id: bid_id, price, deposit, state: BidState::Open, created_at: now },
        );
        order.live_bids.push(LiveBid { provider: signer, price });
        if order.window_ends.is_none() {
            let ends = now.plus(self.params.bid_window_ms);
            order.window_ends = Some(ends);
            self.set_timer(ends, Timer::OrderWindow(order_id));
        }
        self.put_order(&order);
        self.emit(Event::BidCreated { bid: bid_id, price });
        Ok(())
    }

    pub(crate) fn close_bid(&mut self, signer: Address, bid_id: BidId) -> ExecResult<()> {
        let bid = self.must_bid(&bid_id)?;
        if signer != bid_id.provider {
            return Err(
                TxError::NotOwner { signer, owner: bid_id.provider, what: format!("bid {bid_id}") }.into()
            );
        }
        if bid.state != BidState::Open {
            return Err(TxError::BidNotOpen { bid: bid_id }.into());
        }
        self.close_bid_record(&bid_id, CloseReason::BidWithdrawn)?;
        let mut order = self.must_order(&bid_id.order())?;
        order.live_bids.retain(|b| b.provider != signer);
        self.put_order(&order);
        Ok(())
    }

    pub(crate) fn accept_bid(&mut self, signer: Address, bid_id: BidId) -> ExecResult<()> {
        let bid = self.must_bid(&bid_id)?;
        let order = self.must_order(&bid_id.order())?;
        if signer != order.owner {
            return Err(TxError::NotOwner {
                signer,
                owner: order.owner,
                what: format!("order {}", order.id),
            }
            .into());
        }
        if order.state != OrderState::Open {
            return Err(TxError::OrderNotOpen { order: order.id }.into());
        }
        if bid.state != BidState::Open {
            return Err(TxError::BidNotOpen { bid: bid_id }.into());
        }
        self.live_provider(&bid_id.provider)?;
        self.create_lease(bid_id)
    }

    pub(crate) fn close_lease_by(&mut self, signer: Address, lease_id: BidId) -> ExecResult<()> {
        let lease = self.must_lease(&lease_id)?;
        if lease.state != LeaseState::Active {
            return Err(TxError::LeaseNotActive { lease: lease_id }.into());
        }
        let reason = if signer == lease.owner {
            CloseReason::TenantClosed
        } else if signer == lease_id.provider {
            CloseReason::ProviderClosed
        } else {
            return Err(
                TxError::NotOwner { signer, owner: lease.owner, what: format!("lease {lease_id}") }.into()
            );
        };
        self.settle(lease_id.dseq)?;
        self.close_lease_record(&lease_id, reason)?;
        if reason == CloseReason::ProviderClosed {
            self.repost_group(&lease_id.order())?;
        }
        self.after_lease_closed(lease_id.dseq)
    }

    pub(crate) fn withdraw_lease(&mut self, signer: Address, lease_id: BidId) -> ExecResult<()> {
        let lease = self.must_lease(&lease_id)?;
        if signer != lease_id.provider {
            return Err(TxError::NotOwner {
                signer,
                owner: lease_id.provider,
                what: format!("lease {lease_id}"),
            }
            .into());
        }
        if lease.state != LeaseState::Active {
            return Err(TxError::LeaseNotActive { lease: lease_id }.into());
        }
        if self.settle(lease_id.dseq)? {
            self.close_deployment(lease_id.dseq, CloseReason::Overdrawn)?;
        }
        Ok(())
    }

    // --- deadlines

    /// The bidding window closed: the cheapest bid from a live provider wins, ties broken by the block's
    /// randomness (never by who came first). Without a valid bid the order stays open and the next bid opens a
    /// new window.
    pub(crate) fn on_order_window_due(&mut self, order_id: OrderId) -> ExecResult<()> {
        let Some(mut order) = self.order(&order_id)? else { return Ok(()) };
        if order.state != OrderState::Open || order.window_ends.is_none_or(|t| t > self.now) {
            return Ok(());
        }
        order.window_ends = None;
        self.put_order(&order);
        let mut best: Option<(Amount, Hash, Address)> = None;
        for live in &order.live_bids {
            if self.live_provider(&live.provider).is_err() {
                continue;
            }
            let rank =
                (live.price, self.tiebreak(&keys::order_suffix(&order_id), &live.provider), live.provider);
            if best.as_ref().is_none_or(|b| rank < *b) {
                best = Some(rank);
            }
        }
        match best {
            Some((_, _, provider)) => self.create_lease(order_id.bid(provider)),
            None => Ok(()),
        }
    }

    /// A per-block random rank for `who` in the contest `context`: equal prices are ordered by it.
    pub(crate) fn tiebreak(&self, context: &[u8], who: &Address) -> Hash {
        Hash::of_parts(&[b"tensorgrid/tiebreak", self.randomness.as_bytes(), context, who.as_bytes()])
    }

    /// Closes every active lease of a provider that went silent.
    pub(crate) fn close_leases_of_provider(&mut self, provider: &Address) -> ExecResult<()> {
        let lease_ids: Vec<BidId> = self.scan_values(&keys::ix_leases_of_provider(provider))?;
        for lease_id in lease_ids {
            self.settle(lease_id.dseq)?;
            self.close_lease_record(&lease_id, CloseReason::ProviderUnresponsive)?;
            self.after_lease_closed(lease_id.dseq)?;
        }
        Ok(())
    }

    // --- internals

    fn create_lease(&mut self, bid_id: BidId) -> ExecResult<()> {
        let dseq = bid_id.dseq;
        // Everything accrued so far is settled at the old rates before the new lease changes them.
        self.settle(dseq)?;
        let mut order = self.must_order(&bid_id.order())?;
        let mut bid = self.must_bid(&bid_id)?;
        bid.state = BidState::Active;
        self.put(keys::bid(&bid_id), &bid);
        for loser in order.live_bids.iter().filter(|b| b.provider != bid_id.provider) {
            self.close_bid_record(&order.id.bid(loser.provider), CloseReason::LostAuction)?;
        }
        order.live_bids.clear();
        if let Some(ends) = order.window_ends.take() {
            self.clear_timer(ends, Timer::OrderWindow(order.id));
        }
        order.state = OrderState::Active;
        self.put_order(&order);
        self.delete(keys::ix_open_order(&order.id));
        let now = self.now;
        let lease = Lease {
            id: bid_id,
            owner: order.owner,
            price: bid.price,
            state: LeaseState::Active,
            started_at: now,
            paid: Amount::ZERO,
            settled_to: now,
        };
        self.put(keys::lease(&bid_id), &lease);
        self.put(keys::ix_lease_by_provider(&bid_id), &bid_id);
        let mut provider =
            self.provider(&bid_id.provider)?.ok_or_else(|| invariant("winning bid's provider vanished"))?;
        provider.active_leases =
            provider.active_leases.checked_add(1).ok_or_else(|| overflow("lease count"))?;
        self.put_provider(&provider);
        self.reschedule_dry(dseq)?;
        self.emit(Event::LeaseCreated { lease: bid_id, owner: order.owner, price: bid.price });
        Ok(())
    }

    /// Closes an open or active bid and returns its deposit.
    fn close_bid_record(&mut self, bid_id: &BidId, reason: CloseReason) -> ExecResult<()> {
        let mut bid =
            self.bid(bid_id)?.ok_or_else(|| invariant(format!("live bid {bid_id} has no record")))?;
        if matches!(bid.state, BidState::Closed { .. }) {
            return Err(invariant(format!("bid {bid_id} closed twice")).into());
        }
        bid.state = BidState::Closed { reason, at: self.now };
        self.put(keys::bid(bid_id), &bid);
        self.release_from(Module::BidDeposits, &bid_id.provider, bid.deposit)?;
        self.emit(Event::BidClosed { bid: *bid_id, reason });
        Ok(())
    }

    /// Closes a settled lease with its bid and order.
    fn close_lease_record(&mut self, lease_id: &BidId, reason: CloseReason) -> ExecResult<()> {
        let mut lease = self.must_lease(lease_id)?;
        let now = self.now;
        lease.state = LeaseState::Closed { reason, at: now };
        self.put(keys::lease(lease_id), &lease);
        self.delete(keys::ix_lease_by_provider(lease_id));
        self.close_bid_record(lease_id, reason)?;
        let mut order = self.must_order(&lease_id.order())?;
        order.state = OrderState::Closed { reason, at: now };
        self.put_order(&order);
        self.emit(Event::OrderClosed { order: order.id, reason });
        let mut provider =
            self.provider(&lease_id.provider)?.ok_or_else(|| invariant("lease's provider vanished"))?;
        provider.active_leases = provider
            .active_leases
            .checked_sub(1)
            .ok_or_else(|| invariant("provider lease count underflow"))?;
        self.put_provider(&provider);
        self.emit(Event::LeaseClosed { lease: *lease_id, owner: lease.owner, reason });
        Ok(())
    }

    fn close_open_order(&mut self, mut order: Order, reason: CloseReason) -> ExecResult<()> {
        for live in std::mem::take(&mut order.live_bids) {
            self.close_bid_record(&order.id.bid(live.provider), reason)?;
        }
        if let Some(ends) = order.window_ends.take() {
            self.clear_timer(ends, Timer::OrderWindow(order.id));
        }
        order.state = OrderState::Closed { reason, at: self.now };
        self.put_order(&order);
        self.delete(keys::ix_open_order(&order.id));
        self.emit(Event::OrderClosed { order: order.id, reason });
        Ok(())
    }

    /// After a lease closed: a deployment with nothing left open or running closes and refunds its escrow;
    /// otherwise its dry time is recomputed for the leases that remain.
    fn after_lease_closed(&mut self, dseq: Dseq) -> ExecResult<()> {
        let orders: Vec<Order> = self.scan_values(&keys::orders_of(dseq))?;
        if orders.iter().all(|o| matches!(o.state, OrderState::Closed { .. })) {
            self.close_deployment(dseq, CloseReason::AllGroupsClosed)
        } else {
            self.reschedule_dry(dseq).map(|_| ())
        }
    }

    /// Settles, closes every lease and open order, and refunds what the escrow still holds to the owner.
    pub(crate) fn close_deployment(&mut self, dseq: Dseq, reason: CloseReason) -> ExecResult<()> {
        self.settle(dseq)?;
        for lease in self.active_leases_of(dseq)? {
            self.close_lease_record(&lease.id, reason)?;
        }
        let orders: Vec<Order> = self.scan_values(&keys::orders_of(dseq))?;
        for order in orders.into_iter().filter(|o| o.state == OrderState::Open) {
            self.close_open_order(order, CloseReason::DeploymentClosed)?;
        }
        let mut deployment = self.must_deployment(dseq)?;
        let refund = deployment.escrow.balance;
        self.release_from(Module::Escrow, &deployment.owner, refund)?;
        let escrow = &mut deployment.escrow;
        escrow.refunded = escrow.refunded.checked_add(refund).ok_or_else(|| overflow("escrow refunds"))?;
        escrow.balance = Amount::ZERO;
        if let Some(at) = escrow.dry_at.take() {
            self.clear_timer(at, Timer::EscrowDry(dseq));
        }
        deployment.state = DeploymentState::Closed { reason, at: self.now };
        self.put_deployment(&deployment);
        self.schedule_removal(StoredRecord::Deployment(dseq));
        self.emit(Event::DeploymentClosed { dseq, owner: deployment.owner, reason, refunded: refund });
        Ok(())
    }
}
