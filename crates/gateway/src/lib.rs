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

//!
//! Layout: `requests` translates OpenAI bodies, `call` is the one path to a provider (routing with retries
//! before the first token, one event loop, payment), `routes` and `batch` are the HTTP handlers over it,
//! `payments` and `routing` hold the state of each concern, and `clock` is injected.

mod batch;
mod call;
pub mod clock;
pub mod openai;
mod payments;
mod requests;
mod routes;
mod routing;
mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use tensorgrid_client::{ProviderClient, RpcClient, RpcError};
use tensorgrid_types::channel::{ChannelId, ChannelState};
use tensorgrid_types::channel_book::Signed;
use tensorgrid_types::model::{ModelOffer, TokenPrice};
use tensorgrid_types::query::Page;
use tensorgrid_types::{Address, Amount, Hash, SecretKey};
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::payments::{ChannelBook, Payments};
use crate::routing::{Listed, Routing};
use crate::tokens::Tokenizers;

pub use openai::ApiError;

/// How long a provider that failed a request is tried only after the others.
pub const FAILURE_COOLDOWN: Duration = Duration::from_secs(30);

/// The most a key or a model may be charged per million tokens; `None` is no limit on that count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ceiling {
    pub input_per_m: Option<Amount>,
    pub output_per_m: Option<Amount>,
}

impl Ceiling {
    /// Whether `price` is within this ceiling on both counts.
    pub fn admits(&self, price: TokenPrice) -> bool {
        self.input_per_m.is_none_or(|max| price.input_per_m <= max)
            && self.output_per_m.is_none_or(|max| price.output_per_m <= max)
    }
}

/// What the operator decides for one model: the most it pays, and which tokenizer counts its tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPolicy {
    /// The model's name or hash, as clients ask for it.
    pub model: String,
    #[serde(default)]
    pub max_price_input_per_m: Option<Amount>,
    #[serde(default)]
    pub max_price_output_per_m: Option<Amount>,
    /// The tokenizer file to count this model's tokens with; offers naming another are not used. Without a
    /// pin, the tokenizer most providers of the model name is used.
    #[serde(default)]
    pub tokenizer: Option<Hash>,
}

impl ModelPolicy {
    pub fn ceiling(&self) -> Ceiling {
        Ceiling { input_per_m: self.max_price_input_per_m, output_per_m: self.max_price_output_per_m }
    }
}

/// An API key: the secret a developer sends as `Authorization: Bearer …`, the client account it spends from,
/// that account's channels, and the most the key pays per token.
#[derive(Clone)]
pub struct ApiKey {
    pub token: String,
    pub account: SecretKey,
    pub channels: Vec<ChannelId>,
    pub ceiling: Ceiling,
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
    /// Per-model price ceilings and tokenizer pins.
    pub models: Vec<ModelPolicy>,
    /// What each key may keep in the Files and Batch APIs.
    pub limits: FileLimits,
    /// Whether providers may be reached at loopback, private and link-local addresses (a local devnet).
    /// Off, an offer whose provider registered such an address is not used, and names are resolved to
    /// public addresses only, so no provider can point the gateway at its own network.
    pub allow_private_providers: bool,
}

/// What one API key may keep in the Files and Batch APIs, so one key cannot fill the gateway's disk or
/// occupy its batch runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    /// Files a key may keep (uploads and batch outputs together; outputs are always written).
    pub files_per_key: usize,
    /// Bytes a key's files may take together.
    pub bytes_per_key: u64,
    /// Batches of a key in progress at once.
    pub batches_per_key: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits { files_per_key: 1_000, bytes_per_key: 2 << 30, batches_per_key: 16 }
    }
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
/// max_price_output_per_m = "1tgr"   # optional: offers dearer than this are not used for this key
///
/// [[models]]            # optional, per model (by name or hash)
/// model = "SmolLM2-135M-Instruct"
/// max_price_input_per_m = "0.5tgr"
/// tokenizer = "…"       # optional: count with this tokenizer file only
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
    #[serde(default)]
    pub models: Vec<ModelPolicy>,
    #[serde(default)]
    pub limits: FileLimits,
    /// See [`GatewayConfig::allow_private_providers`].
    #[serde(default)]
    pub allow_private_providers: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub token: String,
    pub account: String,
    pub channels: Vec<ChannelId>,
    #[serde(default)]
    pub max_price_input_per_m: Option<Amount>,
    #[serde(default)]
    pub max_price_output_per_m: Option<Amount>,
}

impl KeyEntry {
    pub fn ceiling(&self) -> Ceiling {
        Ceiling { input_per_m: self.max_price_input_per_m, output_per_m: self.max_price_output_per_m }
    }
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
    pub ceiling: Ceiling,
}

