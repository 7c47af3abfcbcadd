//! Inference figures in one run, on SmolLM2-135M-Instruct requantized to Q8_0 (`scripts/fetch-models`):
//!
//! 1. the engine's decode speed, one stream and eight concurrent streams, against candle's own
//!    single-sequence quantized llama on the same file as the baseline;
//! 2. the gateway's added latency: a real `tgrid devnet --model` is started, and the same one-token request
//!    is sent alternately to the provider directly (signed, paid from the channel) and through the gateway
//!    (OpenAI API); the difference of the percentiles is what the gateway adds.
//!
//! `RAYON_NUM_THREADS=2 cargo bench -p tgrid --bench inference`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tensorgrid_engine_llm::{
    models_dir, ChatMessage, Event, GenerateRequest, LlmEngine, LoadOptions, SamplingParams,
};
use tensorgrid_types::inference::{GenerateRequest as Wire, InferenceEvent, Prompt, Sampling};

const TOKENS: u32 = 128;
const ROUNDS: usize = 200;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    let gguf = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.exists(), "run scripts/fetch-models first");
    decode(&gguf, &threads);
    gateway_latency(&gguf);
}

fn decode(gguf: &std::path::Path, threads: &str) {
    let engine = LlmEngine::load(gguf, LoadOptions::default()).expect("load");
    let prompt = engine
        .codec()
        .render_chat(&[ChatMessage {
            role: "user".into(),
            content: "Tell me a long story about a dragon.".into(),
        }])
        .expect("template");
    let prompt = engine.codec().encode(&prompt).expect("tokens");
    let request = |seed| GenerateRequest {
        prompt: prompt.clone(),
        params: SamplingParams { temperature: 0.7, max_tokens: TOKENS, seed, ..Default::default() },
        hidden_states: false,
        commit: false,
    };
    engine.generate(request(0)).expect("warm").collect_blocking().expect("warm");
    let baseline = candle_reference(gguf, &prompt);
    println!("== decode: SmolLM2-135M q8_0, RAYON_NUM_THREADS={threads}, prompt {} tokens, up to {TOKENS} tokens per stream", prompt.len());
    println!("baseline (candle's single-sequence quantized llama, greedy): {baseline:.1} tok/s");
    for streams in [1usize, 8] {
        let started = Instant::now();
        let handles: Vec<_> = (0..streams)
            .map(|i| {
                let mut g = engine.generate(request(i as u64 + 1)).expect("generate");
                std::thread::spawn(move || {
                    let (mut n, mut first, mut last) = (0u64, None, Duration::ZERO);
                    while let Some(Event::Token { .. }) = g.blocking_next() {
                        last = started.elapsed();
                        first.get_or_insert(last);
                        n += 1;
                    }
                    let first = first.unwrap_or_default();
                    // Decoding alone, as the baseline measures it: the tokens after the first over their time.
                    let decode = n.saturating_sub(1) as f64 / (last - first).as_secs_f64().max(1e-9);
                    (n, first.as_secs_f64() * 1e3, decode)
                })
            })
            .collect();
        let results: Vec<(u64, f64, f64)> = handles.into_iter().map(|h| h.join().expect("stream")).collect();
        let tokens: u64 = results.iter().map(|r| r.0).sum();
        let first_ms = results.iter().map(|r| r.1).sum::<f64>() / streams as f64;
        // The streams decode side by side once their prompts are read, so their decode rates add up.
        let decode: f64 = results.iter().map(|r| r.2).sum();
        let secs = started.elapsed().as_secs_f64();
        let rate = tokens as f64 / secs;
        println!(
            "{streams} stream(s): decode {decode:.1} tok/s aggregate ({:.2}× baseline), {:.1} per stream; \
             end to end {tokens} tokens in {secs:.2} s = {rate:.1} tok/s with the prompts; first token after {first_ms:.0} ms (mean)",
            decode / baseline,
            decode / streams as f64
        );
    }
}

