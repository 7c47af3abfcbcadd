//! The runner side of a provider: one trait every job runtime implements (WASM here, containers next), the
//! layout of a job's sandbox directory, and how a finished run becomes the result hash that providers
//! commit to and reveal.
//!
//! A job's directory holds `in/` (the inputs, named `0`, `1`, … in the order the job lists them, read-only to
//! the program) and `out/` (where the program writes its outputs). The result hash covers the exit status,
//! stdout, stderr and every file under `out/`, so two honest providers that run the same job get the same
//! hash, and a provider that changes any byte of what it hands back is caught.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tensorgrid_types::job::{result_hash, JobExit, JobId, WorkloadKind, OUTPUT_LIMITS};
use tensorgrid_types::Hash;

/// Everything a runner needs to run one job once.
#[derive(Clone, Debug)]
pub struct JobRun {
    pub job: JobId,
    /// The module (or image archive, or batch file), already checked against the job's hash.
    pub module: PathBuf,
    /// The arguments the job lists (the runner adds the program name in front).
    pub args: Vec<String>,
    /// The job's own directory, with `in/` filled by [`prepare_inputs`] and an empty `out/`.
    pub dir: PathBuf,
    /// The on-chain fuel limit, the same for every provider.
    pub max_fuel: u64,
    /// The most memory the program may use (the job's resources).
    pub memory_bytes: u64,
    /// The provider's own wall-clock limit; a run that reaches it has no result.
    pub wall_timeout: Duration,
    /// Where the program's clocks start (ms since the Unix epoch) and what seeds its randomness: both from the
    /// chain, so every provider's run sees the same.
    pub clock_ms: u64,
    pub seed: Hash,
}

/// A finished run: what the result hash covers, and the hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    pub exit: JobExit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Files under `out/`, by `/`-separated relative path, sorted.
    pub outputs: Vec<(String, Vec<u8>)>,
    pub fuel_used: u64,
    pub result_hash: Hash,
}

/// Why a run produced no result.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("the module is not valid for this runtime: {0}")]
    InvalidModule(String),
    #[error("the run reached the provider's wall-clock limit of {limit:?}; it has no result")]
    TimedOut { limit: Duration },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the runtime failed: {0}")]
    Engine(String),
    #[error("the manifest cannot run here: {0}")]
    Unsupported(String),
}

impl RunnerError {
    pub fn io(path: &Path, e: impl std::fmt::Display) -> RunnerError {
        RunnerError::Io { path: path.display().to_string(), reason: e.to_string() }
    }
}

/// A job runtime. Implementations must be deterministic: the same [`JobRun`] (module, inputs, arguments,
/// fuel, clock and seed) gives the same [`RunOutput`] on every machine.
pub trait JobRunner: Send + Sync {
    /// The workload kind this runner takes.
    fn kind(&self) -> WorkloadKind;
    /// The runtime names (and versions) it runs, as jobs state them (`wasi-p1`).
    fn runtimes(&self) -> &[&str];
    /// Checks that a module can run here (it compiles, it imports nothing this runtime lacks) before the
    /// provider tells the chain it has the work. Blocking.
    fn check(&self, module: &Path) -> Result<(), RunnerError> {
        let _ = module;
        Ok(())
    }
    /// Runs the job to its end. Blocking; callers run it on a thread of its own.
    fn run(&self, run: &JobRun) -> Result<RunOutput, RunnerError>;
}

/// A boxed future, so that lease runners can be used as trait objects.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A runtime for leases: long-running services from a deployment's manifest, started when the tenant's
/// manifest arrives and removed when the lease closes. `lease` is the lease's key on this provider
/// (`dseq-gseq`); everything a runner creates carries it, so leases never see each other and a restarted
/// daemon can find what runs.
pub trait LeaseRunner: Send + Sync {
    /// Starts the group's services (pulling images when the host can), returning where they answer.
    fn start<'a>(
        &'a self,
        lease: &'a str,
        group: &'a tensorgrid_types::manifest::ManifestGroup,
    ) -> BoxFuture<'a, Result<Vec<tensorgrid_types::provider_api::ServiceStatus>, RunnerError>>;
    /// What runs for a lease now.
    fn status<'a>(
        &'a self,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<Vec<tensorgrid_types::provider_api::ServiceStatus>, RunnerError>>;
    /// The last `tail` lines of every service's output, each line prefixed with its instance.
    fn logs<'a>(&'a self, lease: &'a str, tail: usize) -> BoxFuture<'a, Result<String, RunnerError>>;
    /// Stops and removes everything of a lease. Removing what is already gone is not an error.
    fn stop<'a>(&'a self, lease: &'a str) -> BoxFuture<'a, Result<(), RunnerError>>;
    /// The leases that have something running or stopped on this host.
    fn leases(&self) -> BoxFuture<'_, Result<Vec<String>, RunnerError>>;
    /// Holds every lease to its limits, run periodically: puts back network isolation a host may have lost,
    /// and stops every running instance whose disk use has outgrown the storage its service pays for, saying
    /// which. A stopped instance stays stopped (its lease's status shows it not ready) until the lease ends.
    fn enforce(&self) -> BoxFuture<'_, Result<Vec<Eviction>, RunnerError>>;
}

