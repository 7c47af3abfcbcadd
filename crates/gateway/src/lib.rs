//! The gateway: an OpenAI-compatible HTTP API in front of the providers that serve models on tensorgrid.
//!
//! A developer points the official OpenAI client at the gateway with an API key. The key stands for a client
//! account (whose signing key the gateway holds) and its payment channels, one per provider. For each request
//! the gateway finds the providers offering the model on chain with which the key has an open channel, ranks
//! them by price and by the latency it has measured, and sends the request to the best one, signed as the
//! client; if that provider fails before the first token, the next one gets it. Providers stream tokens and
//! invoices; the gateway signs a voucher for what it has received — at every invoice and at the end, never for
//! a token it did not get — and reports usage to the client exactly as OpenAI does.
//!
//! Endpoints: `GET /v1/models`, `GET /v1/models/{model}`, `POST /v1/chat/completions`, `POST /v1/completions`
//! (both streaming as server-sent events or not), `POST /v1/embeddings`. Errors are OpenAI's error JSON with
//! OpenAI's status codes (see [`openai::ApiError`]).

mod batch;
pub mod openai;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tensorgrid_client::{ProviderClient, RpcClient, RpcError};
use tensorgrid_types::channel::{ChannelId, ChannelState, Voucher};
use tensorgrid_types::channel_book::Signed;
use tensorgrid_types::model::ModelOffer;
use tensorgrid_types::query::Page;
use tensorgrid_types::{Address, Amount, SecretKey};
use tracing::{info, warn};

pub use openai::ApiError;

/// How long a provider that failed a request is tried only after the others.
pub const FAILURE_COOLDOWN: Duration = Duration::from_secs(30);

/// An API key: the secret a developer sends as `Authorization: Bearer …`, the client account it spends from,
/// and that account's channels.
#[derive(Clone)]
pub struct ApiKey {
    pub token: String,
    pub account: SecretKey,
    pub channels: Vec<ChannelId>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("account", &self.account.address())
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The node the gateway reads offers and channels from.
    pub node: String,
    pub listen: SocketAddr,
    pub keys: Vec<ApiKey>,
    /// How often the offers on chain are read again.
    pub refresh: Duration,
    /// Where uploaded files and batches are kept; without one the Files and Batch APIs are off.
    pub data_dir: Option<std::path::PathBuf>,
}

/// The gateway's config file (`tgrid gateway --config gateway.toml`): where it listens, which node it reads,
/// and its API keys, each naming the keystore key of the account it spends from and that account's channels.
///
/// ```toml
/// node = "http://127.0.0.1:26657"
/// listen = "127.0.0.1:8080"
/// refresh = "10s"
///
/// [[keys]]
/// token = "tg-…"        # what clients send as `Authorization: Bearer …`
/// account = "carol"     # a key in the keystore
/// channels = [1, 2]     # carol's channels, one per provider
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default = "default_node")]
    pub node: String,
    pub listen: SocketAddr,
    #[serde(default = "default_refresh", with = "humantime_text")]
    pub refresh: Duration,
    /// Where uploaded files and batches are kept (the Files and Batch APIs are off without it).
    #[serde(default)]
    pub data_dir: Option<std::path::PathBuf>,
    pub keys: Vec<KeyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub token: String,
    pub account: String,
    pub channels: Vec<ChannelId>,
}

fn default_node() -> String {
    "http://127.0.0.1:26657".into()
}

fn default_refresh() -> Duration {
    Duration::from_secs(10)
}

mod humantime_text {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration like `10s`: {e}")))
    }
}

