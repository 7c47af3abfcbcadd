//! The serving loop: one scheduler thread owns the model and runs continuous batching.
//!
//! Requests queue up; each step the scheduler admits waiting requests up to the batch size, gives every
//! sequence still reading its prompt a chunk of it and every generating sequence its last token, runs them all
//! through one forward pass, and samples the next token of each sequence that has read its whole prompt. A
//! sequence leaves the batch when it finishes or when its receiver is dropped (the client went away), so a
//! slow request never holds up the others and a finished one frees its slot at once.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::llama::{requantize, KvCache, Llama, LlamaConfig, Segment};
use tensorgrid_tokenizer::{StreamDecoder, TextCodec};

use crate::tokenizer::FromGguf;

/// How to load a model and how hard to drive it.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Requantize block-quantized matrices to this type at load time when the file holds another one. The
    /// model's content hash is then that of the requantized file, exactly as `requantize` would write it.
    pub requantize: Option<GgmlDType>,
    /// Most sequences in one batch.
    pub max_batch: usize,
    /// Most prompt tokens processed in one step, so that a long prompt does not stall everyone's decoding.
    pub prefill_chunk: usize,
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { requantize: Some(GgmlDType::Q8_0), max_batch: 16, prefill_chunk: 256, device: Device::Cpu }
    }
}

/// What a loaded model is, for offers and for `/v1/models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `general.name` from the file, or the file name.
    pub name: String,
    pub architecture: String,
    /// blake3 of the served file (after requantization, if any).
    pub content_hash: [u8; 32],
    /// blake3 of the file as given, before requantization.
    pub source_hash: [u8; 32],
    /// The quantization of the weight matrices as served, e.g. `q8_0`.
    pub quantization: String,
    pub context_length: u32,
    pub vocab: u32,
    pub hidden_size: u32,
}

/// Sampling settings of one request, with OpenAI's meanings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub max_tokens: u32,
    /// 0 means greedy decoding.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    /// Generation ends before the first occurrence of any of these; the stop text itself is not returned.
    pub stop: Vec<String>,
    pub seed: u64,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 1.0,
            top_p: None,
            top_k: None,
            stop: Vec::new(),
            seed: 0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::BadParameter(m));
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(format!("temperature {} is outside 0..=2", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top_p {p} is outside (0, 1]"));
            }
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1".into());
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if self.stop.len() > 4 || self.stop.iter().any(String::is_empty) {
            return bad("stop takes up to 4 non-empty strings".into());
        }
        for (name, v) in
            [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)]
        {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} {v} is outside -2..=2"));
            }
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        let temperature = self.temperature;
        if temperature < 1e-7 {
            return Sampling::ArgMax;
        }
        match (self.top_k, self.top_p) {
            (None, None) => Sampling::All { temperature },
            (Some(k), None) => Sampling::TopK { k, temperature },
            (None, Some(p)) => Sampling::TopP { p, temperature },
            (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        }
    }
}

/// One generation request: the prompt's tokens and how to sample.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Attach to every token the final hidden state it was sampled from (what a verifier commits to).
    pub hidden_states: bool,
    /// Commit to the hidden states as the answer is made (`tensorgrid_commitment`): one commitment per 32
    /// positions of the prompt, then one per 32 generated tokens, sent with `Done`.
    pub commit: bool,
}

/// What a replay of a whole answer found, chunk by chunk as commitments are made: its own top-k hidden-state
/// entries (never a verdict), and the token the model ranks first at every position of the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    pub chunks: Vec<tensorgrid_commitment::TopK>,
    /// For each output token, the most likely token at its position in the replay.
    pub top_tokens: Vec<u32>,
}

/// Why generation ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer or a stop string was met.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a generation stream yields.
#[derive(Clone, Debug)]
pub enum Event {
    /// One sampled token and the text it adds. Text is held back while it might be the start of a stop string
    /// or an incomplete UTF-8 character, so `text` can be empty and a later event can carry more than one
    /// token's worth.
    Token {
        id: u32,
        text: String,
        hidden: Option<Vec<f32>>,
    },
    /// The end. `completion_tokens` counts the `Token` events sent, one per sampled token, the end-of-turn
    /// token that closed the answer included (as OpenAI-compatible servers count it).
    Done {
        reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        /// The commitments (`ChunkCommitment::to_bytes`), when the request asked for them.
        commitments: Vec<Vec<u8>>,
    },
    /// The answer to [`Engine::replay`].
    Replayed(Box<Replay>),
    Failed(String),
}

