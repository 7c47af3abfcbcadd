//! The WASI runner on the repository's test modules (`testdata/wasm/*.wat`): results, fuel, the sandbox,
//! memory caps, wall-clock limits and determinism.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tensorgrid_runner::{prepare_inputs, JobRun, JobRunner, RunnerError};
use tensorgrid_runner_wasm::WasmRunner;
use tensorgrid_types::job::JobExit;
use tensorgrid_types::Hash;

fn module(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wasm").join(name)
}

fn job(dir: &Path, name: &str, inputs: &[PathBuf]) -> JobRun {
    prepare_inputs(dir, inputs).unwrap();
    JobRun {
        job: 1,
        module: module(name),
        args: vec![],
        dir: dir.to_path_buf(),
        max_fuel: 10_000_000,
        memory_bytes: 16 * 1024 * 1024,
        wall_timeout: Duration::from_secs(30),
        clock_ms: 1_700_000_000_000,
        seed: Hash::of(b"block randomness"),
    }
}

#[test]
fn a_job_reads_its_input_writes_its_output_and_the_hash_covers_both() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, b"the input").unwrap();
    let work = dir.path().join("job");
    let out = runner.run(&job(&work, "copy.wat", std::slice::from_ref(&input))).unwrap();
    assert_eq!(out.exit, JobExit::Exited { code: 0 }, "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.outputs, vec![("result.txt".to_string(), b"the input".to_vec())]);
    assert!(out.fuel_used > 0 && out.fuel_used < 10_000_000, "fuel used: {}", out.fuel_used);

    // Another provider, another directory, same job: the same hash. A different input: another hash.
    let again =
        runner.run(&job(&dir.path().join("again"), "copy.wat", std::slice::from_ref(&input))).unwrap();
    assert_eq!(again.result_hash, out.result_hash);
    assert_eq!(again.fuel_used, out.fuel_used, "fuel is deterministic too");
    std::fs::write(&input, b"another input").unwrap();
    let other =
        runner.run(&job(&dir.path().join("other"), "copy.wat", std::slice::from_ref(&input))).unwrap();
    assert_ne!(other.result_hash, out.result_hash);
}

#[test]
fn running_out_of_fuel_is_a_result_and_the_wall_clock_limit_is_not() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = runner.run(&job(&dir.path().join("a"), "spin.wat", &[])).unwrap();
    assert_eq!(out.exit, JobExit::OutOfFuel);
    assert_eq!(out.fuel_used, 10_000_000);
    let again = runner.run(&job(&dir.path().join("b"), "spin.wat", &[])).unwrap();
    assert_eq!(again.result_hash, out.result_hash, "out of fuel hashes the same everywhere");

    let mut slow = job(&dir.path().join("c"), "spin.wat", &[]);
    slow.max_fuel = u64::MAX / 2;
    slow.wall_timeout = Duration::from_millis(300);
    match runner.run(&slow) {
        Err(RunnerError::TimedOut { limit }) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_module_cannot_open_files_outside_its_directory() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), b"do not read").unwrap();
    let work = dir.path().join("job");
    let out = runner.run(&job(&work, "escape.wat", &[])).unwrap();
    assert_eq!(out.exit, JobExit::Exited { code: 0 }, "a path outside /in opened");
    assert_eq!(out.stderr, b"refused\n");
}

#[test]
fn memory_beyond_the_jobs_cap_is_refused_to_the_program() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capped = runner.run(&job(&dir.path().join("a"), "grow.wat", &[])).unwrap();
    assert_eq!(capped.exit, JobExit::Exited { code: 3 }, "16 MiB cap, 64 MiB asked");
    let mut roomy = job(&dir.path().join("b"), "grow.wat", &[]);
    roomy.memory_bytes = 256 * 1024 * 1024;
    assert_eq!(runner.run(&roomy).unwrap().exit, JobExit::Exited { code: 0 });
}

