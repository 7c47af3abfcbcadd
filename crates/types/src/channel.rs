//! Payment channels for inference: a client locks a deposit for one provider, signs cumulative vouchers off
//! chain as tokens are delivered, and the provider redeems the latest voucher on chain whenever it likes. Only
//! open, top-up, redeem and close touch the chain, never a request.
//!
//! A voucher says "in channel C the provider may have `cumulative` in total", signed by the client over the
//! chain id, the channel and the amount, so it can be neither replayed on another chain or channel nor
//! altered. Redeeming pays the difference between the voucher and what was already redeemed, never more than
//! the deposit. A client closes in two steps (a challenge period in which the provider can still redeem); a
//! provider closes at once (it can only give up money).

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::{verify, Address, Hash, SecretKey, Signature, SignatureError};
use crate::time::Timestamp;

pub type ChannelId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChannelState {
    Open,
    /// The client asked to close; the provider may still redeem until `ends_at`, then the rest is refunded.
    Closing {
        ends_at: Timestamp,
    },
    Closed {
        at: Timestamp,
        refunded: Amount,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub client: Address,
    pub provider: Address,
    /// Everything the client has put in (opening deposit plus top-ups).
    pub deposit: Amount,
    /// Everything the provider has taken out.
    pub redeemed: Amount,
    pub state: ChannelState,
    pub opened_at: Timestamp,
    /// Locked from the client for as long as the record is stored; refunded when it is removed, a
    /// retention period after the channel closed.
    #[serde(default)]
    pub storage_deposit: Amount,
}

impl Channel {
    /// What the channel still holds.
    pub fn balance(&self) -> Amount {
        self.deposit.saturating_sub(self.redeemed)
    }
}

/// A client's promise: the provider may have `cumulative` in total from `channel`.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Voucher {
    pub channel: ChannelId,
    pub cumulative: Amount,
    pub signature: Signature,
}

impl fmt::Debug for Voucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Voucher(channel {}, {})", self.channel, self.cumulative)
    }
}

/// What a voucher's signature covers.
pub fn voucher_message(chain_id: &str, channel: ChannelId, cumulative: Amount) -> Hash {
    Hash::of_parts(&[
        b"tensorgrid/voucher/v1",
        chain_id.as_bytes(),
        &channel.to_le_bytes(),
        &cumulative.0.to_le_bytes(),
    ])
}

impl Voucher {
    pub fn sign(client: &SecretKey, chain_id: &str, channel: ChannelId, cumulative: Amount) -> Voucher {
        let signature = client.sign(voucher_message(chain_id, channel, cumulative).as_bytes());
        Voucher { channel, cumulative, signature }
    }

    /// Checks that `client` signed this voucher for this chain.
    pub fn verify(&self, client: &Address, chain_id: &str) -> Result<(), SignatureError> {
        verify(client, voucher_message(chain_id, self.channel, self.cumulative).as_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voucher_binds_its_chain_channel_and_amount() {
        let client = SecretKey::from_label("client");
        let v = Voucher::sign(&client, "tg-devnet", 3, Amount(1_000));
        assert_eq!(v.verify(&client.address(), "tg-devnet"), Ok(()));
        assert!(v.verify(&client.address(), "tg-mainnet").is_err(), "another chain");
        assert!(
            Voucher { channel: 4, ..v }.verify(&client.address(), "tg-devnet").is_err(),
            "another channel"
        );
        assert!(Voucher { cumulative: Amount(1_001), ..v }.verify(&client.address(), "tg-devnet").is_err());
        assert!(
            v.verify(&SecretKey::from_label("mallory").address(), "tg-devnet").is_err(),
            "another signer"
        );
    }
}
