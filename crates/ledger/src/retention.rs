//! Storage deposits and record retention: what keeps the state from growing with everything that ever
//! happened.
//!
//! Whoever creates a deployment, a job or a channel locks `storage_deposit` with it. When the record closes,
//! a removal is scheduled `record_retention_ms` later (long enough for providers, clients and explorers to
//! read the outcome); at that deadline the record and everything filed under it (a deployment's orders,
//! bids and leases; a job's bids and referee committees) are deleted and the deposit goes back to its owner. The events that
//! described the record stay in the node's block index, which is not part of the state. Records that still
//! hold funds (an active deployment, a disputed job, an open channel) are never scheduled.

use tensorgrid_types::channel::Channel;
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::job::Job;
use tensorgrid_types::market::Deployment;
use tensorgrid_types::{Address, Amount, Event};

use crate::bank::Module;
use crate::error::{invariant, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

impl<S: Store + ?Sized> State<'_, S> {
    /// Locks the storage deposit for a new record from its creator, returning what was locked.
    pub(crate) fn lock_storage_deposit(&mut self, owner: &Address) -> ExecResult<Amount> {
        let deposit = self.params.storage_deposit;
        self.lock(owner, Module::Storage, deposit)?;
        Ok(deposit)
    }

    /// Schedules a record that just closed for removal once its retention period is over.
    pub(crate) fn schedule_removal(&mut self, record: StoredRecord) {
        let at = self.now.plus(self.params.record_retention_ms);
        self.set_timer(at, Timer::RemoveRecord(record));
    }

    /// A retention period ended: deletes the record and what is filed under it, and refunds the deposit.
    pub(crate) fn on_removal_due(&mut self, record: StoredRecord) -> ExecResult<()> {
        let (owner, refund) = match record {
            StoredRecord::Deployment(dseq) => {
                let Some(deployment) = self.get::<Deployment>(&keys::deployment(dseq))? else {
                    return Ok(());
                };
                if deployment.state == tensorgrid_types::market::DeploymentState::Active {
                    return Err(invariant(format!("active deployment {dseq} was due for removal")).into());
                }
                for prefix in [keys::orders_of(dseq), keys::bids_of_deployment(dseq), keys::leases_of(dseq)] {
                    self.delete_all(&prefix)?;
                }
                self.delete(keys::ix_deployment_by_owner(&deployment.owner, dseq));
                self.delete(keys::deployment(dseq));
                (deployment.owner, deployment.storage_deposit)
            }
            StoredRecord::Job(id) => {
                let Some(job) = self.get::<Job>(&keys::job(id))? else { return Ok(()) };
                if !job.state.is_final() {
                    return Err(invariant(format!("unfinished job {id} was due for removal")).into());
                }
                self.delete_all(&keys::job_bids_of(id))?;
                for committee in &job.checks {
                    self.delete(keys::committee(*committee));
                }
                self.delete(keys::job(id));
                (job.client, job.storage_deposit)
            }
            StoredRecord::Channel(id) => {
                let Some(channel) = self.get::<Channel>(&keys::channel(id))? else { return Ok(()) };
                if !matches!(channel.state, tensorgrid_types::channel::ChannelState::Closed { .. }) {
                    return Err(invariant(format!("open channel {id} was due for removal")).into());
                }
                self.delete(keys::channel(id));
                (channel.client, channel.storage_deposit)
            }
        };
        self.release_from(Module::Storage, &owner, refund)?;
        self.emit(Event::RecordRemoved { record, owner, refunded: refund });
        Ok(())
    }

    /// Deletes every entry under `prefix`.
    fn delete_all(&mut self, prefix: &[u8]) -> ExecResult<()> {
        let keys: Vec<Vec<u8>> =
            self.scan(prefix, None, usize::MAX)?.into_iter().map(|(key, _)| key).collect();
        for key in keys {
            self.delete(key);
        }
        Ok(())
    }
}