/// An instance stopped for using more disk than its service's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    pub lease: String,
    pub instance: String,
    pub used_bytes: u64,
    pub limit_bytes: u64,
}

/// Creates `dir/in` (with `inputs` copied in as `0`, `1`, …) and an empty `dir/out`.
pub fn prepare_inputs(dir: &Path, inputs: &[PathBuf]) -> Result<(), RunnerError> {
    let input_dir = dir.join("in");
    let output_dir = dir.join("out");
    for d in [&input_dir, &output_dir] {
        std::fs::create_dir_all(d).map_err(|e| RunnerError::io(d, e))?;
    }
    for (i, source) in inputs.iter().enumerate() {
        let target = input_dir.join(i.to_string());
        std::fs::copy(source, &target).map_err(|e| RunnerError::io(source, e))?;
    }
    Ok(())
}

/// What a program left in `dir/out`: its files, or the deterministic reason they are not a result's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collected {
    /// Every file by `/`-separated relative path, sorted.
    Files(Vec<(String, Vec<u8>)>),
    /// More bytes or entries than [`OUTPUT_LIMITS`] allow: the run ends as [`JobExit::OutputLimit`].
    OverLimit,
    /// A link, a device or an unreadable file: the run ends as [`JobExit::OutputInvalid`].
    Invalid,
}

