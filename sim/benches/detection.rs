//! The full detection table: every misbehaviour at job prices of 1 %, 10 % and 100 % of the minimum stake,
//! 1,000 jobs per row (`DETECTION_JOBS` to change it), each row beside an honest baseline on the same seed.
//! `cargo bench -p tensorgrid-sim --bench detection` or `tgrid sim --detection` print it; CI runs the same
//! code on tens of jobs per row (sim/tests/detection.rs).

fn main() -> Result<(), tensorgrid_sim::world::SimError> {
    let jobs = std::env::var("DETECTION_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let seed = std::env::var("DETECTION_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let started = std::time::Instant::now();
    let rows = tensorgrid_sim::detection::table(jobs, seed)?;
    print!("{}", tensorgrid_sim::detection::render(&rows));
    println!(
        "\nseed {seed}, {jobs} jobs per row, each beside an honest baseline; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
