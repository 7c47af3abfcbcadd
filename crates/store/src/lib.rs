//! The ledger's persistent state: [`DiskStore`] implements the ledger's [`Store`] over a redb file and keeps a
//! Jellyfish Merkle tree (jmt) over it, so that every block's writes produce a state root and any value can be
//! proven against it.
//!
//! Each [`Store::write_batch`] (one per block) is one redb write transaction: the block's key/value changes,
//! the tree's new nodes and the new root and version commit together or not at all, so a crash leaves the
//! state of the last whole block. The tree commits to `blake3(value)` under the key's SHA-256 (jmt's key hash);
//! the values themselves live in the ordered `state` table that the ledger reads and scans.
//!
//! Why not commonware-storage's QMDB: its databases are async and bound to commonware's runtime, while the
//! ledger's `Store` is synchronous by design (the state machine must stay free of any runtime).

use std::path::Path;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use sha2::Sha256;
use tensorgrid_ledger::{KeyValue, ScanItem, Store, StoreError, WriteBatch};
use tensorgrid_types::{Address, Hash};

const STATE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("state");
const NODES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// `key hash ‖ version (big-endian)` → `1 ‖ blake3(value)` or `0` (deleted at that version).
const VALUES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("jmt_values");
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// What the tree no longer needs from some version on: `stale since (BE) ‖ 0 ‖ borsh(node key)` for a node,
/// `stale since (BE) ‖ 1 ‖ key hash ‖ version (BE)` for a value entry. Versions at or after the "since"
/// never read it, so pruning the versions below `v` deletes every entry stale since `v` or earlier.
const STALE: TableDefinition<'static, &[u8], ()> = TableDefinition::new("jmt_stale");
/// Transaction hash → the node's record of where it committed and its receipt (outside the state root).
const TXS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("index_txs");
/// Block height (big-endian) → the node's record of the block.
const BLOCKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("index_blocks");
/// Version → the state root after it: 32 bytes a block, kept when the tree's old versions are pruned.
const ROOTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("roots");
/// Each account's transactions: `address ‖ height (BE) ‖ position (BE)` → transaction hash, so one account's
/// history is one key range, newest last.
const ACCOUNT_TXS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("index_account_txs");

/// The state root of an empty store.
pub const EMPTY_ROOT: Hash = Hash(JellyfishMerkleTree::<DiskStore, Sha256>::EMPTY_ROOT.0);

