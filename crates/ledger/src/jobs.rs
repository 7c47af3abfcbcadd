//! One-shot jobs with k-redundancy and commit–reveal.
//!
//! Bidding window → the k cheapest bids from live providers win (ties by block randomness) → each winner
//! confirms on chain that it received the module and inputs (which the client must upload), or is replaced
//! by the next-cheapest bid at no cost to it → from its confirmation each winner commits
//! `blake3(result ‖ provider ‖ salt)` within the run timeout, or is replaced and forfeits its deposit to the
//! client → once every winner committed, all reveal → equal results are paid (each winner its own bid),
//! different results are a dispute with the funds held. A single result waits out a challenge period in which
//! the client may dispute it.
//!
//! A deposit is forfeited only by a provider that verifiably had the work (its own confirmation is on
//! chain) and a run timeout the chain checked is long enough for the job's fuel: a client can neither
//! withhold its content nor set an impossible limit to take deposits.

use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::job::{
    result_commitment, Job, JobBid, JobBidState, JobFailure, JobId, JobSlot, JobSpec, JobState, SlotState,
};
use tensorgrid_types::market::LiveBid;
use tensorgrid_types::{Address, Amount, Event, Hash, TxError};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn job(&self, id: JobId) -> ExecResult<Option<Job>> {
        Ok(self.get(&keys::job(id))?)
    }

    fn must_job(&self, id: JobId) -> ExecResult<Job> {
        Ok(self.job(id)?.ok_or(TxError::JobNotFound { job: id })?)
    }

    fn put_job(&mut self, job: &Job) {
        self.put(keys::job(job.id), job);
    }

    fn job_bid(&self, job: JobId, provider: &Address) -> ExecResult<Option<JobBid>> {
        Ok(self.get(&keys::job_bid(job, provider))?)
    }

    fn set_job_bid_state(
        &mut self,
        job: JobId,
        provider: &Address,
        state: JobBidState,
    ) -> ExecResult<JobBid> {
        let mut bid = self
            .job_bid(job, provider)?
            .ok_or_else(|| invariant(format!("job {job} bid of {provider} has no record")))?;
        bid.state = state;
        self.put(keys::job_bid(job, provider), &bid);
        Ok(bid)
    }

    fn expect_state(job: &Job, expected: JobState, name: &str) -> ExecResult<()> {
        if job.state != expected {
            return Err(
                TxError::JobWrongState { job: job.id, state: job.state, expected: name.into() }.into()
            );
        }
        Ok(())
    }

    // --- transactions

    pub(crate) fn submit_job(&mut self, client: Address, spec: JobSpec) -> ExecResult<()> {
        if spec.redundancy > self.params.max_redundancy {
            return Err(TxError::RedundancyTooHigh {
                requested: spec.redundancy,
                max: self.params.max_redundancy,
            }
            .into());
        }
        let (min, max) = (self.params.min_job_window_ms, self.params.max_job_window_ms);
        for (field, value) in [
            ("bid_window_ms", spec.bid_window_ms),
            ("run_timeout_ms", spec.run_timeout_ms),
            ("reveal_window_ms", spec.reveal_window_ms),
        ] {
            if value < min || value > max {
                return Err(TxError::WindowOutOfRange { field: field.into(), value, min, max }.into());
            }
        }
        let needed_ms = self.params.min_run_timeout_ms(spec.max_fuel);
        if spec.run_timeout_ms < needed_ms {
            return Err(TxError::RunTimeoutTooShort {
                run_timeout_ms: spec.run_timeout_ms,
                max_fuel: spec.max_fuel,
                needed_ms,
            }
            .into());
        }
        self.lock(&client, Module::Jobs, spec.budget)?;
        let storage_deposit = self.lock_storage_deposit(&client)?;
        let id = self.next_seq(keys::SEQ_JOB)?;
        let now = self.now;
        let bid_deadline = now.plus(spec.bid_window_ms);
        let budget = spec.budget;
        let job = Job {
            id,
            client,
            spec,
            state: JobState::Bidding,
            created_at: now,
            bid_deadline,
            reveal_deadline: None,
            challenge_deadline: None,
            slots: Vec::new(),
            live_bids: Vec::new(),
            held: budget,
            paid: Amount::ZERO,
            finished_at: None,
            storage_deposit,
        };
        self.put_job(&job);
        self.put_raw(keys::ix_open_job(id), Vec::new());
        self.set_timer(bid_deadline, Timer::JobBidWindow(id));
        self.emit(Event::JobSubmitted { job: id, client, budget });
        Ok(())
    }

    pub(crate) fn bid_job(&mut self, signer: Address, job_id: JobId, price: Amount) -> ExecResult<()> {
        self.live_provider(&signer)?;
        let mut job = self.must_job(job_id)?;
        Self::expect_state(&job, JobState::Bidding, "bidding")?;
        let max = job.spec.max_bid();
        if price > max {
            return Err(TxError::JobBidTooHigh { price, max }.into());
        }
        if self.job_bid(job_id, &signer)?.is_some() {
            return Err(TxError::DuplicateJobBid { job: job_id }.into());
        }
        let room = LiveBid::make_room(&mut job.live_bids, self.params.max_bids_per_job as usize, price);
        if let Some(evicted) = room.map_err(|worst| TxError::BidNotCompetitive { price, worst })? {
            self.return_job_bid(job_id, &evicted.provider)?;
        }
        let deposit = self.params.job_bid_deposit;
        self.lock(&signer, Module::BidDeposits, deposit)?;
        let bid = JobBid {
            job: job_id,
            provider: signer,
            price,
            deposit,
            state: JobBidState::Open,
            created_at: self.now,
        };
        self.put(keys::job_bid(job_id, &signer), &bid);
        job.live_bids.push(LiveBid { provider: signer, price });
        self.put_job(&job);
        self.emit(Event::JobBid { job: job_id, provider: signer, price });
        Ok(())
    }

    /// The provider holds the module and inputs: from now on it must commit within the run timeout.
    pub(crate) fn confirm_job_content(&mut self, signer: Address, job_id: JobId) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        Self::expect_state(&job, JobState::Running, "running")?;
        let index = Self::live_slot_of(&job, &signer)?;
        let now = self.now;
        let run_timeout = job.spec.run_timeout_ms;
        let slot = Self::slot_mut(&mut job, index)?;
        if slot.state != SlotState::AwaitingContent {
            return Err(TxError::ContentAlreadyConfirmed { job: job_id }.into());
        }
        let content_deadline = slot.content_deadline;
        let commit_deadline = now.plus(run_timeout);
        slot.state = SlotState::Running;
        slot.commit_deadline = Some(commit_deadline);
        self.clear_timer(content_deadline, Timer::JobSlot(job_id, index as u32));
        self.set_timer(commit_deadline, Timer::JobSlot(job_id, index as u32));
        self.emit(Event::JobStarted { job: job_id, provider: signer, commit_deadline });
        self.put_job(&job);
        Ok(())
    }

    pub(crate) fn commit_result(
        &mut self,
        signer: Address,
        job_id: JobId,
        commitment: Hash,
    ) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        Self::expect_state(&job, JobState::Running, "running")?;
        let index = Self::live_slot_of(&job, &signer)?;
        let slot = Self::slot_mut(&mut job, index)?;
        match slot.state {
            SlotState::Running => {}
            SlotState::AwaitingContent => return Err(TxError::ContentNotConfirmed { job: job_id }.into()),
            _ => return Err(TxError::AlreadyCommitted { job: job_id }.into()),
        }
        slot.commitment = Some(commitment);
        slot.state = SlotState::Committed;
        let deadline =
            slot.commit_deadline.ok_or_else(|| invariant("a running slot has no commit deadline"))?;
        self.clear_timer(deadline, Timer::JobSlot(job_id, index as u32));
        self.emit(Event::JobCommitted { job: job_id, provider: signer });
        self.maybe_start_reveal(&mut job)?;
        self.put_job(&job);
        Ok(())
    }

    pub(crate) fn reveal_result(
        &mut self,
        signer: Address,
        job_id: JobId,
        result_hash: Hash,
        salt: [u8; 32],
    ) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        Self::expect_state(&job, JobState::Revealing, "revealing")?;
        let index = Self::live_slot_of(&job, &signer)?;
        let slot = Self::slot_mut(&mut job, index)?;
        if slot.state != SlotState::Committed {
            return Err(TxError::AlreadyRevealed { job: job_id }.into());
        }
        if slot.commitment != Some(result_commitment(&result_hash, &signer, &salt)) {
            return Err(TxError::CommitmentMismatch { job: job_id }.into());
        }
        slot.result = Some(result_hash);
        slot.state = SlotState::Revealed;
        self.slot_done(&signer, false)?;
        self.emit(Event::JobRevealed { job: job_id, provider: signer, result_hash });
        if job.slots.iter().filter(|s| s.state.is_live()).all(|s| s.state == SlotState::Revealed) {
            if let Some(deadline) = job.reveal_deadline {
                self.clear_timer(deadline, Timer::JobReveal(job_id));
            }
            self.finish_reveals(&mut job)?;
        }
        self.put_job(&job);
        Ok(())
    }

    pub(crate) fn cancel_job(&mut self, signer: Address, job_id: JobId) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        if signer != job.client {
            return Err(TxError::NotOwner { signer, owner: job.client, what: format!("job {job_id}") }.into());
        }
        Self::expect_state(&job, JobState::Bidding, "bidding")?;
        self.clear_timer(job.bid_deadline, Timer::JobBidWindow(job_id));
        self.delete(keys::ix_open_job(job_id));
        self.return_live_bids(&mut job)?;
        let refunded = self.refund_held(&mut job)?;
        job.state = JobState::Cancelled;
        job.finished_at = Some(self.now);
        self.schedule_removal(StoredRecord::Job(job_id));
        self.put_job(&job);
        self.emit(Event::JobCancelled { job: job_id, refunded });
        Ok(())
    }

    pub(crate) fn dispute_job(&mut self, signer: Address, job_id: JobId) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        if signer != job.client {
            return Err(TxError::NotOwner { signer, owner: job.client, what: format!("job {job_id}") }.into());
        }
        Self::expect_state(&job, JobState::Challenge, "in its challenge period")?;
        if let Some(deadline) = job.challenge_deadline {
            self.clear_timer(deadline, Timer::JobChallenge(job_id));
        }
        self.hold_for_dispute(&mut job)?;
        self.put_job(&job);
        Ok(())
    }

    // --- deadlines

    /// Bidding closed: assign the k cheapest bids from live providers, or fail the job if there are fewer.
    pub(crate) fn on_job_bid_window_due(&mut self, job_id: JobId) -> ExecResult<()> {
        let Some(mut job) = self.job(job_id)? else { return Ok(()) };
        if job.state != JobState::Bidding || job.bid_deadline > self.now {
            return Ok(());
        }
        self.delete(keys::ix_open_job(job_id));
        let needed = job.spec.redundancy;
        let mut winners = Vec::new();
        while winners.len() < usize::from(needed) {
            match self.take_cheapest_live_bid(&mut job) {
                Some(bid) => winners.push(bid),
                None => break,
            }
        }
        if winners.len() < usize::from(needed) {
            job.live_bids.extend(winners.iter().copied());
            let reason = JobFailure::NotEnoughBids { got: winners.len() as u8, needed };
            self.fail_job(&mut job, reason)?;
        } else {
            for bid in winners {
                self.assign_slot(&mut job, bid)?;
            }
            job.state = JobState::Running;
        }
        self.put_job(&job);
        Ok(())
    }

    /// A slot's deadline passed. Without a confirmation of the content, the slot lapses at no cost to its
    /// provider (the chain cannot tell who failed to move the content); after one, a missing commitment
    /// forfeits the provider's deposit to the client. Either way the next-cheapest bid takes its place.
    pub(crate) fn on_job_slot_due(&mut self, job_id: JobId, index: u32) -> ExecResult<()> {
        let Some(mut job) = self.job(job_id)? else { return Ok(()) };
        let index = index as usize;
        let now = self.now;
        let Some(slot) = job.slots.get(index).filter(|_| job.state == JobState::Running) else {
            return Ok(());
        };
        let provider = slot.provider;
        match slot.state {
            SlotState::AwaitingContent if slot.content_deadline <= now => {
                Self::slot_mut(&mut job, index)?.state = SlotState::ContentUnavailable;
                let bid = self.set_job_bid_state(job.id, &provider, JobBidState::Returned)?;
                self.release_from(Module::BidDeposits, &provider, bid.deposit)?;
                self.slot_done(&provider, false)?;
                self.emit(Event::JobContentUnavailable { job: job.id, provider });
            }
            SlotState::Running if slot.commit_deadline.is_some_and(|d| d <= now) => {
                Self::slot_mut(&mut job, index)?.state = SlotState::MissedCommit;
                self.forfeit(&job, &provider)?;
            }
            _ => return Ok(()),
        }
        if let Some(bid) = self.take_cheapest_live_bid(&mut job) {
            self.assign_slot(&mut job, bid)?;
        }
        if !job.slots.iter().any(|s| s.state.is_live()) {
            let reason = if job.slots.iter().all(|s| s.state == SlotState::ContentUnavailable) {
                JobFailure::ContentUnavailable
            } else {
                JobFailure::NoResults
            };
            self.fail_job(&mut job, reason)?;
        } else {
            self.maybe_start_reveal(&mut job)?;
        }
        self.put_job(&job);
        Ok(())
    }

    /// The reveal window closed: whoever committed but did not reveal forfeits its deposit; the rest decide.
    pub(crate) fn on_job_reveal_due(&mut self, job_id: JobId) -> ExecResult<()> {
        let Some(mut job) = self.job(job_id)? else { return Ok(()) };
        if job.state != JobState::Revealing || job.reveal_deadline.is_none_or(|t| t > self.now) {
            return Ok(());
        }
        let mut missed = Vec::new();
        for slot in job.slots.iter_mut().filter(|s| s.state == SlotState::Committed) {
            slot.state = SlotState::MissedReveal;
            missed.push(slot.provider);
        }
        for provider in missed {
            self.forfeit(&job, &provider)?;
        }
        self.finish_reveals(&mut job)?;
        self.put_job(&job);
        Ok(())
    }

    /// Nobody disputed the single result in time: pay it.
    pub(crate) fn on_job_challenge_due(&mut self, job_id: JobId) -> ExecResult<()> {
        let Some(mut job) = self.job(job_id)? else { return Ok(()) };
        if job.state != JobState::Challenge || job.challenge_deadline.is_none_or(|t| t > self.now) {
            return Ok(());
        }
        self.pay_job(&mut job)?;
        self.put_job(&job);
        Ok(())
    }

    // --- internals

    fn slot_mut(job: &mut Job, index: usize) -> ExecResult<&mut JobSlot> {
        let id = job.id;
        job.slots.get_mut(index).ok_or_else(|| invariant(format!("job {id} has no slot {index}")).into())
    }

    fn live_slot_of(job: &Job, provider: &Address) -> ExecResult<usize> {
        job.slots
            .iter()
            .position(|s| s.provider == *provider && s.state.is_live())
            .ok_or_else(|| TxError::NotAssigned { job: job.id, provider: *provider }.into())
    }

    /// Removes and returns the cheapest live bid whose provider may still take work (ties by block randomness).
    fn take_cheapest_live_bid(&mut self, job: &mut Job) -> Option<LiveBid> {
        let context = job.id.to_be_bytes();
        let best = job
            .live_bids
            .iter()
            .filter(|b| self.live_provider(&b.provider).is_ok())
            .min_by_key(|b| (b.price, self.tiebreak(&context, &b.provider), b.provider))
            .copied()?;
        job.live_bids.retain(|b| b.provider != best.provider);
        Some(best)
    }

    fn assign_slot(&mut self, job: &mut Job, bid: LiveBid) -> ExecResult<()> {
        let now = self.now;
        let content_deadline = now.plus(self.params.job_content_window_ms);
        let index = job.slots.len() as u32;
        job.slots.push(JobSlot {
            provider: bid.provider,
            price: bid.price,
            assigned_at: now,
            content_deadline,
            commit_deadline: None,
            commitment: None,
            result: None,
            state: SlotState::AwaitingContent,
        });
        self.set_job_bid_state(job.id, &bid.provider, JobBidState::Assigned)?;
        let mut provider =
            self.provider(&bid.provider)?.ok_or_else(|| invariant("assigned provider vanished"))?;
        provider.active_job_slots =
            provider.active_job_slots.checked_add(1).ok_or_else(|| overflow("job slot count"))?;
        self.put_provider(&provider);
        self.set_timer(content_deadline, Timer::JobSlot(job.id, index));
        self.emit(Event::JobAssigned {
            job: job.id,
            provider: bid.provider,
            price: bid.price,
            content_deadline,
        });
        Ok(())
    }

    /// A provider's slot stopped working (revealed or missed a deadline).
    fn slot_done(&mut self, address: &Address, missed: bool) -> ExecResult<()> {
        let mut provider = self.provider(address)?.ok_or_else(|| invariant("slot provider vanished"))?;
        provider.active_job_slots =
            provider.active_job_slots.checked_sub(1).ok_or_else(|| invariant("job slot count underflow"))?;
        if missed {
            provider.jobs_missed = provider.jobs_missed.saturating_add(1);
        }
        self.put_provider(&provider);
        Ok(())
    }

    /// A missed deadline: the provider's bid deposit goes to the client.
    fn forfeit(&mut self, job: &Job, provider: &Address) -> ExecResult<()> {
        let bid = self.set_job_bid_state(job.id, provider, JobBidState::Forfeited)?;
        self.release_from(Module::BidDeposits, &job.client, bid.deposit)?;
        self.slot_done(provider, true)?;
        self.emit(Event::JobDeadlineMissed { job: job.id, provider: *provider, forfeited: bid.deposit });
        Ok(())
    }

    fn return_job_bid(&mut self, job: JobId, provider: &Address) -> ExecResult<()> {
        let bid = self.set_job_bid_state(job, provider, JobBidState::Returned)?;
        self.release_from(Module::BidDeposits, provider, bid.deposit)?;
        self.emit(Event::JobBidReturned { job, provider: *provider });
        Ok(())
    }

    fn return_live_bids(&mut self, job: &mut Job) -> ExecResult<()> {
        for bid in std::mem::take(&mut job.live_bids) {
            self.return_job_bid(job.id, &bid.provider)?;
        }
        Ok(())
    }

    fn refund_held(&mut self, job: &mut Job) -> ExecResult<Amount> {
        let refund = job.held;
        self.release_from(Module::Jobs, &job.client, refund)?;
        job.held = Amount::ZERO;
        Ok(refund)
    }

    /// Once every live slot has committed, nobody can copy anyone: reveals may start. Bids that were kept for
    /// replacements are no longer needed.
    fn maybe_start_reveal(&mut self, job: &mut Job) -> ExecResult<()> {
        let mut live = job.slots.iter().filter(|s| s.state.is_live()).peekable();
        if live.peek().is_none() || !live.all(|s| s.state == SlotState::Committed) {
            return Ok(());
        }
        let deadline = self.now.plus(job.spec.reveal_window_ms);
        job.state = JobState::Revealing;
        job.reveal_deadline = Some(deadline);
        self.set_timer(deadline, Timer::JobReveal(job.id));
        self.return_live_bids(job)?;
        self.emit(Event::JobRevealStarted { job: job.id, deadline });
        Ok(())
    }

    fn finish_reveals(&mut self, job: &mut Job) -> ExecResult<()> {
        let results: Vec<Hash> =
            job.slots.iter().filter(|s| s.state == SlotState::Revealed).filter_map(|s| s.result).collect();
        match results.as_slice() {
            [] => self.fail_job(job, JobFailure::NoResults),
            [_] => {
                let deadline = self.now.plus(self.params.challenge_period_ms);
                job.state = JobState::Challenge;
                job.challenge_deadline = Some(deadline);
                self.set_timer(deadline, Timer::JobChallenge(job.id));
                self.emit(Event::JobChallengeStarted { job: job.id, deadline });
                Ok(())
            }
            [first, rest @ ..] if rest.iter().all(|r| r == first) => self.pay_job(job),
            _ => self.hold_for_dispute(job),
        }
    }

    /// Results disagree (or the client disputed): budget and the revealers' deposits stay held for a referee.
    fn hold_for_dispute(&mut self, job: &mut Job) -> ExecResult<()> {
        for slot in job.slots.iter().filter(|s| s.state == SlotState::Revealed) {
            self.set_job_bid_state(job.id, &slot.provider, JobBidState::Held)?;
        }
        job.state = JobState::Disputed;
        self.emit(Event::JobDisputed { job: job.id });
        Ok(())
    }

    /// Pays each revealed slot its own bid, returns their deposits and refunds the rest of the budget.
    fn pay_job(&mut self, job: &mut Job) -> ExecResult<()> {
        let mut revealed = Vec::new();
        for slot in job.slots.iter_mut().filter(|s| s.state == SlotState::Revealed) {
            slot.state = SlotState::Paid;
            revealed.push((slot.provider, slot.price));
        }
        for (provider, price) in revealed {
            job.held = job.held.checked_sub(price).ok_or_else(|| invariant("job pays more than it holds"))?;
            job.paid = job.paid.checked_add(price).ok_or_else(|| overflow("job paid"))?;
            self.release_from(Module::Jobs, &provider, price)?;
            let bid = self.set_job_bid_state(job.id, &provider, JobBidState::Returned)?;
            self.release_from(Module::BidDeposits, &provider, bid.deposit)?;
            let mut record = self.provider(&provider)?.ok_or_else(|| invariant("paid provider vanished"))?;
            record.jobs_completed = record.jobs_completed.saturating_add(1);
            self.put_provider(&record);
            self.emit(Event::JobPaid { job: job.id, provider, amount: price });
        }
        let refunded = self.refund_held(job)?;
        job.state = JobState::Completed;
        job.finished_at = Some(self.now);
        self.schedule_removal(StoredRecord::Job(job.id));
        self.emit(Event::JobCompleted { job: job.id, paid: job.paid, refunded });
        Ok(())
    }

    fn fail_job(&mut self, job: &mut Job, reason: JobFailure) -> ExecResult<()> {
        self.return_live_bids(job)?;
        let refunded = self.refund_held(job)?;
        job.state = JobState::Failed { reason };
        job.finished_at = Some(self.now);
        self.schedule_removal(StoredRecord::Job(job.id));
        self.emit(Event::JobFailed { job: job.id, reason, refunded });
        Ok(())
    }
}
