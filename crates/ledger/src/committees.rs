//! Referee committees: DESIGN's one committee mechanism, for every kind of work that needs checking.
//!
//! Whoever opens a check (the job rules today) funds its `reserve` in the committees module and says who is
//! excluded and which runtime members need. Members are drawn from the referee index of that runtime,
//! weighted by bonded stake with block randomness, never a party, never twice; each locks `referee_deposit`
//! out of its stake. Members commit `blake3(vote ‖ member ‖ salt)` by their deadline (a silent member forfeits
//! its deposit and is replaced by a new draw), reveal once all have committed, and a vote revealed by more
//! than half of the round's seats is the verdict. An audit's first round has one seat and decides only if
//! it confirms the audited result; otherwise, and when a round has no majority, the next round draws a full
//! committee, up to `max_rounds`, then the check ends with no verdict. At the end members whose reveal counts
//! (matched the verdict, or revealed when there is none) are paid their fee from the reserve and get their
//! deposit back; the others' deposits go to the members who matched (to the funder when none did). What is
//! left of the reserve stays for the subject's rule, which decides who gets it.
//!
//! Drawing reads every opted-in provider of the runtime: per check, work grows with that pool, not with the
//! chain.

use tensorgrid_types::committee::{
    CheckKind, CheckSubject, Committee, CommitteeId, CommitteePhase, Funder, Seat, SeatState,
};
use tensorgrid_types::job::result_commitment;
use tensorgrid_types::provider::ProviderStatus;
use tensorgrid_types::{Address, Amount, Event, Hash, TxError};