#[derive(Debug, thiserror::Error)]
pub enum DiskStoreError {
    #[error("cannot open the state database at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("state database: {0}")]
    Db(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A value and the proof that it is (or that nothing is) stored under a key at a version.
#[derive(Debug)]
pub struct Proven {
    pub value: Option<Vec<u8>>,
    pub root: Hash,
    pub version: u64,
    pub proof: jmt::proof::SparseMerkleProof<Sha256>,
}

impl Proven {
    /// Checks the proof for `key` against `root`.
    pub fn verify(&self, key: &[u8]) -> bool {
        let value_hash = self.value.as_ref().map(|v| blake3::hash(v).as_bytes().to_vec());
        self.proof.verify(RootHash(self.root.0), KeyHash::with::<Sha256>(key), value_hash).is_ok()
    }
}

/// State on disk with a Merkle root per version (block).
pub struct DiskStore {
    db: Database,
    /// A snapshot of the `state` table as of the last commit. Reads between commits all see that one state,
    /// so one snapshot serves them all instead of a transaction per read.
    state: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Snapshots of the tree's tables, read while computing the next root.
    nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Index records staged by [`DiskStore::stage_index`], written by the next batch in its transaction.
    staged: std::sync::Mutex<Option<BlockIndex>>,
    /// How many versions of the tree to keep (`None`: all).
    history: Option<u64>,
}

/// The fewest versions a pruning store keeps: consensus reads the roots of the last few heights while it
/// verifies proposals, which this leaves far behind.
pub const MIN_HISTORY: u64 = 64;

/// The most stale tree entries one batch deletes.
pub const PRUNE_PER_BATCH: usize = 20_000;

fn stale_node_key(since: u64, node_key: &NodeKey) -> Result<Vec<u8>, StoreError> {
    let mut key = since.to_be_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&borsh::to_vec(node_key).map_err(db_err)?);
    Ok(key)
}

fn value_key(key_hash: &KeyHash, version: u64) -> Vec<u8> {
    let mut key = key_hash.0.to_vec();
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn stale_value_key(since: u64, value_key: &[u8]) -> Vec<u8> {
    let mut key = since.to_be_bytes().to_vec();
    key.push(1);
    key.extend_from_slice(value_key);
    key
}

/// A block's index records (not part of the state or its root), written with the block's state.
#[derive(Debug, Default)]
pub struct BlockIndex {
    pub height: u64,
    /// The block's record.
    pub block: Vec<u8>,
    /// Each transaction's record, by hash.
    pub txs: Vec<(Hash, Vec<u8>)>,
    /// `(account, position in the block, transaction hash)` for every account a transaction touched.
    pub accounts: Vec<(Address, u32, Hash)>,
}

/// Where one account's transaction sits in the chain: `(height, position in the block)`.
pub type TxPosition = (u64, u32);

fn account_key(account: &Address, (height, position): TxPosition) -> [u8; 44] {
    let mut key = [0u8; 44];
    key[..32].copy_from_slice(account.as_bytes());
    key[32..40].copy_from_slice(&height.to_be_bytes());
    key[40..].copy_from_slice(&position.to_be_bytes());
    key
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore").finish_non_exhaustive()
    }
}

type Snapshot = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// One read transaction's view of the state and tree tables, as of the last commit.
fn snapshot(db: &Database) -> Result<(Snapshot, Snapshot, Snapshot), StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    Ok((
        txn.open_table(STATE).map_err(db_err)?,
        txn.open_table(NODES).map_err(db_err)?,
        txn.open_table(VALUES).map_err(db_err)?,
    ))
}

