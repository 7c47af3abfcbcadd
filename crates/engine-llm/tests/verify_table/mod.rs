//! The inference detection table: honest answers generated once, every cheat derived from the same prompts,
//! each answer replayed by an honest engine from the token ids its receipt would claim, and compared chunk by
//! chunk with the commitments the server sent. Shared by the benchmark (`cargo bench -p
//! tensorgrid-engine-llm --bench verification`, 500 answers per row) and the test (a reduced run).

#![allow(dead_code, unreachable_pub, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use tensorgrid_commitment::{compare_top_k, ChunkCommitment, Comparison, Tolerance};
use tensorgrid_engine_llm::{
    ChatMessage, GenerateRequest, GgmlDType, LlmEngine, LoadOptions, SamplingParams,
};

const QUESTIONS: &[&str] = &[
    "Name three colors and say why you like them.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a prime number is.",
    "Give me two tips for sleeping well.",
    "What is 12 times 7?",
    "Describe a cat in one sentence.",
    "Why is the sky blue?",
    "List three fruits that are red.",
    "What does a compiler do?",
    "Tell me a short joke about computers.",
    "How many legs does a spider have?",
];

/// What a receipt claims and what the server committed to.
#[derive(Clone, Debug)]
pub struct Answer {
    pub prompt: Vec<u32>,
    pub output: Vec<u32>,
    pub commitments: Vec<Vec<u8>>,
    /// Whether the request asked for greedy decoding (then each token must be the replay's first choice).
    pub greedy: bool,
    pub generate: Duration,
}

/// A check of one answer: the worst chunk, and how many greedy tokens the replay would not have chosen.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub worst: Comparison,
    pub token_misses: usize,
    pub replay: Duration,
}

impl Check {
    pub fn fails(&self, tolerance: &Tolerance, max_token_misses: usize) -> bool {
        !self.worst.passes(tolerance) || self.token_misses > max_token_misses
    }
}

fn chat(engine: &LlmEngine, system: Option<&str>, question: &str) -> Vec<u32> {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage { role: "system".into(), content: system.into() });
    }
    messages.push(ChatMessage { role: "user".into(), content: question.into() });
    let text = engine.codec().render_chat(&messages).expect("template");
    engine.codec().encode(&text).expect("encode")
}

fn params(i: usize, max_tokens: u32) -> SamplingParams {
    // Half greedy, half seeded sampling.
    if i % 2 == 0 {
        SamplingParams { temperature: 0.0, max_tokens, ..Default::default() }
    } else {
        SamplingParams {
            temperature: 0.7,
            top_p: Some(0.9),
            seed: i as u64,
            max_tokens,
            ..Default::default()
        }
    }
}

/// Generates `n` answers on `engine` in batches of `batch`, each from `prompt(i)` with `params(i)`; the
/// receipt claims `claimed(i)` as the prompt.
pub fn generate(
    engine: &LlmEngine,
    n: usize,
    batch: usize,
    max_tokens: u32,
    prompt: impl Fn(usize) -> Vec<u32>,
    claimed: impl Fn(usize) -> Vec<u32>,
    sampling: impl Fn(usize) -> SamplingParams,
) -> Vec<Answer> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let started = Instant::now();
        let running: Vec<_> = (i..end)
            .map(|j| {
                let request = GenerateRequest {
                    prompt: prompt(j),
                    params: sampling(j),
                    hidden_states: false,
                    commit: true,
                };
                engine.generate(request).expect("generate")
            })
            .collect();
        let done: Vec<_> = running.into_iter().map(|g| g.collect_blocking().expect("answer")).collect();
        let each = started.elapsed() / (end - i) as u32;
        for (j, d) in (i..end).zip(done) {
            out.push(Answer {
                prompt: claimed(j),
                output: d.tokens,
                commitments: d.commitments,
                greedy: params(j, max_tokens).temperature == 0.0,
                generate: each,
            });
        }
        i = end;
    }
    out
}

