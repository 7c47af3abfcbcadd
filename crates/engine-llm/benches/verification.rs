//! The inference detection table on SmolLM2-135M-Instruct: `cargo bench -p tensorgrid-engine-llm --bench
//! verification` (VERIFY_ANSWERS answers per row, 500 by default; the test runs the same code on a few).

#[path = "../tests/verify_table/mod.rs"]
mod verify_table;

fn main() {
    let n = std::env::var("VERIFY_ANSWERS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let gguf = tensorgrid_engine_llm::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let scratch = std::env::temp_dir().join(format!("tgrid-verify-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let started = std::time::Instant::now();
    let engines = verify_table::Engines::load(&gguf, &scratch);
    let rows = verify_table::table(&engines, n, 64);
    let (tolerance, misses) = verify_table::calibrate(&rows);
    print!("{}", verify_table::render(&rows, &tolerance, misses));
    println!(
        "{n} answers per row of up to 64 tokens; commitments are 258 bytes per 32 positions of the prompt and of the answer; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(scratch);
}
