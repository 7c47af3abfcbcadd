//! Channel accounting, defined once for both sides of a payment channel.
//!
//! The provider keeps a [`Tab`] per channel: what it delivered (`owed`), the best voucher the client signed,
//! the deposit, and it refuses to deliver past the deposit or past its credit limit beyond the best voucher,
//! so a client that stops paying costs it at most the credit. The payer (a gateway, or any client) keeps a
//! [`Signed`] per channel: what it has signed so far, never more than the deposit; it signs only for what it
//! received. Both are plain data with pure methods, property-tested here; the HTTP layers map
//! [`ChargeError`] and [`VoucherRefused`] to their statuses.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::channel::{ChannelId, Voucher};
use crate::inference::ChannelTally;

/// Why a provider will not deliver more on a channel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    #[error("channel {channel} holds {deposit} and {owed} is already delivered: top it up")]
    Exhausted { channel: ChannelId, deposit: Amount, owed: Amount },
    #[error(
        "channel {channel} owes {unpaid} beyond its vouchers, more than the credit of {credit}: send a voucher"
    )]
    OverCredit { channel: ChannelId, unpaid: Amount, credit: Amount },
}

/// Why a provider did not take a voucher (its signature is checked before it reaches the tab).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoucherRefused {
    #[error("the voucher is for channel {got}, not {expected}")]
    OtherChannel { expected: ChannelId, got: ChannelId },
    #[error("the voucher promises {cumulative} but the channel holds {deposit}")]
    OverDeposit { cumulative: Amount, deposit: Amount },
}

/// A provider's account of one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tab {
    pub channel: ChannelId,
    /// What the client has locked (opening deposit plus top-ups), as last read from the chain.
    pub deposit: Amount,
    /// Everything delivered, all responses together.
    pub owed: Amount,
    /// The highest voucher received.
    pub best: Option<Voucher>,
    /// The highest voucher redeemed on chain.
    pub redeemed: Amount,
}

impl Tab {
    /// A channel as the chain has it: what was redeemed is what was delivered and paid before.
    pub fn new(channel: ChannelId, deposit: Amount, redeemed: Amount) -> Tab {
        Tab { channel, deposit, owed: redeemed, best: None, redeemed }
    }

    /// What the best voucher pays.
    pub fn paid(&self) -> Amount {
        self.best.map(|v| v.cumulative).unwrap_or(Amount::ZERO)
    }

    /// Delivered and not yet covered by a voucher.
    pub fn unpaid(&self) -> Amount {
        self.owed.saturating_sub(self.paid())
    }

    /// Adds `delta` to what the channel owes, before delivering it; refuses (and adds nothing) past the
    /// deposit or past `credit` beyond the best voucher.
    pub fn charge(&mut self, delta: Amount, credit: Amount) -> Result<(), ChargeError> {
        let owed = self.owed.saturating_add(delta);
        if owed > self.deposit {
            return Err(ChargeError::Exhausted {
                channel: self.channel,
                deposit: self.deposit,
                owed: self.owed,
            });
        }
        let unpaid = owed.saturating_sub(self.paid());
        if unpaid > credit {
            return Err(ChargeError::OverCredit { channel: self.channel, unpaid, credit });
        }
        self.owed = owed;
        Ok(())
    }

    /// Takes back a charge for something that was not delivered after all.
    pub fn refund(&mut self, amount: Amount) {
        self.owed = self.owed.saturating_sub(amount).max(self.redeemed);
    }

    /// Keeps `voucher` if it pays more than the best so far. Its signature must have been checked.
    pub fn accept(&mut self, voucher: Voucher) -> Result<(), VoucherRefused> {
        if voucher.channel != self.channel {
            return Err(VoucherRefused::OtherChannel { expected: self.channel, got: voucher.channel });
        }
        if voucher.cumulative > self.deposit {
            return Err(VoucherRefused::OverDeposit {
                cumulative: voucher.cumulative,
                deposit: self.deposit,
            });
        }
        if voucher.cumulative > self.paid() {
            self.best = Some(voucher);
        }
        Ok(())
    }

    /// The tab as the provider API reports it.
    pub fn view(&self, credit: Amount) -> ChannelTally {
        ChannelTally {
            channel: self.channel,
            owed: self.owed,
            paid: self.paid(),
            redeemed: self.redeemed,
            credit,
            voucher: self.best,
        }
    }
}