/// Replays an answer on the checker's honest engine and compares.
pub fn check(replayer: &LlmEngine, answer: &Answer) -> Check {
    let started = Instant::now();
    let replay = replayer.replay(answer.prompt.clone(), answer.output.clone()).expect("replay");
    let elapsed = started.elapsed();
    let mut worst = Comparison { exponent_mismatches: 0, mean_mantissa_diff: 0.0, median_mantissa_diff: 0.0 };
    let chunks = answer.commitments.len().max(replay.chunks.len());
    for i in 0..chunks {
        let c = match (answer.commitments.get(i), replay.chunks.get(i)) {
            (Some(bytes), Some(top)) => match ChunkCommitment::from_bytes(bytes) {
                Ok(commitment) => compare_top_k(top, &commitment),
                Err(_) => missing(),
            },
            // A chunk committed to without a replay of it, or the other way round: the answer does not
            // have the length its commitments say.
            _ => missing(),
        };
        worst.exponent_mismatches = worst.exponent_mismatches.max(c.exponent_mismatches);
        worst.mean_mantissa_diff = worst.mean_mantissa_diff.max(c.mean_mantissa_diff);
        worst.median_mantissa_diff = worst.median_mantissa_diff.max(c.median_mantissa_diff);
    }
    let token_misses = if answer.greedy {
        replay.top_tokens.iter().zip(&answer.output).filter(|(a, b)| a != b).count()
    } else {
        0
    };
    Check { worst, token_misses, replay: elapsed }
}

fn missing() -> Comparison {
    Comparison {
        exponent_mismatches: usize::MAX,
        mean_mantissa_diff: f64::INFINITY,
        median_mantissa_diff: f64::INFINITY,
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub honest: bool,
    pub checks: Vec<Check>,
    /// What generating the row's answers took, per answer (batched as served).
    pub generate: Duration,
}

/// The engines a table needs: the honest one (which also replays), an honest one batched and chunked
/// differently, and one serving a cruder quantization of the same file.
pub struct Engines {
    pub honest: LlmEngine,
    pub other_shape: LlmEngine,
    pub q4_0: LlmEngine,
}

impl Engines {
    pub fn load(gguf: &Path, scratch: &Path) -> Engines {
        let honest = LlmEngine::load(gguf, LoadOptions::default()).expect("load");
        let other_shape =
            LlmEngine::load(gguf, LoadOptions { max_batch: 1, prefill_chunk: 16, ..LoadOptions::default() })
                .expect("load");
        let crude = scratch.join("q4_0.gguf");
        let mut out = std::fs::File::create(&crude).expect("scratch file");
        tensorgrid_engine_llm::requantize(
            &mut std::fs::File::open(gguf).expect("gguf"),
            &mut out,
            GgmlDType::Q4_0,
        )
        .expect("requantize to Q4_0");
        let q4_0 = LlmEngine::load(&crude, LoadOptions { requantize: None, ..LoadOptions::default() })
            .expect("load");
        Engines { honest, other_shape, q4_0 }
    }
}

/// Every row, `n` answers each, `max_tokens` long.
pub fn table(engines: &Engines, n: usize, max_tokens: u32) -> Vec<Row> {
    let e = &engines.honest;
    let q = |i: usize| QUESTIONS[i % QUESTIONS.len()];
    let honest_prompt = |i: usize| chat(e, None, q(i));
    let sampling = |i: usize| params(i, max_tokens);
    let honest = generate(e, n, 8, max_tokens, honest_prompt, honest_prompt, sampling);
    let mut rows = Vec::new();
    let checked = |answers: &[Answer]| answers.iter().map(|a| check(e, a)).collect::<Vec<_>>();
    let per_answer = |answers: &[Answer]| {
        answers.iter().map(|a| a.generate).sum::<Duration>() / answers.len().max(1) as u32
    };
    rows.push(Row {
        name: "honest, batched 8, prefill in chunks of 256",
        honest: true,
        checks: checked(&honest),
        generate: per_answer(&honest),
    });
    let shaped = generate(&engines.other_shape, n, 1, max_tokens, honest_prompt, honest_prompt, sampling);
    rows.push(Row {
        name: "honest, one at a time, prefill in chunks of 16",
        honest: true,
        checks: checked(&shaped),
        generate: per_answer(&shaped),
    });
    let crude = generate(&engines.q4_0, n, 8, max_tokens, honest_prompt, honest_prompt, sampling);
    rows.push(Row {
        name: "Q4_0 served while Q8_0 is announced",
        honest: false,
        checks: checked(&crude),
        generate: per_answer(&crude),
    });
    let system = generate(
        e,
        n,
        8,
        max_tokens,
        |i| chat(e, Some("You are a pirate. Answer like one."), q(i)),
        honest_prompt,
        sampling,
    );
    rows.push(Row {
        name: "another system prompt than the one claimed",
        honest: false,
        checks: checked(&system),
        generate: per_answer(&system),
    });
    let truncated = generate(
        e,
        n,
        8,
        max_tokens,
        |i| {
            let full = honest_prompt(i);
            full[full.len() / 2..].to_vec()
        },
        honest_prompt,
        sampling,
    );
    rows.push(Row {
        name: "the prompt's first half dropped (truncated context)",
        honest: false,
        checks: checked(&truncated),
        generate: per_answer(&truncated),
    });
    let altered: Vec<Answer> = honest
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let at = a.output.len() / 2;
            a.output[at] = (a.output[at] + 1) % 49_152;
            a
        })
        .collect();
    rows.push(Row {
        name: "one output token altered",
        honest: false,
        checks: checked(&altered),
        generate: per_answer(&altered),
    });
    let inserted: Vec<Answer> = honest
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let at = a.output.len() / 2;
            a.output.insert(at, 28);
            a
        })
        .collect();
    rows.push(Row {
        name: "one output token inserted",
        honest: false,
        checks: checked(&inserted),
        generate: per_answer(&inserted),
    });
    let sampled = generate(e, n, 8, max_tokens, honest_prompt, honest_prompt, |i| SamplingParams {
        temperature: 1.0,
        seed: 1_000 + i as u64,
        max_tokens,
        ..Default::default()
    });
    // The receipt says greedy was asked for (every other answer); the server sampled at temperature 1.
    let sampled: Vec<Answer> =
        sampled.into_iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, a)| a).collect();
    rows.push(Row {
        name: "temperature 1 instead of the greedy decoding asked for",
        honest: false,
        checks: checked(&sampled),
        generate: per_answer(&sampled),
    });
    rows
}

