//! A validator process: its home directory (chain spec, key, config, data), the tokio runtime, authenticated
//! p2p over TCP with the other validators, consensus, and the HTTP API.
//!
//! A home holds:
//! - `genesis.json`: the [`ChainSpec`] (the ledger's genesis and the validator set);
//! - `node.toml`: the [`NodeConfig`] (listen addresses, peers);
//! - `validator.key`: the consensus key's 32-byte seed in hex (mode 0600);
//! - `data/`: the ledger (`state.redb`) and consensus storage (`consensus/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::{ChaCha20Poly1305, Signer as _};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager as _};
use commonware_runtime::{Clock, Metrics as _, Quota, Runner as _, Spawner as _, Supervisor as _};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::ordered::Map;
use commonware_utils::{NZUsize, NZU32};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tensorgrid_ledger::QueryError;
use tensorgrid_node::core::SubmitError;
use tensorgrid_node::mempool::MempoolConfig;
use tensorgrid_node::rpc::{self, BlockEvents, NodeApi};
use tensorgrid_node::ReadError;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{BlockRecord, Genesis, Hash, Timestamp, TxRecord};
use tracing::{info, warn};

use crate::engine::{EngineConfig, Network};
use crate::mempool::Gossip;
use crate::{Chain, OpenError};

/// Largest p2p message: a full block with room to spare.
pub const MAX_MESSAGE_BYTES: u32 = 48 << 20;

/// Namespace of the p2p handshake signatures.
const P2P_NAMESPACE: &[u8] = b"tensorgrid/p2p";

/// The chain's genesis: the ledger's initial state and the validators that run consensus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainSpec {
    #[serde(flatten)]
    pub genesis: Genesis,
    pub validators: Vec<GenesisValidator>,
    /// Blocks per consensus epoch; validator-set changes take effect at epoch boundaries.
    #[serde(default = "default_blocks_per_epoch")]
    pub blocks_per_epoch: u64,
}

/// About five and a half hours of 200 ms blocks.
pub const DEFAULT_BLOCKS_PER_EPOCH: u64 = 100_000;

fn default_blocks_per_epoch() -> u64 {
    DEFAULT_BLOCKS_PER_EPOCH
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenesisValidator {
    pub name: String,
    /// The ed25519 consensus key, hex.
    pub consensus_key: String,
}

/// A peer this validator connects to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    pub consensus_key: String,
    pub address: SocketAddr,
}

/// `node.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub p2p_listen: SocketAddr,
    pub rpc_listen: SocketAddr,
    /// Every validator (this one included) and where it listens.
    pub peers: Vec<Peer>,
    #[serde(default = "default_leader_timeout_ms")]
    pub leader_timeout_ms: u64,
    #[serde(default = "default_certification_timeout_ms")]
    pub certification_timeout_ms: u64,
    /// The least time between blocks, in milliseconds.
    #[serde(default = "default_block_interval_ms")]
    pub block_interval_ms: u64,
    /// How many versions of the state tree (one per block) to keep for roots and proofs; older ones are
    /// pruned as blocks commit. 0 keeps every version (an archive node). The current state and the block
    /// and transaction index are never pruned.
    #[serde(default = "default_state_history")]
    pub state_history: u64,
    /// Requests per second the API takes from one IP address (bursts of twice that); 0 is no limit.
    #[serde(default = "default_rpc_requests_per_sec")]
    pub rpc_requests_per_sec: u32,
}

fn default_rpc_requests_per_sec() -> u32 {
    tensorgrid_node::rpc::ApiLimits::default().requests_per_sec
}

fn default_state_history() -> u64 {
    DEFAULT_STATE_HISTORY
}

/// About five and a half hours of 200 ms blocks, or a day of one-second blocks.
pub const DEFAULT_STATE_HISTORY: u64 = 100_000;

fn default_block_interval_ms() -> u64 {
    200
}

fn default_leader_timeout_ms() -> u64 {
    1_000
}

fn default_certification_timeout_ms() -> u64 {
    2_000
}

/// Why a validator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("`{path}` is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("this validator's key {key} is not in the genesis validator set")]
    NotAValidator { key: String },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen for the API on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
    #[error("the node halted: {0}")]
    Halted(String),
}

fn read(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|e| NodeError::Read { path: path.into(), reason: e.to_string() })
}

