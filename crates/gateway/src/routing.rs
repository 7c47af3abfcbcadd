//! Which provider answers: the offers on chain with each provider's API, and how each provider has done
//! lately (time to first token, recent failures), on the gateway's injected clock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tensorgrid_types::channel::ChannelId;
use tensorgrid_types::model::ModelOffer;
use tensorgrid_types::{Address, Amount};

use crate::clock::Clock;
use crate::{Route, FAILURE_COOLDOWN};

#[derive(Debug)]
pub(crate) struct Routing {
    clock: Arc<dyn Clock>,
    /// Offers on chain with their provider's API, refreshed in the background.
    offers: RwLock<Vec<(Address, String, ModelOffer)>>,
    /// Time to first token per provider, as a moving average (ms).
    latency: Mutex<HashMap<Address, f64>>,
    /// When each provider last failed a request (ms); recent failures go to the back of the line.
    failures: Mutex<HashMap<Address, u64>>,
}

impl Routing {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Routing {
        Routing { clock, offers: RwLock::default(), latency: Mutex::default(), failures: Mutex::default() }
    }

    pub(crate) fn set_offers(&self, offers: Vec<(Address, String, ModelOffer)>) {
        *self.offers.write() = offers;
    }

    /// A provider's API address, if it has offers.
    pub(crate) fn host_of(&self, provider: &Address) -> Option<String> {
        self.offers.read().iter().find(|(p, _, _)| p == provider).map(|(_, h, _)| h.clone())
    }

    /// Model names (and hashes) routable through these providers, with one offer each for `/v1/models`.
    pub(crate) fn models_for(&self, providers: &HashMap<Address, ChannelId>) -> Vec<ModelOffer> {
        let mut seen = Vec::<ModelOffer>::new();
        for (p, _, offer) in self.offers.read().iter() {
            if providers.contains_key(p) && !seen.iter().any(|o| o.name == offer.name) {
                seen.push(offer.clone());
            }
        }
        seen
    }

    /// The providers among `providers` that can serve `model` (a name or a model hash), best first: those
    /// that have not failed in the last [`FAILURE_COOLDOWN`], then the cheapest for a typical request, then
    /// the fastest to the first token.
    pub(crate) fn routes(&self, providers: &HashMap<Address, ChannelId>, model: &str) -> Vec<Route> {
        let latency = self.latency.lock().clone();
        let failures = self.failures.lock().clone();
        let now = self.clock.now_ms();
        let cooldown = FAILURE_COOLDOWN.as_millis() as u64;
        let failed = |p: &Address| failures.get(p).is_some_and(|at| now.saturating_sub(*at) < cooldown);
        let mut routes: Vec<Route> = self
            .offers
            .read()
            .iter()
            .filter(|(_, _, o)| o.name == model || o.model_hash.to_string() == model)
            .filter_map(|(p, host, offer)| {
                providers.get(p).map(|&channel| Route {
                    offer: offer.clone(),
                    provider: *p,
                    host_uri: host.clone(),
                    channel,
                })
            })
            .collect();
        routes.sort_by(|a, b| {
            let price = |r: &Route| r.offer.cost(1_000, 1_000).unwrap_or(Amount(u128::MAX));
            let ms = |r: &Route| latency.get(&r.provider).copied().unwrap_or(0.0);
            failed(&a.provider)
                .cmp(&failed(&b.provider))
                .then(price(a).cmp(&price(b)))
                .then(ms(a).total_cmp(&ms(b)))
        });
        routes
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
