//! Which provider answers: the offers on chain with each provider's API, the operator's price ceilings and
//! tokenizer pins, and how each provider has done lately (time to first token, recent failures), on the
//! gateway's injected clock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tensorgrid_types::channel::ChannelId;
use tensorgrid_types::model::{ListedOffer, ModelOffer};
use tensorgrid_types::{Address, Amount, Hash, Timestamp};

use crate::clock::Clock;
use crate::{Ceiling, ModelPolicy, Route, FAILURE_COOLDOWN};

/// An offer on chain with its provider's API address.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub(crate) host: String,
    pub(crate) listed: ListedOffer,
}

/// The routes for a request, and whether some offer was left out for its price.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub(crate) routes: Vec<Route>,
    pub(crate) over_ceiling: bool,
}

#[derive(Debug)]
pub(crate) struct Routing {
    clock: Arc<dyn Clock>,
    policies: Vec<ModelPolicy>,
    /// Offers on chain with their provider's API, refreshed in the background.
    offers: RwLock<Vec<Listed>>,
    /// Time to first token per provider, as a moving average (ms).
    latency: Mutex<HashMap<Address, f64>>,
    /// When each provider last failed a request (ms); recent failures go to the back of the line.
    failures: Mutex<HashMap<Address, u64>>,
}

impl Routing {
    pub(crate) fn new(clock: Arc<dyn Clock>, policies: Vec<ModelPolicy>) -> Routing {
        Routing {
            clock,
            policies,
            offers: RwLock::default(),
            latency: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    pub(crate) fn set_offers(&self, offers: Vec<Listed>) {
        *self.offers.write() = offers;
    }

    /// A provider's API address, if it has offers.
    pub(crate) fn host_of(&self, provider: &Address) -> Option<String> {
        self.offers.read().iter().find(|l| &l.listed.provider == provider).map(|l| l.host.clone())
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now_ms())
    }

    /// Model names (and hashes) routable through these providers, with one offer each for `/v1/models`.
    pub(crate) fn models_for(&self, providers: &HashMap<Address, ChannelId>) -> Vec<ModelOffer> {
        let now = self.now();
        let mut seen = Vec::<ModelOffer>::new();
        for l in self.offers.read().iter() {
            if providers.contains_key(&l.listed.provider)
                && !seen.iter().any(|o| o.name == l.listed.offer.name)
            {
                seen.push(l.listed.offer_at(now));
            }
        }
        seen
    }

    fn policy(&self, offer: &ModelOffer) -> Option<&ModelPolicy> {
        self.policies.iter().find(|p| p.model == offer.name || p.model == offer.model_hash.to_string())
    }

    /// The tokenizer a model's tokens are counted with: the operator's pin, else the one most providers of
    /// that exact file name (one provider cannot make a gateway count with a tokenizer of its own making
    /// while others serve the same file honestly). Ties go to the lowest hash, so every gateway agrees.
    fn tokenizer_for(
        &self,
        offers: &[Listed],
        model_hash: &Hash,
        policy: Option<&ModelPolicy>,
    ) -> Option<Hash> {
        if let Some(pin) = policy.and_then(|p| p.tokenizer) {
            return Some(pin);
        }
        let mut votes: HashMap<Hash, usize> = HashMap::new();
        for l in offers.iter().filter(|l| &l.listed.offer.model_hash == model_hash) {
            *votes.entry(l.listed.offer.tokenizer_hash).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.as_bytes().cmp(a.0.as_bytes())))
            .map(|(h, _)| h)
    }

    /// The providers among `providers` that can serve `model` (a name or a model hash) at a price within the
    /// key's and the model's ceilings, each at the price in effect now, best first: those that have not
    /// failed in the last [`FAILURE_COOLDOWN`], then the cheapest for a typical request, then the fastest to
    /// the first token.
    pub(crate) fn routes(
        &self,
        providers: &HashMap<Address, ChannelId>,
        model: &str,
        key: &Ceiling,
    ) -> Routes {
        let latency = self.latency.lock().clone();
        let failures = self.failures.lock().clone();
        let now = self.now();
        let cooldown = FAILURE_COOLDOWN.as_millis() as u64;
        let failed =
            |p: &Address| failures.get(p).is_some_and(|at| now.millis().saturating_sub(*at) < cooldown);
        let offers = self.offers.read();
        let mut out = Routes::default();
        let mut tokenizers: HashMap<Hash, Option<Hash>> = HashMap::new();
        for l in offers.iter() {
            let offer = l.listed.offer_at(now);
            if offer.name != model && offer.model_hash.to_string() != model {
                continue;
            }
            let Some(&channel) = providers.get(&l.listed.provider) else { continue };
            let policy = self.policy(&offer);
            let tokenizer = *tokenizers
                .entry(offer.model_hash)
                .or_insert_with(|| self.tokenizer_for(&offers, &offer.model_hash, policy));
            if tokenizer != Some(offer.tokenizer_hash) {
                continue;
            }
            let price = offer.price();
            if !key.admits(price) || !policy.map(|p| p.ceiling()).unwrap_or_default().admits(price) {
                out.over_ceiling = true;
                continue;
            }
            out.routes.push(Route { offer, provider: l.listed.provider, host_uri: l.host.clone(), channel });
        }
        out.routes.sort_by(|a, b| {
            let price = |r: &Route| r.offer.cost(1_000, 1_000).unwrap_or(Amount(u128::MAX));
            let ms = |r: &Route| latency.get(&r.provider).copied().unwrap_or(0.0);
            failed(&a.provider)
                .cmp(&failed(&b.provider))
                .then(price(a).cmp(&price(b)))
                .then(ms(a).total_cmp(&ms(b)))
        });
        out
    }

    /// A provider's time to its first token, `ms`.
    pub(crate) fn record_latency(&self, provider: Address, ms: u64) {
        let ms = ms as f64;
        let mut latency = self.latency.lock();
        let entry = latency.entry(provider).or_insert(ms);
        *entry = 0.8 * *entry + 0.2 * ms;
    }

    /// A provider that failed is tried after the others for a while.
    pub(crate) fn record_failure(&self, provider: Address) {
        self.failures.lock().insert(provider, self.clock.now_ms());
    }
}