fn write(path: &Path, text: &str) -> Result<(), NodeError> {
    std::fs::write(path, text).map_err(|e| NodeError::Write { path: path.into(), reason: e.to_string() })
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> NodeError {
    NodeError::Invalid { path: path.into(), reason: reason.to_string() }
}

/// A consensus public key from hex.
pub fn parse_key(hex_key: &str) -> Result<PublicKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| format!("`{hex_key}` is not hex"))?;
    PublicKey::decode(bytes::Bytes::from(bytes))
        .map_err(|e| format!("`{hex_key}` is not an ed25519 public key: {e}"))
}

/// A consensus public key as hex.
pub fn key_hex(key: &PublicKey) -> String {
    hex::encode(key.encode())
}

/// A validator home's files, loaded and checked.
#[derive(Debug)]
pub struct Home {
    pub dir: PathBuf,
    pub spec: ChainSpec,
    pub config: NodeConfig,
    pub signer: PrivateKey,
    pub participants: Vec<PublicKey>,
}

impl Home {
    pub fn load(dir: &Path) -> Result<Home, NodeError> {
        let spec_path = dir.join("genesis.json");
        let spec: ChainSpec = serde_json::from_str(&read(&spec_path)?).map_err(|e| invalid(&spec_path, e))?;
        let config_path = dir.join("node.toml");
        let config: NodeConfig =
            toml::from_str(&read(&config_path)?).map_err(|e| invalid(&config_path, e))?;
        let key_path = dir.join("validator.key");
        let seed = hex::decode(read(&key_path)?.trim()).map_err(|_| invalid(&key_path, "not hex"))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| invalid(&key_path, "must be 32 bytes of hex"))?;
        let signer = signer_of_seed(seed);
        let mut participants = Vec::new();
        for v in &spec.validators {
            participants.push(parse_key(&v.consensus_key).map_err(|e| invalid(&spec_path, e))?);
        }
        if participants.is_empty() {
            return Err(invalid(&spec_path, "no validators"));
        }
        if spec.blocks_per_epoch == 0 {
            return Err(invalid(&spec_path, "blocks_per_epoch must be at least 1"));
        }
        let me = signer.public_key();
        if !participants.contains(&me) {
            return Err(NodeError::NotAValidator { key: key_hex(&me) });
        }
        for peer in &config.peers {
            parse_key(&peer.consensus_key).map_err(|e| invalid(&config_path, e))?;
        }
        Ok(Home { dir: dir.into(), spec, config, signer, participants })
    }

    /// Writes a new home (refusing to overwrite one).
    pub fn create(
        dir: &Path,
        spec: &ChainSpec,
        config: &NodeConfig,
        seed: [u8; 32],
    ) -> Result<(), NodeError> {
        if dir.join("genesis.json").exists() {
            return Err(NodeError::Write {
                path: dir.into(),
                reason: "a validator home already exists here".into(),
            });
        }
        std::fs::create_dir_all(dir.join("data"))
            .map_err(|e| NodeError::Write { path: dir.into(), reason: e.to_string() })?;
        let spec_text = serde_json::to_string_pretty(spec).map_err(|e| invalid(dir, e))?;
        write(&dir.join("genesis.json"), &spec_text)?;
        let config_text = toml::to_string(config).map_err(|e| invalid(dir, e))?;
        write(&dir.join("node.toml"), &config_text)?;
        write_private(&dir.join("validator.key"), &hex::encode(seed))
    }
}

/// Creates `path` readable by its owner only from the start (mode 0600 at creation, never wider even for an
/// instant), refusing to replace an existing file.
#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), NodeError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| NodeError::Write { path: path.into(), reason: e.to_string() };
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), NodeError> {
    write(path, text)
}

/// The consensus key whose 32-byte seed is `seed`.
pub fn signer_of_seed(seed: [u8; 32]) -> PrivateKey {
    // Any 32 bytes are a valid ed25519 seed, so decoding cannot fail.
    PrivateKey::decode(bytes::Bytes::copy_from_slice(&seed)).expect("32 bytes are an ed25519 seed")
}

/// The consensus public key of a seed, as hex (what a chain spec lists).
pub fn public_key_of_seed(seed: [u8; 32]) -> String {
    key_hex(&signer_of_seed(seed).public_key())
}