/// A running generation: read its events until `Done` or `Failed`. Dropping it cancels the request.
#[derive(Debug)]
pub struct Generation {
    pub prompt_tokens: u32,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Generation {
    /// The next event; `None` only if the engine stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for async code).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// Runs the generation to its end and returns the whole text, the finish reason and the token count.
    pub fn collect_blocking(mut self) -> Result<Completion> {
        let mut out = Completion::default();
        while let Some(event) = self.blocking_next() {
            match event {
                Event::Token { id, text, .. } => {
                    out.text.push_str(&text);
                    out.tokens.push(id);
                }
                Event::Done { reason, prompt_tokens, completion_tokens, commitments } => {
                    out.reason = Some(reason);
                    out.prompt_tokens = prompt_tokens;
                    out.completion_tokens = completion_tokens;
                    out.commitments = commitments;
                    return Ok(out);
                }
                Event::Failed(e) => return Err(EngineError::Internal(e)),
                Event::Replayed(_) => {
                    return Err(EngineError::Internal("a replay answered a generation".into()))
                }
            }
        }
        Err(EngineError::Stopped)
    }
}

/// A finished generation, gathered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub reason: Option<FinishReason>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The commitments to the hidden states, when the request asked for them.
    pub commitments: Vec<Vec<u8>>,
}

struct Job {
    request: GenerateRequest,
    tx: mpsc::UnboundedSender<Event>,
    /// Set for a replay: the request's prompt is the original prompt and the answer but its last token,
    /// read as one prefill; this many tokens of it are the original prompt.
    replay_of: Option<usize>,
}

/// A loaded model and its scheduler thread. Cheap to clone; the thread ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct LlmEngine {
    info: Arc<ModelInfo>,
    codec: Arc<TextCodec>,
    jobs: std_mpsc::Sender<Job>,
}

impl LlmEngine {
    /// Loads a GGUF model from a file.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|source| EngineError::Io { path: path.display().to_string(), source })?;
        let fallback_name =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        Self::from_bytes(bytes, &fallback_name, options)
    }

    /// Loads a GGUF model from its bytes.
    pub fn from_bytes(bytes: Vec<u8>, fallback_name: &str, options: LoadOptions) -> Result<Self> {
        let source_hash = *blake3::hash(&bytes).as_bytes();
        let mut reader = Cursor::new(bytes);
        let mut content = gguf_file::Content::read(&mut reader)?;
        let needs_requant = options.requantize.is_some_and(|target| {
            content.tensor_infos.values().any(|t| t.ggml_dtype.block_size() > 1 && t.ggml_dtype != target)
        });
        if let (true, Some(target)) = (needs_requant, options.requantize) {
            let mut out = Cursor::new(Vec::new());
            reader.set_position(0);
            requantize(&mut reader, &mut out, target)?;
            reader = Cursor::new(out.into_inner());
            content = gguf_file::Content::read(&mut reader)?;
        }
        let content_hash = *blake3::hash(reader.get_ref()).as_bytes();
        let codec = FromGguf::codec(&content)?;
        let model = Llama::load(&content, &mut reader, &options.device)?;
        let quantization = content
            .tensor_infos
            .iter()
            .find(|(name, _)| name.ends_with("ffn_down.weight"))
            .map(|(_, t)| format!("{:?}", t.ggml_dtype).to_lowercase())
            .unwrap_or_else(|| "unknown".into());
        let name = content
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| fallback_name.to_string());
        let config: &LlamaConfig = model.config();
        let info = ModelInfo {
            name,
            architecture: "llama".into(),
            content_hash,
            source_hash,
            quantization,
            context_length: config.context_length as u32,
            vocab: config.vocab as u32,
            hidden_size: config.hidden as u32,
        };
        let codec = Arc::new(codec);
        let (jobs, rx) = std_mpsc::channel();
        let scheduler = Scheduler {
            model,
            codec: codec.clone(),
            max_batch: options.max_batch.max(1),
            prefill_chunk: options.prefill_chunk.max(1),
            rx,
        };
        std::thread::Builder::new()
            .name("llm-scheduler".into())
            .spawn(move || scheduler.run())
            .map_err(|e| EngineError::Internal(format!("cannot start the scheduler: {e}")))?;
        Ok(Self { info: Arc::new(info), codec, jobs })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn codec(&self) -> &TextCodec {
        &self.codec
    }

    /// Queues a generation. Checks the prompt and parameters first, so a bad request fails here, typed.
    pub fn generate(&self, request: GenerateRequest) -> Result<Generation> {
        request.params.validate()?;
        if request.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let limit = self.info.context_length as usize;
        if request.prompt.len() >= limit {
            return Err(EngineError::ContextExceeded { tokens: request.prompt.len(), limit });
        }
        if let Some(bad) = request.prompt.iter().find(|&&t| t >= self.info.vocab) {
            return Err(EngineError::BadParameter(format!(
                "token {bad} is outside the vocabulary of {}",
                self.info.vocab
            )));
        }
        let prompt_tokens = request.prompt.len() as u32;
        let (tx, rx) = mpsc::unbounded_channel();
        self.jobs.send(Job { request, tx, replay_of: None }).map_err(|_| EngineError::Stopped)?;
        Ok(Generation { prompt_tokens, rx })
    }

    /// Replays an answer: the exact prompt and output token ids, teacher-forced in one prefill (no sampling),
    /// returning the replay's own top-k hidden-state entries per commitment chunk and the model's first
    /// choice at every output position. Much cheaper than generating: one pass over all the tokens.
    pub fn replay(&self, prompt: Vec<u32>, output: Vec<u32>) -> Result<Replay> {
        if prompt.is_empty() || output.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let p = prompt.len();
        let mut tokens = prompt;
        tokens.extend_from_slice(&output[..output.len() - 1]);
        let limit = self.info.context_length as usize;
        if tokens.len() >= limit {
            return Err(EngineError::ContextExceeded { tokens: tokens.len(), limit });
        }
        if let Some(bad) = tokens.iter().chain(output.last()).find(|&&t| t >= self.info.vocab) {
            return Err(EngineError::BadParameter(format!(
                "token {bad} is outside the vocabulary of {}",
                self.info.vocab
            )));
        }
        let params = SamplingParams { max_tokens: 1, ..SamplingParams::default() };
        let request = GenerateRequest { prompt: tokens, params, hidden_states: false, commit: false };
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.jobs.send(Job { request, tx, replay_of: Some(p) }).map_err(|_| EngineError::Stopped)?;
        loop {
            match rx.blocking_recv() {
                Some(Event::Replayed(replay)) => return Ok(*replay),
                Some(Event::Failed(e)) => return Err(EngineError::Internal(e)),
                Some(_) => {}
                None => return Err(EngineError::Stopped),
            }
        }
    }
}

