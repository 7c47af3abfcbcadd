//! Payment channels: a client's deposit for one provider, paid out by client-signed cumulative vouchers.
//!
//! Rules: only the client opens, tops up and starts closing; only the provider redeems; a redeem pays
//! `min(voucher, deposit) − redeemed`, so the provider can never take more than the client signed or put
//! in, and the cumulative form means old vouchers are worth nothing new. A client's close waits
//! `channel_challenge_ms`, during which the provider can still redeem; a provider's close is immediate.
//! Closing refunds what is left to the client.

use tensorgrid_types::channel::{Channel, ChannelId, ChannelState, Voucher};
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::query::ChainInfo;
use tensorgrid_types::{Address, Amount, Event, TxError};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

fn state_name(state: &ChannelState) -> String {
    match state {
        ChannelState::Open => "open".into(),
        ChannelState::Closing { .. } => "closing".into(),
        ChannelState::Closed { .. } => "closed".into(),
    }
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn channel(&self, id: ChannelId) -> ExecResult<Option<Channel>> {
        Ok(self.get(&keys::channel(id))?)
    }

    fn must_channel(&self, id: ChannelId) -> ExecResult<Channel> {
        Ok(self.channel(id)?.ok_or(TxError::ChannelNotFound { channel: id })?)
    }

    fn put_channel(&mut self, channel: &Channel) {
        self.put(keys::channel(channel.id), channel);
    }

    pub(crate) fn open_channel(
        &mut self,
        client: Address,
        provider: Address,
        deposit: Amount,
    ) -> ExecResult<()> {
        self.active_provider(&provider)?;
        self.lock(&client, Module::Channels, deposit)?;
        let storage_deposit = self.lock_storage_deposit(&client)?;
        let id = self.next_seq(keys::SEQ_CHANNEL)?;
        let channel = Channel {
            id,
            client,
            provider,
            deposit,
            redeemed: Amount::ZERO,
            state: ChannelState::Open,
            opened_at: self.now,
            storage_deposit,
        };
        self.put_channel(&channel);
        self.emit(Event::ChannelOpened { channel: id, client, provider, deposit });
        Ok(())
    }

    pub(crate) fn top_up_channel(
        &mut self,
        signer: Address,
        id: ChannelId,
        amount: Amount,
    ) -> ExecResult<()> {
        let mut channel = self.must_channel(id)?;
        if signer != channel.client {
            return Err(
                TxError::NotOwner { signer, owner: channel.client, what: format!("channel {id}") }.into()
            );
        }
        if channel.state != ChannelState::Open {
            return Err(TxError::ChannelNotOpen { channel: id, state: state_name(&channel.state) }.into());
        }
        self.lock(&signer, Module::Channels, amount)?;
        channel.deposit = channel.deposit.checked_add(amount).ok_or_else(|| overflow("channel deposit"))?;
        self.put_channel(&channel);
        self.emit(Event::ChannelToppedUp { channel: id, amount, deposit: channel.deposit });
        Ok(())
    }

    pub(crate) fn redeem_voucher(&mut self, signer: Address, voucher: Voucher) -> ExecResult<()> {
        let id = voucher.channel;
        let mut channel = self.must_channel(id)?;
        if signer != channel.provider {
            return Err(
                TxError::NotOwner { signer, owner: channel.provider, what: format!("channel {id}") }.into()
            );
        }
        if let ChannelState::Closed { .. } = channel.state {
            return Err(TxError::ChannelNotOpen { channel: id, state: state_name(&channel.state) }.into());
        }
        let chain: ChainInfo = self.get(keys::CHAIN)?.ok_or_else(|| invariant("no chain info"))?;
        voucher.verify(&channel.client, &chain.chain_id).map_err(|_| TxError::BadVoucher { channel: id })?;
        let allowed = voucher.cumulative.min(channel.deposit);
        let amount = allowed.saturating_sub(channel.redeemed);
        if amount.is_zero() {
            return Err(TxError::NothingToRedeem {
                channel: id,
                cumulative: voucher.cumulative,
                redeemed: channel.redeemed,
            }
            .into());
        }
        self.release_from(Module::Channels, &channel.provider, amount)?;
        channel.redeemed =
            channel.redeemed.checked_add(amount).ok_or_else(|| overflow("channel redeemed"))?;
        self.put_channel(&channel);
        self.emit(Event::VoucherRedeemed {
            channel: id,
            provider: signer,
            amount,
            cumulative: channel.redeemed,
        });
        Ok(())
    }

    pub(crate) fn close_channel(&mut self, signer: Address, id: ChannelId) -> ExecResult<()> {
        let mut channel = self.must_channel(id)?;
        if signer == channel.provider {
            if let ChannelState::Closed { .. } = channel.state {
                return Err(TxError::ChannelNotOpen { channel: id, state: state_name(&channel.state) }.into());
            }
            if let ChannelState::Closing { ends_at } = channel.state {
                self.clear_timer(ends_at, Timer::ChannelClose(id));
            }
            return self.settle_channel(&mut channel);
        }
        if signer != channel.client {
            return Err(
                TxError::NotOwner { signer, owner: channel.client, what: format!("channel {id}") }.into()
            );
        }
        if channel.state != ChannelState::Open {
            return Err(TxError::ChannelNotOpen { channel: id, state: state_name(&channel.state) }.into());
        }
        let ends_at = self.now.plus(self.params.channel_challenge_ms);
        channel.state = ChannelState::Closing { ends_at };
        self.put_channel(&channel);
        self.set_timer(ends_at, Timer::ChannelClose(id));
        self.emit(Event::ChannelClosing { channel: id, ends_at });
        Ok(())
    }

    /// The challenge period of a client's close ended.
    pub(crate) fn channel_challenge_ended(&mut self, id: ChannelId) -> ExecResult<()> {
        let mut channel =
            self.channel(id)?.ok_or_else(|| invariant("a channel timer outlived its channel"))?;
        if matches!(channel.state, ChannelState::Closing { .. }) {
            self.settle_channel(&mut channel)?;
        }
        Ok(())
    }

    /// Closes the channel and refunds what it still holds to the client.
    fn settle_channel(&mut self, channel: &mut Channel) -> ExecResult<()> {
        let refund = channel.balance();
        self.release_from(Module::Channels, &channel.client, refund)?;
        channel.state = ChannelState::Closed { at: self.now, refunded: refund };
        self.put_channel(channel);
        self.schedule_removal(StoredRecord::Channel(channel.id));
        self.emit(Event::ChannelClosed { channel: channel.id, client: channel.client, refunded: refund });
        Ok(())
    }
}