fn candle_reference(gguf: &std::path::Path, prompt: &[u32]) -> f64 {
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    let mut bytes = std::io::Cursor::new(Vec::new());
    tensorgrid_engine_llm::requantize(
        &mut std::fs::File::open(gguf).expect("model"),
        &mut bytes,
        tensorgrid_engine_llm::GgmlDType::Q8_0,
    )
    .expect("requantize");
    bytes.set_position(0);
    let content = candle_core::quantized::gguf_file::Content::read(&mut bytes).expect("gguf");
    let mut model = ModelWeights::from_gguf(content, &mut bytes, &Device::Cpu).expect("load");
    let argmax = |t: Tensor| {
        t.squeeze(0).and_then(|l| l.argmax(0)).and_then(|t| t.to_scalar::<u32>()).expect("argmax")
    };
    let input = Tensor::new(prompt, &Device::Cpu).and_then(|t| t.unsqueeze(0)).expect("input");
    let mut next = argmax(model.forward(&input, 0).expect("prefill"));
    let started = Instant::now();
    for i in 0..TOKENS as usize {
        let input = Tensor::new(&[next], &Device::Cpu).and_then(|t| t.unsqueeze(0)).expect("input");
        next = argmax(model.forward(&input, prompt.len() + i).expect("decode"));
    }
    f64::from(TOKENS) / started.elapsed().as_secs_f64()
}

fn gateway_latency(gguf: &std::path::Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("devnet");
    let base = 41_000 + (std::process::id() % 500) as u16 * 8;
    let _devnet = Kill(
        Command::new(env!("CARGO_BIN_EXE_tgrid"))
            .arg("--home")
            .arg(&home)
            .args(["devnet", "--p2p-port", &base.to_string(), "--rpc-port", &(base + 1).to_string()])
            .args(["--provider-port", &(base + 2).to_string(), "--gateway-port", &(base + 3).to_string()])
            .arg("--model")
            .arg(gguf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("devnet"),
    );
    let access_path = home.join("gateway.json");
    let started = Instant::now();
    while !access_path.exists() {
        assert!(started.elapsed() < Duration::from_secs(180), "the devnet's gateway did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let access: Value = serde_json::from_slice(&std::fs::read(&access_path).expect("read")).expect("json");
    let carol = tensorgrid_client::keystore::Keystore::open(home.join("keys"))
        .and_then(|k| k.unlock("carol", None))
        .expect("carol's key")
        .key;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let provider = tensorgrid_client::ProviderClient::new(format!("http://127.0.0.1:{}", base + 2), carol);
        let channel = access["channel"].as_u64().expect("channel");
        let offers = provider.models().await.expect("offers");
        let (model, price) = (offers[0].model_hash, offers[0].price());
        let http = reqwest::Client::new();
        let url = format!("{}/completions", access["url"].as_str().expect("url"));
        let key = access["api_key"].as_str().expect("key").to_string();
        let text = "The capital of France is";
        let direct = || async {
            let request = Wire {
                model,
                prompt: Prompt::Text { text: text.into() },
                sampling: Sampling {
                    max_tokens: 1,
                    temperature: 0.0,
                    top_p: None,
                    top_k: None,
                    stop: vec![],
                    seed: 1,
                    frequency_penalty: 0.0,
                    presence_penalty: 0.0,
                },
                price,
            };
            let t = Instant::now();
            let mut stream = std::pin::pin!(provider.generate(channel, &request).await.expect("generate"));
            use futures_util::StreamExt;
            while let Some(event) = stream.next().await {
                if let InferenceEvent::Done { .. } = event.expect("event") {
                    break;
                }
            }
            t.elapsed().as_secs_f64() * 1e3
        };
        let via_gateway = || async {
            let t = Instant::now();
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({ "model": "SmolLM2-135M-Instruct", "prompt": text, "max_tokens": 1, "temperature": 0 }))
                .send()
                .await
                .expect("gateway");
            assert!(response.status().is_success());
            let _: Value = response.json().await.expect("body");
            t.elapsed().as_secs_f64() * 1e3
        };
        for _ in 0..10 {
            direct().await;
            via_gateway().await;
        }
        let (mut d, mut g) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            d.push(direct().await);
            g.push(via_gateway().await);
        }
        d.sort_by(f64::total_cmp);
        g.sort_by(f64::total_cmp);
        println!("== gateway latency: one-token text completion, {ROUNDS} requests each, alternating");
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let (dp, gp) = (percentile(&d, p), percentile(&g, p));
            println!("{name}: provider directly {dp:.2} ms, through the gateway {gp:.2} ms, added {:.2} ms", gp - dp);
        }
    });
}
