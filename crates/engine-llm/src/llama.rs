//! A llama-family transformer over GGUF weights, written for batching.
//!
//! candle's own quantized llama keeps one KV cache inside the model and so serves one sequence at a time. Here
//! the caches live outside the model, one per sequence, and one forward pass takes a list of segments (a prompt
//! chunk of one sequence, the last sampled token of another, …): the rows of all segments go through every
//! weight matrix together, so a decode step for eight sequences reads each weight once, not eight times. Only
//! the attention itself, which differs per sequence, runs segment by segment.
//!
//! Every operation is row-independent (quantized matmuls quantize each activation row on its own, norms are per
//! row, attention is per sequence), so a sequence's numbers do not depend on which other sequences share its
//! batch: the same seed gives the same text alone or in a crowd.

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm};

use crate::error::{EngineError, Result};

/// The shape of a llama-family model, read from a GGUF file's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
}

impl LlamaConfig {
    pub(crate) fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let arch = meta_str(content, "general.architecture")?;
        // Architectures that share llama's tensor layout and names in GGUF.
        if !matches!(arch.as_str(), "llama" | "mistral") {
            return Err(EngineError::UnsupportedArchitecture(arch));
        }
        let u = |key: &str| -> Result<usize> {
            let full = format!("{arch}.{key}");
            let value =
                content.metadata.get(&full).ok_or_else(|| EngineError::MissingMetadata(full.clone()))?;
            value
                .to_u64()
                .or_else(|_| value.to_u32().map(u64::from))
                .map(|v| v as usize)
                .map_err(|_| EngineError::BadMetadata(full))
        };
        let f = |key: &str, default: f32| -> f32 {
            content.metadata.get(&format!("{arch}.{key}")).and_then(|v| v.to_f32().ok()).unwrap_or(default)
        };
        let hidden = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_kv_head = u("attention.head_count_kv").unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || hidden % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(EngineError::BadMetadata(format!(
                "{arch}: {n_head} heads, {n_kv_head} KV heads, width {hidden}"
            )));
        }
        let head_dim = u("rope.dimension_count").unwrap_or(hidden / n_head);
        let vocab = match content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims()[0],
            None => return Err(EngineError::MissingTensor("token_embd.weight".into())),
        };
        Ok(Self {
            n_layer: u("block_count")?,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            vocab,
            context_length: u("context_length").unwrap_or(2048),
            rms_eps: f64::from(f("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta: f("rope.freq_base", 10_000.0),
        })
    }
}

fn meta_str(content: &gguf_file::Content, key: &str) -> Result<String> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| EngineError::MissingMetadata(key.into()))?
        .to_string()
        .cloned()
        .map_err(|_| EngineError::BadMetadata(key.into()))
}

#[derive(Debug)]
struct Layer {
    attn_norm: RmsNorm,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: RmsNorm,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// One sequence's keys and values, per layer, in buffers that grow by doubling so that appending a token does
/// not copy the whole cache.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// How many positions the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A part of one sequence that a forward pass processes: new tokens appended after what its cache holds.
#[derive(Debug)]
pub struct Segment<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
}

