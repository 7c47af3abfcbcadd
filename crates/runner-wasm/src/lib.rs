//! The WASI job runner (`wasi-p1`): wasmtime with fuel metering, a memory cap, a wall-clock limit, and
//! nothing a program could use to tell two providers apart.
//!
//! Determinism is what lets k providers agree on a result hash, so everything that varies between machines is
//! pinned: the program's clocks start at the job's on-chain time and tick only when read, its randomness is a
//! blake3 stream seeded from the chain, NaNs are canonicalized, relaxed SIMD is deterministic, threads are off.
//! Its file system is the job's own directory: `/in` (read-only inputs) and `/out` (its outputs); it has no
//! network, no environment and no stdin.
//!
//! Nothing a program does may hold a provider longer than its fuel: sleeping (`poll_oneoff` on a clock)
//! advances the program's own clocks instead of blocking a thread, and every way of filling the disk is
//! counted per call against [`OUTPUT_LIMITS`], so reaching a limit is the same result on every provider
//! ([`JobExit::OutputLimit`]). Only the provider's own wall-clock limit is not a result, and the chain checks
//! that a job's run timeout leaves room for its fuel, so a client cannot force it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tensorgrid_runner::{collect_outputs, conclude, JobRun, JobRunner, RunOutput, RunnerError};
use tensorgrid_types::job::{JobExit, WorkloadKind, OUTPUT_LIMITS};
use wasmtime::{Caller, Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

/// The runtime name jobs give for this runner.
pub const RUNTIME: &str = "wasi-p1";

/// How often the engine's epoch advances; a run's wall-clock limit is counted in these ticks.
const TICK: Duration = Duration::from_millis(50);

/// The WASI preview-1 import module, some of whose functions this runner replaces.
const WASI: &str = "wasi_snapshot_preview1";

/// Runs WASI preview-1 modules. One engine (and one epoch ticker thread) and one linker (WASI with this
/// runner's guards) serve every run.
pub struct WasmRunner {
    engine: Engine,
    linker: Linker<State>,
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
    time: Arc<VirtualTime>,
    usage: Usage,
}

/// The program's sense of time, the same on every provider: clocks tick per read, and sleeping moves
/// them forward by the time slept without waiting for it.
#[derive(Debug, Default)]
struct VirtualTime {
    start_ms: u64,
    wall_reads: AtomicU64,
    monotonic_reads: AtomicU64,
    slept_ns: AtomicU64,
}

impl VirtualTime {
    /// The wall clock in nanoseconds since the Unix epoch: the job's chain time, a millisecond per read,
    /// plus what was slept. `tick` says whether this counts as a read.
    fn wall_ns(&self, tick: bool) -> u64 {
        let reads = if tick {
            self.wall_reads.fetch_add(1, Ordering::Relaxed)
        } else {
            self.wall_reads.load(Ordering::Relaxed)
        };
        self.start_ms
            .saturating_add(reads)
            .saturating_mul(1_000_000)
            .saturating_add(self.slept_ns.load(Ordering::Relaxed))
    }

    /// The monotonic clock in nanoseconds: a microsecond per read, plus what was slept.
    fn monotonic_ns(&self, tick: bool) -> u64 {
        let reads = if tick {
            self.monotonic_reads.fetch_add(1, Ordering::Relaxed)
        } else {
            self.monotonic_reads.load(Ordering::Relaxed)
        };
        reads.saturating_mul(1_000).saturating_add(self.slept_ns.load(Ordering::Relaxed))
    }

    fn sleep(&self, ns: u64) {
        let slept = self.slept_ns.load(Ordering::Relaxed).saturating_add(ns);
        self.slept_ns.store(slept, Ordering::Relaxed);
    }
}

/// The program's wall clock (see [`VirtualTime::wall_ns`]).
struct ChainWallClock(Arc<VirtualTime>);

impl HostWallClock for ChainWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.wall_ns(true))
    }
}

/// The program's monotonic clock (see [`VirtualTime::monotonic_ns`]).
struct CountingClock(Arc<VirtualTime>);

impl HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.monotonic_ns(true)
    }
}

/// What the program wrote and created so far, counted per call: a pure function of its calls.
#[derive(Debug, Default)]
struct Usage {
    stdout: u64,
    stderr: u64,
    written: u64,
    entries: u64,
}

/// The program went over one of [`OUTPUT_LIMITS`]; it ends as [`JobExit::OutputLimit`].
#[derive(Debug)]
struct OutputLimitReached(&'static str);

impl std::fmt::Display for OutputLimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the program went over its limit of {}", self.0)
    }
}

impl std::error::Error for OutputLimitReached {}

