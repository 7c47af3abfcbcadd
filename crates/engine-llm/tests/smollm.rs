//! The engine on the real SmolLM2-135M-Instruct and all-MiniLM-L6-v2 files (`scripts/fetch-models`).

use std::path::PathBuf;
use std::sync::OnceLock;

use tensorgrid_engine_llm::{
    models_dir, ChatMessage, Device, Embedder, EngineError, Event, FinishReason, GenerateRequest, GgmlDType,
    LlmEngine, LoadOptions, SamplingParams,
};

fn gguf() -> PathBuf {
    let path = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-models", path.display());
    path
}

fn engine() -> &'static LlmEngine {
    static ENGINE: OnceLock<LlmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| LlmEngine::load(&gguf(), LoadOptions::default()).expect("load SmolLM2"))
}

fn chat(question: &str) -> Vec<u32> {
    let e = engine();
    let prompt =
        e.codec().render_chat(&[ChatMessage { role: "user".into(), content: question.into() }]).unwrap();
    e.codec().encode(&prompt).unwrap()
}

fn run(prompt: Vec<u32>, params: SamplingParams) -> tensorgrid_engine_llm::Completion {
    engine()
        .generate(GenerateRequest { prompt, params, hidden_states: false, commit: false })
        .unwrap()
        .collect_blocking()
        .unwrap()
}

#[test]
fn loads_requantized_to_q8_0_with_a_reproducible_content_hash() {
    let info = engine().info();
    assert_eq!(info.quantization, "q8_0");
    assert_eq!(info.context_length, 8192);
    assert_eq!(info.hidden_size, 576);
    assert_eq!(info.vocab, 49152);
    assert_eq!(info.source_hash, *blake3::hash(&std::fs::read(gguf()).unwrap()).as_bytes());
    assert_ne!(info.content_hash, info.source_hash);
    // The install-time requantization writes exactly the bytes the engine serves.
    let mut out = std::io::Cursor::new(Vec::new());
    tensorgrid_engine_llm::requantize(&mut std::fs::File::open(gguf()).unwrap(), &mut out, GgmlDType::Q8_0)
        .unwrap();
    assert_eq!(*blake3::hash(out.get_ref()).as_bytes(), info.content_hash);
}

#[test]
fn the_chat_template_and_tokenizer_come_from_the_file() {
    let codec = engine().codec();
    let text = codec.render_chat(&[ChatMessage { role: "user".into(), content: "Hi".into() }]).unwrap();
    assert!(text.starts_with("<|im_start|>system\n"), "{text}");
    assert!(text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    let ids = codec.encode(&text).unwrap();
    // Control tokens are single tokens, never split into bytes.
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&t| t == 2).count(), 2);
    assert_eq!(codec.decode(&codec.encode("Hello, world! 1234").unwrap()).unwrap(), "Hello, world! 1234");
    // Digits are split one by one, as SmolLM's own tokenizer does.
    assert_eq!(codec.encode("1234").unwrap().len(), 4);
}

#[test]
fn greedy_answers_are_right_and_end_on_their_own() {
    let out = run(
        chat("What is 2 + 2?"),
        SamplingParams { temperature: 0.0, max_tokens: 64, ..Default::default() },
    );
    assert_eq!(out.text, "The answer is 4.");
    assert_eq!(out.reason, Some(FinishReason::Stop));
    assert_eq!(out.completion_tokens as usize, out.tokens.len());
    assert_eq!(*out.tokens.last().unwrap(), 2, "ends with <|im_end|>, counted");
}

