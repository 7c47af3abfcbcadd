//! Content the provider holds by blake3 hash: job modules and inputs that clients upload. Nothing is stored
//! under a hash its bytes do not have.

use std::path::{Path, PathBuf};

use tensorgrid_types::Hash;

use crate::error::ProviderError;

#[derive(Clone, Debug)]
pub struct ContentStore {
    dir: PathBuf,
}

impl ContentStore {
    pub fn open(dir: PathBuf) -> Result<ContentStore, ProviderError> {
        std::fs::create_dir_all(&dir).map_err(|e| ProviderError::io(&dir, e))?;
        Ok(ContentStore { dir })
    }

    pub fn path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    pub fn has(&self, hash: &Hash) -> bool {
        self.path(hash).is_file()
    }

    /// Stores `bytes` if they hash to `hash`; otherwise says what they hash to. Written to a temporary name
    /// first, so a half-written file is never taken for the content.
    pub fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), PutError> {
        let actual = Hash::of(bytes);
        if actual != *hash {
            return Err(PutError::Mismatch { expected: *hash, actual });
        }
        let target = self.path(hash);
        let temporary = self.dir.join(format!(".{hash}.partial"));
        std::fs::write(&temporary, bytes).map_err(|e| PutError::Io(ProviderError::io(&temporary, e)))?;
        std::fs::rename(&temporary, &target).map_err(|e| PutError::Io(ProviderError::io(&target, e)))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the bytes hash to {actual}, not {expected}")]
    Mismatch { expected: Hash, actual: Hash },
    #[error(transparent)]
    Io(ProviderError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_kept_only_under_its_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        let hash = Hash::of(b"module");
        assert!(!store.has(&hash));
        assert!(matches!(store.put(&hash, b"not the module"), Err(PutError::Mismatch { .. })));
        assert!(!store.has(&hash));
        store.put(&hash, b"module").unwrap();
        assert_eq!(std::fs::read(store.path(&hash)).unwrap(), b"module");
    }
}