/// Reads every file under `dir/out`, sorted by relative path. Sizes and kinds come from the entries'
/// metadata before anything is read, so a huge or sparse file is never loaded, and links are never followed
/// (a program could point one anywhere). Each verdict depends only on what the program left, so every
/// provider reaches the same one; only a failure of the provider's own disk is an error.
pub fn collect_outputs(dir: &Path) -> Result<Collected, RunnerError> {
    struct Walk<'a> {
        root: &'a Path,
        found: Vec<(String, PathBuf)>,
        bytes: u64,
        entries: u64,
    }
    fn walk(w: &mut Walk<'_>, at: &Path) -> Result<Option<Collected>, RunnerError> {
        let listing = match std::fs::read_dir(at) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Ok(Some(Collected::Invalid))
            }
            Err(e) => return Err(RunnerError::io(at, e)),
        };
        let mut entries: Vec<_> = listing.collect::<Result<_, _>>().map_err(|e| RunnerError::io(at, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            w.entries += 1;
            if w.entries > OUTPUT_LIMITS.entries {
                return Ok(Some(Collected::OverLimit));
            }
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| RunnerError::io(&path, e))?;
            if meta.is_dir() {
                if let Some(verdict) = walk(w, &path)? {
                    return Ok(Some(verdict));
                }
            } else if meta.is_file() {
                w.bytes = w.bytes.saturating_add(meta.len());
                if w.bytes > OUTPUT_LIMITS.file_bytes {
                    return Ok(Some(Collected::OverLimit));
                }
                let relative = path.strip_prefix(w.root).map_err(|e| RunnerError::io(&path, e))?;
                let Some(name) = relative
                    .components()
                    .map(|c| c.as_os_str().to_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                else {
                    // A name that is not UTF-8 cannot be named the same way everywhere.
                    return Ok(Some(Collected::Invalid));
                };
                w.found.push((name.join("/"), path));
            } else {
                return Ok(Some(Collected::Invalid));
            }
        }
        Ok(None)
    }
    let root = dir.join("out");
    let mut w = Walk { root: &root, found: Vec::new(), bytes: 0, entries: 0 };
    if let Some(verdict) = walk(&mut w, &root)? {
        return Ok(verdict);
    }
    let mut out = Vec::with_capacity(w.found.len());
    for (name, path) in w.found {
        match std::fs::read(&path) {
            Ok(bytes) => out.push((name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(Collected::Invalid),
            Err(e) => return Err(RunnerError::io(&path, e)),
        }
    }
    // Sorting by the joined path keeps the order independent of how directories nest.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Collected::Files(out))
}

/// Turns a run's exit, streams and what [`collect_outputs`] found into the result: a program that went
/// over a limit or left something invalid has exactly that as its result, with nothing else in it.
pub fn conclude(
    exit: JobExit,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    collected: Collected,
    fuel_used: u64,
) -> RunOutput {
    let streams_fit = stdout.len() as u64 <= OUTPUT_LIMITS.stream_bytes
        && stderr.len() as u64 <= OUTPUT_LIMITS.stream_bytes;
    match (exit, collected) {
        (JobExit::OutputLimit | JobExit::OutputInvalid, _) => finish(exit, vec![], vec![], vec![], fuel_used),
        (_, Collected::OverLimit) => finish(JobExit::OutputLimit, vec![], vec![], vec![], fuel_used),
        (_, Collected::Invalid) => finish(JobExit::OutputInvalid, vec![], vec![], vec![], fuel_used),
        (_, Collected::Files(_)) if !streams_fit => {
            finish(JobExit::OutputLimit, vec![], vec![], vec![], fuel_used)
        }
        (exit, Collected::Files(files)) => finish(exit, stdout, stderr, files, fuel_used),
    }
}

/// Assembles a [`RunOutput`] and its hash.
pub fn finish(
    exit: JobExit,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    outputs: Vec<(String, Vec<u8>)>,
    fuel_used: u64,
) -> RunOutput {
    let result_hash = result_hash(&exit, &stdout, &stderr, &outputs);
    RunOutput { exit, stdout, stderr, outputs, fuel_used, result_hash }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_collected_sorted_and_hashed_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("data.txt");
        std::fs::write(&input, b"input").unwrap();
        prepare_inputs(dir.path(), std::slice::from_ref(&input)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("in/0")).unwrap(), b"input");
        std::fs::create_dir_all(dir.path().join("out/sub")).unwrap();
        std::fs::write(dir.path().join("out/b.txt"), b"b").unwrap();
        std::fs::write(dir.path().join("out/sub/a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("out/a.txt"), b"aa").unwrap();
        let Collected::Files(outputs) = collect_outputs(dir.path()).unwrap() else { panic!("not files") };
        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.txt", "sub/a.txt"]);
        let one = finish(JobExit::Exited { code: 0 }, b"out".to_vec(), vec![], outputs.clone(), 10);
        let same = finish(JobExit::Exited { code: 0 }, b"out".to_vec(), vec![], outputs.clone(), 99);
        assert_eq!(one.result_hash, same.result_hash, "fuel used is not part of the result");
        let exit = finish(JobExit::Exited { code: 1 }, b"out".to_vec(), vec![], outputs.clone(), 10);
        assert_ne!(one.result_hash, exit.result_hash);
        // Moving a byte between stdout and stderr changes the hash (parts are length-prefixed).
        let moved = finish(JobExit::Exited { code: 0 }, b"ou".to_vec(), b"t".to_vec(), outputs.clone(), 10);
        assert_ne!(one.result_hash, moved.result_hash);
        let mut changed = outputs;
        changed[1].1 = b"B".to_vec();
        assert_ne!(
            one.result_hash,
            finish(JobExit::Exited { code: 0 }, b"out".to_vec(), vec![], changed, 10).result_hash
        );
    }

    fn fresh() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        prepare_inputs(dir.path(), &[]).unwrap();
        dir
    }

    #[test]
    fn a_link_in_the_outputs_is_a_result_not_an_error_and_is_never_followed() {
        let dir = fresh();
        std::fs::write(dir.path().join("secret"), b"the provider's file").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("out/link")).unwrap();
        assert_eq!(collect_outputs(dir.path()).unwrap(), Collected::Invalid);
        let run = conclude(JobExit::Exited { code: 0 }, b"x".to_vec(), vec![], Collected::Invalid, 1);
        assert_eq!(run.exit, JobExit::OutputInvalid);
        assert!(run.stdout.is_empty() && run.outputs.is_empty());
        assert_eq!(run.result_hash, finish(JobExit::OutputInvalid, vec![], vec![], vec![], 7).result_hash);
    }

    #[test]
    fn outputs_over_the_limits_are_judged_by_metadata_without_being_read() {
        let dir = fresh();
        // A sparse file of a terabyte: reading it would take the provider's memory; its size alone decides.
        let big = std::fs::File::create(dir.path().join("out/huge")).unwrap();
        big.set_len(1 << 40).unwrap();
        assert_eq!(collect_outputs(dir.path()).unwrap(), Collected::OverLimit);

        let dir = fresh();
        for i in 0..=OUTPUT_LIMITS.entries {
            std::fs::write(dir.path().join(format!("out/{i}")), b"").unwrap();
        }
        assert_eq!(collect_outputs(dir.path()).unwrap(), Collected::OverLimit);

        let fits = conclude(
            JobExit::Exited { code: 0 },
            vec![b'x'; OUTPUT_LIMITS.stream_bytes as usize + 1],
            vec![],
            Collected::Files(vec![]),
            1,
        );
        assert_eq!(fits.exit, JobExit::OutputLimit, "a stream over its limit");
    }
}