impl GatewayFile {
    /// Reads and checks a config file; errors name the file and, from the TOML parser, the line and field.
    pub fn load(path: &std::path::Path) -> Result<GatewayFile, GatewayError> {
        let bad = |reason: String| GatewayError::Config { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: GatewayFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for key in &file.keys {
            // A short token is guessable: demand at least 128 bits' worth of hex.
            if key.token.len() < 32 {
                return Err(bad(format!(
                    "the token of account `{}` is shorter than 32 characters",
                    key.account
                )));
            }
            if key.channels.is_empty() {
                return Err(bad(format!("the key of account `{}` names no channels", key.account)));
            }
        }
        if file.keys.is_empty() {
            return Err(bad("no [[keys]]: nobody could use this gateway".into()));
        }
        Ok(file)
    }
}

/// What can stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("config file {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("the chain: {0}")]
    Chain(#[from] RpcError),
    #[error("channel {0} does not exist")]
    NoChannel(ChannelId),
    #[error("channel {channel} belongs to {owner}, not to the key's account {account}")]
    NotTheKeysChannel { channel: ChannelId, owner: Address, account: Address },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// A channel as the gateway pays through it: its provider and the wire model's account of what was signed
/// (the one definition of channel accounting).
#[derive(Debug)]
struct ChannelBook {
    provider: Address,
    book: Signed,
}

/// A provider that can serve a request: its offer, its API and the key's channel with it.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub offer: ModelOffer,
    pub provider: Address,
    pub host_uri: String,
    pub channel: ChannelId,
}

pub(crate) struct KeyState {
    pub account: SecretKey,
    pub channels: Vec<ChannelId>,
}

/// Everything the handlers share.
pub struct Gateway {
    store: Option<batch::Store>,
    rpc: RpcClient,
    chain_id: String,
    keys: HashMap<String, Arc<KeyState>>,
    channels: Mutex<HashMap<ChannelId, ChannelBook>>,
    /// Offers on chain with their provider's API, refreshed in the background.
    offers: parking_lot::RwLock<Vec<(Address, String, ModelOffer)>>,
    /// Time to first token per provider, as a moving average (ms).
    latency: Mutex<HashMap<Address, f64>>,
    /// When each provider last failed a request; recent failures go to the back of the line.
    failures: Mutex<HashMap<Address, Instant>>,
    clients: Mutex<HashMap<(String, Address), ProviderClient>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("chain_id", &self.chain_id).finish_non_exhaustive()
    }
}

/// A running gateway.
#[derive(Debug, Clone)]
pub struct Running {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
}

/// Checks the keys' channels on chain, reads the offers, and serves the API on the current tokio runtime.
pub async fn start(config: GatewayConfig) -> Result<Running, GatewayError> {
    let rpc = RpcClient::new(&config.node);
    let chain_id = rpc.chain_info().await?.chain_id;
    let mut channels = HashMap::new();
    let mut keys = HashMap::new();
    for key in &config.keys {
        for &id in &key.channels {
            let channel = rpc.channel(id).await?.ok_or(GatewayError::NoChannel(id))?;
            if channel.client != key.account.address() {
                return Err(GatewayError::NotTheKeysChannel {
                    channel: id,
                    owner: channel.client,
                    account: key.account.address(),
                });
            }
            channels.insert(
                id,
                ChannelBook {
                    provider: channel.provider,
                    book: Signed { channel: id, deposit: channel.deposit, signed: channel.redeemed },
                },
            );
        }
        keys.insert(
            key.token.clone(),
            Arc::new(KeyState { account: key.account.clone(), channels: key.channels.clone() }),
        );
    }
    let store = match &config.data_dir {
        Some(dir) => Some(batch::Store::open(dir).map_err(|e| GatewayError::Listen {
            addr: dir.display().to_string(),
            reason: format!("cannot use the data directory: {e}"),
        })?),
        None => None,
    };
    let gateway = Arc::new(Gateway {
        store,
        rpc,
        chain_id,
        keys,
        channels: Mutex::new(channels),
        offers: Default::default(),
        latency: Default::default(),
        failures: Default::default(),
        clients: Default::default(),
    });
    gateway.refresh_offers().await?;
    gateway.recover_vouchers().await;
    if let Some(store) = &gateway.store {
        for (batch, lines) in batch::unfinished(store) {
            let owner = batch::owner_of(&batch).to_string();
            let key = gateway.keys.values().find(|k| k.account.address().to_string() == owner).cloned();
            if let Some(key) = key {
                info!(batch = batch::id_of(&batch), "resuming a batch");
                tokio::spawn(batch::run(gateway.clone(), key, batch::id_of(&batch).to_string(), lines));
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| GatewayError::Listen { addr: config.listen.to_string(), reason: e.to_string() })?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Listen { addr: config.listen.to_string(), reason: e.to_string() })?;
    let router = routes::router(gateway.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            warn!(error = %e, "the gateway stopped");
        }
    });
    let refresher = gateway.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(config.refresh).await;
            if let Err(e) = refresher.refresh_offers().await {
                warn!(error = %e, "reading model offers failed");
            }
        }
    });
    info!(%addr, "OpenAI-compatible gateway listening");
    Ok(Running { addr, gateway })
}

impl Gateway {
    pub(crate) fn key(&self, token: &str) -> Option<Arc<KeyState>> {
        self.keys.get(token).cloned()
    }

