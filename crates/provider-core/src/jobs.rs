//! The book of jobs this provider won or referees: where each one is in its life, and the record that must
//! survive a restart (the salt behind a commitment, the result) — persisted before the commitment is sent.
//!
//! A committee seat is a job entry too: the member receives the same content, runs it with the same runner
//! and commits and reveals with the same messages (the chain routes them to its seat). It has no
//! confirmation step; its commit deadline comes with the draw.

use serde::{Deserialize, Serialize};
use tensorgrid_types::committee::CommitteeId;
use tensorgrid_types::job::{Job, JobExit, JobId};
use tensorgrid_types::provider_api::JobRunState;
use tensorgrid_types::{Address, Hash, Timestamp};

/// What is kept on disk about a job this provider ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: JobId,
    pub result_hash: Hash,
    /// The commitment's salt, hex; revealed only in the reveal transaction.
    pub salt: String,
    pub exit: JobExit,
    pub fuel_used: u64,
    pub committed: bool,
    pub revealed: bool,
    /// Set when this provider ran the job as a member of this committee rather than as a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referee: Option<CommitteeId>,
}

impl JobRecord {
    pub fn salt_bytes(&self) -> Option<[u8; 32]> {
        let mut salt = [0u8; 32];
        hex::decode_to_slice(&self.salt, &mut salt).ok()?;
        Some(salt)
    }

    pub fn finished(&self) -> JobRunState {
        JobRunState::Finished { result_hash: self.result_hash, exit: self.exit, fuel_used: self.fuel_used }
    }
}

/// Where an assigned job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the client's upload.
    AwaitingContent,
    /// The runner is checking the module.
    Checking,
    /// The confirmation is on its way to the chain.
    Confirming,
    /// Running, with the commit deadline the chain set.
    Running { commit_deadline: Timestamp },
    /// Ran; the record is persisted. Commit and reveal follow.
    Finished,
    /// Gave up; the chain replaces this provider (at no cost before the confirmation).
    Failed,
}

/// A job this provider was assigned.
#[derive(Clone, Debug)]
pub struct JobEntry {
    pub job: Job,
    /// What the provider API reports (and whom it serves uploads and outputs for).
    pub state: JobRunState,
    pub record: Option<JobRecord>,
    pub(crate) phase: Phase,
    /// The chain's commit deadline, once confirmed (or read from the slot after a restart).
    pub(crate) commit_deadline: Option<Timestamp>,
    /// The reveal phase has started on chain.
    pub(crate) reveal_open: bool,
    /// A commit or reveal transaction is on its way.
    pub(crate) sending: bool,
    /// Whether the job's resources are counted as held.
    pub(crate) holds: bool,
    /// The committee this provider sits on for the job, when it referees rather than works.
    pub referee: Option<CommitteeId>,
}

impl JobEntry {
    /// A job just won (or a committee seat just drawn), holding its resources while the content comes.
    pub(crate) fn awaiting_content(
        job: Job,
        commit_deadline: Option<Timestamp>,
        referee: Option<CommitteeId>,
    ) -> JobEntry {
        JobEntry {
            job,
            state: JobRunState::WaitingForContent,
            record: None,
            phase: Phase::AwaitingContent,
            commit_deadline,
            reveal_open: false,
            sending: false,
            holds: true,
            referee,
        }
    }

    pub fn client(&self) -> Address {
        self.job.client
    }

    /// The module and inputs, by hash.
    pub fn content(&self) -> Vec<Hash> {
        self.job.spec.content()
    }

    /// Whether this job counts against `max_jobs`.
    pub fn active(&self) -> bool {
        matches!(self.state, JobRunState::WaitingForContent | JobRunState::Running)
    }
}

/// The seed of a job's randomness: the same for every provider of the job, fixed by the chain.
pub fn job_seed(job: &Job) -> Hash {
    Hash::of_parts(&[
        b"tensorgrid/job-seed",
        &job.id.to_le_bytes(),
        job.client.as_bytes(),
        &job.created_at.millis().to_le_bytes(),
    ])
}
