//! Decode speed of the engine on SmolLM2-135M-Instruct (requantized to Q8_0): one stream, then 8 concurrent
//! streams, measured in the same run. Pin the threads for comparable figures: `RAYON_NUM_THREADS=2 cargo bench
//! -p tensorgrid-engine-llm --bench decode`.

use std::time::Instant;

use tensorgrid_engine_llm::{
    models_dir, ChatMessage, GenerateRequest, LlmEngine, LoadOptions, SamplingParams,
};

const TOKENS: u32 = 128;

fn main() {
    let path = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let engine = LlmEngine::load(&path, LoadOptions::default()).expect("model (run scripts/fetch-models)");
    // Leave the served Q8_0 file next to the source so that other engines can be timed on the very same bytes.
    let served = models_dir().join("SmolLM2-135M-Instruct.Q8_0.gguf");
    if !served.exists() {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut src = std::fs::File::open(&path).expect("model");
        tensorgrid_engine_llm::requantize(&mut src, &mut out, tensorgrid_engine_llm::GgmlDType::Q8_0)
            .expect("requantize");
        std::fs::write(&served, out.into_inner()).expect("write the Q8_0 file");
    }
    let prompt = engine
        .codec()
        .render_chat(&[ChatMessage {
            role: "user".into(),
            content: "Tell me a long story about a dragon.".into(),
        }])
        .expect("template");
    let prompt = engine.codec().encode(&prompt).expect("tokens");
    // Greedy with max_tokens and a stop set that never triggers, so every stream decodes exactly TOKENS tokens
    // unless the model ends its answer first (counted either way).
    let request = |seed| GenerateRequest {
        prompt: prompt.clone(),
        params: SamplingParams { temperature: 0.7, max_tokens: TOKENS, seed, ..Default::default() },
        hidden_states: false,
    };
    let warm = engine.generate(request(0)).expect("generate").collect_blocking().expect("run");
    let _ = warm;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    println!(
        "SmolLM2-135M {} · RAYON_NUM_THREADS={threads} · prompt {} tokens",
        engine.info().quantization,
        prompt.len()
    );
    let reference = candle_reference(&served, &prompt);
    println!("baseline, candle's single-sequence quantized llama on the same file: {reference:.1} tok/s");
    for streams in [1usize, 8] {
        let start = Instant::now();
        let gens: Vec<_> =
            (0..streams).map(|i| engine.generate(request(i as u64 + 1)).expect("generate")).collect();
        let mut tokens = 0u64;
        let mut first_ms = Vec::new();
        let handles: Vec<_> = gens
            .into_iter()
            .map(|mut g| {
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    let mut first = None;
                    let t = Instant::now();
                    while let Some(e) = g.blocking_next() {
                        match e {
                            tensorgrid_engine_llm::Event::Token { .. } => {
                                first.get_or_insert(t.elapsed());
                                n += 1;
                            }
                            _ => break,
                        }
                    }
                    (n, first.unwrap_or_default())
                })
            })
            .collect();
        for h in handles {
            let (n, f) = h.join().expect("stream");
            tokens += n;
            first_ms.push(f.as_secs_f64() * 1e3);
        }
        let secs = start.elapsed().as_secs_f64();
        let ratio = tokens as f64 / secs / reference;
        println!(
            "{streams} stream(s) [{ratio:.2}× baseline]: {tokens} tokens in {secs:.2} s = {:.1} tok/s aggregate, {:.1} tok/s per stream, first token {:.0} ms (mean)",
            tokens as f64 / secs,
            tokens as f64 / secs / streams as f64,
            first_ms.iter().sum::<f64>() / first_ms.len() as f64
        );
    }
}

/// Greedy decode speed of candle's own quantized llama (one sequence, cache inside the model), the baseline.
fn candle_reference(path: &std::path::Path, prompt: &[u32]) -> f64 {
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    let mut file = std::fs::File::open(path).expect("model");
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).expect("gguf");
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).expect("load");
    let input = Tensor::new(prompt, &Device::Cpu).and_then(|t| t.unsqueeze(0)).expect("input");
    let logits = model.forward(&input, 0).expect("prefill");
    let mut next =
        logits.squeeze(0).and_then(|l| l.argmax(0)).and_then(|t| t.to_scalar::<u32>()).expect("argmax");
    let start = Instant::now();
    for i in 0..TOKENS as usize {
        let input = Tensor::new(&[next], &Device::Cpu).and_then(|t| t.unsqueeze(0)).expect("input");
        let logits = model.forward(&input, prompt.len() + i).expect("decode");
        next =
            logits.squeeze(0).and_then(|l| l.argmax(0)).and_then(|t| t.to_scalar::<u32>()).expect("argmax");
    }
    f64::from(TOKENS) / start.elapsed().as_secs_f64()
}