    /// Reads every offer on chain and each offering provider's API address.
    async fn refresh_offers(&self) -> Result<(), RpcError> {
        let mut offers = Vec::new();
        let mut page = Page::default();
        let mut hosts: HashMap<Address, Option<String>> = HashMap::new();
        loop {
            let listed = self.rpc.model_offers(None, page.clone()).await?;
            for l in listed.items {
                let host = match hosts.get(&l.provider) {
                    Some(h) => h.clone(),
                    None => {
                        let p = self.rpc.provider(&l.provider).await?;
                        let h = p
                            .filter(|p| p.status == tensorgrid_types::provider::ProviderStatus::Active)
                            .map(|p| p.host_uri);
                        hosts.insert(l.provider, h.clone());
                        h
                    }
                };
                if let Some(host) = host {
                    offers.push((l.provider, host, l.offer));
                }
            }
            match listed.next {
                Some(next) => page = Page { after: Some(next), ..Page::default() },
                None => break,
            }
        }
        *self.offers.write() = offers;
        Ok(())
    }

    /// After a restart the gateway may already have signed vouchers beyond what was redeemed; the providers
    /// hold them, so their tallies say where the count stands (a voucher they hold is one this key signed).
    async fn recover_vouchers(&self) {
        let hosts: Vec<(ChannelId, Address, Option<String>)> = {
            let offers = self.offers.read();
            self.channels
                .lock()
                .iter()
                .map(|(&id, book)| {
                    let host = offers.iter().find(|(p, _, _)| *p == book.provider).map(|(_, h, _)| h.clone());
                    (id, book.provider, host)
                })
                .collect()
        };
        for (id, _provider, host) in hosts {
            let Some(host) = host else { continue };
            let Some(account) = self.account_of(id) else { continue };
            let client = self.client(&host, &account);
            if let Ok(tally) = client.channel_tally(id).await {
                if let Some(book) = self.channels.lock().get_mut(&id) {
                    book.book.signed = book.book.signed.max(tally.paid);
                }
            }
        }
    }

    fn account_of(&self, channel: ChannelId) -> Option<SecretKey> {
        self.keys.values().find(|k| k.channels.contains(&channel)).map(|k| k.account.clone())
    }

    pub(crate) fn client(&self, host: &str, account: &SecretKey) -> ProviderClient {
        self.clients
            .lock()
            .entry((host.to_string(), account.address()))
            .or_insert_with(|| ProviderClient::new(host, account.clone()))
            .clone()
    }

    /// Model names (and hashes) routable for a key, with one offer each for `/v1/models`.
    pub(crate) fn models_for(&self, key: &KeyState) -> Vec<ModelOffer> {
        let providers = self.providers_of(key);
        let mut seen = Vec::<ModelOffer>::new();
        for (p, _, offer) in self.offers.read().iter() {
            if providers.contains_key(p) && !seen.iter().any(|o| o.name == offer.name) {
                seen.push(offer.clone());
            }
        }
        seen
    }

    fn providers_of(&self, key: &KeyState) -> HashMap<Address, ChannelId> {
        let books = self.channels.lock();
        key.channels.iter().filter_map(|id| books.get(id).map(|b| (b.provider, *id))).collect()
    }

    /// The providers that can serve `model` (a name or a model hash) for this key, best first: those that have
    /// not failed in the last [`FAILURE_COOLDOWN`], then the cheapest for a typical request, then the fastest
    /// to the first token.
    pub(crate) fn routes(&self, key: &KeyState, model: &str) -> Vec<Route> {
        let providers = self.providers_of(key);
        let latency = self.latency.lock().clone();
        let failures = self.failures.lock().clone();
        let failed = |p: &Address| failures.get(p).is_some_and(|at| at.elapsed() < FAILURE_COOLDOWN);
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

    pub(crate) fn record_latency(&self, provider: Address, started: Instant) {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let mut latency = self.latency.lock();
        let entry = latency.entry(provider).or_insert(ms);
        *entry = 0.8 * *entry + 0.2 * ms;
    }

    /// A provider that failed is tried after the others for a while.
    pub(crate) fn record_failure(&self, provider: Address) {
        self.failures.lock().insert(provider, Instant::now());
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
    pub fn signed(&self, channel: ChannelId) -> Option<Amount> {
        self.channels.lock().get(&channel).map(|b| b.book.signed)
    }

    /// Re-reads a channel's deposit (after a top-up) and state.
    pub async fn refresh_channel(&self, channel: ChannelId) -> Result<(), RpcError> {
        if let Some(c) = self.rpc.channel(channel).await? {
            if let Some(book) = self.channels.lock().get_mut(&channel) {
                book.book.deposit = if c.state == ChannelState::Open { c.deposit } else { c.redeemed };
            }
        }
        Ok(())
    }
}
