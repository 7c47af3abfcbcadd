//! The application consensus drives: it builds blocks from the mempool, verifies other validators' blocks,
//! and executes finalized blocks on the ledger, in height order, exactly once each.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::marshal::Update;
use commonware_consensus::simplex::types::Context as ConsensusContext;
use commonware_consensus::Reporter;
use commonware_cryptography::sha256::Digest;
use commonware_cryptography::{ed25519, Digested, Digestible};
use commonware_runtime::{Clock, Spawner};
use commonware_utils::acknowledgement::Exact;
use commonware_utils::channel::{mpsc, watch};
use commonware_utils::sync::Mutex;
use commonware_utils::Acknowledgement as _;
use futures::StreamExt;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::{Ledger, LedgerError, StoreError};
use tensorgrid_node::core::NodeCore;
use tensorgrid_node::mempool::MempoolConfig;
use tensorgrid_node::ReadError;
use tensorgrid_store::{BlockIndex, DiskStore};
use tensorgrid_types::{
    Address, BlockContext, BlockOutcome, BlockRecord, Genesis, Hash, Timestamp, TxRecord,
};
use tracing::{debug, error, info, warn};

use crate::block::Block;
use crate::Scheme;

/// What a finalized block did, kept for the node's API and tests.
#[derive(Clone, Debug)]
pub struct Committed {
    pub height: u64,
    pub digest: Digest,
    pub timestamp: u64,
    pub state_root: Hash,
    pub tx_hashes: Vec<Hash>,
    pub outcome: Arc<BlockOutcome>,
}

/// Why the application stopped executing blocks.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Halt {
    #[error(
        "block {height} claims state root {claimed} at height {state_height}, but this validator committed \
         {ours}: its state diverged from the network's; it stops rather than vote on anything"
    )]
    Diverged { height: u64, state_height: u64, claimed: Hash, ours: String },
    #[error("executing finalized block {height} failed: {reason}")]
    Execution { height: u64, reason: String },
    #[error("finalized block {height} arrived while the committed height is {committed}")]
    OutOfOrder { height: u64, committed: u64 },
}

/// Why a validator's ledger could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the state database: {0}")]
    Store(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the state directory belongs to chain `{found}`, not `{expected}`")]
    OtherChain { found: String, expected: String },
    #[error("the state database has no genesis root")]
    NoGenesisRoot,
}

/// State shared by the application's handles, the executor task and the node's API.
#[derive(Debug)]
pub struct Chain {
    core: Mutex<NodeCore<DiskStore>>,
    committed: watch::Sender<u64>,
    halted: Mutex<Option<Halt>>,
    listeners: Mutex<Vec<mpsc::UnboundedSender<Committed>>>,
    /// The most recent commits, newest last, for the API and for tests comparing validators.
    recent: Mutex<std::collections::VecDeque<Committed>>,
    stats: Mutex<Stats>,
}

/// Counters for `/metrics` and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub blocks: u64,
    pub txs: u64,
    /// Milliseconds from each recent block's timestamp (when its proposer built it) to its commit here.
    pub finality_ms: std::collections::VecDeque<u64>,
    /// When (ms since the epoch) and at what transaction count each recent block committed, for tx/s.
    pub commits: std::collections::VecDeque<(u64, u64)>,
}

impl Stats {
    const WINDOW: usize = 1024;

    /// The `q`-quantile (0..=1) of the recent finality latencies.
    pub fn finality_quantile(&self, q: f64) -> Option<u64> {
        let mut sorted: Vec<u64> = self.finality_ms.iter().copied().collect();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        sorted.get(((last as f64) * q).round() as usize).copied()
    }

    /// Transactions per second committed over the last `window_ms`, as of `now`.
    pub fn tx_rate(&self, now: u64, window_ms: u64) -> f64 {
        let since = now.saturating_sub(window_ms);
        let txs: u64 = self.commits.iter().filter(|(t, _)| *t >= since).map(|(_, n)| n).sum();
        txs as f64 * 1000.0 / window_ms.max(1) as f64
    }
}

/// How many recent commits [`Chain::recent`] keeps.
pub const RECENT_BLOCKS: usize = 4096;

