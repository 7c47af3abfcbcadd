//! `ProviderCore::handle`: one input in, the effects it calls for out.

use std::collections::{BTreeMap, BTreeSet};

use tensorgrid_types::committee::{unavailable_vote, CheckSubject, CommitteeId};
use tensorgrid_types::job::{result_commitment, Job, JobExit, JobId, JobState, SlotState, WorkloadKind};
use tensorgrid_types::market::{GroupSpec, LeaseId, Order, OrderState};
use tensorgrid_types::provider::{Provider, ProviderInfo, ProviderStatus};
use tensorgrid_types::provider_api::{JobRunState, LeaseRunState};
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Address, Amount, Event, Msg, Timestamp};

use crate::bidding::{BidEngine, Decision, Quote, Situation, Work, COMMIT_MARGIN};
use crate::capacity::{Capacity, Reservation};
use crate::effect::{Effect, QuotedWork, RunSpec, TxPurpose};
use crate::input::{Input, RunSummary, WorkRef};
use crate::jobs::{job_seed, JobEntry, JobRecord, Phase};
use crate::leases::LeaseEntry;
use crate::Policy;

/// Who the provider is on chain, as its operator configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub address: Address,
    pub host_uri: String,
    pub info: ProviderInfo,
    pub stake: Amount,
    /// The operator's attributes (the inventory's are added to them).
    pub attributes: Vec<Attribute>,
    /// `(kind, runtime)` pairs this provider's runners accept.
    pub runtimes: Vec<(WorkloadKind, String)>,
    /// Whether it can run container leases at all.
    pub runs_leases: bool,
    /// Whether it accepts referee committee seats (registered on chain; provider.toml's `referee`).
    pub referee: bool,
}

/// The provider's state. Only [`ProviderCore::handle`] changes it.
#[derive(Debug)]
pub struct ProviderCore {
    identity: Identity,
    policy: Policy,
    engine: BidEngine,
    capacity: Capacity,
    heartbeat_interval_ms: Option<u64>,
    last_heartbeat: Option<Timestamp>,
    jobs: BTreeMap<JobId, JobEntry>,
    /// Jobs and orders this provider has bid on (or decided against): each is decided once.
    decided: BTreeSet<WorkRef>,
    /// Work waiting for the operator's script.
    quoting: BTreeMap<WorkRef, QuotedWork>,
    leases: BTreeMap<LeaseId, LeaseEntry>,
    /// Leases whose order (and so whose resources) is being read.
    lease_orders: BTreeSet<LeaseId>,
    last_withdrawal: Option<Timestamp>,
    /// Records kept on disk whose jobs are being read after a restart.
    pending_records: BTreeMap<JobId, JobRecord>,
    /// Committee seats drawn for this provider whose jobs are being read: the committee and the seat's
    /// commit deadline.
    seats: BTreeMap<JobId, (CommitteeId, Timestamp)>,
}

impl ProviderCore {
    pub fn new(identity: Identity, policy: Policy) -> ProviderCore {
        ProviderCore {
            engine: BidEngine::from_policy(&policy),
            identity,
            policy,
            capacity: Capacity::default(),
            heartbeat_interval_ms: None,
            last_heartbeat: None,
            jobs: BTreeMap::new(),
            decided: BTreeSet::new(),
            quoting: BTreeMap::new(),
            leases: BTreeMap::new(),
            lease_orders: BTreeSet::new(),
            last_withdrawal: None,
            pending_records: BTreeMap::new(),
            seats: BTreeMap::new(),
        }
    }

    pub fn address(&self) -> Address {
        self.identity.address
    }

