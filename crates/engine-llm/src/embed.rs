//! Sentence embeddings with a BERT-style encoder (sentence-transformers layout: `config.json`,
//! `tokenizer.json`, `model.safetensors`, and optionally `1_Pooling/config.json` and
//! `sentence_bert_config.json`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use crate::error::{EngineError, Result};

/// Most inputs embedded in one forward pass; bigger requests go in several.
const BATCH: usize = 32;

/// What a loaded embedding model is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// The directory's name.
    pub name: String,
    /// blake3 over the configuration, tokenizer and weights files (each length-prefixed, in that order).
    pub content_hash: [u8; 32],
    pub dimensions: u32,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: u32,
}

/// A sentence-embedding model: mean pooling over the encoder's last layer, then L2 normalization, as
/// sentence-transformers computes it for the MiniLM family.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    /// The same tokenizer as a file gateways fetch by hash to count what they pay for.
    codec: tensorgrid_tokenizer::TextCodec,
    info: EmbedderInfo,
    normalize: bool,
    device: Device,
}

/// The embeddings of a request and the tokens they took.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Embedder {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|source| EngineError::Io { path: path.display().to_string(), source })
        };
        let config_bytes = read("config.json")?;
        let tokenizer_bytes = read("tokenizer.json")?;
        let weights = read("model.safetensors")?;
        let mut hasher = blake3::Hasher::new();
        for part in [&config_bytes, &tokenizer_bytes, &weights] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let config: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| EngineError::BadMetadata(format!("config.json: {e}")))?;
        let max_positions = serde_json::from_slice::<serde_json::Value>(&config_bytes)
            .ok()
            .and_then(|v| v.get("max_position_embeddings")?.as_u64())
            .unwrap_or(512);
        // sentence-transformers may cap inputs below what the positions allow (256 for all-MiniLM-L6-v2).
        let max_tokens = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .unwrap_or(max_positions)
            .min(max_positions);
        let pooling = std::fs::read(dir.join("1_Pooling/config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(p) = &pooling {
            if p.get("pooling_mode_mean_tokens").and_then(|v| v.as_bool()) == Some(false) {
                return Err(EngineError::BadMetadata(
                    "1_Pooling/config.json: only mean pooling is supported".into(),
                ));
            }
        }
        let dimensions = serde_json::from_slice::<serde_json::Value>(&config_bytes)
            .ok()
            .and_then(|v| v.get("hidden_size")?.as_u64())
            .ok_or_else(|| EngineError::BadMetadata("config.json: hidden_size".into()))?;
        let mut tokenizer =
            Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        // Lengths are checked (and refused) by the caller, never silently cut; padding is done here per batch.
        tokenizer.with_truncation(None).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let codec = tensorgrid_tokenizer::TextCodec::new(
            tokenizer.clone(),
            tensorgrid_tokenizer::Parts { add_special_tokens: true, ..Default::default() },
        )?;
        let tensors = candle_core::safetensors::load_buffer(&weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let model = BertModel::load(vb, &config)?;
        let name =
            dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "embeddings".into());
        Ok(Self {
            model,
            tokenizer,
            codec,
            info: EmbedderInfo {
                name,
                content_hash: *hasher.finalize().as_bytes(),
                dimensions: dimensions as u32,
                max_tokens: max_tokens as u32,
            },
            normalize: true,
            device: device.clone(),
        })
    }

    pub fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    /// Token counts of inputs, special tokens included, as they would be embedded.
    pub fn count_tokens(&self, inputs: &[String]) -> Result<Vec<u32>> {
        Ok(self.codec.count(inputs)?)
    }

    /// The tokenizer as a content-addressed file (see `tensorgrid_tokenizer`).
    pub fn codec(&self) -> &tensorgrid_tokenizer::TextCodec {
        &self.codec
    }

    /// Embeds texts; an input longer than the model takes is an error naming its index.
    pub fn embed(&self, inputs: &[String]) -> Result<Embeddings> {
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut total = 0u32;
        for (chunk_index, chunk) in inputs.chunks(BATCH).enumerate() {
            let mut encodings = Vec::with_capacity(chunk.len());
            for (i, text) in chunk.iter().enumerate() {
                if text.is_empty() {
                    return Err(EngineError::BadParameter(format!(
                        "input[{}] is empty",
                        chunk_index * BATCH + i
                    )));
                }
                let e = self
                    .tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
                if e.get_ids().len() > self.info.max_tokens as usize {
                    return Err(EngineError::ContextExceeded {
                        tokens: e.get_ids().len(),
                        limit: self.info.max_tokens as usize,
                    });
                }
                total += e.get_ids().len() as u32;
                encodings.push(e);
            }
            let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(chunk.len() * width);
            let mut mask = Vec::with_capacity(chunk.len() * width);
            for e in &encodings {
                let n = e.get_ids().len();
                ids.extend_from_slice(e.get_ids());
                ids.extend(std::iter::repeat_n(0u32, width - n));
                mask.extend(std::iter::repeat_n(1u32, n));
                mask.extend(std::iter::repeat_n(0u32, width - n));
            }
            let shape = (encodings.len(), width);
            let ids = Tensor::from_vec(ids, shape, &self.device)?;
            let mask = Tensor::from_vec(mask, shape, &self.device)?;
            let types = ids.zeros_like()?;
            let out = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over real tokens only: padding positions are masked out of the sum and the count.
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = out.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?;
            let mut pooled = summed.broadcast_div(&counts)?;
            if self.normalize {
                let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
                pooled = pooled.broadcast_div(&norm)?;
            }
            vectors.extend(pooled.to_vec2::<f32>()?);
        }
        Ok(Embeddings { vectors, prompt_tokens: total })
    }
}
