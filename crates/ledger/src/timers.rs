//! One index of deadlines ordered by time. At the start of each block the ledger handles exactly the entries
//! whose time the block's timestamp has reached, in time order: per-block work grows with what ends in the
//! block, never with how many leases, jobs or providers exist.

use borsh::{BorshDeserialize, BorshSerialize};
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::job::JobId;
use tensorgrid_types::market::{Dseq, OrderId};
use tensorgrid_types::{codec, Address, Timestamp};

use crate::error::{ExecResult, LedgerError};
use crate::keys;
use crate::state::{decode_stored, State};
use crate::store::Store;

/// What a deadline is for. At equal times, entries run in declaration order: a silent provider's leases are
/// closed (and stop accruing) before any escrow is judged dry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) enum Timer {
    ProviderLiveness(Address),
    Unbonding(Address),
    EscrowDry(Dseq),
    OrderWindow(OrderId),
    JobBidWindow(JobId),
    /// A job slot's current deadline: confirming the content, then committing.
    JobSlot(JobId, u32),
    JobReveal(JobId),
    JobChallenge(JobId),
    ChannelClose(tensorgrid_types::channel::ChannelId),
    /// A closed record's retention period ended: it is removed and its storage deposit refunded.
    RemoveRecord(StoredRecord),
    /// The notice period after an offer was withdrawn has run: its remembered price is forgotten.
    ForgetModelPrice(tensorgrid_types::Hash, Address),
    /// A committee seat's commit deadline.
    CommitteeSeat(tensorgrid_types::committee::CommitteeId, u32),
    /// A committee round's reveal deadline.
    CommitteeReveal(tensorgrid_types::committee::CommitteeId),
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn set_timer(&mut self, at: Timestamp, timer: Timer) {
        self.put_raw(keys::timer(at.millis(), &codec::encode(&timer)), Vec::new());
    }

    pub(crate) fn clear_timer(&mut self, at: Timestamp, timer: Timer) {
        self.delete(keys::timer(at.millis(), &codec::encode(&timer)));
    }

    /// Every deadline the block's time has reached, in time order, found in one forward pass that stops at the
    /// first deadline still in the future.
    pub(crate) fn due_timers(&self) -> ExecResult<Vec<(Vec<u8>, Timestamp, Timer)>> {
        let now = self.now;
        let mut due = Vec::new();
        let mut corrupt = None;
        self.visit(keys::TIMER, None, |key, _| {
            let rest = key.get(keys::TIMER.len()..).unwrap_or_default();
            let Some((time_bytes, kind)) = rest.split_at_checked(8) else {
                corrupt = Some(key.to_vec());
                return false;
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(time_bytes);
            let at = Timestamp(u64::from_be_bytes(be));
            if at > now {
                return false;
            }
            match decode_stored::<Timer>(key, kind) {
                Ok(timer) => due.push((key.to_vec(), at, timer)),
                Err(_) => {
                    corrupt = Some(key.to_vec());
                    return false;
                }
            }
            true
        })?;
        if let Some(key) = corrupt {
            return Err(LedgerError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "malformed timer entry".into(),
            }
            .into());
        }
        Ok(due)
    }
}