    /// The transaction that makes the chain's record of this provider match its identity: a registration, a
    /// re-registration after deregistering, an update, or nothing.
    pub fn registration(&self, on_chain: Option<&Provider>) -> Option<Msg> {
        let id = &self.identity;
        let attributes = self.attributes();
        let runtimes = self.job_runtimes();
        match on_chain {
            Some(p) if p.status == ProviderStatus::Active => (p.host_uri != id.host_uri
                || p.attributes != attributes
                || p.info != id.info
                || p.runtimes != runtimes
                || p.referee != id.referee)
                .then(|| Msg::UpdateProvider {
                    host_uri: Some(id.host_uri.clone()),
                    attributes: Some(attributes),
                    info: Some(id.info.clone()),
                    runtimes: Some(runtimes),
                    referee: Some(id.referee),
                }),
            _ => Some(Msg::RegisterProvider {
                host_uri: id.host_uri.clone(),
                attributes,
                info: id.info.clone(),
                stake: id.stake,
                runtimes,
                referee: id.referee,
            }),
        }
    }

    /// The job runtimes registered on chain (what makes it eligible to referee a job), without repeats.
    pub fn job_runtimes(&self) -> Vec<String> {
        let mut runtimes: Vec<String> = Vec::new();
        for (_, runtime) in &self.identity.runtimes {
            if !runtimes.contains(runtime) {
                runtimes.push(runtime.clone());
            }
        }
        runtimes
    }

    /// The operator's attributes and the inventory's, as registered on chain.
    pub fn attributes(&self) -> Vec<Attribute> {
        let mut attributes = self.identity.attributes.clone();
        for attribute in self.capacity.attributes() {
            if !attributes.iter().any(|a| a.key == attribute.key) {
                attributes.push(attribute);
            }
        }
        attributes
    }

    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// What running work holds.
    pub fn reserved(&self) -> Reservation {
        let mut reserved = Reservation::default();
        for entry in self.leases.values() {
            reserved.add_group(&entry.spec);
        }
        for entry in self.jobs.values().filter(|e| e.holds) {
            reserved.add(&entry.job.spec.resources, 1);
        }
        reserved
    }

    /// What the bid engine sees: free capacity, attributes, what is running, what can run.
    pub fn situation(&self) -> Situation {
        Situation {
            free: self.capacity.minus(&self.reserved()),
            attributes: self.attributes(),
            active_leases: self.leases.len() as u32,
            active_jobs: self.jobs.values().filter(|e| e.active()).count() as u32,
            runtimes: self.identity.runtimes.clone(),
            runs_leases: self.identity.runs_leases,
        }
    }

    pub fn job(&self, id: JobId) -> Option<&JobEntry> {
        self.jobs.get(&id)
    }

    pub fn lease(&self, id: &LeaseId) -> Option<&LeaseEntry> {
        self.leases.get(id)
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.engine.history()
    }

