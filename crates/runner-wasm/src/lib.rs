//! The WASI job runner (`wasi-p1`): wasmtime with fuel metering, a memory cap, a wall-clock limit, and
//! nothing a program could use to tell two providers apart.
//!
//! Determinism is what lets k providers agree on a result hash, so everything that varies between machines is
//! pinned: the program's clocks start at the job's on-chain time and tick only when read, its randomness is a
//! blake3 stream seeded from the chain, NaNs are canonicalized, relaxed SIMD is deterministic, threads are off.
//! Its file system is the job's own directory: `/in` (read-only inputs) and `/out` (its outputs); it has no
//! network, no environment and no stdin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tensorgrid_runner::{collect_outputs, finish, JobRun, JobRunner, RunOutput, RunnerError};
use tensorgrid_types::job::{JobExit, WorkloadKind, MAX_RESULT_BYTES};
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

/// The runtime name jobs give for this runner.
pub const RUNTIME: &str = "wasi-p1";

/// How often the engine's epoch advances; a run's wall-clock limit is counted in these ticks.
const TICK: Duration = Duration::from_millis(50);

/// stdout and stderr are each kept up to this many bytes; a program that writes more traps.
const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;

/// Runs WASI preview-1 modules. One engine (and one epoch ticker thread) serves every run.
pub struct WasmRunner {
    engine: Engine,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRunner").finish_non_exhaustive()
    }
}

impl Drop for WasmRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct State {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// The program's wall clock: the job's on-chain time, advancing one millisecond each time it is read.
struct ChainWallClock {
    start_ms: u64,
    reads: std::sync::atomic::AtomicU64,
}

impl HostWallClock for ChainWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        Duration::from_millis(self.start_ms.saturating_add(n))
    }
}

/// The program's monotonic clock: a microsecond per read.
#[derive(Default)]
struct CountingClock {
    reads: std::sync::atomic::AtomicU64,
}

impl HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed).saturating_mul(1_000)
    }
}

/// Randomness the chain decides: the blake3 output stream of the job's seed and a label.
struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    fn new(seed: &tensorgrid_types::Hash, label: &str) -> SeededRandom {
        let mut hasher = blake3::Hasher::new_derive_key("tensorgrid wasm runner randomness v1");
        hasher.update(seed.as_bytes());
        hasher.update(label.as_bytes());
        SeededRandom(hasher.finalize_xof())
    }
}

impl cw_rand::TryRng for SeededRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl WasmRunner {
    pub fn new() -> Result<WasmRunner, RunnerError> {
        // Threads are not compiled into this build of wasmtime at all, so no module can race with itself.
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| RunnerError::Engine(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| RunnerError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(WasmRunner { engine, stop })
    }

    /// Compiles a module (binary or WAT text) without running it: how a provider checks an upload.
    pub fn compile(&self, bytes: &[u8]) -> Result<Module, RunnerError> {
        Module::new(&self.engine, bytes).map_err(|e| RunnerError::InvalidModule(format!("{e:#}")))
    }
}

impl JobRunner for WasmRunner {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Wasm
    }

    fn runtimes(&self) -> &[&str] {
        &[RUNTIME]
    }

    fn run(&self, run: &JobRun) -> Result<RunOutput, RunnerError> {
        let bytes = std::fs::read(&run.module).map_err(|e| RunnerError::io(&run.module, e))?;
        let module = self.compile(&bytes)?;
        let stdout = MemoryOutputPipe::new(MAX_STREAM_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_STREAM_BYTES);
        let mut args = vec!["main.wasm".to_string()];
        args.extend(run.args.iter().cloned());
        let input_dir = run.dir.join("in");
        let output_dir = run.dir.join("out");
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&args)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(ChainWallClock { start_ms: run.clock_ms, reads: Default::default() })
            .monotonic_clock(CountingClock::default())
            .secure_random(SeededRandom::new(&run.seed, "secure"))
            .insecure_random(SeededRandom::new(&run.seed, "insecure"))
            .insecure_random_seed(u128::from_le_bytes(
                run.seed.as_bytes()[..16].try_into().unwrap_or([0; 16]),
            ))
            .allow_blocking_current_thread(true);
        builder
            .preopened_dir(&input_dir, "/in", FsPerms::ReadOnly)
            .map_err(|e| RunnerError::io(&input_dir, e))?
            .preopened_dir(&output_dir, "/out", FsPerms::ReadWrite)
            .map_err(|e| RunnerError::io(&output_dir, e))?;
        let memory = usize::try_from(run.memory_bytes).unwrap_or(usize::MAX);
        let limits = StoreLimitsBuilder::new().memory_size(memory).instances(1).memories(1).tables(4).build();
        let mut store = Store::new(&self.engine, State { wasi: builder.build_p1(), limits });
        store.limiter(|state| &mut state.limits);
        store.set_fuel(run.max_fuel).map_err(|e| RunnerError::Engine(e.to_string()))?;
        let ticks = (run.wall_timeout.as_millis() / TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let mut linker: Linker<State> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut State| &mut state.wasi)
            .map_err(|e| RunnerError::Engine(e.to_string()))?;
        let result = linker
            .instantiate(&mut store, &module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        let exit = match result {
            Ok(()) => JobExit::Exited { code: 0 },
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    JobExit::Exited { code: exit.0 }
                } else {
                    match e.downcast_ref::<Trap>() {
                        Some(Trap::OutOfFuel) => JobExit::OutOfFuel,
                        Some(Trap::Interrupt) => {
                            return Err(RunnerError::TimedOut { limit: run.wall_timeout })
                        }
                        Some(_) => JobExit::Trapped,
                        None if e.to_string().contains("_start") || is_link_error(&e) => {
                            return Err(RunnerError::InvalidModule(format!("{e:#}")))
                        }
                        // Host calls that fail (a stream past its limit, a WASI error the guest cannot
                        // take) end the program like a trap would.
                        None => JobExit::Trapped,
                    }
                }
            }
        };
        let fuel_used = run.max_fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        drop(store);
        let stdout = stdout.contents().to_vec();
        let stderr = stderr.contents().to_vec();
        if (stdout.len() + stderr.len()) as u64 > MAX_RESULT_BYTES {
            return Err(RunnerError::OutputTooLarge);
        }
        let outputs = collect_outputs(&run.dir)?;
        Ok(finish(exit, stdout, stderr, outputs, fuel_used))
    }
}

/// Whether instantiation failed because the module imports something this runner does not provide.
fn is_link_error(e: &wasmtime::Error) -> bool {
    let text = e.to_string();
    text.contains("unknown import") || text.contains("incompatible import")
}
