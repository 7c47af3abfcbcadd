//! Model offers: what each active provider serves for inference and at what token prices. At most
//! [`MAX_MODELS_PER_PROVIDER`] per provider, listed by model hash (then provider) so a gateway finds every
//! provider of one model with one range read. A provider that leaves the market takes its offers with it.
//!
//! Prices give notice: a lower price (or any other change) takes effect at once, a higher one only
//! `params.model_price_notice_ms` after it was announced (`ListedOffer::pending`), so a client that checked a
//! price is not charged more without warning. A withdrawn offer's price is remembered for the same period,
//! so withdrawing and announcing again does not skip the notice.

use tensorgrid_types::model::{ListedOffer, ModelOffer, PendingPrice, TokenPrice, MAX_MODELS_PER_PROVIDER};
use tensorgrid_types::{Address, Event, Hash, Timestamp, TxError};

use crate::error::ExecResult;
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

impl<S: Store + ?Sized> State<'_, S> {
    /// The model hashes `provider` offers.
    fn models_of(&self, provider: &Address) -> ExecResult<Vec<Hash>> {
        let prefix = keys::ix_models_of_provider(provider);
        let entries = self.scan(&prefix, None, MAX_MODELS_PER_PROVIDER + 1)?;
        Ok(entries
            .iter()
            .filter_map(|(k, _)| k.get(prefix.len()..).and_then(|s| <[u8; 32]>::try_from(s).ok()).map(Hash))
            .collect())
    }

    pub(crate) fn announce_model(&mut self, signer: Address, offer: ModelOffer) -> ExecResult<()> {
        self.active_provider(&signer)?;
        let offered = self.models_of(&signer)?;
        if !offered.contains(&offer.model_hash) && offered.len() >= MAX_MODELS_PER_PROVIDER {
            return Err(TxError::TooManyModels { max: MAX_MODELS_PER_PROVIDER as u32 }.into());
        }
        let model_hash = offer.model_hash;
        let name = offer.name.clone();
        let listed = self.get::<ListedOffer>(&keys::model_offer(&model_hash, &signer))?;
        // The price clients may count on now: the listed one, or a withdrawn offer's during its notice.
        let standing: Option<(TokenPrice, Option<PendingPrice>)> = match listed {
            Some(l) => Some((l.price_at(self.now), l.pending.filter(|p| p.effective_at > self.now))),
            None => self
                .get::<(TokenPrice, Timestamp)>(&keys::model_price_memory(&model_hash, &signer))?
                .filter(|(_, until)| *until > self.now)
                .map(|(price, _)| (price, None)),
        };
        let wanted = offer.price();
        let (offer, pending) = match standing {
            Some((current, _)) if wanted.within(&current) => (offer, None),
            Some((current, earlier)) => {
                // A rise: announced again at the same price it keeps its place in the notice period.
                let effective_at = match earlier {
                    Some(p) if p.price == wanted => p.effective_at,
                    _ => self.now.plus(self.params.model_price_notice_ms),
                };
                (offer.at_price(current), Some(PendingPrice { price: wanted, effective_at }))
            }
            None => (offer, None),
        };
        self.forget_model_price(&model_hash, &signer);
        let listed = ListedOffer { provider: signer, offer, announced_at: self.now, pending };
        self.put(keys::model_offer(&model_hash, &signer), &listed);
        self.put_raw(keys::ix_model_of_provider(&signer, &model_hash), Vec::new());
        self.emit(Event::ModelAnnounced { provider: signer, model_hash, name });
        Ok(())
    }

    pub(crate) fn withdraw_model(&mut self, signer: Address, model_hash: Hash) -> ExecResult<()> {
        if !self.models_of(&signer)?.contains(&model_hash) {
            return Err(TxError::ModelNotOffered { model_hash }.into());
        }
        self.remove_model(&signer, &model_hash)
    }

    fn remove_model(&mut self, provider: &Address, model_hash: &Hash) -> ExecResult<()> {
        if let Some(listed) = self.get::<ListedOffer>(&keys::model_offer(model_hash, provider))? {
            let until = self.now.plus(self.params.model_price_notice_ms);
            self.put(keys::model_price_memory(model_hash, provider), &(listed.price_at(self.now), until));
            self.set_timer(until, Timer::ForgetModelPrice(*model_hash, *provider));
        }
        self.delete(keys::model_offer(model_hash, provider));
        self.delete(keys::ix_model_of_provider(provider, model_hash));
        self.emit(Event::ModelWithdrawn { provider: *provider, model_hash: *model_hash });
        Ok(())
    }

    /// Drops a withdrawn offer's remembered price (its notice ran out, or the offer is listed again).
    pub(crate) fn forget_model_price(&mut self, model_hash: &Hash, provider: &Address) {
        self.delete(keys::model_price_memory(model_hash, provider));
    }

    /// Removes every offer of a provider that leaves the market.
    pub(crate) fn withdraw_all_models(&mut self, provider: &Address) -> ExecResult<()> {
        for model_hash in self.models_of(provider)? {
            self.remove_model(provider, &model_hash)?;
        }
        Ok(())
    }
}