    pub fn no_bids(&self) -> Vec<Decision> {
        self.engine.no_bids()
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Started { params, capacity, records } => {
                self.heartbeat_interval_ms = Some(params.heartbeat_interval_ms);
                self.last_heartbeat = Some(now);
                self.last_withdrawal = Some(now);
                self.capacity = capacity;
                for record in records {
                    let id = record.job;
                    // The chain says where the job is; the record says what this provider already did.
                    self.pending_records.insert(id, record);
                    out.push(Effect::ReadJob(id));
                }
            }
            Input::Tick => self.tick(now, &mut out),
            Input::Inventory(capacity) => self.capacity = capacity,
            Input::Event(event) => self.on_event(now, event, &mut out),
            Input::JobRead(id, job) => match job {
                Some(job) => self.on_job(now, job, &mut out),
                None => {
                    self.pending_records.remove(&id);
                }
            },
            Input::OrderRead(id, order) => {
                let lease = id.bid(self.address());
                match order {
                    Some(order) if self.lease_orders.remove(&lease) => {
                        self.start_lease(now, lease, order.spec, &mut out)
                    }
                    Some(order) => self.consider_order(now, order, &mut out),
                    None => {
                        self.lease_orders.remove(&lease);
                    }
                }
            }
            Input::PriceScript { work, answer } => self.after_script(now, work, answer, &mut out),
            Input::ContentArrived { job } => self.content_arrived(now, job, &mut out),
            Input::ContentMissing { job, salt } => self.content_missing(job, salt, &mut out),
            Input::ModuleChecked { job, result } => match result {
                Ok(()) => {
                    if let Some(entry) = self.jobs.get_mut(&job).filter(|e| e.phase == Phase::Checking) {
                        entry.phase = Phase::Confirming;
                        out.push(Effect::Send {
                            msg: Msg::ConfirmJobContent { job },
                            purpose: TxPurpose::ConfirmContent(job),
                        });
                    }
                }
                Err(reason) => self.fail(job, format!("not confirming: {reason}"), &mut out),
            },
            Input::RunFinished { job, result, salt } => self.run_finished(job, result, salt, &mut out),
            Input::TxDone { purpose, result } => self.tx_done(now, purpose, result, &mut out),
            Input::LeaseFound(lease) => self.lease_created(lease, &mut out),
            Input::ManifestReceived { lease, spec } => {
                let entry = self.leases.entry(lease).or_insert_with(|| LeaseEntry {
                    spec: spec.clone(),
                    state: LeaseRunState::Starting,
                    closing: false,
                });
                entry.state = LeaseRunState::Starting;
            }
            Input::LeaseDeployed { lease, result } => {
                if let Some(entry) = self.leases.get_mut(&lease) {
                    entry.state = match result {
                        Ok(()) => LeaseRunState::Running,
                        Err(reason) => LeaseRunState::Failed { reason },
                    };
                }
            }
            Input::LeaseAdopted { lease, spec } => {
                self.leases.insert(lease, LeaseEntry { spec, state: LeaseRunState::Running, closing: false });
                out.push(Effect::Log {
                    warn: false,
                    message: format!("adopted running lease {lease} after a restart"),
                });
            }
        }
        out
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let (Some(interval), Some(last)) = (self.heartbeat_interval_ms, self.last_heartbeat) else { return };
        if now.since(last) >= interval {
            self.last_heartbeat = Some(now);
            out.push(Effect::Send { msg: Msg::Heartbeat, purpose: TxPurpose::Heartbeat });
        }
        for (lease, entry) in self.leases.iter_mut() {
            if let LeaseRunState::AwaitingManifest { deadline } = entry.state {
                if deadline <= now && !entry.closing {
                    entry.closing = true;
                    out.push(Effect::Log {
                        warn: true,
                        message: format!("no manifest arrived for lease {lease} in time; closing it"),
                    });
                    out.push(Effect::Send {
                        msg: Msg::CloseLease { lease: *lease },
                        purpose: TxPurpose::CloseLease(*lease),
                    });
                }
            }
        }
        if self.last_withdrawal.is_some_and(|last| now.since(last) >= self.policy.withdraw_interval_ms) {
            self.last_withdrawal = Some(now);
            for lease in self.leases.keys() {
                out.push(Effect::Send {
                    msg: Msg::WithdrawLease { lease: *lease },
                    purpose: TxPurpose::Withdraw(*lease),
                });
            }
        }
    }

    /// A lease to this provider exists on chain: read its order to learn what it holds.
    fn lease_created(&mut self, lease: LeaseId, out: &mut Vec<Effect>) {
        if !self.leases.contains_key(&lease) && self.lease_orders.insert(lease) {
            out.push(Effect::ReadOrder(lease.order()));
        }
    }

    /// Holds the lease's resources and waits for the tenant's manifest.
    fn start_lease(&mut self, now: Timestamp, lease: LeaseId, spec: GroupSpec, out: &mut Vec<Effect>) {
        if self.leases.contains_key(&lease) {
            return;
        }
        let deadline = now.plus(self.policy.manifest_timeout_ms);
        self.leases.insert(
            lease,
            LeaseEntry { spec, state: LeaseRunState::AwaitingManifest { deadline }, closing: false },
        );
        out.push(Effect::Log {
            warn: false,
            message: format!("lease {lease} started; waiting for the tenant's manifest"),
        });
    }

    fn on_event(&mut self, _now: Timestamp, event: Event, out: &mut Vec<Effect>) {
        let me = self.address();
        match event {
            Event::JobSubmitted { job, .. } if !self.decided.contains(&WorkRef::Job(job)) => {
                out.push(Effect::ReadJob(job));
            }
            Event::JobAssigned { job, provider, .. } if provider == me && !self.jobs.contains_key(&job) => {
                out.push(Effect::ReadJob(job));
            }
            Event::JobRevealStarted { job, .. } => {
                if let Some(entry) = self.jobs.get_mut(&job).filter(|e| e.referee.is_none()) {
                    entry.reveal_open = true;
                }
                self.reveal_if_due(job, out);
            }
            Event::CommitteeDrawn {
                committee,
                subject: CheckSubject::Job { job },
                members,
                commit_deadline,
                ..
            } if members.contains(&me) => {
                self.seats.insert(job, (committee, commit_deadline));
                out.push(Effect::ReadJob(job));
            }
            Event::CommitteeRevealStarted { committee, .. } => {
                let seat = self.jobs.iter().find(|(_, e)| e.referee == Some(committee)).map(|(id, _)| *id);
                if let Some(id) = seat {
                    if let Some(entry) = self.jobs.get_mut(&id) {
                        entry.reveal_open = true;
                    }
                    self.reveal_if_due(id, out);
                }
            }
            Event::OrderCreated { order, .. } if !self.decided.contains(&WorkRef::Order(order)) => {
                out.push(Effect::ReadOrder(order));
            }
            Event::LeaseCreated { lease, .. } if lease.provider == me => self.lease_created(lease, out),
            Event::LeaseClosed { lease, .. } if lease.provider == me => {
                self.lease_orders.remove(&lease);
                self.leases.remove(&lease);
                // Whatever the core knew of it, what runs for it goes: the chain says it is closed.
                out.push(Effect::StopLease(lease));
            }
            _ => {}
        }
    }

    /// A job as the chain has it now: bid on it, start the slot this provider won, or reveal.
    fn on_job(&mut self, now: Timestamp, job: Job, out: &mut Vec<Effect>) {
        let me = self.address();
        let id = job.id;
        let slot = job.slots.iter().find(|s| s.provider == me && s.state.is_live()).cloned();
        if let Some(record) = self.pending_records.remove(&id) {
            self.recover(job, record, out);
            return;
        }
        if let Some((committee, commit_deadline)) = self.seats.remove(&id) {
            // A member of an earlier check of the same job (an audit, then the client's dispute) may be drawn
            // again: what it did for the earlier committee is finished, and the new seat replaces it.
            let earlier = self.jobs.get(&id).is_some_and(|e| {
                e.referee.is_some_and(|c| c != committee)
                    && matches!(e.phase, Phase::Finished | Phase::Failed)
            });
            if earlier {
                self.jobs.remove(&id);
            }
            if job.state == JobState::Refereeing
                && job.checks.last() == Some(&committee)
                && !self.jobs.contains_key(&id)
            {
                self.start_referee(now, job, committee, commit_deadline, out);
            }
            return;
        }
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.reveal_open |= entry.referee.is_none() && job.state == JobState::Revealing;
            entry.job = job;
            self.reveal_if_due(id, out);
            return;
        }
        if let Some(slot) = slot {
            self.start(now, job, slot.state, slot.content_deadline, slot.commit_deadline, out);
            return;
        }
        if job.state == JobState::Bidding
            && !job.live_bids.iter().any(|b| b.provider == me)
            && self.decided.insert(WorkRef::Job(id))
        {
            let quote = self.engine.decide(&Work::Job { job: &job }, &self.situation(), now);
            self.quoted(WorkRef::Job(id), QuotedWork::Job { job }, quote, out);
        }
    }

    fn consider_order(&mut self, now: Timestamp, order: Order, out: &mut Vec<Effect>) {
        if order.state != OrderState::Open
            || order.live_bids.iter().any(|b| b.provider == self.address())
            || !self.decided.insert(WorkRef::Order(order.id))
        {
            return;
        }
        let quote = self.engine.decide(&Work::Order { order: &order }, &self.situation(), now);
        let id = order.id;
        self.quoted(WorkRef::Order(id), QuotedWork::Order { order }, quote, out);
    }

    fn quoted(&mut self, work: WorkRef, quoted: QuotedWork, quote: Quote, out: &mut Vec<Effect>) {
        if let Some(decision) = self.engine.last_decision().cloned() {
            if !matches!(quote, Quote::AskScript(_)) {
                out.push(Effect::Decided(decision));
            }
        }
        match quote {
            Quote::Bid(price) => out.push(bid(work, price)),
            Quote::NoBid(_) => {}
            Quote::AskScript(price) => {
                out.push(Effect::AskPriceScript { work: Box::new(quoted.clone()), price });
                self.quoting.insert(work, quoted);
            }
        }
    }

    fn after_script(
        &mut self,
        now: Timestamp,
        work: WorkRef,
        answer: Result<Amount, String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(quoted) = self.quoting.remove(&work) else { return };
        let decided = match &quoted {
            QuotedWork::Order { order } => self.engine.after_script(&Work::Order { order }, answer, now),
            QuotedWork::Job { job } => self.engine.after_script(&Work::Job { job }, answer, now),
        };
        if let Some(decision) = self.engine.last_decision().cloned() {
            out.push(Effect::Decided(decision));
        }
        if let Ok(price) = decided {
            out.push(bid(work, price));
        }
    }

    /// This provider won a slot: hold the job's resources and wait for the client's upload.
    fn start(
        &mut self,
        now: Timestamp,
        job: Job,
        slot: SlotState,
        content_deadline: Timestamp,
        commit_deadline: Option<Timestamp>,
        out: &mut Vec<Effect>,
    ) {
        let id = job.id;
        let hashes = job.spec.content();
        // Nothing is confirmed before everything arrived and the module proved runnable: until the
        // confirmation this provider can walk away at no cost, after it a missed commitment costs the deposit.
        let until = match slot {
            SlotState::AwaitingContent => now.plus(self.policy.content_timeout_ms).min(content_deadline),
            _ => now.plus(self.policy.content_timeout_ms),
        };
        self.jobs.insert(id, JobEntry::awaiting_content(job, commit_deadline, None));
        out.push(Effect::Log {
            warn: false,
            message: format!("assigned job {id}; waiting for the client's upload"),
        });
        out.push(Effect::AwaitContent { job: id, hashes, until });
    }

    /// This provider was drawn for a committee on the job: get the content (from the client, or from the
    /// job's workers), run it and commit by the seat's deadline. No confirmation: a member that cannot get
    /// the content commits to "content unavailable" instead.
    fn start_referee(
        &mut self,
        now: Timestamp,
        job: Job,
        committee: CommitteeId,
        commit_deadline: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let id = job.id;
        let hashes = job.spec.content();
        // Leave room to run and to commit: the content may take at most half of the seat's time.
        let half = commit_deadline.since(now) / 2;
        let until = now.plus(self.policy.content_timeout_ms.min(half));
        self.jobs.insert(id, JobEntry::awaiting_content(job, Some(commit_deadline), Some(committee)));
        out.push(Effect::Log {
            warn: false,
            message: format!("drawn for referee committee {committee} on job {id}; fetching its content"),
        });
        out.push(Effect::AwaitContent { job: id, hashes, until });
    }

    /// The content did not arrive: a worker's slot lapses at no cost; a referee commits to "content
    /// unavailable from the client", who had to serve it.
    fn content_missing(&mut self, id: JobId, salt: [u8; 32], out: &mut Vec<Effect>) {
        let Some(entry) = self.jobs.get_mut(&id).filter(|e| e.phase == Phase::AwaitingContent) else {
            return;
        };
        let Some(committee) = entry.referee else {
            return self.fail(
                id,
                "the module and inputs did not all arrive in time; the slot lapses at no cost".into(),
                out,
            );
        };
        let record = JobRecord {
            job: id,
            result_hash: unavailable_vote(&entry.job.client),
            salt: hex::encode(salt),
            exit: JobExit::Trapped,
            fuel_used: 0,
            committed: false,
            revealed: false,
            referee: Some(committee),
        };
        entry.state = JobRunState::Failed { reason: "the client did not serve the content".into() };
        entry.phase = Phase::Finished;
        entry.holds = false;
        entry.record = Some(record.clone());
        out.push(Effect::Log {
            warn: true,
            message: format!(
                "job {id}'s content never arrived: voting \"content unavailable\" on committee {committee}"
            ),
        });
        out.push(Effect::Persist(record));
        self.commit(id, out);
    }

    /// A restart with a record on disk: finish what is left (commit, then reveal).
    fn recover(&mut self, job: Job, record: JobRecord, out: &mut Vec<Effect>) {
        let id = job.id;
        let (reveal_open, live) = match record.referee {
            // The committee's phase is not on the job: try the reveal; the chain refuses it until it opens,
            // and the reveal event tries again.
            Some(committee) => {
                let seated = job.state == JobState::Refereeing && job.checks.last() == Some(&committee);
                (seated, seated)
            }
            None => (
                job.state == JobState::Revealing,
                job.slots.iter().any(|s| s.provider == self.address() && s.state.is_live()),
            ),
        };
        let entry = JobEntry {
            referee: record.referee,
            state: record.finished(),
            job,
            record: Some(record.clone()),
            phase: Phase::Finished,
            commit_deadline: None,
            reveal_open,
            sending: false,
            holds: false,
        };
        self.jobs.insert(id, entry);
        if !record.committed && live {
            self.commit(id, out);
        } else {
            self.reveal_if_due(id, out);
        }
    }

    fn content_arrived(&mut self, now: Timestamp, id: JobId, out: &mut Vec<Effect>) {
        let Some(entry) = self.jobs.get_mut(&id).filter(|e| e.phase == Phase::AwaitingContent) else {
            return;
        };
        if let Some(commit_deadline) = entry.commit_deadline {
            // Confirmed before a restart: run straight away.
            entry.phase = Phase::Running { commit_deadline };
            self.run(now, id, commit_deadline, out);
            return;
        }
        entry.phase = Phase::Checking;
        let spec = &entry.job.spec;
        out.push(Effect::CheckModule {
            job: id,
            kind: spec.workload.kind,
            runtime: spec.workload.runtime.clone(),
            module: spec.workload.hash,
        });
    }

    fn run(&mut self, now: Timestamp, id: JobId, commit_deadline: Timestamp, out: &mut Vec<Effect>) {
        let Some(entry) = self.jobs.get_mut(&id) else { return };
        entry.state = JobRunState::Running;
        entry.phase = Phase::Running { commit_deadline };
        let job = &entry.job;
        // Leave a margin before the commit deadline for the commitment to reach a block.
        let left = commit_deadline.since(now);
        let margin = COMMIT_MARGIN.as_millis() as u64;
        out.push(Effect::Run(Box::new(RunSpec {
            job: id,
            kind: job.spec.workload.kind,
            runtime: job.spec.workload.runtime.clone(),
            module: job.spec.workload.hash,
            args: job.spec.workload.args.clone(),
            inputs: job.spec.inputs.clone(),
            max_fuel: job.spec.max_fuel,
            memory_bytes: job.spec.resources.memory_bytes,
            wall_timeout_ms: self.policy.job_wall_timeout_ms.min(left.saturating_sub(margin)),
            clock_ms: job.created_at.millis(),
            seed: job_seed(job),
        })));
    }

    fn run_finished(
        &mut self,
        id: JobId,
        result: Result<RunSummary, String>,
        salt: [u8; 32],
        out: &mut Vec<Effect>,
    ) {
        let summary = match result {
            Ok(summary) => summary,
            Err(reason) => return self.fail(id, reason, out),
        };
        let Some(entry) = self.jobs.get_mut(&id).filter(|e| matches!(e.phase, Phase::Running { .. })) else {
            return;
        };
        let record = JobRecord {
            job: id,
            result_hash: summary.result_hash,
            salt: hex::encode(salt),
            exit: summary.exit,
            fuel_used: summary.fuel_used,
            committed: false,
            revealed: false,
            referee: entry.referee,
        };
        entry.state = record.finished();
        entry.phase = Phase::Finished;
        entry.holds = false;
        entry.record = Some(record.clone());
        out.push(Effect::Log {
            warn: false,
            message: format!(
                "ran job {id}: {:?}, {} fuel, result {}",
                summary.exit, summary.fuel_used, summary.result_hash
            ),
        });
        // The salt is on disk before the commitment is sent, so a restarted provider can still reveal.
        out.push(Effect::Persist(record));
        self.commit(id, out);
    }

    fn commit(&mut self, id: JobId, out: &mut Vec<Effect>) {
        let me = self.address();
        let Some(entry) = self.jobs.get_mut(&id) else { return };
        let Some(record) = entry.record.as_ref().filter(|r| !r.committed) else { return };
        let Some(salt) = record.salt_bytes() else {
            return out
                .push(Effect::Log { warn: true, message: format!("job {id}'s record has a corrupt salt") });
        };
        entry.sending = true;
        let commitment = result_commitment(&record.result_hash, &me, &salt);
        out.push(Effect::Send {
            msg: Msg::CommitResult { job: id, commitment },
            purpose: TxPurpose::Commit(id),
        });
    }

    fn reveal_if_due(&mut self, id: JobId, out: &mut Vec<Effect>) {
        let Some(entry) = self.jobs.get_mut(&id) else { return };
        if !entry.reveal_open || entry.sending {
            return;
        }
        let Some(record) = entry.record.as_ref().filter(|r| r.committed && !r.revealed) else { return };
        let Some(salt) = record.salt_bytes() else { return };
        entry.sending = true;
        out.push(Effect::Send {
            msg: Msg::RevealResult { job: id, result_hash: record.result_hash, salt },
            purpose: TxPurpose::Reveal(id),
        });
    }

    fn tx_done(
        &mut self,
        now: Timestamp,
        purpose: TxPurpose,
        result: Result<Vec<Event>, String>,
        out: &mut Vec<Effect>,
    ) {
        let me = self.address();
        match (purpose, result) {
            (TxPurpose::Heartbeat, Err(e)) => out.push(Effect::Log {
                warn: true,
                message: format!("heartbeat failed; retrying next interval: {e}"),
            }),
            (TxPurpose::BidOrder(order), Err(e)) => {
                out.push(Effect::Log { warn: true, message: format!("bidding on order {order} failed: {e}") })
            }
            (TxPurpose::BidJob(job), Err(e)) => {
                out.push(Effect::Log { warn: true, message: format!("bidding on job {job} failed: {e}") })
            }
            (TxPurpose::ConfirmContent(id), Ok(events)) => {
                let deadline = events.iter().find_map(|e| match e {
                    Event::JobStarted { job, provider, commit_deadline } if *job == id && *provider == me => {
                        Some(*commit_deadline)
                    }
                    _ => None,
                });
                match deadline {
                    Some(deadline) => {
                        if let Some(entry) = self.jobs.get_mut(&id) {
                            entry.commit_deadline = Some(deadline);
                        }
                        self.run(now, id, deadline, out);
                    }
                    None => self.fail(id, "the confirmation named no commit deadline".into(), out),
                }
            }
            (TxPurpose::ConfirmContent(id), Err(e)) => {
                self.fail(id, format!("confirming the content: {e}"), out)
            }
            (TxPurpose::Commit(id), result) => {
                let Some(entry) = self.jobs.get_mut(&id) else { return };
                entry.sending = false;
                match result {
                    Ok(events) => {
                        let referee = entry.referee;
                        entry.reveal_open |= events.iter().any(|e| match e {
                            Event::JobRevealStarted { job, .. } => *job == id && referee.is_none(),
                            Event::CommitteeRevealStarted { committee, .. } => Some(*committee) == referee,
                            _ => false,
                        });
                        if let Some(record) = entry.record.as_mut() {
                            record.committed = true;
                            out.push(Effect::Persist(record.clone()));
                        }
                        out.push(Effect::Log {
                            warn: false,
                            message: format!("committed to job {id}'s result"),
                        });
                        self.reveal_if_due(id, out);
                    }
                    Err(e) => {
                        out.push(Effect::Log { warn: true, message: format!("committing to job {id}: {e}") })
                    }
                }
            }
            (TxPurpose::Reveal(id), result) => {
                let Some(entry) = self.jobs.get_mut(&id) else { return };
                entry.sending = false;
                match result {
                    Ok(_) => {
                        if let Some(record) = entry.record.as_mut() {
                            record.revealed = true;
                            out.push(Effect::Persist(record.clone()));
                        }
                        out.push(Effect::Log { warn: false, message: format!("revealed job {id}'s result") });
                    }
                    Err(e) => {
                        out.push(Effect::Log { warn: true, message: format!("revealing job {id}: {e}") })
                    }
                }
            }
            (TxPurpose::CloseLease(lease), Err(e)) => {
                if let Some(entry) = self.leases.get_mut(&lease) {
                    entry.closing = false;
                }
                out.push(Effect::Log { warn: true, message: format!("closing lease {lease} failed: {e}") });
            }
            (TxPurpose::Withdraw(lease), Ok(_)) => {
                out.push(Effect::Log { warn: false, message: format!("collected lease {lease}'s earnings") })
            }
            (TxPurpose::Withdraw(lease), Err(e)) => out.push(Effect::Log {
                warn: true,
                message: format!("collecting lease {lease}'s earnings failed: {e}"),
            }),
            (
                TxPurpose::Heartbeat
                | TxPurpose::BidOrder(_)
                | TxPurpose::BidJob(_)
                | TxPurpose::CloseLease(_),
                Ok(_),
            ) => {}
        }
    }

    /// Gives up on a job: the chain replaces this provider (at no cost before it confirmed the content).
    fn fail(&mut self, id: JobId, reason: String, out: &mut Vec<Effect>) {
        let Some(entry) = self.jobs.get_mut(&id) else { return };
        if entry.phase == Phase::Finished {
            return;
        }
        entry.phase = Phase::Failed;
        entry.holds = false;
        entry.state = JobRunState::Failed { reason: reason.clone() };
        out.push(Effect::Log { warn: true, message: format!("job {id} failed on this provider: {reason}") });
    }
}

fn bid(work: WorkRef, price: Amount) -> Effect {
    match work {
        WorkRef::Order(order) => {
            Effect::Send { msg: Msg::CreateBid { order, price }, purpose: TxPurpose::BidOrder(order) }
        }
        WorkRef::Job(job) => {
            Effect::Send { msg: Msg::BidJob { job, price }, purpose: TxPurpose::BidJob(job) }
        }
    }
}