/// The API of a running validator.
pub struct ValidatorApi {
    chain: Arc<Chain>,
    /// The committed height, for `wait`ing submitters.
    committed: tokio::sync::watch::Receiver<u64>,
    gossip: Gossip,
    name: String,
    validators: Vec<String>,
    metrics: Box<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for ValidatorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorApi").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NodeApi for ValidatorApi {
    fn submit(&self, raw: Vec<u8>) -> Result<Hash, SubmitError> {
        // The signature is checked before the lock block execution takes, so a flood of submissions does not
        // hold up blocks.
        tensorgrid_node::mempool::verify_signature(&raw)?;
        let hash = self.chain.core().lock().submit_verified(raw.clone(), tensorgrid_node::wall_clock())?;
        self.gossip.send(raw);
        Ok(hash)
    }

    fn query(&self, query: &Query) -> Result<QueryResponse, QueryError> {
        self.chain.core().lock().query(query)
    }

    fn status(&self) -> Result<Value, ReadError> {
        let status = self.chain.core().lock().status()?;
        let latest = self.chain.block(status.chain.height)?;
        let stats = self.chain.stats();
        Ok(json!({
            "chain": status.chain,
            "mempool_txs": status.mempool_txs,
            "mempool_bytes": status.mempool_bytes,
            "latest_block": latest.map(|b| json!({ "height": b.height, "digest": b.digest, "time": b.time, "app_root": b.app_root })),
            "node": { "name": self.name, "version": env!("CARGO_PKG_VERSION") },
            "validators": self.validators,
            "halted": self.chain.halted().map(|h| h.to_string()),
            "finality_ms": { "p50": stats.finality_quantile(0.5), "p99": stats.finality_quantile(0.99) },
        }))
    }

    fn tx(&self, hash: &Hash) -> Result<Option<TxRecord>, ReadError> {
        self.chain.tx(hash)
    }

    fn account_txs(
        &self,
        account: &tensorgrid_types::Address,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Option<Vec<TxRecord>>, ReadError> {
        self.chain.account_txs(account, before, limit).map(Some)
    }

    fn block(&self, height: Option<u64>) -> Result<Option<BlockRecord>, ReadError> {
        self.chain.block(height.unwrap_or_else(|| self.chain.committed_height()))
    }

    fn committed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.committed.clone())
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<BlockEvents>> {
        let mut committed = self.chain.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(rpc::EVENT_BUFFER);
        tokio::spawn(async move {
            while let Some(c) = committed.recv().await {
                let events = BlockEvents {
                    height: c.height,
                    time: Timestamp::from_millis(c.timestamp),
                    events: c.outcome.events.clone(),
                };
                // Full or closed: the subscriber is gone or too slow; dropping `tx` ends its stream.
                if tx.try_send(events).is_err() {
                    return;
                }
            }
        });
        Some(rx)
    }

    fn metrics(&self) -> String {
        let stats = self.chain.stats();
        let core = self.chain.core().lock().status().ok();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: String| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        };
        gauge("tensorgrid_height", "Committed block height.", self.chain.committed_height().to_string());
        gauge(
            "tensorgrid_mempool_txs",
            "Transactions waiting in the mempool.",
            core.as_ref().map(|s| s.mempool_txs).unwrap_or(0).to_string(),
        );
        gauge(
            "tensorgrid_finality_p50_ms",
            "Median milliseconds from a block's proposal to its commit here (last 1024 blocks).",
            stats.finality_quantile(0.5).unwrap_or(0).to_string(),
        );
        gauge(
            "tensorgrid_finality_p99_ms",
            "99th percentile milliseconds from a block's proposal to its commit here (last 1024 blocks).",
            stats.finality_quantile(0.99).unwrap_or(0).to_string(),
        );
        gauge(
            "tensorgrid_tx_per_second",
            "Transactions committed per second over the last 10 seconds.",
            format!("{:.1}", stats.tx_rate(tensorgrid_node::wall_clock().millis(), 10_000)),
        );
        out.push_str(&format!(
            "# HELP tensorgrid_committed_txs_total Transactions committed since start.\n# TYPE \
             tensorgrid_committed_txs_total counter\ntensorgrid_committed_txs_total {}\n",
            stats.txs
        ));
        out.push_str(&(self.metrics)());
        out
    }
}

/// Runs the validator in `home` until it fails or halts.
pub fn run(home: &Path) -> Result<(), NodeError> {
    let home = Home::load(home)?;
    let storage = home.dir.join("data").join("consensus");
    let runtime = commonware_runtime::tokio::Config::new()
        .with_worker_threads(2)
        .with_catch_panics(false)
        .with_storage_directory(storage);
    let runner = commonware_runtime::tokio::Runner::new(runtime);
    runner.start(|context| async move { serve(context, home).await })
}