struct Sequence {
    job: Job,
    cache: KvCache,
    /// Prompt tokens already in the cache.
    read: usize,
    /// The answer so far, as the gateway that pays for it will rebuild it from the ids.
    decoder: StreamDecoder,
    sampler: LogitsProcessor,
    /// Hidden-state rows waiting for their chunk's commitment (or, for a replay, every row), flattened.
    rows: Vec<f32>,
    /// Commitments made so far.
    commitments: Vec<Vec<u8>>,
}

impl Sequence {
    fn commits(&self) -> bool {
        self.job.request.commit
    }

    /// Commits to the rows held (a chunk); a chunk too small to commit to is skipped.
    fn commit_rows(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        if let Ok(c) = tensorgrid_commitment::ChunkCommitment::build(&rows, tensorgrid_commitment::TOP_K) {
            self.commitments.push(c.to_bytes());
        }
    }
}

struct Scheduler {
    model: Llama,
    codec: Arc<TextCodec>,
    max_batch: usize,
    prefill_chunk: usize,
    rx: std_mpsc::Receiver<Job>,
}

impl Scheduler {
    fn run(mut self) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut active: Vec<Sequence> = Vec::new();
        loop {
            if active.is_empty() && waiting.is_empty() {
                match self.rx.recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                waiting.push_back(job);
            }
            while active.len() < self.max_batch {
                let Some(job) = waiting.pop_front() else { break };
                if job.tx.is_closed() {
                    continue;
                }
                let seed = job.request.params.seed;
                let sampling = job.request.params.sampling();
                let decoder =
                    StreamDecoder::new(job.request.params.stop.clone(), job.request.params.max_tokens);
                active.push(Sequence {
                    job,
                    cache: self.model.new_cache(),
                    read: 0,
                    decoder,
                    sampler: LogitsProcessor::from_sampling(seed, sampling),
                    rows: Vec::new(),
                    commitments: Vec::new(),
                });
            }
            active.retain(|s| !s.job.tx.is_closed());
            if active.is_empty() {
                continue;
            }
            if let Err(e) = self.step(&mut active) {
                // A failure inside the model fails the whole batch: its caches may be half-written.
                tracing::error!(error = %e, "llm step failed");
                for s in active.drain(..) {
                    let _ = s.job.tx.send(Event::Failed(e.to_string()));
                }
            }
        }
    }

    fn step(&mut self, active: &mut Vec<Sequence>) -> Result<()> {
        let chunk = self.prefill_chunk;
        let mut budget = chunk;
        // Which sequences take part this step and with which tokens. A prompt is read in chunks at fixed
        // offsets of its own (multiples of `prefill_chunk`), never cut where another request's load happens to
        // leave room: different cuts round differently, and a sequence's numbers must not depend on who else is
        // being served. The budget only decides how many chunks run in one step.
        let mut plan: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, s) in active.iter().enumerate() {
            let prompt = &s.job.request.prompt;
            if s.read < prompt.len() {
                let n = (prompt.len() - s.read).min(chunk);
                if n > budget && budget < chunk {
                    continue;
                }
                budget = budget.saturating_sub(n);
                plan.push((i, prompt[s.read..s.read + n].to_vec()));
            } else if let Some(&last) = s.decoder.generated().last() {
                plan.push((i, vec![last]));
            }
        }
        // Prefill rows are kept whole for sequences that commit (and for replays); a decode step's one row
        // is the hidden state its next token is sampled from.
        let keep: Vec<bool> = plan
            .iter()
            .map(|(i, _)| {
                let s = &active[*i];
                (s.commits() || s.job.replay_of.is_some()) && s.read < s.job.request.prompt.len()
            })
            .collect();
        let decoding: Vec<bool> =
            plan.iter().map(|(i, _)| active[*i].read >= active[*i].job.request.prompt.len()).collect();
        let (hidden, kept) = {
            let mut segments: Vec<Segment<'_>> = Vec::with_capacity(plan.len());
            let mut rest: &mut [Sequence] = active.as_mut_slice();
            let mut offset = 0;
            for (i, tokens) in &plan {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - offset);
                let (seq, tail) = tail
                    .split_first_mut()
                    .ok_or_else(|| EngineError::Internal("plan out of range".into()))?;
                segments.push(Segment { cache: &mut seq.cache, tokens });
                rest = tail;
                offset = i + 1;
            }
            self.model.forward_keeping(&mut segments, &keep)?
        };
        for (r, (i, tokens)) in plan.iter().enumerate() {
            let width = self.model.config().hidden;
            let s = &mut active[*i];
            if let Some(rows) = kept.get(r).and_then(Option::as_ref) {
                s.rows.extend(rows.flatten_all()?.to_vec1::<f32>()?);
            }
            if s.read < s.job.request.prompt.len() {
                s.read += tokens.len();
                if s.commits() {
                    // The prompt is committed to 32 positions at a time too, so that a change anywhere in it
                    // (its end included) moves the chunk it falls in, whatever dominates the rest.
                    while s.rows.len() >= tensorgrid_commitment::TOKENS_PER_CHUNK * width {
                        let rest = s.rows.split_off(tensorgrid_commitment::TOKENS_PER_CHUNK * width);
                        s.commit_rows();
                        s.rows = rest;
                    }
                    if s.read == s.job.request.prompt.len() {
                        s.commit_rows();
                    }
                }
            }
        }
        // A replay that has read all its tokens is answered and leaves; it samples nothing.
        let mut done = Vec::new();
        for (i, _) in &plan {
            let s = &active[*i];
            if let Some(p) = s.job.replay_of.filter(|_| s.read == s.job.request.prompt.len()) {
                let _ = match self.finish_replay(s, p) {
                    Ok(replay) => s.job.tx.send(Event::Replayed(Box::new(replay))),
                    Err(e) => s.job.tx.send(Event::Failed(e.to_string())),
                };
                done.push(*i);
            }
        }
        // Rows whose sequence has now read its whole prompt get a next token.
        let rows: Vec<usize> = (0..plan.len())
            .filter(|&r| {
                let s = &active[plan[r].0];
                s.read == s.job.request.prompt.len() && s.job.replay_of.is_none()
            })
            .collect();
        if rows.is_empty() {
            for i in done.into_iter().rev() {
                active.swap_remove(i);
            }
            return Ok(());
        }
        let index = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), hidden.device())?;
        let hidden = hidden.index_select(&index, 0)?;
        let logits = self.model.logits(&hidden)?;
        let mut finished = done;
        for (k, &r) in rows.iter().enumerate() {
            let i = plan[r].0;
            let s = &mut active[i];
            let row = logits.get(k)?;
            let wants_row = s.job.request.hidden_states || (s.commits() && decoding[r]);
            let hidden_row = if wants_row { Some(hidden.get(k)?.to_vec1::<f32>()?) } else { None };
            if s.commits() && decoding[r] {
                if let Some(row) = &hidden_row {
                    s.rows.extend_from_slice(row);
                }
                let width = self.model.config().hidden;
                if s.rows.len() >= tensorgrid_commitment::TOKENS_PER_CHUNK * width {
                    s.commit_rows();
                }
            }
            let hidden_row = if s.job.request.hidden_states { hidden_row } else { None };
            if self.advance(s, &row, hidden_row)? {
                finished.push(i);
            }
        }
        finished.sort_unstable();
        finished.dedup();
        for i in finished.into_iter().rev() {
            active.swap_remove(i);
        }
        Ok(())
    }

    /// Samples one token for a sequence and sends what it adds; true when the sequence is done.
    fn advance(&self, s: &mut Sequence, logits: &Tensor, hidden: Option<Vec<f32>>) -> Result<bool> {
        let params = &s.job.request.params;
        let (freq, pres) = (params.frequency_penalty, params.presence_penalty);
        let generated = s.decoder.generated();
        let id = s.sampler.sample_f(logits, |logits: &mut [f32]| {
            if freq != 0.0 || pres != 0.0 {
                let mut counts = std::collections::HashMap::<u32, f32>::new();
                for &t in generated {
                    *counts.entry(t).or_default() += 1.0;
                }
                for (t, n) in counts {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l -= freq * n + pres;
                    }
                }
            }
        })?;
        let context_full = s.cache.len() + 1 >= self.model.config().context_length;
        let step = s.decoder.push(&self.codec, id, context_full)?;
        let _ = s.job.tx.send(Event::Token { id, text: step.text, hidden });
        let Some(reason) = step.finish else { return Ok(false) };
        if s.commits() {
            s.commit_rows();
        }
        let reason = match reason {
            tensorgrid_types::inference::FinishReason::Stop => FinishReason::Stop,
            tensorgrid_types::inference::FinishReason::Length => FinishReason::Length,
        };
        let _ = s.job.tx.send(Event::Done {
            reason,
            prompt_tokens: s.job.request.prompt.len() as u32,
            completion_tokens: s.decoder.generated().len() as u32,
            commitments: std::mem::take(&mut s.commitments),
        });
        Ok(true)
    }

    /// A replay read all its tokens: cut its rows into the chunks a generation commits to (the prompt's
    /// prefill, then 32 answer positions at a time) and rank the model's choices at each answer position.
    fn finish_replay(&self, s: &Sequence, prompt_len: usize) -> Result<Replay> {
        let width = self.model.config().hidden;
        let rows = &s.rows;
        let total = rows.len() / width.max(1);
        let k = tensorgrid_commitment::TOP_K;
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < prompt_len {
            let end = (start + tensorgrid_commitment::TOKENS_PER_CHUNK).min(prompt_len);
            chunks.push(tensorgrid_commitment::TopK::of(&rows[start * width..end * width], k));
            start = end;
        }
        while start < total {
            let end = (start + tensorgrid_commitment::TOKENS_PER_CHUNK).min(total);
            chunks.push(tensorgrid_commitment::TopK::of(&rows[start * width..end * width], k));
            start = end;
        }
        // The answer's first token came from the prompt's last position; each later one from the position
        // before it.
        let from = prompt_len - 1;
        let positions =
            Tensor::from_slice(&rows[from * width..], (total - from, width), self.model.device())?;
        let logits = self.model.logits(&positions)?;
        let top_tokens = logits.argmax(1)?.to_vec1::<u32>()?;
        Ok(Replay { chunks, top_tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_refused() {
        let ok = SamplingParams::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SamplingParams { temperature: 3.0, ..ok.clone() },
            SamplingParams { top_p: Some(0.0), ..ok.clone() },
            SamplingParams { top_k: Some(0), ..ok.clone() },
            SamplingParams { max_tokens: 0, ..ok.clone() },
            SamplingParams { stop: vec![String::new()], ..ok.clone() },
            SamplingParams { presence_penalty: 2.5, ..ok.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(EngineError::BadParameter(_))), "{bad:?}");
        }
    }
}