#[test]
fn the_batched_model_matches_candles_reference_llama_token_for_token() {
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    // candle's own single-sequence llama on the requantized file, greedy, 24 tokens.
    let mut file = std::io::Cursor::new(Vec::new());
    tensorgrid_engine_llm::requantize(&mut std::fs::File::open(gguf()).unwrap(), &mut file, GgmlDType::Q8_0)
        .unwrap();
    file.set_position(0);
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut reference = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let prompt = chat("What is the capital of France?");
    let (mut tokens, mut pos, mut expected) = (prompt.clone(), 0, Vec::new());
    for _ in 0..24 {
        let input = Tensor::new(&tokens[pos..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = reference.forward(&input, pos).unwrap().squeeze(0).unwrap();
        pos = tokens.len();
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        tokens.push(next);
        expected.push(next);
    }
    // Ours, in a batch with another request, reading the prompt in chunks.
    let engine = LlmEngine::load(&gguf(), LoadOptions { prefill_chunk: 256, ..Default::default() }).unwrap();
    let greedy = SamplingParams { temperature: 0.0, max_tokens: 24, ..Default::default() };
    let other = engine
        .generate(GenerateRequest {
            prompt: chat("Hi"),
            params: greedy.clone(),
            hidden_states: false,
            commit: false,
        })
        .unwrap();
    let ours = engine
        .generate(GenerateRequest { prompt, params: greedy, hidden_states: false, commit: false })
        .unwrap();
    assert_eq!(ours.collect_blocking().unwrap().tokens, expected);
    other.collect_blocking().unwrap();
}

#[test]
fn the_seed_makes_sampling_repeatable_even_inside_a_batch() {
    let params = |seed| SamplingParams {
        temperature: 0.9,
        top_p: Some(0.95),
        max_tokens: 40,
        seed,
        ..Default::default()
    };
    let prompt = chat("Write a short poem about the sea.");
    let alone = run(prompt.clone(), params(7));
    assert_eq!(alone, run(prompt.clone(), params(7)));
    // Eight at once, with different seeds and lengths, share batches; seed 7 still says the same.
    let gens: Vec<_> = (0..8u64)
        .map(|i| {
            let p = if i % 2 == 0 { prompt.clone() } else { chat("Name three fruits.") };
            engine()
                .generate(GenerateRequest {
                    prompt: p,
                    params: params(i + 3),
                    hidden_states: false,
                    commit: false,
                })
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = gens.into_iter().map(|g| g.collect_blocking().unwrap()).collect();
    assert_eq!(outs[4], alone, "seed 7 in a batch of 8");
    let distinct: std::collections::HashSet<_> = outs.iter().map(|o| o.text.clone()).collect();
    assert!(distinct.len() >= 6, "different seeds give different texts: {distinct:?}");
}

#[test]
fn max_tokens_and_stop_strings_end_generation() {
    let out = run(
        chat("Count from 1 to 50, separated by commas."),
        SamplingParams { temperature: 0.0, max_tokens: 12, ..Default::default() },
    );
    assert_eq!(out.reason, Some(FinishReason::Length));
    assert_eq!(out.completion_tokens, 12);
    assert_eq!(out.tokens.len(), 12);
    let full = run(
        chat("Count from 1 to 50, separated by commas."),
        SamplingParams { temperature: 0.0, max_tokens: 40, ..Default::default() },
    );
    assert!(full.text.contains('5'), "{full:?}");
    let cut = run(
        chat("Count from 1 to 50, separated by commas."),
        SamplingParams { temperature: 0.0, max_tokens: 40, stop: vec!["5".into()], ..Default::default() },
    );
    assert_eq!(cut.reason, Some(FinishReason::Stop));
    assert_eq!(
        cut.text,
        full.text[..full.text.find('5').unwrap()],
        "text before the stop string, without it"
    );
}

#[test]
fn streaming_gives_every_token_with_its_hidden_state() {
    let mut g = engine()
        .generate(GenerateRequest {
            prompt: chat("Say hello."),
            params: SamplingParams { temperature: 0.0, max_tokens: 16, ..Default::default() },
            hidden_states: true,
            commit: false,
        })
        .unwrap();
    let mut tokens = 0;
    loop {
        match g.blocking_next().unwrap() {
            Event::Token { hidden, .. } => {
                let h = hidden.expect("hidden state asked for");
                assert_eq!(h.len(), 576);
                assert!(h.iter().all(|x| x.is_finite()));
                tokens += 1;
            }
            Event::Done { completion_tokens, prompt_tokens, .. } => {
                assert_eq!(completion_tokens, tokens);
                assert_eq!(prompt_tokens, g.prompt_tokens);
                break;
            }
            Event::Failed(e) => panic!("{e}"),
            Event::Replayed(_) => panic!("a replay answered a generation"),
        }
    }
    assert!(tokens > 0);
}

#[test]
fn bad_requests_are_typed_errors() {
    let e = engine();
    let req =
        |prompt: Vec<u32>, params| GenerateRequest { prompt, params, hidden_states: false, commit: false };
    assert!(matches!(e.generate(req(vec![], SamplingParams::default())), Err(EngineError::EmptyPrompt)));
    assert!(matches!(
        e.generate(req(vec![5; 9000], SamplingParams::default())),
        Err(EngineError::ContextExceeded { tokens: 9000, limit: 8192 })
    ));
    assert!(matches!(
        e.generate(req(vec![60_000], SamplingParams::default())),
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        e.generate(req(vec![5], SamplingParams { temperature: -1.0, ..Default::default() })),
        Err(EngineError::BadParameter(_))
    ));
    // A bad file is an error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF not really").unwrap();
    assert!(LlmEngine::load(&junk, LoadOptions::default()).is_err());
    assert!(matches!(
        LlmEngine::load(&dir.path().join("none.gguf"), LoadOptions::default()),
        Err(EngineError::Io { .. })
    ));
}

#[test]
fn sentence_embeddings_are_normalized_and_meaningful() {
    let dir = models_dir().join("all-MiniLM-L6-v2");
    let embedder = Embedder::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(embedder.info().dimensions, 384);
    assert_eq!(embedder.info().max_tokens, 256);
    let texts: Vec<String> = [
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell sharply today.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = embedder.embed(&texts).unwrap();
    assert_eq!(out.vectors.len(), 3);
    assert_eq!(out.prompt_tokens, embedder.count_tokens(&texts).unwrap().iter().sum::<u32>());
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for v in &out.vectors {
        assert_eq!(v.len(), 384);
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    let (near, far) = (dot(&out.vectors[0], &out.vectors[1]), dot(&out.vectors[0], &out.vectors[2]));
    assert!(near > far + 0.2, "related {near} vs unrelated {far}");
    // One input alone embeds as it does in a padded batch.
    let alone = embedder.embed(&texts[2..]).unwrap();
    assert!(alone.vectors[0].iter().zip(&out.vectors[2]).all(|(a, b)| (a - b).abs() < 1e-4));
    let long = vec!["word ".repeat(400)];
    assert!(matches!(embedder.embed(&long), Err(EngineError::ContextExceeded { limit: 256, .. })));
    assert!(matches!(embedder.embed(&[String::new()]), Err(EngineError::BadParameter(_))));
}

#[test]
fn long_prompts_read_in_chunks_give_the_same_answer_whoever_else_is_served() {
    let engine = LlmEngine::load(&gguf(), LoadOptions { prefill_chunk: 16, ..Default::default() }).unwrap();
    let params = SamplingParams { temperature: 0.8, max_tokens: 16, seed: 11, ..Default::default() };
    let ask = |q: &str| GenerateRequest {
        prompt: chat(q),
        params: params.clone(),
        hidden_states: false,
        commit: false,
    };
    let alone = engine.generate(ask("What is the capital of France?")).unwrap().collect_blocking().unwrap();
    // Now behind a 40-token prompt that takes most of the first steps' prefill budget.
    let other =
        engine.generate(ask("Please list the seven days of the week, starting from Monday.")).unwrap();
    let crowded = engine.generate(ask("What is the capital of France?")).unwrap();
    assert_eq!(crowded.collect_blocking().unwrap(), alone);
    other.collect_blocking().unwrap();
}

/// The verification commitments: the same request commits to the same bytes alone and in a batch, a replay of
/// the exact prompt and answer token ids passes the default tolerance chunk by chunk and ranks the greedy
/// answer first, and a replay under another prompt does not pass.
#[test]
fn commitments_are_batch_independent_and_a_replay_passes_only_for_the_real_prompt() {
    use tensorgrid_commitment::{compare_top_k, ChunkCommitment, Tolerance};
    let e = engine();
    let params = SamplingParams { temperature: 0.0, max_tokens: 80, ..Default::default() };
    let ask = |q: &str| GenerateRequest {
        prompt: chat(q),
        params: params.clone(),
        hidden_states: false,
        commit: true,
    };
    let started = std::time::Instant::now();
    let alone =
        e.generate(ask("Name three colors and say why you like them.")).unwrap().collect_blocking().unwrap();
    let generate_ms = started.elapsed().as_millis();
    let n = alone.tokens.len();
    assert!(n > 33, "a long enough answer for two decode chunks: {n}");
    // One chunk per 32 prompt positions, then one per 32 answer positions (the last token is never fed back).
    let prompt_chunks = chat("Name three colors and say why you like them.").len().div_ceil(32);
    assert_eq!(alone.commitments.len(), prompt_chunks + (n - 1).div_ceil(32));
    assert!(alone.commitments.iter().all(|c| c.len() == 258));
    let others: Vec<_> =
        ["Tell me a joke.", "Name three colors and say why you like them.", "What is 2 + 2?"]
            .iter()
            .map(|q| e.generate(ask(q)).unwrap())
            .collect();
    let batched: Vec<_> = others.into_iter().map(|g| g.collect_blocking().unwrap()).collect();
    assert_eq!(batched[1].tokens, alone.tokens);
    assert_eq!(batched[1].commitments, alone.commitments, "commitments do not depend on the batch");

    // TOPLOC's reference tolerance at k = 128. An honest replay passes it with a wide margin here; it is
    // too loose to tell a slightly different prompt apart on this model (see below), which is why the
    // detection table calibrates it on this engine instead of copying it.
    let tolerance = Tolerance::default();
    let prompt = chat("Name three colors and say why you like them.");
    let started = std::time::Instant::now();
    let replay = e.replay(prompt, alone.tokens.clone()).unwrap();
    let replay_ms = started.elapsed().as_millis();
    assert_eq!(replay.chunks.len(), alone.commitments.len());
    let mut honest_worst = 0.0f64;
    for (i, (bytes, chunk)) in alone.commitments.iter().zip(&replay.chunks).enumerate() {
        let c = compare_top_k(chunk, &ChunkCommitment::from_bytes(bytes).unwrap());
        println!("chunk {i}: {c:?}");
        assert!(c.passes(&tolerance), "chunk {i} of an honest answer: {c:?}");
        honest_worst = honest_worst.max(c.mean_mantissa_diff);
    }
    let agree = replay.top_tokens.iter().zip(&alone.tokens).filter(|(a, b)| a == b).count();
    println!("generation {generate_ms} ms, replay {replay_ms} ms; greedy tokens ranked first: {agree}/{n}");
    // A one-pass prefill rounds differently from token-by-token decoding, so near-ties can flip: the
    // sampling check has to allow for that (the replayer will report the logit gap), not demand equality.
    assert!(
        agree * 20 >= n * 19,
        "a greedy answer is the replay's first choice almost everywhere: {agree}/{n}"
    );

    // The same answer under another prompt (a changed system prompt would do the same): the prefill fails
    // and so does what was computed from it.
    let other = chat("Name three colours and say why you like them!");
    let replay = e.replay(other, alone.tokens.clone()).unwrap();
    let mut altered_worst = 0.0f64;
    let mut failed = 0;
    // The tolerance the detection table calibrates on this engine (see the test below).
    let calibrated =
        Tolerance { max_exponent_mismatches: 18, max_mean_mantissa_diff: 4.2, max_median_mantissa_diff: 3.0 };
    for (i, (bytes, chunk)) in alone.commitments.iter().zip(&replay.chunks).enumerate() {
        let c = compare_top_k(chunk, &ChunkCommitment::from_bytes(bytes).unwrap());
        println!("another prompt, chunk {i}: {c:?}");
        altered_worst = altered_worst.max(c.mean_mantissa_diff);
        failed += usize::from(!c.passes(&calibrated));
    }
    // The prompt's last chunk holds the changed words: it and what follows it fail the calibrated tolerance.
    assert!(failed >= 2, "another prompt failed {failed} chunks");
    assert!(
        altered_worst > 2.0 * honest_worst,
        "another prompt moves the answer's hidden states further than an honest replay: {altered_worst} vs {honest_worst}"
    );
}

#[path = "verify_table/mod.rs"]
mod verify_table;

/// The inference detection table's code on a few answers per row (the benchmark runs 500): no honest answer
/// is flagged, whatever the batch and prefill chunking, and every derived cheat is.
#[test]
fn the_detection_table_flags_every_cheat_and_no_honest_answer() {
    use tensorgrid_commitment::Tolerance;
    let scratch = tempfile::tempdir().unwrap();
    let engines = verify_table::Engines::load(&gguf(), scratch.path());
    let rows = verify_table::table(&engines, 3, 40);
    let reference = Tolerance::default();
    // Calibrated on this engine by the benchmark (its worst honest answers in a 16-per-row run: 11
    // exponent mismatches of 128, mean mantissa difference 2.78, median 2), with a margin of half again.
    let calibrated =
        Tolerance { max_exponent_mismatches: 18, max_mean_mantissa_diff: 4.2, max_median_mantissa_diff: 3.0 };
    println!("{}", verify_table::render(&rows, &calibrated, 3));
    for row in &rows {
        let flagged = row.checks.iter().filter(|c| c.fails(&calibrated, 3)).count();
        if row.honest {
            assert_eq!(flagged, 0, "{}: {:?}", row.name, row.checks);
            assert!(row.checks.iter().all(|c| !c.fails(&reference, 3)), "{}", row.name);
        } else if row.name.starts_with("temperature") {
            assert!(flagged > 0, "{}: {:?}", row.name, row.checks);
        } else {
            assert_eq!(flagged, row.checks.len(), "{}: {:?}", row.name, row.checks);
        }
    }
}