/// A loaded model.
#[derive(Debug)]
pub struct Llama {
    config: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Llama {
    pub(crate) fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let config = LlamaConfig::from_gguf(content)?;
        let mut tensor = |name: &str| -> Result<QTensor> {
            if !content.tensor_infos.contains_key(name) {
                return Err(EngineError::MissingTensor(name.into()));
            }
            Ok(content.tensor(reader, name, device)?)
        };
        let norm = |t: QTensor, eps: f64| -> Result<RmsNorm> { Ok(RmsNorm::new(t.dequantize(device)?, eps)) };
        let token_embd = tensor("token_embd.weight")?;
        let embed = Embedding::new(token_embd.dequantize(device)?, config.hidden);
        // Models with tied embeddings (SmolLM2 among them) ship no output matrix and reuse the embeddings.
        let lm_head = match tensor("output.weight") {
            Ok(t) => QMatMul::from_qtensor(t)?,
            Err(EngineError::MissingTensor(_)) => QMatMul::from_qtensor(token_embd)?,
            Err(e) => return Err(e),
        };
        let final_norm = norm(tensor("output_norm.weight")?, config.rms_eps)?;
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut q = |suffix: &str| -> Result<QMatMul> {
                Ok(QMatMul::from_qtensor(tensor(&format!("blk.{i}.{suffix}.weight"))?)?)
            };
            let (wq, wk, wv, wo) = (q("attn_q")?, q("attn_k")?, q("attn_v")?, q("attn_output")?);
            let (w_gate, w_up, w_down) = (q("ffn_gate")?, q("ffn_up")?, q("ffn_down")?);
            layers.push(Layer {
                attn_norm: norm(tensor(&format!("blk.{i}.attn_norm.weight"))?, config.rms_eps)?,
                ffn_norm: norm(tensor(&format!("blk.{i}.ffn_norm.weight"))?, config.rms_eps)?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self { config, embed, layers, norm: final_norm, lm_head, cos, sin, device: device.clone() })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache { layers: (0..self.config.n_layer).map(|_| None).collect(), len: 0, capacity: 0 }
    }

    /// Runs the segments through the model and returns, per segment, the final (normed) hidden state of its last
    /// token, as rows of a `[segments, hidden]` tensor. Each segment's cache grows by its tokens.
    pub fn forward(&self, segments: &mut [Segment<'_>]) -> Result<Tensor> {
        let keep = vec![false; segments.len()];
        Ok(self.forward_keeping(segments, &keep)?.0)
    }

    /// [`Llama::forward`], also returning, for each segment whose `keep` is set, the final (normed) hidden
    /// states of all its tokens (`[tokens, hidden]`): what commitments to a prompt's prefill and replays of
    /// a whole answer are made of. Every operation is row-independent, so these rows are the ones the same
    /// tokens give alone or in any batch.
    pub fn forward_keeping(
        &self,
        segments: &mut [Segment<'_>],
        keep: &[bool],
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let c = &self.config;
        let mut all = Vec::new();
        for s in segments.iter() {
            if s.tokens.is_empty() {
                return Err(EngineError::Internal("empty segment".into()));
            }
            if s.cache.len + s.tokens.len() > c.context_length {
                return Err(EngineError::ContextExceeded {
                    tokens: s.cache.len + s.tokens.len(),
                    limit: c.context_length,
                });
            }
            all.extend_from_slice(s.tokens);
        }
        let ids = Tensor::new(all.as_slice(), &self.device)?;
        let mut x = self.embed.forward(&ids)?;
        for s in segments.iter_mut() {
            s.cache.reserve(s.tokens.len(), c, &self.device)?;
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let q = layer.wq.forward(&h)?;
            let k = layer.wk.forward(&h)?;
            let v = layer.wv.forward(&h)?;
            let mut outs = Vec::with_capacity(segments.len());
            let mut row = 0;
            for s in segments.iter_mut() {
                let n = s.tokens.len();
                let out = self.attend(
                    li,
                    s.cache,
                    &q.narrow(0, row, n)?,
                    &k.narrow(0, row, n)?,
                    &v.narrow(0, row, n)?,
                )?;
                outs.push(out);
                row += n;
            }
            let attn = Tensor::cat(&outs, 0)?;
            x = (x + layer.wo.forward(&attn)?)?;
            let h = layer.ffn_norm.forward(&x)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (&x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        let mut last = Vec::with_capacity(segments.len());
        let mut kept = Vec::with_capacity(segments.len());
        let mut row = 0;
        for (i, s) in segments.iter_mut().enumerate() {
            let n = s.tokens.len();
            kept.push(match keep.get(i) {
                Some(true) => Some(self.norm.forward(&x.narrow(0, row, n)?)?),
                _ => None,
            });
            row += n;
            last.push(x.narrow(0, row - 1, 1)?);
            s.cache.len += n;
        }
        Ok((self.norm.forward(&Tensor::cat(&last, 0)?)?, kept))
    }

    /// Next-token logits, `[rows, vocab]`, from final hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?.to_dtype(DType::F32)?)
    }

    /// Attention for one segment in one layer: `q`, `k`, `v` are its rows, `[n, heads·head_dim]`.
    fn attend(
        &self,
        layer: usize,
        cache: &mut KvCache,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<Tensor> {
        let c = &self.config;
        let n = q.dim(0)?;
        let pos = cache.len;
        let group = c.n_head / c.n_kv_head;
        let shape = |t: &Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((1, n, heads, c.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        // GGUF stores llama's query and key weights permuted for the interleaved rotary layout.
        let q = candle_nn::rotary_emb::rope_i(&shape(q, c.n_head)?, &cos, &sin)?;
        let k = candle_nn::rotary_emb::rope_i(&shape(k, c.n_kv_head)?, &cos, &sin)?;
        let v = shape(v, c.n_kv_head)?;
        let (keys, values) = cache.append(layer, &k, &v)?;
        let total = pos + n;
        // Grouped-query attention without copying keys per query head: the `group` query heads that share a KV
        // head are stacked as rows, `[kv_heads, group·n, head_dim]`, and meet that head's keys in one matmul.
        let q = q.reshape((c.n_kv_head, group * n, c.head_dim))?;
        let keys = keys.squeeze(0)?.contiguous()?;
        let values = values.squeeze(0)?.contiguous()?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut att = (q.matmul(&keys.t()?)? * scale)?;
        if n > 1 {
            // Row r of a group is query position pos + r % n; it sees keys up to that position.
            let mask: Vec<f32> = (0..group * n)
                .flat_map(|r| {
                    let p = pos + r % n;
                    (0..total).map(move |j| if j > p { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (1, group * n, total), &self.device)?;
            att = att.broadcast_add(&mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let out = att.matmul(&values)?;
        // Back to rows: [kv, group, n, d] → [n, kv, group, d] → [n, heads·d].
        Ok(out
            .reshape((c.n_kv_head, group, n, c.head_dim))?
            .permute((2, 0, 1, 3))?
            .reshape((n, c.n_head * c.head_dim))?)
    }
}

impl KvCache {
    /// Makes room for `extra` more positions in every layer, doubling the buffers when they are full.
    fn reserve(&mut self, extra: usize, c: &LlamaConfig, device: &Device) -> Result<()> {
        let need = self.len + extra;
        if need <= self.capacity {
            return Ok(());
        }
        let capacity = need.next_power_of_two().clamp(64, c.context_length.max(need));
        for slot in &mut self.layers {
            let fresh = || Tensor::zeros((1, c.n_kv_head, capacity, c.head_dim), DType::F32, device);
            let (k, v) = (fresh()?, fresh()?);
            if let Some((old_k, old_v)) = slot.as_ref() {
                if self.len > 0 {
                    k.slice_set(&old_k.narrow(2, 0, self.len)?, 2, 0)?;
                    v.slice_set(&old_v.narrow(2, 0, self.len)?, 2, 0)?;
                }
            }
            *slot = Some((k, v));
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes a segment's keys and values after the cached ones and returns views of everything so far.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (bk, bv) =
            self.layers[layer].as_ref().ok_or_else(|| EngineError::Internal("cache not reserved".into()))?;
        bk.slice_set(k, 2, self.len)?;
        bv.slice_set(v, 2, self.len)?;
        let total = self.len + k.dim(2)?;
        Ok((bk.narrow(2, 0, total)?, bv.narrow(2, 0, total)?))
    }
}

fn rope_tables(c: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> =
        (0..half).map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f32 / c.head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let positions = Tensor::arange(0u32, c.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((c.context_length, 1))?;
    let freqs = positions.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Rewrites a GGUF model with its block-quantized matrices in `target` (Q8_0 serves far faster than Q4_1 on
/// CPUs); tensors already in `target`, or kept in float (norms), are copied as they are. The metadata is kept
/// and `general.file_type` updated. The result is deterministic: the same input gives the same bytes.
pub fn requantize<R, W>(reader: &mut R, writer: &mut W, target: GgmlDType) -> Result<()>
where
    R: std::io::Read + std::io::Seek,
    W: std::io::Write + std::io::Seek,
{
    let content = gguf_file::Content::read(reader)?;
    let device = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    // The file's own tensor order, so that the output is stable and familiar to other tools.
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = content.tensor(reader, name, &device)?;
        let keep = matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
            || t.dtype() == target
            || t.shape().dims().last().is_some_and(|d| d % target.block_size() != 0);
        let t = if keep { t } else { QTensor::quantize(&t.dequantize(&device)?, target)? };
        tensors.push((name.as_str(), t));
    }
    let file_type = gguf_file::Value::U32(match target {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        _ => 7,
    });
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.push(("general.file_type", &file_type));
    // Metadata order is a hash map's: sort it so the output bytes (and so the model's content hash) are stable.
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(writer, &metadata, &refs)?;
    Ok(())
}
