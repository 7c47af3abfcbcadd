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

use tensorgrid_types::job::{result_hash, JobExit, JobId, WorkloadKind, MAX_RESULT_BYTES};
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
    #[error("the outputs exceed {MAX_RESULT_BYTES} bytes")]
    OutputTooLarge,
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

/// Reads every file under `dir/out`, sorted by relative path, refusing more than [`MAX_RESULT_BYTES`] in all.
/// Symbolic links are not followed (a program could point one anywhere); they are refused.
pub fn collect_outputs(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, RunnerError> {
    fn walk(
        root: &Path,
        at: &Path,
        out: &mut Vec<(String, Vec<u8>)>,
        total: &mut u64,
    ) -> Result<(), RunnerError> {
        let mut entries: Vec<_> = std::fs::read_dir(at)
            .map_err(|e| RunnerError::io(at, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| RunnerError::io(at, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| RunnerError::io(&path, e))?;
            if kind.is_dir() {
                walk(root, &path, out, total)?;
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).map_err(|e| RunnerError::io(&path, e))?;
                *total += bytes.len() as u64;
                if *total > MAX_RESULT_BYTES {
                    return Err(RunnerError::OutputTooLarge);
                }
                let relative = path.strip_prefix(root).map_err(|e| RunnerError::io(&path, e))?;
                let name: Vec<String> =
                    relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push((name.join("/"), bytes));
            } else {
                return Err(RunnerError::io(&path, "is neither a file nor a directory"));
            }
        }
        Ok(())
    }
    let root = dir.join("out");
    let mut out = Vec::new();
    let mut total = 0;
    walk(&root, &root, &mut out, &mut total)?;
    // Sorting by the joined path keeps the order independent of how directories nest.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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
        let outputs = collect_outputs(dir.path()).unwrap();
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
}
