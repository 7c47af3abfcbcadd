//! What the gateway pays through: each key's channels, their providers, and what it has signed on each
//! (the wire model's `channel_book::Signed`, so the accounting is the provider's own definition read from the
//! other side). The gateway signs only for tokens it received; nothing here knows about HTTP.

use std::collections::HashMap;

use parking_lot::Mutex;
use tensorgrid_types::channel::{ChannelId, Voucher};
use tensorgrid_types::channel_book::Signed;
use tensorgrid_types::{Address, Amount, SecretKey};

use crate::KeyState;

/// A channel as the gateway pays through it.
#[derive(Debug)]
pub(crate) struct ChannelBook {
    pub(crate) provider: Address,
    pub(crate) book: Signed,
}

#[derive(Debug)]
pub(crate) struct Payments {
    chain_id: String,
    channels: Mutex<HashMap<ChannelId, ChannelBook>>,
}

impl Payments {
    pub(crate) fn new(chain_id: String, channels: HashMap<ChannelId, ChannelBook>) -> Payments {
        Payments { chain_id, channels: Mutex::new(channels) }
    }

    /// The providers a key can pay, each with its channel.
    pub(crate) fn providers_of(&self, key: &KeyState) -> HashMap<Address, ChannelId> {
        let books = self.channels.lock();
        key.channels.iter().filter_map(|id| books.get(id).map(|b| (b.provider, *id))).collect()
    }

    /// Every channel with its provider, for recovering what was signed.
    pub(crate) fn all(&self) -> Vec<(ChannelId, Address)> {
        self.channels.lock().iter().map(|(id, b)| (*id, b.provider)).collect()
    }

    /// The key's channels as the gateway pays through them: provider, deposit, and the latest voucher's total.
    pub(crate) fn channels_of(&self, key: &KeyState) -> Vec<(ChannelId, Address, Amount, Amount)> {
        let books = self.channels.lock();
        key.channels
            .iter()
            .filter_map(|id| books.get(id).map(|b| (*id, b.provider, b.book.deposit, b.book.signed)))
            .collect()
    }

    /// Signs a voucher adding `delta` to the channel's total and returns it; `None` when nothing is due.
    pub(crate) fn sign(&self, account: &SecretKey, channel: ChannelId, delta: Amount) -> Option<Voucher> {
        let mut books = self.channels.lock();
        let cumulative = books.get_mut(&channel)?.book.add(delta)?;
        Some(Voucher::sign(account, &self.chain_id, channel, cumulative))
    }

    /// What the gateway has signed on a channel so far.
    pub(crate) fn signed(&self, channel: ChannelId) -> Option<Amount> {
        self.channels.lock().get(&channel).map(|b| b.book.signed)
    }

    /// After a restart: a voucher the provider holds was signed by this gateway before.
    pub(crate) fn at_least(&self, channel: ChannelId, signed: Amount) {
        if let Some(b) = self.channels.lock().get_mut(&channel) {
            b.book.signed = b.book.signed.max(signed);
        }
    }

    /// What the channel can pay at most, as the chain now says.
    pub(crate) fn set_deposit(&self, channel: ChannelId, deposit: Amount) {
        if let Some(b) = self.channels.lock().get_mut(&channel) {
            b.book.deposit = deposit;
        }
    }
}
