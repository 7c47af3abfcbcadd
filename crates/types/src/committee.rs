//! Referee committees: the one mechanism that settles job disputes, random audits and disagreements (and,
//! later, inference fraud claims and training verdicts).
//!
//! A committee draws members from eligible providers (opted in, able to run the work, never a party to it),
//! weighted by bonded stake, with block randomness. Each member locks a deposit out of its stake, runs the work
//! and commits to `blake3(vote ‖ member ‖ salt)`, then reveals; a vote is a result hash, or
//! [`unavailable_vote`] when the member could not get the content a party had to serve. A round's verdict is
//! a vote more than half of the round's seats revealed. Without one the next round draws new members, up to a
//! bound; after the last round there is no verdict and the work's own rule returns everything.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::{Address, Hash};
use crate::job::JobId;
use crate::time::Timestamp;

pub type CommitteeId = u64;

/// What the committee checks, and so whose rule settles its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckSubject {
    Job { job: JobId },
}

/// Why the check was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A random audit of agreeing or single results: one member, escalated to a full committee when it
    /// disagrees. Paid from the audit pool.
    Audit,
    /// The job's k results differ. Paid from the audit pool.
    Disagreement,
    /// The client disputed a single result, paying with its dispute deposit.
    Dispute,
}

/// Who prepaid the members' fees, and so who the losing side reimburses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", content = "address", rename_all = "snake_case")]
pub enum Funder {
    /// A party's deposit (a client's dispute).
    Party(Address),
    /// The audit pool, which every job's audit fee fills.
    AuditPool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatState {
    /// Drawn: must commit by `commit_deadline`.
    Committing,
    Committed,
    Revealed,
    /// Did not commit in time: deposit forfeited, replaced by a new draw.
    MissedCommit,
    /// Committed but did not reveal in time: deposit forfeited.
    MissedReveal,
}

/// One member's place on the committee.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Seat {
    pub provider: Address,
    /// The round it was drawn for, from 1.
    pub round: u8,
    /// Locked out of the member's stake while it sits; returned when its vote matches the verdict (or there
    /// is none), forfeited to the members who matched when it differs or the member stays silent.
    pub deposit: Amount,
    pub commit_deadline: Timestamp,
    pub commitment: Option<Hash>,
    pub vote: Option<Hash>,
    pub state: SeatState,
    /// The fee it was paid, once the committee concluded.
    #[serde(default)]
    pub paid: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum CommitteePhase {
    /// Members run the work and commit.
    Committing,
    /// Every seated member committed; reveals are due by `reveal_deadline`.
    Revealing,
    /// Settled: `verdict` is the vote a majority revealed, or none after the last round.
    Concluded { verdict: Option<Hash> },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Committee {
    pub id: CommitteeId,
    pub subject: CheckSubject,
    pub kind: CheckKind,
    /// The runtime a member must support.
    pub runtime: String,
    /// Parties to the work, never drawn: the client and every provider assigned to it.
    pub excluded: Vec<Address>,
    pub funder: Funder,
    /// Paid to each member whose reveal counts (matched the verdict, or revealed when there is none).
    pub fee: Amount,
    /// What the funder prepaid and is not yet spent: fees to pay, and for a party the rest of its deposit.
    pub reserve: Amount,
    /// Deposits forfeited by silent members so far, for the members who match the verdict.
    pub forfeited: Amount,
    /// Set for an audit: its one-member first round decides only when it confirms this result; otherwise
    /// the check escalates to a full committee.
    pub confirms: Option<Hash>,
    /// Seats per full round.
    pub size: u8,
    /// Members drawn for the current round (fewer than its size when fewer were eligible): a verdict is a
    /// vote more than half of them revealed. Replacements of silent members do not change it.
    #[serde(default)]
    pub round_seats: u8,
    pub round: u8,
    pub max_rounds: u8,
    pub commit_window_ms: u64,
    pub reveal_window_ms: u64,
    /// Every seat of every round, replaced ones included.
    pub seats: Vec<Seat>,
    pub phase: CommitteePhase,
    pub reveal_deadline: Option<Timestamp>,
    pub opened_at: Timestamp,
    pub concluded_at: Option<Timestamp>,
    /// Fees paid to members in all.
    pub fees_paid: Amount,
}

impl SeatState {
    /// Still holds its place in its round (not replaced, not silent).
    pub fn is_seated(&self) -> bool {
        matches!(self, SeatState::Committing | SeatState::Committed | SeatState::Revealed)
    }
}

impl Committee {
    /// Seats of the current round that still count (not replaced).
    pub fn live_seats(&self) -> impl Iterator<Item = &Seat> {
        self.seats.iter().filter(move |s| s.round == self.round && s.state.is_seated())
    }

    /// How many seats the current round is meant to have: one for an audit's first round, `size` otherwise.
    pub fn round_size(&self) -> u8 {
        if self.confirms.is_some() && self.round == 1 {
            1
        } else {
            self.size
        }
    }

    /// Votes the current round needs for a verdict: more than half of the members drawn for it.
    pub fn majority(&self) -> usize {
        usize::from(self.round_seats.max(1)) / 2 + 1
    }

    pub fn verdict(&self) -> Option<Hash> {
        match self.phase {
            CommitteePhase::Concluded { verdict } => verdict,
            _ => None,
        }
    }
}

/// The vote of a member that could not get the content `party` had to serve. A majority of such votes
/// decides against `party` as if it had lied.
pub fn unavailable_vote(party: &Address) -> Hash {
    Hash::of_parts(&[b"tensorgrid/content-unavailable", party.as_bytes()])
}