#[test]
fn clocks_and_randomness_come_from_the_chain() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let one = runner.run(&job(&dir.path().join("a"), "entropy.wat", &[])).unwrap();
    let two = runner.run(&job(&dir.path().join("b"), "entropy.wat", &[])).unwrap();
    assert_eq!(one.stdout.len(), 40, "{:?} {}", one.exit, String::from_utf8_lossy(&one.stderr));
    assert_eq!(one.stdout, two.stdout, "same seed, same bytes");
    let nanos = u64::from_le_bytes(one.stdout[32..40].try_into().unwrap());
    assert_eq!(nanos, 1_700_000_000_000 * 1_000_000, "the wall clock starts at the job's chain time");
    let mut reseeded = job(&dir.path().join("c"), "entropy.wat", &[]);
    reseeded.seed = Hash::of(b"another block");
    let three = runner.run(&reseeded).unwrap();
    assert_ne!(three.stdout[..32], one.stdout[..32]);
}

#[test]
fn an_invalid_module_is_refused_with_a_reason() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0garbage").unwrap();
    let mut run = job(&dir.path().join("job"), "copy.wat", &[]);
    run.module = bad;
    assert!(matches!(runner.run(&run), Err(RunnerError::InvalidModule(_))));
}

#[test]
fn a_module_that_cannot_start_fails_the_check_before_a_provider_confirms_it() {
    let runner = WasmRunner::new().unwrap();
    assert!(runner.check(&module("copy.wat")).is_ok());
    match runner.check(&module("noimport.wat")) {
        Err(RunnerError::InvalidModule(reason)) => assert!(reason.contains("no_such_call"), "{reason}"),
        other => panic!("expected an invalid module, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0garbage").unwrap();
    assert!(matches!(runner.check(&garbage), Err(RunnerError::InvalidModule(_))));
}

/// Runs `name` twice in fresh directories and checks both runs agree, as two providers must.
fn twice(runner: &WasmRunner, dir: &Path, name: &str) -> tensorgrid_runner::RunOutput {
    let one = runner.run(&job(&dir.join("one"), name, &[])).unwrap();
    let two = runner.run(&job(&dir.join("two"), name, &[])).unwrap();
    assert_eq!(one.result_hash, two.result_hash, "{name}: two providers disagree");
    assert_eq!(one.fuel_used, two.fuel_used, "{name}");
    one
}

#[test]
fn sleeping_advances_the_programs_clock_instead_of_holding_the_provider() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = twice(&runner, dir.path(), "sleep.wat");
    // A thousand hours of sleep, seen by the program's monotonic clock, in no time at all.
    assert_eq!(out.exit, JobExit::Exited { code: 100 });
    assert!(started.elapsed() < Duration::from_secs(20), "sleeping blocked for {:?}", started.elapsed());
}

#[test]
fn filling_the_disk_or_the_streams_ends_the_run_as_the_same_result_everywhere() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, what) in [
        ("rewrite.wat", "bytes written to files"),
        ("shout.wat", "stdout"),
        ("sparse.wat", "one file's size"),
        ("mkdirs.wat", "entries created"),
    ] {
        let mut one = job(&dir.path().join(name).join("one"), name, &[]);
        let mut two = job(&dir.path().join(name).join("two"), name, &[]);
        for run in [&mut one, &mut two] {
            // Fuel is not what stops them: only the output limits are.
            run.max_fuel = 100_000_000_000;
            run.memory_bytes = 64 << 20;
        }
        let (a, b) = (runner.run(&one).unwrap(), runner.run(&two).unwrap());
        assert_eq!(a.exit, JobExit::OutputLimit, "{what}: {:?}", a.exit);
        assert_eq!(a.result_hash, b.result_hash, "{what}: two providers disagree");
        assert!(a.stdout.is_empty() && a.stderr.is_empty() && a.outputs.is_empty(), "{what}");
    }
}

#[test]
fn a_program_cannot_leave_a_link_to_the_providers_files() {
    let runner = WasmRunner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = twice(&runner, dir.path(), "links.wat");
    assert_eq!(out.exit, JobExit::Exited { code: 58 }, "path_symlink answers `not supported`");
    assert!(out.outputs.is_empty());
    assert!(!dir.path().join("one/out/link").exists());
}