/// A payer's account of one channel: what it has signed so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub channel: ChannelId,
    /// What the channel holds, as last read from the chain (what the provider can redeem at most).
    pub deposit: Amount,
    /// The latest voucher's amount.
    pub signed: Amount,
}

impl Signed {
    /// The cumulative amount to sign after receiving `delta` more, capped at the deposit; `None` when there is
    /// nothing new to sign.
    pub fn add(&mut self, delta: Amount) -> Option<Amount> {
        let next = self.signed.saturating_add(delta).min(self.deposit);
        if next <= self.signed {
            return None;
        }
        self.signed = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crypto::SecretKey;

    fn voucher(channel: ChannelId, cumulative: u128) -> Voucher {
        Voucher::sign(&SecretKey::from_label("client"), "tg-test", channel, Amount(cumulative))
    }

    #[test]
    fn charges_stop_at_the_deposit_and_at_the_credit_beyond_the_best_voucher() {
        let mut tab = Tab::new(3, Amount(1_000), Amount::ZERO);
        assert_eq!(tab.charge(Amount(100), Amount(150)), Ok(()));
        assert_eq!(
            tab.charge(Amount(100), Amount(150)),
            Err(ChargeError::OverCredit { channel: 3, unpaid: Amount(200), credit: Amount(150) })
        );
        assert_eq!(tab.owed, Amount(100), "a refused charge adds nothing");
        tab.accept(voucher(3, 100)).unwrap();
        assert_eq!(tab.charge(Amount(150), Amount(150)), Ok(()));
        tab.accept(voucher(3, 900)).unwrap();
        assert!(matches!(tab.charge(Amount(751), Amount(10_000)), Err(ChargeError::Exhausted { .. })));
        assert_eq!(tab.accept(voucher(4, 1)), Err(VoucherRefused::OtherChannel { expected: 3, got: 4 }));
        assert!(matches!(tab.accept(voucher(3, 1_001)), Err(VoucherRefused::OverDeposit { .. })));
        tab.accept(voucher(3, 500)).unwrap();
        assert_eq!(tab.paid(), Amount(900), "an older voucher changes nothing");
        tab.refund(Amount(50));
        assert_eq!(tab.owed, Amount(200));
    }

    proptest! {
        /// Whatever the client sends and whatever the provider is asked to deliver, the provider never has
        /// delivered more than the deposit, nor more than its credit beyond the best voucher it holds.
        #[test]
        fn a_provider_never_serves_more_than_the_credit_beyond_what_is_signed(
            deposit in 0u128..100_000,
            credit in 0u128..10_000,
            steps in prop::collection::vec((any::<bool>(), 0u128..5_000), 1..64),
        ) {
            let mut tab = Tab::new(1, Amount(deposit), Amount::ZERO);
            let mut signed = 0u128;
            for (is_voucher, amount) in steps {
                if is_voucher {
                    // A client signs at most what it received (a gateway's rule) — or tries any amount.
                    signed = signed.max(amount.min(tab.owed.0 + 1));
                    let _ = tab.accept(voucher(1, signed));
                } else {
                    let before = tab.owed;
                    match tab.charge(Amount(amount), Amount(credit)) {
                        Ok(()) => prop_assert_eq!(tab.owed, Amount(before.0 + amount)),
                        Err(_) => prop_assert_eq!(tab.owed, before),
                    }
                }
                prop_assert!(tab.owed <= tab.deposit);
                prop_assert!(tab.unpaid() <= Amount(credit));
            }
        }

        /// A payer's signed total is exactly the sum of what it received, capped at the deposit, and never
        /// goes down.
        #[test]
        fn a_payer_never_signs_for_more_than_it_received(
            deposit in 0u128..100_000,
            received in prop::collection::vec(0u128..5_000, 0..64),
        ) {
            let mut book = Signed { channel: 1, deposit: Amount(deposit), signed: Amount::ZERO };
            let mut total = 0u128;
            for delta in received {
                let before = book.signed;
                total += delta;
                let next = book.add(Amount(delta));
                prop_assert_eq!(book.signed, Amount(total.min(deposit)));
                prop_assert!(book.signed >= before);
                prop_assert_eq!(next.is_some(), book.signed > before);
            }
        }
    }
}