impl DiskStore {
    /// Opens or creates the database file.
    pub fn open(path: impl AsRef<Path>) -> Result<DiskStore, DiskStoreError> {
        let path = path.as_ref();
        let db = Database::create(path)
            .map_err(|e| DiskStoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        let txn = db.begin_write().map_err(|e| DiskStoreError::Db(e.to_string()))?;
        for table in [STATE, NODES, VALUES] {
            txn.open_table(table).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        }
        txn.open_table(STALE).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        txn.open_table(META).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        for table in [TXS, ACCOUNT_TXS] {
            txn.open_table(table).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        }
        txn.open_table(BLOCKS).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        txn.open_table(ROOTS).map_err(|e| DiskStoreError::Db(e.to_string()))?;
        txn.commit().map_err(|e| DiskStoreError::Db(e.to_string()))?;
        let (state, nodes, values) = snapshot(&db).map_err(|e| DiskStoreError::Db(e.0))?;
        Ok(DiskStore { db, state, nodes, values, staged: std::sync::Mutex::new(None), history: None })
    }

    /// Keeps the state tree of only the last `versions` versions (at least [`MIN_HISTORY`]): proofs against
    /// older versions and the tree nodes only they need are deleted as new blocks commit (their roots stay), at most
    /// [`PRUNE_PER_BATCH`] entries per block so that catching up after lowering the setting never stalls a
    /// block. `None` keeps every version (an archive node). The current state and the block index are never
    /// pruned.
    pub fn with_history(mut self, versions: Option<u64>) -> DiskStore {
        self.history = versions.map(|v| v.max(MIN_HISTORY));
        self
    }

    /// The oldest version whose tree (and so proofs against it) can still be read (0 on an archive node).
    pub fn oldest_version(&self) -> Result<u64, StoreError> {
        Ok(self.meta("oldest")?.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
    }

    /// How many tree entries are waiting to be pruned once their versions leave the history window (nodes
    /// and value entries that a newer version replaced): what pruning keeps from growing without bound.
    pub fn stale_entries(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(STALE).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    /// How many tree nodes the store holds, across every version it keeps.
    pub fn tree_nodes(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODES).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(META).map_err(db_err)?;
        Ok(table.get(name).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// The version of the last committed batch (`None` before the first).
    pub fn version(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.meta("version")?.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes))
    }

    /// The state root after the last committed batch.
    pub fn root(&self) -> Result<Hash, StoreError> {
        Ok(self.meta("root")?.and_then(|v| <[u8; 32]>::try_from(v).ok()).map(Hash).unwrap_or(EMPTY_ROOT))
    }

    /// The state root after the batch committed as `version` (block height `version`, since genesis is the
    /// first batch and each block one more), or `None` if no such version was committed.
    pub fn root_at(&self, version: u64) -> Result<Option<Hash>, StoreError> {
        match self.version()? {
            Some(latest) if version <= latest => {}
            _ => return Ok(None),
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let roots = txn.open_table(ROOTS).map_err(db_err)?;
        if let Some(root) = roots.get(version).map_err(db_err)? {
            return Ok(<[u8; 32]>::try_from(root.value()).ok().map(Hash));
        }
        let tree = JellyfishMerkleTree::<_, Sha256>::new(self);
        let root = tree.get_root_hash_option(version).map_err(db_err)?;
        Ok(root.map(|r| Hash(r.0)))
    }

    /// The root the store would have after committing `batch`, computed without writing anything: how a
    /// proposer or verifier learns a candidate block's state root before the block is final.
    pub fn preview_root(&self, batch: &WriteBatch) -> Result<Hash, StoreError> {
        let version = match self.version()? {
            Some(v) => v.checked_add(1).ok_or_else(|| StoreError("version overflow".into()))?,
            None => 0,
        };
        let tree = JellyfishMerkleTree::<_, Sha256>::new(self);
        let (root, _) = tree.put_value_set(value_set(batch), version).map_err(db_err)?;
        Ok(Hash(root.0))
    }

    /// Stages a block's index records (the block by height, each transaction by hash; not part of the state
    /// or its root) for the next [`Store::write_batch`], which writes them in the same transaction as the
    /// block's state: one commit per block, and the index never runs ahead of or behind the state.
    pub fn stage_index(&self, index: BlockIndex) {
        let mut staged = self.staged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *staged = Some(index);
    }

    /// Up to `limit` of `account`'s transactions, newest first, strictly before `before` (all when `None`).
    pub fn account_txs(
        &self,
        account: &Address,
        before: Option<TxPosition>,
        limit: usize,
    ) -> Result<Vec<(TxPosition, Hash)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ACCOUNT_TXS).map_err(db_err)?;
        let start = account_key(account, (0, 0));
        let end = account_key(account, before.unwrap_or((u64::MAX, u32::MAX)));
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..end.as_slice()).map_err(db_err)?.rev().take(limit) {
            let (key, value) = item.map_err(db_err)?;
            let key = key.value();
            let height = u64::from_be_bytes(key[32..40].try_into().map_err(db_err)?);
            let position = u32::from_be_bytes(key[40..44].try_into().map_err(db_err)?);
            let hash = Hash(value.value().try_into().map_err(db_err)?);
            out.push(((height, position), hash));
        }
        Ok(out)
    }

