//! One index of deadlines ordered by time. At the start of each block the ledger handles exactly the entries
//! whose time the block's timestamp has reached, in time order: per-block work grows with what ends in the
//! block, never with how many leases, jobs or providers exist.

use borsh::{BorshDeserialize, BorshSerialize};
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
    JobCommit(JobId, u32),
    JobReveal(JobId),
    JobChallenge(JobId),
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn set_timer(&mut self, at: Timestamp, timer: Timer) {
        self.put_raw(keys::timer(at.millis(), &codec::encode(&timer)), Vec::new());
    }

    pub(crate) fn clear_timer(&mut self, at: Timestamp, timer: Timer) {
        self.delete(keys::timer(at.millis(), &codec::encode(&timer)));
    }

    /// Removes and returns the earliest deadline if the block's time has reached it.
    pub(crate) fn pop_due_timer(&mut self) -> ExecResult<Option<(Timestamp, Timer)>> {
        let Some((key, _)) = self.scan(keys::TIMER, None, 1)?.into_iter().next() else {
            return Ok(None);
        };
        let rest = key.get(keys::TIMER.len()..).unwrap_or_default();
        let (time_bytes, kind) = rest.split_at_checked(8).ok_or_else(|| LedgerError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: "timer key too short".into(),
        })?;
        let mut be = [0u8; 8];
        be.copy_from_slice(time_bytes);
        let at = Timestamp(u64::from_be_bytes(be));
        if at > self.now {
            return Ok(None);
        }
        let timer: Timer = decode_stored(&key, kind)?;
        self.delete(key);
        Ok(Some((at, timer)))
    }
}