fn over(what: &'static str) -> wasmtime::Error {
    wasmtime::Error::new(OutputLimitReached(what))
}

/// WASI errno values this runner answers with itself.
mod errno {
    pub(crate) const SUCCESS: i32 = 0;
    pub(crate) const FAULT: i32 = 21;
    pub(crate) const INVAL: i32 = 28;
    pub(crate) const NOTSUP: i32 = 58;
}

/// The guest's exported memory, if it has one.
fn memory(caller: &mut Caller<'_, State>) -> Option<wasmtime::Memory> {
    caller.get_export("memory").and_then(|e| e.into_memory())
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The bytes a write call asks to write: the sum of its iovec lengths (`None` when they lie outside memory,
/// which the real call then refuses).
fn requested_bytes(data: &[u8], iovs: i32, count: i32) -> Option<u64> {
    let (iovs, count) = (iovs as u32 as usize, count as u32 as usize);
    if count.checked_mul(8)? > data.len() {
        return None;
    }
    let mut total = 0u64;
    for i in 0..count {
        total = total.saturating_add(u64::from(read_u32(data, iovs.checked_add(i * 8 + 4)?)?));
    }
    Some(total)
}

/// A deterministic `poll_oneoff`: clock subscriptions fire at once with the program's clocks moved forward
/// by the shortest wait; descriptor subscriptions are always ready (files never block and there is no
/// stdin or network). Nothing here blocks, so a program that sleeps spends fuel, not the provider's time.
fn poll_oneoff(caller: &mut Caller<'_, State>, subs: i32, events: i32, count: i32, nevents: i32) -> i32 {
    const SUB: usize = 48;
    const EVENT: usize = 32;
    const ABSTIME: u16 = 1;
    let Some(memory) = memory(caller) else { return errno::FAULT };
    let time = caller.data().time.clone();
    let (subs, events, count, nevents) =
        (subs as u32 as usize, events as u32 as usize, count as u32 as usize, nevents as u32 as usize);
    if count == 0 {
        return errno::INVAL;
    }
    let data = memory.data_mut(caller);
    if count.saturating_mul(SUB) > data.len() || count.saturating_mul(EVENT) > data.len() {
        return errno::FAULT;
    }
    // (userdata, event type, nanoseconds until it fires; `None` for descriptors, which are ready now)
    let mut parsed = Vec::with_capacity(count);
    for i in 0..count {
        let at = subs.saturating_add(i * SUB);
        let (Some(userdata), Some(tag)) = (read_u64(data, at), data.get(at.saturating_add(8)).copied())
        else {
            return errno::FAULT;
        };
        let wait = match tag {
            0 => {
                let (Some(clock), Some(timeout), Some(flags)) = (
                    read_u32(data, at + 16),
                    read_u64(data, at + 24),
                    data.get(at + 40..at + 42).map(|b| u16::from_le_bytes([b[0], b[1]])),
                ) else {
                    return errno::FAULT;
                };
                let absolute = flags & ABSTIME != 0;
                Some(match (clock, absolute) {
                    (0 | 1, false) => timeout,
                    (0, true) => timeout.saturating_sub(time.wall_ns(false)),
                    (1, true) => timeout.saturating_sub(time.monotonic_ns(false)),
                    _ => return errno::INVAL,
                })
            }
            1 | 2 => None,
            _ => return errno::INVAL,
        };
        parsed.push((userdata, tag, wait));
    }
    let descriptors_ready = parsed.iter().any(|(_, _, wait)| wait.is_none());
    let shortest = parsed.iter().filter_map(|(_, _, wait)| *wait).min().unwrap_or(0);
    let mut written = 0usize;
    for (userdata, tag, wait) in parsed {
        let fires = match wait {
            None => true,
            Some(ns) => !descriptors_ready && ns == shortest,
        };
        if !fires {
            continue;
        }
        let at = events.saturating_add(written * EVENT);
        let Some(slot) = data.get_mut(at..at.saturating_add(EVENT)) else { return errno::FAULT };
        slot.fill(0);
        slot[..8].copy_from_slice(&userdata.to_le_bytes());
        slot[10] = tag;
        written += 1;
    }
    let Some(out) = data.get_mut(nevents..nevents.saturating_add(4)) else { return errno::FAULT };
    out.copy_from_slice(&(written as u32).to_le_bytes());
    if !descriptors_ready {
        time.sleep(shortest);
    }
    errno::SUCCESS
}

/// Calls wasmtime-wasi's own implementation of a preview-1 function on the guest's memory, as its linker
/// would: the guards below count first and then do exactly what the unguarded call does.
macro_rules! wasi {
    (@guest $caller:expr, |$state:ident, $guest:ident| $call:expr) => {{
        use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
        let Some(memory) = memory(&mut $caller) else {
            wasmtime::bail!("missing required memory export")
        };
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $caller).hostcall_fuel();
        let (data, $state) = memory.data_and_store_mut(&mut $caller);
        $state.wasi.set_hostcall_fuel(fuel);
        let mut $guest = wiggle::GuestMemory::Unshared(data);
        $call
    }};
    (sync $caller:expr, $name:ident($($arg:expr),*)) => {
        wasi!(@guest $caller, |state, guest| {
            wasmtime_wasi::p1::wasi_snapshot_preview1::$name(&mut state.wasi, &mut guest, $($arg),*)
        })
    };
    ($caller:expr, $name:ident($($arg:expr),*)) => {
        wasi!(@guest $caller, |state, guest| {
            wasmtime_wasi::runtime::in_tokio(wasmtime_wasi::p1::wasi_snapshot_preview1::$name(
                &mut state.wasi,
                &mut guest,
                $($arg),*
            ))
        })
    };
}

/// Replaces the WASI calls that could block or fill the provider's disk with ones that count and then run
/// the real implementation, so that going over a limit ends every provider's run at the same call.
fn add_guards(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);

    /// Counts a write of `bytes` on `fd`: stdout and stderr each have their own limit, files share one.
    fn count_write(caller: &mut Caller<'_, State>, fd: i32, bytes: u64) -> wasmtime::Result<()> {
        let usage = &mut caller.data_mut().usage;
        let (counter, limit, what) = match fd {
            1 => (&mut usage.stdout, OUTPUT_LIMITS.stream_bytes, "stdout bytes"),
            2 => (&mut usage.stderr, OUTPUT_LIMITS.stream_bytes, "stderr bytes"),
            _ => (&mut usage.written, OUTPUT_LIMITS.written_bytes, "bytes written to files"),
        };
        *counter = counter.saturating_add(bytes);
        if *counter > limit {
            return Err(over(what));
        }
        Ok(())
    }
    fn count_entry(caller: &mut Caller<'_, State>) -> wasmtime::Result<()> {
        let usage = &mut caller.data_mut().usage;
        usage.entries = usage.entries.saturating_add(1);
        if usage.entries > OUTPUT_LIMITS.entries {
            return Err(over("files and directories created"));
        }
        Ok(())
    }
    fn size_fits(end: u64) -> wasmtime::Result<()> {
        if end > OUTPUT_LIMITS.file_bytes {
            return Err(over("bytes in one file"));
        }
        Ok(())
    }

    linker.func_wrap(
        WASI,
        "fd_write",
        move |mut caller: Caller<'_, State>, fd: i32, iovs: i32, count: i32, nwritten: i32| {
            if let Some(memory) = memory(&mut caller) {
                if let Some(bytes) = requested_bytes(memory.data(&caller), iovs, count) {
                    count_write(&mut caller, fd, bytes)?;
                }
            }
            wasi!(caller, fd_write(fd, iovs, count, nwritten))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pwrite",
        move |mut caller: Caller<'_, State>, fd: i32, iovs: i32, count: i32, offset: i64, nwritten: i32| {
            if let Some(memory) = memory(&mut caller) {
                if let Some(bytes) = requested_bytes(memory.data(&caller), iovs, count) {
                    count_write(&mut caller, fd, bytes)?;
                    size_fits((offset as u64).saturating_add(bytes))?;
                }
            }
            wasi!(caller, fd_pwrite(fd, iovs, count, offset, nwritten))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_set_size",
        move |mut caller: Caller<'_, State>, fd: i32, size: i64| {
            size_fits(size as u64)?;
            wasi!(caller, fd_filestat_set_size(fd, size))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_allocate",
        move |mut caller: Caller<'_, State>, fd: i32, offset: i64, len: i64| {
            size_fits((offset as u64).saturating_add(len as u64))?;
            wasi!(sync caller, fd_allocate(fd, offset, len))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_open",
        move |mut caller: Caller<'_, State>,
              fd: i32,
              dirflags: i32,
              path: i32,
              path_len: i32,
              oflags: i32,
              base: i64,
              inheriting: i64,
              fdflags: i32,
              opened: i32| {
            const CREAT: i32 = 1;
            if oflags & CREAT != 0 {
                count_entry(&mut caller)?;
            }
            wasi!(caller, path_open(fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_create_directory",
        move |mut caller: Caller<'_, State>, fd: i32, path: i32, len: i32| {
            count_entry(&mut caller)?;
            wasi!(caller, path_create_directory(fd, path, len))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_link",
        move |mut caller: Caller<'_, State>, a: i32, b: i32, c: i32, d: i32, e: i32, f: i32, g: i32| {
            count_entry(&mut caller)?;
            wasi!(caller, path_link(a, b, c, d, e, f, g))
        },
    )?;
    // A link out of the sandbox would make the outputs depend on the provider's machine; none are made.
    linker.func_wrap(
        WASI,
        "path_symlink",
        |_: Caller<'_, State>, _: i32, _: i32, _: i32, _: i32, _: i32| errno::NOTSUP,
    )?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |mut caller: Caller<'_, State>, subs: i32, events: i32, count: i32, nevents: i32| {
            poll_oneoff(&mut caller, subs, events, count, nevents)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
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
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut State| &mut state.wasi)
            .map_err(|e| RunnerError::Engine(e.to_string()))?;
        add_guards(&mut linker).map_err(|e| RunnerError::Engine(format!("{e:#}")))?;
        Ok(WasmRunner { engine, linker, stop })
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

    fn check(&self, module: &Path) -> Result<(), RunnerError> {
        let bytes = std::fs::read(module).map_err(|e| RunnerError::io(module, e))?;
        let module = self.compile(&bytes)?;
        // Everything that could stop the run from starting is checked here: every import resolves against
        // this runner's WASI, and `_start` exists with the right type. What remains can only end as a result.
        self.linker.instantiate_pre(&module).map_err(|e| RunnerError::InvalidModule(format!("{e:#}")))?;
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => Ok(()),
            _ => Err(RunnerError::InvalidModule("exports no `_start` function of type () -> ()".into())),
        }
    }

    fn run(&self, run: &JobRun) -> Result<RunOutput, RunnerError> {
        let bytes = std::fs::read(&run.module).map_err(|e| RunnerError::io(&run.module, e))?;
        let module = self.compile(&bytes)?;
        // The pipes hold a byte more than the limit so that the count in `fd_write`, not the pipe, decides.
        let pipe_bytes = usize::try_from(OUTPUT_LIMITS.stream_bytes).unwrap_or(usize::MAX).saturating_add(1);
        let stdout = MemoryOutputPipe::new(pipe_bytes);
        let stderr = MemoryOutputPipe::new(pipe_bytes);
        let mut args = vec!["main.wasm".to_string()];
        args.extend(run.args.iter().cloned());
        let input_dir = run.dir.join("in");
        let output_dir = run.dir.join("out");
        let time = Arc::new(VirtualTime { start_ms: run.clock_ms, ..VirtualTime::default() });
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&args)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(ChainWallClock(time.clone()))
            .monotonic_clock(CountingClock(time.clone()))
            .secure_random(SeededRandom::new(&run.seed, "secure"))
            .insecure_random(SeededRandom::new(&run.seed, "insecure"))
            .insecure_random_seed(u128::from_le_bytes(
                run.seed.as_bytes()[..16].try_into().unwrap_or([0; 16]),
            ));
        builder
            .preopened_dir(&input_dir, "/in", FsPerms::ReadOnly)
            .map_err(|e| RunnerError::io(&input_dir, e))?
            .preopened_dir(&output_dir, "/out", FsPerms::ReadWrite)
            .map_err(|e| RunnerError::io(&output_dir, e))?;
        let memory = usize::try_from(run.memory_bytes).unwrap_or(usize::MAX);
        let limits = StoreLimitsBuilder::new().memory_size(memory).instances(1).memories(1).tables(4).build();
        let state = State { wasi: builder.build_p1(), limits, time, usage: Usage::default() };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_fuel(run.max_fuel).map_err(|e| RunnerError::Engine(e.to_string()))?;
        let ticks = (run.wall_timeout.as_millis() / TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let result = self
            .linker
            .instantiate(&mut store, &module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        let exit = match result {
            Ok(()) => JobExit::Exited { code: 0 },
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    JobExit::Exited { code: exit.0 }
                } else if e.downcast_ref::<OutputLimitReached>().is_some() {
                    JobExit::OutputLimit
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
                        // Host calls that fail (a WASI error the guest cannot take) end the program like a
                        // trap would.
                        None => JobExit::Trapped,
                    }
                }
            }
        };
        let fuel_used = run.max_fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        drop(store);
        let stdout = stdout.contents().to_vec();
        let stderr = stderr.contents().to_vec();
        let collected = collect_outputs(&run.dir)?;
        Ok(conclude(exit, stdout, stderr, collected, fuel_used))
    }
}

/// Whether instantiation failed because the module imports something this runner does not provide.
fn is_link_error(e: &wasmtime::Error) -> bool {
    let text = e.to_string();
    text.contains("unknown import") || text.contains("incompatible import")
}