/// The tightest tolerance every honest answer passes, with a margin: what the table calibrates.
pub fn calibrate(rows: &[Row]) -> (Tolerance, usize) {
    let honest: Vec<&Check> = rows.iter().filter(|r| r.honest).flat_map(|r| &r.checks).collect();
    let max_exp = honest.iter().map(|c| c.worst.exponent_mismatches).max().unwrap_or(0);
    let max_mean = honest.iter().map(|c| c.worst.mean_mantissa_diff).fold(0.0, f64::max);
    let max_median = honest.iter().map(|c| c.worst.median_mantissa_diff).fold(0.0, f64::max);
    let max_misses = honest.iter().map(|c| c.token_misses).max().unwrap_or(0);
    (
        Tolerance {
            max_exponent_mismatches: max_exp * 3 / 2 + 2,
            max_mean_mantissa_diff: max_mean * 1.5,
            max_median_mantissa_diff: max_median * 1.5,
        },
        max_misses + 1,
    )
}

pub fn render(rows: &[Row], tolerance: &Tolerance, max_misses: usize) -> String {
    let reference = Tolerance::default();
    let mut out = String::from(
        "| answers | n | flagged (calibrated) | flagged (TOPLOC's reference) | worst exponent mismatches (median over answers) | worst mean mantissa diff (median) | replay ÷ generation |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let n = r.checks.len().max(1);
        let flagged = r.checks.iter().filter(|c| c.fails(tolerance, max_misses)).count();
        let flagged_ref = r.checks.iter().filter(|c| c.fails(&reference, max_misses)).count();
        let mut exps: Vec<usize> = r.checks.iter().map(|c| c.worst.exponent_mismatches).collect();
        exps.sort_unstable();
        let mut means: Vec<f64> = r.checks.iter().map(|c| c.worst.mean_mantissa_diff).collect();
        means.sort_by(f64::total_cmp);
        let median_exp = exps.get(exps.len() / 2).copied().unwrap_or(0);
        // An answer whose claimed prompt or output has another length than what was committed to has chunks
        // with nothing to compare against.
        let shown_exp =
            if median_exp == usize::MAX { "chunk count differs".to_string() } else { median_exp.to_string() };
        out.push_str(&format!(
            "| {} | {} | {:.1} % | {:.1} % | {} | {:.2} | {:.2} |\n",
            r.name,
            r.checks.len(),
            100.0 * flagged as f64 / n as f64,
            100.0 * flagged_ref as f64 / n as f64,
            shown_exp,
            means.get(means.len() / 2).copied().unwrap_or(0.0),
            r.checks.iter().map(|c| c.replay.as_secs_f64()).sum::<f64>()
                / (r.generate.as_secs_f64() * n as f64).max(1e-9),
        ));
    }
    out.push_str(&format!(
        "\ncalibrated tolerance: ≤ {} exponent mismatches of 128, mean mantissa diff ≤ {:.2}, median ≤ {:.2}; greedy tokens not ranked first ≤ {}\n",
        tolerance.max_exponent_mismatches,
        tolerance.max_mean_mantissa_diff,
        tolerance.max_median_mantissa_diff,
        max_misses,
    ));
    out
}
