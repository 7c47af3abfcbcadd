//! The LLM engine: GGUF llama-family models on candle, served with continuous batching, seeded sampling and
//! token streaming; BERT-style sentence embeddings from safetensors.
//!
//! Models come from files only; nothing is fetched from a model hub. A model's identity on the network is the
//! blake3 hash of the file it serves (see [`ModelInfo::content_hash`]).
#![deny(clippy::unwrap_used, clippy::panic)]

mod embed;
mod engine;
mod error;
mod llama;
mod tokenizer;

pub use candle_core::quantized::GgmlDType;
pub use candle_core::Device;
pub use embed::{Embedder, EmbedderInfo, Embeddings};
pub use engine::{
    Completion, Event, FinishReason, GenerateRequest, Generation, LlmEngine, LoadOptions, ModelInfo,
    SamplingParams,
};
pub use error::{EngineError, Result};
pub use llama::{requantize, KvCache, Llama, LlamaConfig, Segment};
pub use tensorgrid_tokenizer::{ChatMessage, StreamDecoder, TextCodec, TokenizerError};

/// The device to run on: the first CUDA GPU when built with the `cuda` feature and one is present, else the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

/// Where `scripts/fetch-models` puts the open models: `$TGRID_MODELS_DIR`, else the user's cache directory.
pub fn models_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TGRID_MODELS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    cache.join("tensorgrid").join("models")
}
