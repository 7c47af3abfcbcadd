//! One-shot jobs with k-redundancy and commit–reveal.
//!
//! Bidding window → the k cheapest bids from live providers win (ties by block randomness) → each winner
//! confirms on chain that it received the module and inputs (which the client must upload), or is replaced
//! by the next-cheapest bid at no cost to it → from its confirmation each winner commits
//! `blake3(result ‖ provider ‖ salt)` within the run timeout, or is replaced and forfeits its deposit to the
//! client → once every winner committed, all reveal by the reveal deadline → at that deadline, with the
//! randomness of the first block past it (which no revealer could see), a job is audited with probability
//! `audit_rate`: one referee re-runs it before it is paid. Different results go to a referee committee at
//! once. Agreeing results that were not audited (or passed their audit) are paid (each winner its own bid); a
//! single result, audited or not, waits out a challenge period in which the client may dispute it, with a
//! deposit that pays the committee. Every check
//! ends in a verdict or, after the last round, in "no verdict" (see `committees`): a job never stays held.
//!
//! A verdict pays the results that match it and slashes the ones that differ (`slash_fraction` of the
//! provider's stake plus its bid deposit); the slash first reimburses whoever prepaid the members' fees, and
//! the rest compensates the client. A client whose dispute of a correct result failed loses what is left of its
//! deposit to the provider it accused. "No verdict" returns the budget to the client and every deposit to its
//! owner. A majority of members who could not get the content decides against the client, who had to serve it.
//!
//! A deposit is forfeited only by a provider that verifiably had the work (its own confirmation is on
//! chain) and a run timeout the chain checked is long enough for the job's fuel: a client can neither
//! withhold its content nor set an impossible limit to take deposits.

use tensorgrid_types::committee::{unavailable_vote, CheckKind, CheckSubject, Committee, Funder, SeatState};
use tensorgrid_types::event::StoredRecord;
use tensorgrid_types::job::{
    result_commitment, Job, JobBid, JobBidState, JobFailure, JobId, JobSlot, JobSpec, JobState, SlotState,
};
use tensorgrid_types::market::LiveBid;
use tensorgrid_types::{Address, Amount, Event, Hash, TxError};