/// Starts the validator of `home` on the tokio runtime: its ledger, p2p over TCP and consensus (no API).
/// `partition_prefix` names its consensus storage, so several validators can share one runtime (as the
/// loopback benchmark does).
pub async fn start_validator(
    context: &commonware_runtime::tokio::Context,
    home: &Home,
    partition_prefix: &str,
) -> Result<crate::Validator, NodeError> {
    let history = Some(home.config.state_history).filter(|&versions| versions > 0);
    let (chain, genesis_block) = Chain::open(
        &home.dir.join("data").join("state.redb"),
        &home.spec.genesis,
        MempoolConfig::default(),
        history,
    )?;
    let me = home.signer.public_key();
    info!(name = %home.config.name, key = %key_hex(&me), height = chain.committed_height(), "starting validator");

    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: home.signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let mut p2p = lookup::Config::local(
        handshake,
        P2P_NAMESPACE,
        home.config.p2p_listen,
        NZUsize!(home.participants.len().max(1)),
        MAX_MESSAGE_BYTES,
        NZUsize!(4096),
    );
    p2p.tracked_peer_sets = NZUsize!(1);
    let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p);
    let mut peers = Vec::new();
    for peer in &home.config.peers {
        if let Ok(key) = parse_key(&peer.consensus_key) {
            peers.push((key, Address::from(peer.address)));
        }
    }
    if !peers.iter().any(|(k, _)| *k == me) {
        peers.push((me.clone(), Address::from(home.config.p2p_listen)));
    }
    let peers: Map<PublicKey, Address> = Map::from_iter_dedup(peers);
    oracle.track(0, peers);
    // Messages per second each peer may send on each channel. The network sizes its queues from this (peers ×
    // burst × channels), so it is a memory budget too; consensus sends a handful per view and gossip batches.
    let quota = Quota::per_second(NZU32!(2_000));
    let net = Network::register(
        |channel| std::future::ready(network.register(channel, quota)),
        oracle.clone(),
        oracle.clone(),
    )
    .await;
    let _p2p = network.start();

    let mut engine = EngineConfig::new(
        home.signer.clone(),
        home.participants.clone(),
        partition_prefix.into(),
        genesis_block,
    );
    engine.leader_timeout = Duration::from_millis(home.config.leader_timeout_ms);
    engine.certification_timeout = Duration::from_millis(home.config.certification_timeout_ms);
    engine.block_interval = Duration::from_millis(home.config.block_interval_ms);
    engine.blocks_per_epoch = home.spec.blocks_per_epoch;
    Ok(crate::start(context.child("consensus"), engine, chain, net).await)
}

async fn serve(context: commonware_runtime::tokio::Context, home: Home) -> Result<(), NodeError> {
    let validator = start_validator(&context, &home, "tensorgrid").await?;
    let chain = validator.chain.clone();
    let metrics_context = context.child("metrics");
    let (height_tx, committed) = tokio::sync::watch::channel(chain.committed_height());
    let mut commits = chain.subscribe();
    tokio::spawn(async move {
        while let Some(c) = commits.recv().await {
            if height_tx.send(c.height).is_err() {
                return;
            }
        }
    });
    let api = Arc::new(ValidatorApi {
        chain: chain.clone(),
        committed,
        gossip: validator.gossip.clone(),
        name: home.config.name.clone(),
        validators: home.spec.validators.iter().map(|v| v.name.clone()).collect(),
        metrics: Box::new(move || metrics_context.encode()),
    });
    let address = home.config.rpc_listen;
    let rpc_requests_per_sec = home.config.rpc_requests_per_sec;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| NodeError::Listen { address, reason: e.to_string() })?;
    info!(%address, "API listening");
    let server = context.child("rpc").spawn(move |_| async move {
        let limits = rpc::ApiLimits { requests_per_sec: rpc_requests_per_sec, ..rpc::ApiLimits::default() };
        let app = rpc::router_with(api, limits).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "API server stopped");
        }
    });
    // Run until execution halts (a diverged state is never served as if it were fine).
    loop {
        context.sleep(Duration::from_millis(500)).await;
        if let Some(why) = chain.halted() {
            server.abort();
            validator.abort();
            return Err(NodeError::Halted(why.to_string()));
        }
    }
}