    /// The index record of a transaction, by hash.
    pub fn indexed_tx(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(TXS).map_err(db_err)?;
        Ok(table.get(hash.0.as_slice()).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// The index record of a block, by height.
    pub fn indexed_block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(BLOCKS).map_err(db_err)?;
        Ok(table.get(height).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// The current value under `key` with a proof against the current root.
    pub fn get_proven(&self, key: &[u8]) -> Result<Proven, StoreError> {
        let version = self.version()?.ok_or_else(|| StoreError("the store is empty".into()))?;
        let tree = JellyfishMerkleTree::<_, Sha256>::new(self);
        let (_, proof) = tree.get_with_proof(KeyHash::with::<Sha256>(key), version).map_err(db_err)?;
        Ok(Proven { value: self.get(key)?, root: self.root()?, version, proof })
    }
}

impl Store for DiskStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write_batch(vec![(key.to_vec(), Some(value.to_vec()))])
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.write_batch(vec![(key.to_vec(), None)])
    }

    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + 'a> {
        // Entries are collected so the iterator does not borrow the snapshot across a later commit.
        let collect = || -> Result<Vec<KeyValue>, StoreError> {
            let mut out = Vec::new();
            for item in self.state.range(prefix..).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        };
        match collect() {
            Ok(items) => Box::new(items.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// One block's writes, the tree update and the new root, in one transaction.
    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let version = match self.version()? {
            Some(v) => v.checked_add(1).ok_or_else(|| StoreError("version overflow".into()))?,
            None => 0,
        };
        let value_set: Vec<(KeyHash, Option<OwnedValue>)> = batch
            .iter()
            .map(|(k, v)| {
                (KeyHash::with::<Sha256>(k), v.as_ref().map(|v| blake3::hash(v).as_bytes().to_vec()))
            })
            .collect();
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&*self);
        let (root, update) = tree.put_value_set(value_set, version).map_err(db_err)?;

        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut state = txn.open_table(STATE).map_err(db_err)?;
            for (key, value) in &batch {
                match value {
                    Some(v) => state.insert(key.as_slice(), v.as_slice()).map_err(db_err)?,
                    None => state.remove(key.as_slice()).map_err(db_err)?,
                };
            }
            let mut nodes = txn.open_table(NODES).map_err(db_err)?;
            for (node_key, node) in update.node_batch.nodes() {
                let k = borsh::to_vec(node_key).map_err(db_err)?;
                let v = borsh::to_vec(node).map_err(db_err)?;
                nodes.insert(k.as_slice(), v.as_slice()).map_err(db_err)?;
            }
            let mut values = txn.open_table(VALUES).map_err(db_err)?;
            let mut stale = txn.open_table(STALE).map_err(db_err)?;
            for index in &update.stale_node_index_batch {
                let key = stale_node_key(index.stale_since_version, &index.node_key)?;
                stale.insert(key.as_slice(), ()).map_err(db_err)?;
            }
            // A batch that changes nothing copies the previous root to the new version without marking the
            // old one stale; no later version reads a root older than its own, so it is stale now.
            let new_root = update.node_batch.nodes().keys().find(|k| k.nibble_path().is_empty());
            if let (Some(root_key), Some(previous)) = (new_root, version.checked_sub(1)) {
                let previous_root = NodeKey::new(previous, root_key.nibble_path().clone());
                stale.insert(stale_node_key(version, &previous_root)?.as_slice(), ()).map_err(db_err)?;
            }
            for ((v, key_hash), value) in update.node_batch.values() {
                let k = value_key(key_hash, *v);
                // The key's previous entry answers reads of versions before this one only.
                let low = value_key(key_hash, 0);
                if let Some(previous) =
                    self.values.range(low.as_slice()..k.as_slice()).map_err(db_err)?.next_back()
                {
                    let (previous, _) = previous.map_err(db_err)?;
                    stale.insert(stale_value_key(*v, previous.value()).as_slice(), ()).map_err(db_err)?;
                }
                let encoded = match value {
                    Some(value) => [&[1u8][..], value].concat(),
                    None => {
                        // A deletion reads the same as no entry once the entries before it are gone.
                        stale.insert(stale_value_key(*v, &k).as_slice(), ()).map_err(db_err)?;
                        vec![0u8]
                    }
                };
                values.insert(k.as_slice(), encoded.as_slice()).map_err(db_err)?;
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if let Some(history) = self.history {
                let oldest = version.saturating_add(1).saturating_sub(history);
                prune(&mut stale, &mut nodes, &mut values, oldest)?;
                if oldest > 0 {
                    meta.insert("oldest", oldest.to_be_bytes().as_slice()).map_err(db_err)?;
                }
            }
            drop(meta);
            let mut roots = txn.open_table(ROOTS).map_err(db_err)?;
            roots.insert(version, root.0.as_slice()).map_err(db_err)?;
            let staged = self.staged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(index) = staged {
                let mut blocks = txn.open_table(BLOCKS).map_err(db_err)?;
                blocks.insert(index.height, index.block.as_slice()).map_err(db_err)?;
                let mut txs = txn.open_table(TXS).map_err(db_err)?;
                for (hash, record) in &index.txs {
                    txs.insert(hash.0.as_slice(), record.as_slice()).map_err(db_err)?;
                }
                let mut accounts = txn.open_table(ACCOUNT_TXS).map_err(db_err)?;
                for (account, position, hash) in &index.accounts {
                    let key = account_key(account, (index.height, *position));
                    accounts.insert(key.as_slice(), hash.0.as_slice()).map_err(db_err)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            meta.insert("version", version.to_be_bytes().as_slice()).map_err(db_err)?;
            meta.insert("root", root.0.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        (self.state, self.nodes, self.values) = snapshot(&self.db)?;
        Ok(())
    }
}

type WriteTable<'t, V> = redb::Table<'t, &'static [u8], V>;

/// Deletes up to [`PRUNE_PER_BATCH`] tree entries that no version from `oldest` on reads.
fn prune(
    stale: &mut WriteTable<'_, ()>,
    nodes: &mut WriteTable<'_, &'static [u8]>,
    values: &mut WriteTable<'_, &'static [u8]>,
    oldest: u64,
) -> Result<(), StoreError> {
    let bound = oldest.saturating_add(1).to_be_bytes();
    let mut due = Vec::new();
    for entry in stale.range(..bound.as_slice()).map_err(db_err)?.take(PRUNE_PER_BATCH) {
        due.push(entry.map_err(db_err)?.0.value().to_vec());
    }
    for key in due {
        match key.get(8..).and_then(|rest| rest.split_first()) {
            Some((0, node_key)) => {
                nodes.remove(node_key).map_err(db_err)?;
            }
            Some((1, value_key)) => {
                values.remove(value_key).map_err(db_err)?;
            }
            _ => return Err(StoreError(format!("malformed stale-tree entry of {} bytes", key.len()))),
        }
        stale.remove(key.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// What the tree commits to for a batch: each key's hash and `blake3(value)`, or a deletion.
fn value_set(batch: &WriteBatch) -> Vec<(KeyHash, Option<OwnedValue>)> {
    batch
        .iter()
        .map(|(k, v)| (KeyHash::with::<Sha256>(k), v.as_ref().map(|v| blake3::hash(v).as_bytes().to_vec())))
        .collect()
}

impl TreeReader for DiskStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.nodes.get(key.as_slice())? {
            Some(bytes) => Ok(Some(borsh::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let mut low = key_hash.0.to_vec();
        low.extend_from_slice(&0u64.to_be_bytes());
        let mut high = key_hash.0.to_vec();
        high.extend_from_slice(&max_version.to_be_bytes());
        let newest = self.values.range(low.as_slice()..=high.as_slice())?.next_back().transpose()?;
        Ok(newest.and_then(|(_, v)| {
            let bytes = v.value();
            match bytes.split_first() {
                Some((1, value)) => Some(value.to_vec()),
                _ => None,
            }
        }))
    }

    /// Only needed to restore a tree from a snapshot, which this node does not do (it replays blocks).
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("restoring the state tree from a snapshot is not supported; sync by replaying blocks")
    }
}