use crate::bank::Module;
use crate::committees::CheckSpec;
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
        let audit_fee = self.params.audit_fee_for(spec.budget);
        let locked = spec.budget.checked_add(audit_fee).ok_or_else(|| overflow("budget"))?;
        self.lock(&client, Module::Jobs, locked)?;
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
            audit_fee,
            checks: Vec::new(),
            verdict: None,
        };
        self.put_job(&job);
        self.put_raw(keys::ix_open_job(id), Vec::new());
        self.set_timer(bid_deadline, Timer::JobBidWindow(id));
        self.emit(Event::JobSubmitted { job: id, client, budget });
        Ok(())
    }

    pub(crate) fn bid_job(&mut self, signer: Address, job_id: JobId, price: Amount) -> ExecResult<()> {
        let provider = self.live_provider(&signer)?;
        let mut job = self.must_job(job_id)?;
        let wanted = job.spec.requirements;
        if provider.jobs_completed < wanted.min_completed {
            return Err(TxError::RequirementNotMet {
                job: job_id,
                requirement: format!("at least {} completed jobs", wanted.min_completed),
                actual: provider.jobs_completed,
            }
            .into());
        }
        if let Some(max) = wanted.max_slashes.filter(|max| provider.record.slashes > *max) {
            return Err(TxError::RequirementNotMet {
                job: job_id,
                requirement: format!("at most {max} slashes"),
                actual: provider.record.slashes,
            }
            .into());
        }
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
        let deposit = self.params.job_bid_deposit_for(price);
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
        if let Some(committee) = job.checks.last().filter(|_| job.state == JobState::Refereeing) {
            if self.commit_vote(*committee, signer, commitment)? {
                return Ok(());
            }
            return Err(TxError::NotAssigned { job: job_id, provider: signer }.into());
        }
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
        if let Some(committee) = job.checks.last().filter(|_| job.state == JobState::Refereeing) {
            if self.reveal_vote(*committee, signer, result_hash, salt, job_id)? {
                return Ok(());
            }
            return Err(TxError::NotAssigned { job: job_id, provider: signer }.into());
        }
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
        // What happens next waits for the reveal deadline even when everyone revealed: the audit draw uses
        // the randomness of the first block past it, which no revealer can know when it reveals.
        self.emit(Event::JobRevealed { job: job_id, provider: signer, result_hash });
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
        let refunded = self.refund_held(&mut job)?.saturating_add(self.refund_audit_fee(&mut job)?);
        job.state = JobState::Cancelled;
        job.finished_at = Some(self.now);
        self.schedule_removal(StoredRecord::Job(job_id));
        self.put_job(&job);
        self.emit(Event::JobCancelled { job: job_id, refunded });
        Ok(())
    }

    /// The client disputes a single result: its deposit pays a referee committee, which re-runs the job.
    pub(crate) fn dispute_job(&mut self, signer: Address, job_id: JobId, deposit: Amount) -> ExecResult<()> {
        let mut job = self.must_job(job_id)?;
        if signer != job.client {
            return Err(TxError::NotOwner { signer, owner: job.client, what: format!("job {job_id}") }.into());
        }
        Self::expect_state(&job, JobState::Challenge, "in its challenge period")?;
        let required = self.params.dispute_deposit_for(job.work_price());
        if deposit < required {
            return Err(TxError::DisputeDepositTooLow { deposit, required }.into());
        }
        self.lock(&signer, Module::Committees, deposit)?;
        if let Some(deadline) = job.challenge_deadline {
            self.clear_timer(deadline, Timer::JobChallenge(job_id));
        }
        self.emit(Event::JobDisputed { job: job_id });
        self.open_job_check(&mut job, CheckKind::Dispute, Funder::Party(signer), deposit, None)?;
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

    /// The reveal window closed: whoever committed but did not reveal forfeits its deposit; the rest are
    /// checked (a disagreement, or an audit if this block's randomness draws one) or accepted.
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
        let Some(first) = results.first().copied() else {
            return self.fail_job(job, JobFailure::NoResults);
        };
        // There are results, so this job could be audited: its audit fee, `audit_rate` of what its revealed
        // results are priced at, joins the pool that pays audits; what the client locked beyond that (it was
        // reckoned on the budget at submission) goes back.
        let price = job
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Revealed)
            .try_fold(Amount::ZERO, |sum, s| sum.checked_add(s.price))
            .ok_or_else(|| overflow("job price"))?;
        let locked = std::mem::take(&mut job.audit_fee);
        let fee = self.params.audit_fee_for(price).min(locked);
        self.move_between(Module::Jobs, Module::Audits, fee)?;
        self.release_from(Module::Jobs, &job.client, locked.saturating_sub(fee))?;
        if results.iter().any(|r| *r != first) {
            self.emit(Event::JobDisputed { job: job.id });
            let reserve = self.reserve_from_pool(job, false)?;
            self.open_job_check(job, CheckKind::Disagreement, Funder::AuditPool, reserve, None)?;
            return Ok(());
        }
        if self.audit_drawn(job.id) {
            let reserve = self.reserve_from_pool(job, true)?;
            let committee =
                self.open_job_check(job, CheckKind::Audit, Funder::AuditPool, reserve, Some(first))?;
            if job.state == JobState::Refereeing {
                self.emit(Event::JobAudited { job: job.id, committee: committee.id });
                return Ok(());
            }
        }
        if results.len() == 1 {
            self.start_challenge(job)
        } else {
            self.pay_job(job)
        }
    }

    /// Whether this block's randomness draws the job for an audit (probability `audit_rate_bps / 10⁴`). It
    /// runs in the first block past the reveal deadline, whose randomness no revealer could know.
    fn audit_drawn(&self, job: JobId) -> bool {
        let rate = u64::from(self.params.audit_rate_bps);
        let draw = Hash::of_parts(&[b"tensorgrid/audit", self.randomness.as_bytes(), &job.to_be_bytes()]);
        let mut head = [0u8; 8];
        head.copy_from_slice(&draw.as_bytes()[..8]);
        u64::from_be_bytes(head) % 10_000 < rate
    }

    /// Moves from the audit pool what a protocol-opened check may pay its members (every seat of every
    /// round, an audit's one member included), or all the pool holds if that is less.
    fn reserve_from_pool(&mut self, job: &Job, audit: bool) -> ExecResult<Amount> {
        let fee = self.params.referee_fee_for(job.work_price());
        let seats = u128::from(self.params.referee_count) * u128::from(self.params.max_referee_rounds)
            + u128::from(audit);
        let wanted = Amount(fee.0.saturating_mul(seats));
        let reserve = wanted.min(self.balance(&Module::Audits.address())?);
        self.move_between(Module::Audits, Module::Committees, reserve)?;
        Ok(reserve)
    }

    /// Opens a referee committee on the job's revealed results, with `reserve` already in the committees
    /// module. When nobody is eligible, an audit is skipped (its reserve goes back to the pool and the job
    /// goes on as if not drawn) and any other check is settled at once with no verdict.
    fn open_job_check(
        &mut self,
        job: &mut Job,
        kind: CheckKind,
        funder: Funder,
        reserve: Amount,
        confirms: Option<Hash>,
    ) -> ExecResult<Committee> {
        let mut excluded = vec![job.client];
        excluded.extend(job.slots.iter().map(|s| s.provider));
        excluded.sort();
        excluded.dedup();
        let committee = self.open_committee(CheckSpec {
            subject: CheckSubject::Job { job: job.id },
            kind,
            runtime: job.spec.workload.runtime.clone(),
            excluded,
            funder,
            fee: self.params.referee_fee_for(job.work_price()),
            reserve,
            confirms,
            commit_window_ms: self.params.job_content_window_ms.saturating_add(job.spec.run_timeout_ms),
            reveal_window_ms: job.spec.reveal_window_ms,
        })?;
        job.checks.push(committee.id);
        let concluded =
            matches!(committee.phase, tensorgrid_types::committee::CommitteePhase::Concluded { .. });
        if !concluded {
            for slot in job.slots.iter().filter(|s| s.state == SlotState::Revealed) {
                self.set_job_bid_state(job.id, &slot.provider, JobBidState::Held)?;
            }
            job.state = JobState::Refereeing;
        } else if kind == CheckKind::Audit {
            self.pay_funder(committee.funder, committee.reserve)?;
        } else {
            self.settle_job_check(job, &committee)?;
        }
        Ok(committee)
    }

    /// A committee on this job concluded in a later block (a reveal or a deadline): settle the job.
    pub(crate) fn on_job_check_concluded(&mut self, job_id: JobId, committee: Committee) -> ExecResult<()> {
        let mut job = self.job(job_id)?.ok_or_else(|| invariant(format!("checked job {job_id} vanished")))?;
        if job.state != JobState::Refereeing || job.checks.last() != Some(&committee.id) {
            return Err(invariant(format!(
                "committee {} concluded on job {job_id} not waiting for it",
                committee.id
            ))
            .into());
        }
        self.settle_job_check(&mut job, &committee)?;
        self.put_job(&job);
        Ok(())
    }

    /// The job's rule for a concluded check (see the module's documentation). The committee already paid its
    /// members; its `reserve` (what the funder prepaid and was not spent) still sits in the committees module.
    fn settle_job_check(&mut self, job: &mut Job, committee: &Committee) -> ExecResult<()> {
        let verdict = committee.verdict();
        self.emit(Event::JobVerdict { job: job.id, verdict });
        let revealed: Vec<(usize, Address, Hash)> = job
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Revealed)
            .filter_map(|(i, s)| s.result.map(|r| (i, s.provider, r)))
            .collect();
        let accused: Vec<Address> = revealed.iter().map(|(_, p, _)| *p).collect();
        let Some(verdict) = verdict else {
            self.pay_funder(committee.funder, committee.reserve)?;
            for provider in &accused {
                self.return_job_bid(job.id, provider)?;
            }
            return self.fail_job(job, JobFailure::NoVerdict);
        };
        if verdict == unavailable_vote(&job.client) {
            // The client did not serve the content it had to: decided against it as if it had lied.
            self.pay_job(job)?;
            match committee.funder {
                Funder::Party(_) => self.share_out(Module::Committees, &accused, committee.reserve)?,
                Funder::AuditPool => {
                    self.pay_funder(Funder::AuditPool, committee.reserve)?;
                    let owed = committee.fees_paid.min(self.balance(&job.client)?);
                    self.transfer(&job.client, &Module::Audits.address(), owed)?;
                }
            }
            return Ok(());
        }
        let mut pot = Amount::ZERO;
        let mut slashed = Vec::new();
        for (index, provider, result) in revealed {
            let mut stake = Amount::ZERO;
            let mut deposit = Amount::ZERO;
            if result != verdict {
                Self::slot_mut(job, index)?.state = SlotState::Slashed;
                deposit = self.set_job_bid_state(job.id, &provider, JobBidState::Slashed)?.deposit;
                self.move_between(Module::BidDeposits, Module::Committees, deposit)?;
                stake = self.slash(&provider, self.params.slash_fraction_bps, Module::Committees)?;
            }
            // Read after the slash, which updates the same record (stake, jail, slashes).
            let mut record = self.provider(&provider)?.ok_or_else(|| invariant("job provider vanished"))?;
            let r = &mut record.record;
            match (result == verdict, committee.kind == CheckKind::Audit && committee.round == 1) {
                (true, true) => r.audits_passed = r.audits_passed.saturating_add(1),
                (true, false) => r.disputes_won = r.disputes_won.saturating_add(1),
                (false, _) => {
                    r.disputes_lost = r.disputes_lost.saturating_add(1);
                    r.slashed_total = r.slashed_total.saturating_add(deposit);
                }
            }
            self.put_provider(&record);
            if result == verdict {
                continue;
            }
            pot =
                pot.checked_add(stake).and_then(|p| p.checked_add(deposit)).ok_or_else(|| overflow("pot"))?;
            slashed.push(provider);
            self.emit(Event::ProviderSlashed { provider, job: job.id, stake, deposit });
        }
        if !slashed.is_empty() {
            pot = self.top_up_member_fees(committee, verdict, pot)?;
        }
        if slashed.is_empty() {
            match committee.funder {
                // The client disputed a correct result: what is left of its deposit goes to the accused.
                Funder::Party(_) => self.share_out(Module::Committees, &accused, committee.reserve)?,
                Funder::AuditPool => self.pay_funder(Funder::AuditPool, committee.reserve)?,
            }
        } else {
            // The losers reimburse whoever paid the members; the rest of the slash compensates the client.
            let reimburse = committee.fees_paid.min(pot);
            self.pay_funder(committee.funder, reimburse.saturating_add(committee.reserve))?;
            self.release_from(Module::Committees, &job.client, pot.saturating_sub(reimburse))?;
        }
        job.verdict = Some(verdict);
        let single = job.slots.iter().filter(|s| s.state == SlotState::Revealed).count() == 1;
        if committee.kind == CheckKind::Audit && slashed.is_empty() && single {
            // A single result the audit confirmed still waits out its challenge period: the audit is the
            // network's check, the dispute is the client's, and the client keeps it.
            return self.start_challenge(job);
        }
        self.pay_job(job)
    }

    fn start_challenge(&mut self, job: &mut Job) -> ExecResult<()> {
        let deadline = self.now.plus(self.params.challenge_period_ms);
        job.state = JobState::Challenge;
        job.challenge_deadline = Some(deadline);
        self.set_timer(deadline, Timer::JobChallenge(job.id));
        self.emit(Event::JobChallengeStarted { job: job.id, deadline });
        Ok(())
    }

    /// A pool short of funds paid members less than their fee: the losers' slash makes up the difference
    /// before anything else. Returns what is left of `pot`.
    fn top_up_member_fees(
        &mut self,
        committee: &Committee,
        verdict: Hash,
        mut pot: Amount,
    ) -> ExecResult<Amount> {
        let mut record = committee.clone();
        let mut changed = false;
        for seat in record.seats.iter_mut() {
            if seat.state != SeatState::Revealed || seat.vote != Some(verdict) || seat.paid >= record.fee {
                continue;
            }
            let top = record.fee.saturating_sub(seat.paid).min(pot);
            if top.is_zero() {
                continue;
            }
            pot = pot.saturating_sub(top);
            seat.paid = seat.paid.saturating_add(top);
            self.release_from(Module::Committees, &seat.provider, top)?;
            self.emit(Event::RefereePaid {
                committee: record.id,
                provider: seat.provider,
                fee: top,
                reward: Amount::ZERO,
            });
            changed = true;
        }
        if changed {
            self.put_committee(&record);
        }
        Ok(pot)
    }

    /// Splits `amount` held by `module` equally among `to`, the remainder of the division to the first.
    fn share_out(&mut self, module: Module, to: &[Address], amount: Amount) -> ExecResult<()> {
        let Some(first) = to.first() else {
            return Err(invariant("a share-out with nobody to share with").into());
        };
        let n = to.len() as u128;
        let (share, remainder) = (Amount(amount.0 / n), Amount(amount.0 % n));
        self.release_from(module, first, share.saturating_add(remainder))?;
        for address in to.iter().skip(1) {
            self.release_from(module, address, share)?;
        }
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

    fn refund_audit_fee(&mut self, job: &mut Job) -> ExecResult<Amount> {
        let fee = std::mem::take(&mut job.audit_fee);
        self.release_from(Module::Jobs, &job.client, fee)?;
        Ok(fee)
    }

    fn fail_job(&mut self, job: &mut Job, reason: JobFailure) -> ExecResult<()> {
        self.return_live_bids(job)?;
        let refunded = self.refund_held(job)?.saturating_add(self.refund_audit_fee(job)?);
        job.state = JobState::Failed { reason };
        job.finished_at = Some(self.now);
        self.schedule_removal(StoredRecord::Job(job.id));
        self.emit(Event::JobFailed { job: job.id, reason, refunded });
        Ok(())
    }
}