use crate::bank::Module;
use crate::error::{invariant, overflow, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;
use crate::timers::Timer;

/// What the opener of a check decides; the reserve must already sit in the committees module.
pub(crate) struct CheckSpec {
    pub subject: CheckSubject,
    pub kind: CheckKind,
    pub runtime: String,
    pub excluded: Vec<Address>,
    pub funder: Funder,
    pub fee: Amount,
    pub reserve: Amount,
    pub confirms: Option<Hash>,
    pub commit_window_ms: u64,
    pub reveal_window_ms: u64,
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn committee(&self, id: CommitteeId) -> ExecResult<Option<Committee>> {
        Ok(self.get(&keys::committee(id))?)
    }

    fn must_committee(&self, id: CommitteeId) -> ExecResult<Committee> {
        self.committee(id)?.ok_or_else(|| invariant(format!("committee {id} has no record")).into())
    }

    pub(crate) fn put_committee(&mut self, committee: &Committee) {
        self.put(keys::committee(committee.id), committee);
    }

    /// Opens a check and draws its first round. With nobody eligible the committee is concluded at once with
    /// no verdict (and settled); the caller reads `phase` to see which happened.
    pub(crate) fn open_committee(&mut self, spec: CheckSpec) -> ExecResult<Committee> {
        let id = self.next_seq(keys::SEQ_COMMITTEE)?;
        let max_rounds = self.params.max_referee_rounds.saturating_add(u8::from(spec.confirms.is_some()));
        let mut committee = Committee {
            id,
            subject: spec.subject,
            kind: spec.kind,
            runtime: spec.runtime,
            excluded: spec.excluded,
            funder: spec.funder,
            fee: spec.fee,
            reserve: spec.reserve,
            forfeited: Amount::ZERO,
            confirms: spec.confirms,
            size: self.params.referee_count,
            round_seats: 0,
            round: 1,
            max_rounds,
            commit_window_ms: spec.commit_window_ms,
            reveal_window_ms: spec.reveal_window_ms,
            seats: Vec::new(),
            phase: CommitteePhase::Committing,
            reveal_deadline: None,
            opened_at: self.now,
            concluded_at: None,
            fees_paid: Amount::ZERO,
        };
        if self.draw_round(&mut committee)? == 0 {
            self.conclude(&mut committee, None)?;
        }
        self.put_committee(&committee);
        Ok(committee)
    }

    /// A member's commitment. `Ok(false)` when the signer holds no seat waiting to commit (the caller then
    /// reports its own error).
    pub(crate) fn commit_vote(
        &mut self,
        committee_id: CommitteeId,
        signer: Address,
        commitment: Hash,
    ) -> ExecResult<bool> {
        let mut committee = self.must_committee(committee_id)?;
        let Some(index) = committee.seats.iter().position(|s| {
            s.provider == signer && s.round == committee.round && s.state == SeatState::Committing
        }) else {
            return Ok(false);
        };
        let seat = committee.seats.get_mut(index).ok_or_else(|| invariant("seat vanished"))?;
        seat.commitment = Some(commitment);
        seat.state = SeatState::Committed;
        let deadline = seat.commit_deadline;
        self.clear_timer(deadline, Timer::CommitteeSeat(committee_id, index as u32));
        self.emit(Event::RefereeCommitted { committee: committee_id, provider: signer });
        self.maybe_start_committee_reveal(&mut committee);
        self.put_committee(&committee);
        Ok(true)
    }

    /// A member's reveal. `Ok(false)` when the signer holds no seat in the current round. When this reveal
    /// completes the check, the subject's rule settles it here.
    pub(crate) fn reveal_vote(
        &mut self,
        committee_id: CommitteeId,
        signer: Address,
        vote: Hash,
        salt: [u8; 32],
        job: u64,
    ) -> ExecResult<bool> {
        let mut committee = self.must_committee(committee_id)?;
        let Some(index) = committee
            .seats
            .iter()
            .position(|s| s.provider == signer && s.round == committee.round && s.state.is_seated())
        else {
            return Ok(false);
        };
        if committee.phase != CommitteePhase::Revealing {
            return Err(TxError::CommitteeNotRevealing { committee: committee_id }.into());
        }
        let seat = committee.seats.get_mut(index).ok_or_else(|| invariant("seat vanished"))?;
        if seat.state != SeatState::Committed {
            return Err(TxError::AlreadyRevealed { job }.into());
        }
        if seat.commitment != Some(result_commitment(&vote, &signer, &salt)) {
            return Err(TxError::CommitmentMismatch { job }.into());
        }
        seat.vote = Some(vote);
        seat.state = SeatState::Revealed;
        self.emit(Event::RefereeRevealed { committee: committee_id, provider: signer, vote });
        let done = committee.live_seats().all(|s| s.state == SeatState::Revealed);
        if done {
            if let Some(deadline) = committee.reveal_deadline {
                self.clear_timer(deadline, Timer::CommitteeReveal(committee_id));
            }
            self.end_round(&mut committee)?;
        }
        self.put_committee(&committee);
        if let CommitteePhase::Concluded { .. } = committee.phase {
            self.on_check_concluded(committee)?;
        }
        Ok(true)
    }

    /// Deadline: a member did not commit in time. It forfeits its deposit and a new member takes its place.
    pub(crate) fn on_seat_due(&mut self, committee_id: CommitteeId, index: u32) -> ExecResult<()> {
        let Some(mut committee) = self.committee(committee_id)? else { return Ok(()) };
        let now = self.now;
        let Some(seat) = committee.seats.get_mut(index as usize) else { return Ok(()) };
        if seat.state != SeatState::Committing || seat.commit_deadline > now {
            return Ok(());
        }
        seat.state = SeatState::MissedCommit;
        let (provider, deposit) = (seat.provider, seat.deposit);
        self.forfeit_seat(&mut committee, provider, deposit)?;
        self.draw(&mut committee, 1)?;
        if committee.live_seats().next().is_none() {
            self.end_round(&mut committee)?;
        } else {
            self.maybe_start_committee_reveal(&mut committee);
        }
        self.put_committee(&committee);
        if let CommitteePhase::Concluded { .. } = committee.phase {
            self.on_check_concluded(committee)?;
        }
        Ok(())
    }

    /// Deadline: the round's reveals are over. Silent members forfeit their deposits; the round is tallied.
    pub(crate) fn on_committee_reveal_due(&mut self, committee_id: CommitteeId) -> ExecResult<()> {
        let Some(mut committee) = self.committee(committee_id)? else { return Ok(()) };
        if committee.phase != CommitteePhase::Revealing
            || committee.reveal_deadline.is_none_or(|t| t > self.now)
        {
            return Ok(());
        }
        let round = committee.round;
        let mut silent = Vec::new();
        for seat in committee.seats.iter_mut().filter(|s| s.round == round && s.state == SeatState::Committed)
        {
            seat.state = SeatState::MissedReveal;
            silent.push((seat.provider, seat.deposit));
        }
        for (provider, deposit) in silent {
            self.forfeit_seat(&mut committee, provider, deposit)?;
        }
        self.end_round(&mut committee)?;
        self.put_committee(&committee);
        if let CommitteePhase::Concluded { .. } = committee.phase {
            self.on_check_concluded(committee)?;
        }
        Ok(())
    }

    /// A concluded committee goes to the rule of what it checked.
    fn on_check_concluded(&mut self, committee: Committee) -> ExecResult<()> {
        match committee.subject {
            CheckSubject::Job { job } => self.on_job_check_concluded(job, committee),
        }
    }

    // --- internals

    fn maybe_start_committee_reveal(&mut self, committee: &mut Committee) {
        if committee.phase != CommitteePhase::Committing {
            return;
        }
        let ready = committee.live_seats().next().is_some()
            && committee.live_seats().all(|s| s.state == SeatState::Committed);
        if !ready {
            return;
        }
        let deadline = self.now.plus(committee.reveal_window_ms);
        committee.phase = CommitteePhase::Revealing;
        committee.reveal_deadline = Some(deadline);
        self.set_timer(deadline, Timer::CommitteeReveal(committee.id));
        self.emit(Event::CommitteeRevealStarted { committee: committee.id, deadline });
    }

    /// Tallies the round: a verdict concludes the check (an audit's one member only when it confirms),
    /// otherwise the next round is drawn, or the check ends with no verdict.
    fn end_round(&mut self, committee: &mut Committee) -> ExecResult<()> {
        let needed = committee.majority();
        let votes: Vec<Hash> = committee
            .seats
            .iter()
            .filter(|s| s.round == committee.round && s.state == SeatState::Revealed)
            .filter_map(|s| s.vote)
            .collect();
        let majority = votes.iter().find(|v| votes.iter().filter(|w| w == v).count() >= needed).copied();
        let auditing = committee.confirms.is_some() && committee.round == 1;
        match majority {
            Some(verdict) if !auditing || committee.confirms == Some(verdict) => {
                return self.conclude(committee, Some(verdict));
            }
            // An audit that found nothing to say (its member silent, none left to draw) leaves the results
            // as unchecked as the jobs that were not drawn: it confirms them.
            None if auditing && votes.is_empty() => return self.conclude(committee, committee.confirms),
            _ => {}
        }
        if committee.round >= committee.max_rounds {
            return self.conclude(committee, None);
        }
        committee.round = committee.round.saturating_add(1);
        committee.phase = CommitteePhase::Committing;
        committee.reveal_deadline = None;
        if self.draw_round(committee)? == 0 {
            return self.conclude(committee, None);
        }
        Ok(())
    }

    /// Draws the round's members. With fewer eligible than the round's size the committee is all of them,
    /// and its majority is counted over those drawn.
    fn draw_round(&mut self, committee: &mut Committee) -> ExecResult<usize> {
        let seats = usize::from(committee.round_size());
        let drawn = self.draw(committee, seats)?;
        committee.round_seats = u8::try_from(drawn).unwrap_or(u8::MAX);
        Ok(drawn)
    }

    /// Draws up to `count` new members for the current round, weighted by bonded stake, from the providers
    /// that opted in for the runtime and are live, unjailed, able to lock the deposit and to stay above the
    /// minimum stake, not a party and not seated before in this check.
    fn draw(&mut self, committee: &mut Committee, count: usize) -> ExecResult<usize> {
        let deposit = self.params.referee_deposit;
        let floor = self.params.min_provider_stake.checked_add(deposit).ok_or_else(|| overflow("stake"))?;
        let mut candidates = Vec::new();
        for (key, _) in self.scan(&keys::referees_for(&committee.runtime), None, usize::MAX)? {
            let Some(raw) = key.len().checked_sub(32).and_then(|at| key.get(at..)) else { continue };
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(raw);
            let address = Address(bytes);
            if committee.excluded.contains(&address) || committee.seats.iter().any(|s| s.provider == address)
            {
                continue;
            }
            let Some(provider) = self.provider(&address)? else { continue };
            let live = provider.status == ProviderStatus::Active && self.now <= self.live_until(&provider);
            if live && !provider.jailed && provider.stake >= floor && provider.referees(&committee.runtime) {
                candidates.push((address, provider.stake));
            }
        }
        let mut drawn = Vec::new();
        let first_seat = committee.seats.len() as u64;
        while drawn.len() < count && !candidates.is_empty() {
            let total: u128 = candidates.iter().map(|(_, stake)| stake.0).sum();
            let seed = Hash::of_parts(&[
                b"tensorgrid/committee",
                self.randomness.as_bytes(),
                &committee.id.to_be_bytes(),
                &[committee.round],
                &(first_seat + drawn.len() as u64).to_be_bytes(),
            ]);
            let mut pick =
                u128::from_be_bytes(seed.as_bytes()[..16].try_into().unwrap_or([0; 16])) % total.max(1);
            let mut chosen = candidates.len() - 1;
            for (i, (_, stake)) in candidates.iter().enumerate() {
                if pick < stake.0 {
                    chosen = i;
                    break;
                }
                pick -= stake.0;
            }
            drawn.push(candidates.remove(chosen).0);
        }
        let commit_deadline = self.now.plus(committee.commit_window_ms);
        for address in &drawn {
            let mut provider = self.provider(address)?.ok_or_else(|| invariant("drawn provider vanished"))?;
            provider.stake = provider.stake.checked_sub(deposit).ok_or_else(|| invariant("seat deposit"))?;
            provider.record.referee_seats = provider.record.referee_seats.saturating_add(1);
            self.put_provider(&provider);
            self.move_between(Module::Bonds, Module::Committees, deposit)?;
            let index = committee.seats.len() as u32;
            committee.seats.push(Seat {
                provider: *address,
                round: committee.round,
                deposit,
                commit_deadline,
                commitment: None,
                vote: None,
                state: SeatState::Committing,
                paid: Amount::ZERO,
            });
            self.set_timer(commit_deadline, Timer::CommitteeSeat(committee.id, index));
        }
        if !drawn.is_empty() {
            self.emit(Event::CommitteeDrawn {
                committee: committee.id,
                subject: committee.subject,
                check: committee.kind,
                round: committee.round,
                members: drawn.clone(),
                commit_deadline,
            });
        }
        Ok(drawn.len())
    }

    /// A silent or outvoted member's deposit joins the pot for the members who match the verdict.
    fn forfeit_seat(
        &mut self,
        committee: &mut Committee,
        provider: Address,
        deposit: Amount,
    ) -> ExecResult<()> {
        committee.forfeited =
            committee.forfeited.checked_add(deposit).ok_or_else(|| overflow("forfeited"))?;
        if let Some(mut record) = self.provider(&provider)? {
            record.record.referee_forfeits = record.record.referee_forfeits.saturating_add(1);
            self.put_provider(&record);
        }
        self.emit(Event::RefereeForfeited { committee: committee.id, provider, deposit });
        Ok(())
    }

    /// Pays the members whose reveal counts, returns their deposits to their stake, shares the forfeited
    /// deposits among those who matched the verdict (or gives them to the funder when none did).
    fn conclude(&mut self, committee: &mut Committee, verdict: Option<Hash>) -> ExecResult<()> {
        let mut stray = Vec::new();
        for (index, seat) in committee.seats.iter_mut().enumerate() {
            match seat.state {
                SeatState::Committing => {
                    self.clear_timer(seat.commit_deadline, Timer::CommitteeSeat(committee.id, index as u32));
                    seat.state = SeatState::MissedCommit;
                    stray.push((seat.provider, seat.deposit));
                }
                SeatState::Committed => {
                    seat.state = SeatState::MissedReveal;
                    stray.push((seat.provider, seat.deposit));
                }
                _ => {}
            }
        }
        if let Some(deadline) = committee.reveal_deadline.take() {
            self.clear_timer(deadline, Timer::CommitteeReveal(committee.id));
        }
        for (provider, deposit) in stray {
            self.forfeit_seat(committee, provider, deposit)?;
        }
        let mut outvoted = Vec::new();
        let mut counted = Vec::new();
        for (index, seat) in committee.seats.iter().enumerate() {
            if seat.state != SeatState::Revealed {
                continue;
            }
            if verdict.is_none() || seat.vote == verdict {
                counted.push(index);
            } else {
                outvoted.push((seat.provider, seat.deposit));
            }
        }
        for (provider, deposit) in outvoted {
            self.forfeit_seat(committee, provider, deposit)?;
        }
        let winners = if verdict.is_some() { counted.len() as u128 } else { 0 };
        let pot = std::mem::take(&mut committee.forfeited);
        let (share, mut remainder) = match winners {
            0 => (Amount::ZERO, Amount::ZERO),
            n => (Amount(pot.0 / n), Amount(pot.0 % n)),
        };
        for index in counted {
            let seat = committee.seats.get_mut(index).ok_or_else(|| invariant("seat vanished"))?;
            let fee = committee.fee.min(committee.reserve);
            committee.reserve = committee.reserve.saturating_sub(fee);
            committee.fees_paid = committee.fees_paid.checked_add(fee).ok_or_else(|| overflow("fees"))?;
            seat.paid = fee;
            let (provider, deposit) = (seat.provider, seat.deposit);
            let reward =
                if winners > 0 { share.saturating_add(std::mem::take(&mut remainder)) } else { Amount::ZERO };
            self.release_from(Module::Committees, &provider, fee.saturating_add(reward))?;
            // The deposit goes back into the stake it came from, or to the member's balance if it left the
            // market while it sat (its stake is unbonding or returned).
            let mut record = self.provider(&provider)?.ok_or_else(|| invariant("member vanished"))?;
            if record.status == ProviderStatus::Active {
                self.move_between(Module::Committees, Module::Bonds, deposit)?;
                record.stake = record.stake.checked_add(deposit).ok_or_else(|| overflow("stake"))?;
                self.put_provider(&record);
            } else {
                self.release_from(Module::Committees, &provider, deposit)?;
            }
            self.emit(Event::RefereePaid { committee: committee.id, provider, fee, reward });
        }
        if winners == 0 {
            self.pay_funder(committee.funder, pot)?;
        }
        committee.phase = CommitteePhase::Concluded { verdict };
        committee.concluded_at = Some(self.now);
        self.emit(Event::CommitteeConcluded {
            committee: committee.id,
            subject: committee.subject,
            verdict,
            fees_paid: committee.fees_paid,
        });
        Ok(())
    }

    /// Pays `amount` from the committees module to a check's funder: a party's balance or the audit pool.
    pub(crate) fn pay_funder(&mut self, funder: Funder, amount: Amount) -> ExecResult<()> {
        match funder {
            Funder::Party(address) => self.release_from(Module::Committees, &address, amount),
            Funder::AuditPool => self.move_between(Module::Committees, Module::Audits, amount),
        }
    }
}
