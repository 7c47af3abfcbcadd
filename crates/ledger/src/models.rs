//! Model offers: what each active provider serves for inference and at what token prices. At most
//! [`MAX_MODELS_PER_PROVIDER`] per provider, listed by model hash (then provider) so a gateway finds every
//! provider of one model with one range read. A provider that leaves the market takes its offers with it.

use tensorgrid_types::model::{ListedOffer, ModelOffer, MAX_MODELS_PER_PROVIDER};
use tensorgrid_types::{Address, Event, Hash, TxError};

use crate::error::ExecResult;
use crate::keys;
use crate::state::State;
use crate::store::Store;

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
        let listed = ListedOffer { provider: signer, offer, announced_at: self.now };
        self.put(keys::model_offer(&model_hash, &signer), &listed);
        self.put_raw(keys::ix_model_of_provider(&signer, &model_hash), Vec::new());
        self.emit(Event::ModelAnnounced { provider: signer, model_hash, name });
        Ok(())
    }

    pub(crate) fn withdraw_model(&mut self, signer: Address, model_hash: Hash) -> ExecResult<()> {
        if !self.models_of(&signer)?.contains(&model_hash) {
            return Err(TxError::ModelNotOffered { model_hash }.into());
        }
        self.remove_model(&signer, &model_hash);
        Ok(())
    }

    fn remove_model(&mut self, provider: &Address, model_hash: &Hash) {
        self.delete(keys::model_offer(model_hash, provider));
        self.delete(keys::ix_model_of_provider(provider, model_hash));
        self.emit(Event::ModelWithdrawn { provider: *provider, model_hash: *model_hash });
    }

    /// Removes every offer of a provider that leaves the market.
    pub(crate) fn withdraw_all_models(&mut self, provider: &Address) -> ExecResult<()> {
        for model_hash in self.models_of(provider)? {
            self.remove_model(provider, &model_hash);
        }
        Ok(())
    }
}