/// Everything the handlers share, by concern.
pub struct Gateway {
    store: Option<batch::Store>,
    limits: FileLimits,
    rpc: RpcClient,
    keys: HashMap<String, Arc<KeyState>>,
    payments: Payments,
    routing: Routing,
    tokenizers: Tokenizers,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<(String, Address), ProviderClient>>,
    chain_id: String,
    allow_private_providers: bool,
    /// Wakes the offer refresher before its interval (a provider said its price changed).
    refresh_now: tokio::sync::Notify,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("node", &self.rpc.base()).finish_non_exhaustive()
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
            Arc::new(KeyState {
                account: key.account.clone(),
                channels: key.channels.clone(),
                ceiling: key.ceiling,
            }),
        );
    }
    let store = match &config.data_dir {
        Some(dir) => Some(batch::Store::open(dir).map_err(|e| GatewayError::Listen {
            addr: dir.display().to_string(),
            reason: format!("cannot use the data directory: {e}"),
        })?),
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let gateway = Arc::new(Gateway {
        store,
        limits: config.limits,
        rpc,
        keys,
        payments: Payments::new(chain_id.clone(), channels),
        routing: Routing::new(clock.clone(), config.models.clone()),
        tokenizers: Tokenizers::default(),
        clock,
        clients: Default::default(),
        chain_id,
        allow_private_providers: config.allow_private_providers,
        refresh_now: tokio::sync::Notify::new(),
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
    let router = router(gateway.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            warn!(error = %e, "the gateway stopped");
        }
    });
    let refresher = gateway.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(config.refresh) => {}
                _ = refresher.refresh_now.notified() => {}
            }
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
                match host {
                    Some(host)
                        if !self.allow_private_providers
                            && tensorgrid_client::net::names_internal_address(&host) =>
                    {
                        warn!(provider = %l.provider, %host, "not using a provider registered at an internal address");
                    }
                    Some(host) => offers.push(Listed { host, listed: l }),
                    None => {}
                }
            }
            match listed.next {
                Some(next) => page = Page { after: Some(next), ..Page::default() },
                None => break,
            }
        }
        self.routing.set_offers(offers);
        Ok(())
    }

    /// After a restart the gateway may already have signed vouchers beyond what was redeemed; the providers
    /// hold them. Only a voucher that carries this key's own signature for this channel and chain counts:
    /// what a provider says it was paid is not evidence.
    async fn recover_vouchers(&self) {
        for (id, provider) in self.payments.all() {
            let Some(host) = self.routing.host_of(&provider) else { continue };
            let Some(account) = self.account_of(id) else { continue };
            let client = self.client(&host, &account);
            let Ok(tally) = client.channel_tally(id).await else { continue };
            match tally.voucher {
                Some(v) if v.channel == id && v.verify(&account.address(), &self.chain_id).is_ok() => {
                    self.payments.at_least(id, v.cumulative);
                }
                Some(_) => {
                    warn!(channel = id, %provider, "the provider showed a voucher this key did not sign")
                }
                None if !tally.paid.is_zero() => {
                    warn!(channel = id, %provider, claimed = %tally.paid, "the provider claims payment without a voucher")
                }
                None => {}
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
            .or_insert_with(|| {
                if self.allow_private_providers {
                    ProviderClient::new(host, account.clone())
                } else {
                    ProviderClient::public_only(host, account.clone())
                }
            })
            .clone()
    }

    /// What the gateway has signed on a channel so far.
    pub fn signed(&self, channel: ChannelId) -> Option<Amount> {
        self.payments.signed(channel)
    }

    /// The key a request's `Authorization: Bearer …` names.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyState>, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::missing_key)?;
        let token = value.strip_prefix("Bearer ").map(str::trim).ok_or_else(ApiError::missing_key)?;
        if token.is_empty() {
            return Err(ApiError::missing_key());
        }
        self.key(token).ok_or_else(|| ApiError::wrong_key(token))
    }

    /// Re-reads a channel's deposit (after a top-up) and state.
    pub async fn refresh_channel(&self, channel: ChannelId) -> Result<(), RpcError> {
        if let Some(c) = self.rpc.channel(channel).await? {
            self.payments
                .set_deposit(channel, if c.state == ChannelState::Open { c.deposit } else { c.redeemed });
        }
        Ok(())
    }
}

/// Every endpoint needs a key, and it is checked before a byte of the body is read: a request without a
/// valid key costs the gateway its headers only.
async fn key_first(
    axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match gateway.authenticate(request.headers()) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The API: OpenAI's endpoints, tensorgrid's `/v1/channels`, and the Files and Batch APIs.
fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/models", get(routes::list_models))
        .route("/v1/models/{*model}", get(routes::get_model))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/channels", get(routes::channels))
        .route("/v1/files", post(batch::upload).get(batch::list_files))
        .route("/v1/files/{id}", get(batch::get_file).delete(batch::delete_file))
        .route("/v1/files/{id}/content", get(batch::file_content))
        .route("/v1/batches", post(batch::create_batch).get(batch::list_batches))
        .route("/v1/batches/{id}", get(batch::get_batch))
        .route("/v1/batches/{id}/cancel", post(batch::cancel_batch))
        .fallback(|| async {
            ApiError::not_found("Unknown request URL. Please check the URL and method.".into())
        })
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), key_first))
        .with_state(gateway)
}