impl Chain {
    pub fn new(core: NodeCore<DiskStore>) -> Result<Arc<Chain>, LedgerError> {
        let height = core.height()?;
        let (committed, _) = watch::channel(height);
        Ok(Arc::new(Chain {
            core: Mutex::new(core),
            committed,
            halted: Mutex::new(None),
            listeners: Mutex::new(Vec::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            stats: Mutex::new(Stats::default()),
        }))
    }

    /// Opens (or creates) a validator's ledger at `path`, applying `genesis` to a new one, and returns the
    /// chain with the genesis block consensus starts from. An existing ledger must have been made from the
    /// same genesis. `state_history` is how many versions of the state tree to keep (`None`: all).
    pub fn open(
        path: &Path,
        genesis: &Genesis,
        mempool: MempoolConfig,
        state_history: Option<u64>,
    ) -> Result<(Arc<Chain>, Block), OpenError> {
        let store =
            DiskStore::open(path).map_err(|e| OpenError::Store(e.to_string()))?.with_history(state_history);
        let mut ledger = Ledger::new(store);
        match ledger.chain_info() {
            Ok(info) if info.chain_id != genesis.chain_id => {
                return Err(OpenError::OtherChain {
                    found: info.chain_id,
                    expected: genesis.chain_id.clone(),
                });
            }
            Ok(_) => {}
            Err(LedgerError::NotInitialized) => ledger.init_genesis(genesis)?,
            Err(e) => return Err(e.into()),
        }
        let root =
            ledger.store().root_at(0).map_err(|e| OpenError::Store(e.0))?.ok_or(OpenError::NoGenesisRoot)?;
        let block = Block::genesis(&genesis.chain_id, genesis.genesis_time.millis(), root);
        let core = NodeCore::new(ledger, mempool)?;
        Ok((Chain::new(core)?, block))
    }

    /// The node (ledger and mempool). Hold the lock briefly: block execution takes it too.
    pub fn core(&self) -> &Mutex<NodeCore<DiskStore>> {
        &self.core
    }

    pub fn committed_height(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Why execution stopped, if it did.
    pub fn halted(&self) -> Option<Halt> {
        self.halted.lock().clone()
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    /// What this node committed at `height`, if it is among the last [`RECENT_BLOCKS`] it committed since it
    /// started.
    pub fn recent(&self, height: u64) -> Option<Committed> {
        let recent = self.recent.lock();
        let first = recent.front()?.height;
        let index = usize::try_from(height.checked_sub(first)?).ok()?;
        recent.get(index).cloned()
    }

    /// A stream of every block this node commits from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Committed> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().push(tx);
        rx
    }

    /// Waits until the committed height reaches `height`.
    pub async fn wait_committed(&self, height: u64) {
        let mut rx = self.committed.subscribe();
        // An error means the sender is gone, which only happens when the chain is dropped.
        let _ = rx.wait_for(|h| *h >= height).await;
    }

    /// The index record of a committed transaction.
    pub fn tx(&self, hash: &Hash) -> Result<Option<TxRecord>, ReadError> {
        let bytes = self.core.lock().ledger().store().indexed_tx(hash)?;
        bytes.map(|b| decode_record("transaction", &b)).transpose()
    }

    /// The index record of a committed block, with its post-execution root.
    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, ReadError> {
        let core = self.core.lock();
        let Some(bytes) = core.ledger().store().indexed_block(height)? else {
            return Ok(None);
        };
        let mut record: BlockRecord = decode_record("block", &bytes)?;
        record.app_root = core.ledger().store().root_at(height)?.unwrap_or(Hash::ZERO);
        Ok(Some(record))
    }

    /// Up to `limit` of `account`'s committed transactions, newest first, strictly before `before`.
    pub fn account_txs(
        &self,
        account: &Address,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<TxRecord>, ReadError> {
        let core = self.core.lock();
        let store = core.ledger().store();
        let mut out = Vec::new();
        for (_, hash) in store.account_txs(account, before, limit)? {
            let bytes = store.indexed_tx(&hash)?.ok_or(ReadError::MissingRecord(hash))?;
            out.push(decode_record("transaction", &bytes)?);
        }
        Ok(out)
    }

    /// The state root this validator committed at `height`.
    pub fn root_at(&self, height: u64) -> Result<Option<Hash>, ReadError> {
        Ok(self.core.lock().ledger().store().root_at(height)?)
    }

    fn halt(&self, why: Halt) {
        error!(%why, "execution halted");
        *self.halted.lock() = Some(why);
    }

    /// Executes a finalized block. Blocks at or below the committed height were executed before (marshal
    /// delivers at least once, and again after a restart) and are skipped.
    fn execute(&self, block: &Block, now_ms: u64) -> Result<Option<Committed>, Halt> {
        let committed = self.committed_height();
        if block.height <= committed {
            return Ok(None);
        }
        if block.height != committed + 1 {
            return Err(Halt::OutOfOrder { height: block.height, committed });
        }
        let ours = self
            .root_at(block.state_height)
            .map_err(|e| Halt::Execution { height: block.height, reason: e.to_string() })?;
        if ours != Some(block.state_root) {
            return Err(Halt::Diverged {
                height: block.height,
                state_height: block.state_height,
                claimed: block.state_root,
                ours: ours.map(|h| h.to_string()).unwrap_or_else(|| "nothing".into()),
            });
        }
        let ctx = BlockContext {
            height: block.height,
            time: Timestamp::from_millis(block.timestamp),
            randomness: block_randomness(&block.parent, block.height),
        };
        // Batch verification's coefficients only need to be unpredictable to whoever signed the transactions;
        // the verdicts do not depend on them (ZIP-215), so a seed from the block digest keeps replays exact.
        let rng = ChaCha20Rng::from_seed(Hash::of(block.digest().as_ref()).0);
        let mut core = self.core.lock();
        let index = |store: &DiskStore, outcome: &BlockOutcome| index_block(store, block, outcome);
        let outcome = core
            .commit_block(&ctx, &block.txs, rng, index)
            .map_err(|e| Halt::Execution { height: block.height, reason: e.to_string() })?;
        let state_root = core
            .ledger()
            .store()
            .root()
            .map_err(|e| Halt::Execution { height: block.height, reason: e.0 })?;
        drop(core);
        let committed = Committed {
            height: block.height,
            digest: block.digest(),
            timestamp: block.timestamp,
            state_root,
            tx_hashes: outcome.receipts.iter().map(|r| r.tx_hash).collect(),
            outcome: Arc::new(outcome),
        };
        {
            let mut recent = self.recent.lock();
            if recent.len() == RECENT_BLOCKS {
                recent.pop_front();
            }
            recent.push_back(committed.clone());
        }
        {
            let mut stats = self.stats.lock();
            stats.blocks += 1;
            stats.txs += committed.tx_hashes.len() as u64;
            if stats.finality_ms.len() == Stats::WINDOW {
                stats.finality_ms.pop_front();
                stats.commits.pop_front();
            }
            stats.finality_ms.push_back(now_ms.saturating_sub(block.timestamp));
            stats.commits.push_back((now_ms, committed.tx_hashes.len() as u64));
        }
        self.committed.send_replace(block.height);
        self.listeners.lock().retain(|l| l.send(committed.clone()).is_ok());
        Ok(Some(committed))
    }
}

/// Stages a block's index records (the block by height, each transaction by hash) to be written with its
/// state. The block record's `app_root` is left zero here and filled from the state store when read, since it
/// exists only once the block's state commits.
fn index_block(store: &DiskStore, block: &Block, outcome: &BlockOutcome) -> Result<(), StoreError> {
    let time = Timestamp::from_millis(block.timestamp);
    let record = BlockRecord {
        height: block.height,
        digest: block.digest().to_string(),
        parent: block.parent.to_string(),
        time,
        state_height: block.state_height,
        state_root: block.state_root,
        app_root: Hash::ZERO,
        tx_root: block.tx_root(),
        txs: outcome.receipts.iter().map(|r| r.tx_hash).collect(),
        events: outcome.events.clone(),
    };
    let block_bytes = encode(&record)?;
    let mut txs = Vec::with_capacity(outcome.receipts.len());
    let mut accounts = Vec::new();
    for (index, receipt) in outcome.receipts.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let tx = TxRecord {
            hash: receipt.tx_hash,
            height: block.height,
            index,
            block_time: time,
            receipt: receipt.clone(),
        };
        txs.push((receipt.tx_hash, encode(&tx)?));
        // An account's history is every transaction it signed or that named it (a transfer's recipient, a
        // lease's provider, …), each listed once.
        let mut touched: Vec<Address> = receipt.signer.into_iter().collect();
        for event in &receipt.events {
            for account in event.accounts() {
                if !touched.contains(&account) {
                    touched.push(account);
                }
            }
        }
        accounts.extend(touched.into_iter().map(|a| (a, index, receipt.tx_hash)));
    }
    store.stage_index(BlockIndex { height: block.height, block: block_bytes, txs, accounts });
    Ok(())
}

fn encode<T: borsh::BorshSerialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    borsh::to_vec(value).map_err(|e| StoreError(format!("encoding an index record: {e}")))
}

/// The randomness a block's execution sees: a hash of its parent's digest and its height. The parent's
/// proposer could grind its block's contents to steer it; a threshold-signature seed would remove that
/// (see ARCHITECTURE.md).
pub fn block_randomness(parent: &Digest, height: u64) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tensorgrid/randomness\0");
    hasher.update(parent.as_ref());
    hasher.update(&height.to_be_bytes());
    Hash(*hasher.finalize().as_bytes())
}

