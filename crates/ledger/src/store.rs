//! The storage the ledger runs over. The ledger only needs ordered key/value access; the node supplies a
//! persistent, authenticated implementation, and tests use [`MemStore`].

use std::collections::BTreeMap;

/// A failure of the storage backend (disk, corruption). It aborts the block: the ledger never guesses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StoreError(pub String);

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Key/value pairs visited by a scan, in ascending key order.
pub type ScanItem = Result<KeyValue, StoreError>;

/// A block's writes in key order: `Some` puts, `None` deletes.
pub type WriteBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Ordered key/value storage.
pub trait Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Every pair whose key starts with `prefix`, in ascending key order, lazily: callers stop early.
    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + 'a>;

    /// Applies a block's writes (`None` deletes). A persistent store must make this atomic, so that a crash
    /// leaves either the whole block or none of it.
    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        for (key, value) in batch {
            match value {
                Some(value) => self.put(&key, &value)?,
                None => self.delete(&key)?,
            }
        }
        Ok(())
    }
}

/// An in-memory store for tests, simulations and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.map.remove(key);
        Ok(())
    }

    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + 'a> {
        let prefix = prefix.to_vec();
        Box::new(
            self.map
                .range(prefix.clone()..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
    }
}
