//! The tokenizers the gateway counts with, fetched once by the hash an offer names from a provider that
//! serves it, and checked against that hash: a provider can refuse to hand one over, but not hand over
//! another.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tensorgrid_client::ProviderClient;
use tensorgrid_tokenizer::{TextCodec, MAX_FILE_BYTES};
use tensorgrid_types::Hash;

#[derive(Debug, Default)]
pub(crate) struct Tokenizers {
    cache: Mutex<HashMap<Hash, Arc<TextCodec>>>,
    /// One fetch per hash at a time; requests that need the same tokenizer wait for it.
    fetching: tokio::sync::Mutex<()>,
}

impl Tokenizers {
    /// The tokenizer with this hash, from the cache or else from `client`'s provider.
    pub(crate) async fn get(&self, client: &ProviderClient, hash: Hash) -> Result<Arc<TextCodec>, String> {
        if let Some(codec) = self.cache.lock().get(&hash) {
            return Ok(codec.clone());
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(codec) = self.cache.lock().get(&hash) {
            return Ok(codec.clone());
        }
        let bytes = client
            .tokenizer(&hash, MAX_FILE_BYTES)
            .await
            .map_err(|e| format!("fetching tokenizer {hash}: {e}"))?;
        if Hash::of(&bytes) != hash {
            return Err(format!("the provider's tokenizer file is not {hash}"));
        }
        let codec = tokio::task::spawn_blocking(move || TextCodec::from_bytes(&bytes))
            .await
            .map_err(|e| format!("reading tokenizer {hash}: {e}"))?
            .map_err(|e| format!("tokenizer {hash}: {e}"))?;
        let codec = Arc::new(codec);
        self.cache.lock().insert(hash, codec.clone());
        Ok(codec)
    }
}