pub(crate) fn millis(clock: &impl Clock) -> u64 {
    let ms = clock.current().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The height and transactions of `first` and the ancestors after it that are above `committed`: what a
/// block built on `first` must come after.
async fn uncommitted(
    first: Digested<Block>,
    ancestry: &mut impl Ancestry<Block>,
    committed: u64,
) -> Vec<(u64, Vec<Vec<u8>>)> {
    let mut pending = Vec::new();
    let mut ancestor = Some(first);
    while let Some(block) = ancestor {
        if block.inner().height <= committed {
            break;
        }
        pending.push((block.inner().height, block.inner().txs.clone()));
        ancestor = ancestry.next().await;
    }
    pending
}

/// The [`commonware_consensus::Application`] of a tensorgrid validator.
#[derive(Clone, Debug)]
pub struct App {
    chain: Arc<Chain>,
    /// The least time between a block and its child: proposers wait this long after the parent's timestamp,
    /// so an idle chain makes a few empty blocks per second instead of as many as the network allows.
    block_interval: Duration,
}

impl App {
    pub fn new(chain: Arc<Chain>, block_interval: Duration) -> App {
        App { chain, block_interval }
    }
}

impl<E> commonware_consensus::Application<E> for App
where
    E: Clock + Spawner,
{
    type SigningScheme = Scheme;
    type Context = ConsensusContext<Digest, ed25519::PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (clock, _context): (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        if self.chain.halted().is_some() {
            return None;
        }
        let parent_block = ancestry.next().await?;
        let parent = parent_block.inner();
        // A claim may not fall behind the parent's, so a validator that is still catching up waits here
        // (consensus cancels the build if the view times out first).
        self.chain.wait_committed(parent.state_height).await;
        let committed = self.chain.committed_height();
        if committed > parent.height {
            warn!(committed, parent = parent.height, "asked to build below the committed height");
            return None;
        }
        // Transactions in uncommitted ancestors take their accounts' nonces and balance first.
        let pending = uncommitted(parent_block.clone(), &mut ancestry, committed).await;
        let root = self.chain.root_at(committed).ok().flatten()?;
        let earliest = parent.timestamp + (self.block_interval.as_millis() as u64).max(1);
        let now = millis(&clock);
        if now < earliest {
            clock.sleep(Duration::from_millis(earliest - now)).await;
        }
        let timestamp = millis(&clock).max(earliest);
        let txs = self.chain.core.lock().reap(Timestamp::from_millis(timestamp), &pending);
        let block = Block::new(parent.digest(), parent.height + 1, timestamp, committed, root, txs);
        debug!(height = block.height, txs = block.txs.len(), state_height = committed, "proposing");
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (clock, _context): (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        let Some(block) = ancestry.next().await else { return false };
        let Some(parent_block) = ancestry.next().await else { return false };
        let (block, parent) = (block.inner(), parent_block.inner());
        if block.height != parent.height + 1 || block.parent != parent.digest() {
            return false;
        }
        if block.timestamp <= parent.timestamp {
            debug!(height = block.height, "refusing a block whose time does not advance");
            return false;
        }
        if block.state_height < parent.state_height || block.state_height >= block.height {
            debug!(height = block.height, state_height = block.state_height, "refusing a bad state claim");
            return false;
        }
        let (max_txs, max_bytes) = {
            let core = self.chain.core.lock();
            (core.block_max_txs, core.block_max_bytes)
        };
        if block.txs.len() > max_txs || block.tx_bytes() > max_bytes {
            debug!(height = block.height, "refusing an oversized block");
            return false;
        }
        // A timestamp further ahead of this validator's clock than the chain allows is refused: a proposer
        // may not move the chain's time forward at will.
        let (chain_id, params) = match self.chain.core.lock().chain_params() {
            Ok(found) => found,
            Err(e) => {
                error!(error = %e, "could not read the params; abstaining");
                return false;
            }
        };
        let drift = params.max_clock_drift_ms;
        let early = block.timestamp.saturating_sub(millis(&clock));
        if early > drift {
            warn!(
                height = block.height,
                early_ms = early,
                drift_ms = drift,
                "refusing a block from the future"
            );
            return false;
        }
        // The claimed height is finalized (its proposer committed it), so it reaches this node in time.
        self.chain.wait_committed(block.state_height).await;
        // Every transaction must be one the ledger admits and that can pay, on top of the uncommitted
        // ancestors' transactions: a proposer cannot fill blocks with transactions that pay nothing.
        let committed = self.chain.committed_height();
        let pending = uncommitted(parent_block.clone(), &mut ancestry, committed).await;
        // Decoding and signatures take no lock (execution may be running); accounts are read under it.
        let rng = ChaCha20Rng::from_seed(Hash::of(block.digest().as_ref()).0);
        let checked = tensorgrid_node::mempool::check_signed(&block.txs, &chain_id, &params, rng)
            .and_then(|signed| self.chain.core.lock().check_funded(&signed, &pending));
        if let Err(e) = checked {
            warn!(height = block.height, error = %e, "refusing a block with a transaction that cannot be admitted");
            return false;
        }
        match self.chain.root_at(block.state_height) {
            Ok(Some(root)) if root == block.state_root => true,
            Ok(_) => {
                warn!(
                    height = block.height,
                    state_height = block.state_height,
                    "refusing a wrong state root"
                );
                false
            }
            Err(e) => {
                error!(error = %e, "could not read a committed root; abstaining");
                futures::future::pending::<()>().await;
                false
            }
        }
    }
}

/// Receives finalized blocks from marshal and hands them to the executor task.
#[derive(Clone, Debug)]
pub struct Finalizer {
    tx: mpsc::UnboundedSender<(Digested<Block>, Exact)>,
}

impl Reporter for Finalizer {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Update<Block>) -> commonware_actor::Feedback {
        match activity {
            Update::Block(block, ack) => {
                if self.tx.send((block, ack)).is_err() {
                    return commonware_actor::Feedback::Closed;
                }
            }
            Update::Tip(_, height, _) => debug!(height = height.get(), "finalized tip"),
        }
        commonware_actor::Feedback::Ok
    }
}

/// Starts the task that executes finalized blocks in order and acknowledges each to marshal once it is
/// durably committed, so a restart resumes from the first block not yet on disk.
pub fn start_executor<E: Spawner + Clock>(
    context: E,
    chain: Arc<Chain>,
) -> (Finalizer, commonware_runtime::Handle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Digested<Block>, Exact)>();
    let handle = context.spawn(move |context| async move {
        while let Some((block, ack)) = rx.recv().await {
            if chain.halted().is_some() {
                continue;
            }
            match chain.execute(block.inner(), millis(&context)) {
                Ok(Some(done)) => {
                    info!(
                        height = done.height,
                        txs = done.tx_hashes.len(),
                        root = %done.state_root,
                        "committed"
                    );
                    ack.acknowledge();
                }
                Ok(None) => ack.acknowledge(),
                Err(why) => chain.halt(why),
            }
        }
    });
    (Finalizer { tx }, handle)
}

/// An index record, decoded; a record that does not decode is corruption, named by what it is.
fn decode_record<T: borsh::BorshDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, ReadError> {
    borsh::from_slice(bytes).map_err(|e| ReadError::Corrupt { what, reason: e.to_string() })
}
