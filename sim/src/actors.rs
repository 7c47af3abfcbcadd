//! Actors that sign transactions in reaction to what the chain did. Misbehaving ones are first-class: each
//! deviation from the honest provider is a variant with its own name.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::testing::TestChain;
use tensorgrid_provider_core::capacity::Capacity;
use tensorgrid_provider_core::{
    Effect, Identity, Input, JobRecord, Policy, ProviderCore, QuotedWork, RunSummary, TxPurpose, WorkRef,
};
use tensorgrid_types::job::{JobExit, JobSpec, WorkloadKind};
use tensorgrid_types::market::GroupSpec;
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Amount, Event, Hash, Msg, Params, Receipt, SecretKey, Timestamp};

/// What an actor sees each block: the chain (for queries), the events of the last block and the time.
#[derive(Debug)]
pub struct View<'a> {
    pub chain: &'a TestChain,
    pub events: &'a [Event],
    pub now: Timestamp,
}

/// A participant. `act` returns the messages to sign and send in the next block.
pub trait Actor: std::fmt::Debug {
    fn name(&self) -> &str;
    fn key(&self) -> &SecretKey;
    fn act(&mut self, view: &View<'_>, rng: &mut ChaCha20Rng) -> Vec<Msg>;
    /// The receipts of the messages the last `act` returned, in order, once their block executed.
    fn settled(&mut self, _chain: &TestChain, _receipts: &[Receipt], _rng: &mut ChaCha20Rng) {}
}

/// How a provider deviates from the protocol. Unless a variant says otherwise it sits on committees
/// honestly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Reveals a made-up result instead of running the job.
    Cheater,
    /// Reveals a made-up result for this many jobs in a thousand, the honest one otherwise.
    WrongSometimes {
        per_mille: u32,
    },
    /// Skips the work and reveals a guess, right for this many jobs in a thousand (a job whose output is
    /// predictable).
    Guesser {
        right_per_mille: u32,
    },
    /// Reveals the result every colluder invents for the job (the same for all of them), so colluding
    /// identities in one job agree without running it.
    Colluder,
    /// Runs its own jobs honestly; on a committee it votes a made-up result.
    LyingReferee,
    /// Runs its own jobs honestly; on a committee it never runs anything, so it never commits.
    SilentReferee,
    /// Stops sending heartbeats (and everything else) at this time: a crash or a disconnect.
    GoesSilentAt(Timestamp),
    /// Bids on jobs but never runs them, so it misses every commit deadline.
    Lazy,
}

/// The result colluders agree on for a job without running it.
pub fn colluded_result(module: &Hash) -> Hash {
    Hash::of_parts(&[b"colluded", module.as_bytes()])
}

/// What an honest provider gets by running a job. The ledger only sees hashes; running real workloads is the
/// provider daemon's job, so here the outcome is a deterministic function of what was asked.
pub fn honest_result(module: &Hash, inputs: &[Hash]) -> Hash {
    let mut parts: Vec<&[u8]> = vec![b"result", module.as_bytes()];
    parts.extend(inputs.iter().map(|h| h.as_bytes().as_slice()));
    Hash::of_parts(&parts)
}

/// A provider: the provider crate's own core (the logic `tgrid provider run` runs), with this simulation as
/// its interpreter. The chain is the in-memory one, clients upload at once, a run's result is
/// [`honest_result`], and the operator's price script is this actor's scripted prices. A misbehaving
/// provider is the same core with its effects or inputs changed on the way ([`Behaviour`]).
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub key: SecretKey,
    pub region: String,
    /// Price per hour it asks for a lease (its price script's answer for every order).
    pub lease_price: Amount,
    /// What its price script answers for the n-th job it is asked about (`None`: decline), so a scenario can
    /// script who wins.
    pub job_prices: Vec<Option<Amount>>,
    /// What its price script answers once `job_prices` is used up (`None`: decline every later job).
    pub job_price: Option<Amount>,
    /// Bonds back up to the minimum whenever a slash jails it, to go on bidding (a persistent attacker, or
    /// an operator who pays for a mistake).
    pub rebond_when_jailed: bool,
    pub behaviour: Behaviour,
    core: ProviderCore,
    started: bool,
    jobs_quoted: usize,
    /// Messages for the next block, with why the core sent each.
    outbox: Vec<(Msg, Option<TxPurpose>)>,
    /// Why each message of the block in flight was sent, in order.
    in_flight: Vec<Option<TxPurpose>>,
    /// What the core persisted, as a daemon keeps it on disk.
    pub records: BTreeMap<u64, JobRecord>,
}

/// The machine every simulated provider has.
fn sim_capacity() -> Capacity {
    Capacity { cpu_millis: 8_000, memory_bytes: 32 << 30, storage_bytes: 1 << 40, gpus: Vec::new() }
}

impl Provider {
    pub fn new(
        name: &str,
        region: &str,
        lease_price: Amount,
        job_prices: Vec<Option<Amount>>,
        behaviour: Behaviour,
    ) -> Self {
        let key = SecretKey::from_label(name);
        let identity = Identity {
            address: key.address(),
            host_uri: format!("https://{name}.example.org:8443"),
            info: ProviderInfo { email: format!("ops@{name}.example.org"), website: String::new() },
            // Referee seats lock a deposit out of stake, which must stay above the minimum.
            stake: Params::default().min_provider_stake.saturating_add(Amount::tgr(10)),
            attributes: vec![Attribute::new("region", region)],
            runtimes: vec![(WorkloadKind::Wasm, "wasi-p1".into())],
            runs_leases: true,
            referee: true,
        };
        let policy = Policy { price_script: true, ..Policy::default() };
        Provider {
            name: name.into(),
            key,
            region: region.into(),
            lease_price,
            job_prices,
            job_price: None,
            rebond_when_jailed: false,
            behaviour,
            core: ProviderCore::new(identity, policy),
            started: false,
            jobs_quoted: 0,
            outbox: Vec::new(),
            in_flight: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    fn silent(&self, now: Timestamp) -> bool {
        matches!(self.behaviour, Behaviour::GoesSilentAt(at) if now >= at)
    }

    /// Feeds `input` to the core and carries out what it asks, feeding the answers back, until nothing is
    /// left but transactions for the next block.
    fn drive(&mut self, chain: &TestChain, now: Timestamp, input: Input, rng: &mut ChaCha20Rng) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.core.handle(now, input) {
                match effect {
                    Effect::Send { msg, purpose } => self.outbox.push((msg, Some(purpose))),
                    Effect::ReadJob(id) => {
                        let job = match chain.ledger.query(&Query::Job { job: id }) {
                            Ok(QueryResponse::Job(job)) => job,
                            _ => None,
                        };
                        inputs.push_back(Input::JobRead(id, job));
                    }
                    Effect::ReadOrder(id) => {
                        let order = match chain.ledger.query(&Query::Order { order: id }) {
                            Ok(QueryResponse::Order(order)) => order,
                            _ => None,
                        };
                        inputs.push_back(Input::OrderRead(id, order));
                    }
                    Effect::AskPriceScript { work, .. } => {
                        let (reference, answer) = match *work {
                            QuotedWork::Order { order } => (WorkRef::Order(order.id), Ok(self.lease_price)),
                            QuotedWork::Job { job } => {
                                let price = match self.job_prices.get(self.jobs_quoted) {
                                    Some(scripted) => *scripted,
                                    None => self.job_price,
                                };
                                self.jobs_quoted += 1;
                                (WorkRef::Job(job.id), price.ok_or_else(|| "not this one".to_string()))
                            }
                        };
                        inputs.push_back(Input::PriceScript { work: reference, answer });
                    }
                    // The simulation's clients serve their content at once, and every module checks out.
                    Effect::AwaitContent { job, .. } => inputs.push_back(Input::ContentArrived { job }),
                    Effect::CheckModule { job, .. } => {
                        inputs.push_back(Input::ModuleChecked { job, result: Ok(()) })
                    }
                    Effect::Run(spec) => {
                        let refereeing = self.core.job(spec.job).is_some_and(|e| e.referee.is_some());
                        let honest = honest_result(&spec.module, &spec.inputs);
                        let made_up = Hash::of_parts(&[b"made up", spec.module.as_bytes()]);
                        let draw = rng.next_u32() % 1_000;
                        let result_hash = match (self.behaviour, refereeing) {
                            // Bids, wins and confirms, then never runs anything: it misses its commit deadline.
                            (Behaviour::Lazy, _) | (Behaviour::SilentReferee, true) => continue,
                            (Behaviour::Cheater, false) | (Behaviour::LyingReferee, true) => made_up,
                            (Behaviour::WrongSometimes { per_mille }, false) if draw < per_mille => made_up,
                            (Behaviour::Guesser { right_per_mille }, false) if draw >= right_per_mille => {
                                made_up
                            }
                            (Behaviour::Colluder, false) => colluded_result(&spec.module),
                            _ => honest,
                        };
                        let mut salt = [0u8; 32];
                        rng.fill_bytes(&mut salt);
                        let summary =
                            RunSummary { result_hash, exit: JobExit::Exited { code: 0 }, fuel_used: 0 };
                        inputs.push_back(Input::RunFinished { job: spec.job, result: Ok(summary), salt });
                    }
                    Effect::Persist(record) => {
                        self.records.insert(record.job, record);
                    }
                    Effect::StopLease(_) | Effect::Decided(_) | Effect::Log { .. } => {}
                }
            }
        }
    }
}

impl Actor for Provider {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> &SecretKey {
        &self.key
    }

    fn act(&mut self, view: &View<'_>, rng: &mut ChaCha20Rng) -> Vec<Msg> {
        self.in_flight.clear();
        if self.silent(view.now) {
            self.outbox.clear();
            return Vec::new();
        }
        let me = self.key.address();
        if self.rebond_when_jailed && self.started {
            if let Ok(QueryResponse::Provider(Some(p))) =
                view.chain.ledger.query(&Query::Provider { address: me })
            {
                let minimum = view.chain.params().min_provider_stake.saturating_add(Amount::tgr(10));
                if p.jailed && !self.outbox.iter().any(|(m, _)| matches!(m, Msg::Bond { .. })) {
                    self.outbox.push((Msg::Bond { amount: minimum.saturating_sub(p.stake) }, None));
                }
            }
        }
        if !self.started {
            self.started = true;
            let capacity = sim_capacity();
            let started = Input::Started { params: view.chain.params(), capacity, records: Vec::new() };
            self.drive(view.chain, view.now, started, rng);
            let registration = self.core.registration(None);
            self.outbox.extend(registration.map(|msg| (msg, None)));
        } else {
            self.drive(view.chain, view.now, Input::Tick, rng);
            for event in view.events {
                self.drive(view.chain, view.now, Input::Event(event.clone()), rng);
                // The simulation's tenants send their manifests at once, and containers always start.
                if let Event::LeaseCreated { lease, .. } = event {
                    let spec =
                        self.core.lease(lease).filter(|_| lease.provider == me).map(|e| e.spec.clone());
                    if let Some(spec) = spec {
                        self.drive(
                            view.chain,
                            view.now,
                            Input::ManifestReceived { lease: *lease, spec },
                            rng,
                        );
                        let deployed = Input::LeaseDeployed { lease: *lease, result: Ok(()) };
                        self.drive(view.chain, view.now, deployed, rng);
                    }
                }
            }
        }
        let (msgs, purposes): (Vec<Msg>, Vec<Option<TxPurpose>>) = self.outbox.drain(..).unzip();
        self.in_flight = purposes;
        msgs
    }

    fn settled(&mut self, chain: &TestChain, receipts: &[Receipt], rng: &mut ChaCha20Rng) {
        let now = chain.now;
        if self.silent(now) {
            return;
        }
        let purposes = std::mem::take(&mut self.in_flight);
        for (purpose, receipt) in purposes.into_iter().zip(receipts) {
            let Some(purpose) = purpose else { continue };
            let result = match receipt.error() {
                None => Ok(receipt.events.clone()),
                Some(error) => Err(error.to_string()),
            };
            self.drive(chain, now, Input::TxDone { purpose, result }, rng);
        }
    }
}

/// A tenant that deploys once at `deploy_at`, optionally tops up its escrow before it runs dry, and closes
/// the deployment at `close_at`.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    pub key: SecretKey,
    pub groups: Vec<GroupSpec>,
    pub deposit: Amount,
    pub deploy_at: Timestamp,
    pub close_at: Option<Timestamp>,
    /// Tops up by this much whenever the escrow has less than an hour left; `None` never pays more.
    pub top_up: Option<Amount>,
    pub dseq: Option<u64>,
    deployed: bool,
    closed: bool,
}

impl Tenant {
    pub fn new(name: &str, groups: Vec<GroupSpec>, deposit: Amount, deploy_at: Timestamp) -> Self {
        Tenant {
            name: name.into(),
            key: SecretKey::from_label(name),
            groups,
            deposit,
            deploy_at,
            close_at: None,
            top_up: None,
            dseq: None,
            deployed: false,
            closed: false,
        }
    }
}

impl Actor for Tenant {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> &SecretKey {
        &self.key
    }

    fn act(&mut self, view: &View<'_>, _rng: &mut ChaCha20Rng) -> Vec<Msg> {
        let me = self.key.address();
        for event in view.events {
            if let Event::DeploymentCreated { dseq, owner, .. } = event {
                if *owner == me && self.dseq.is_none() {
                    self.dseq = Some(*dseq);
                }
            }
        }
        if !self.deployed && view.now >= self.deploy_at {
            self.deployed = true;
            return vec![Msg::CreateDeployment {
                groups: self.groups.clone(),
                deposit: self.deposit,
                manifest_hash: Hash::of(self.name.as_bytes()),
            }];
        }
        let Some(dseq) = self.dseq else { return vec![] };
        if !self.closed && self.close_at.is_some_and(|t| view.now >= t) {
            self.closed = true;
            return vec![Msg::CloseDeployment { dseq }];
        }
        if let Some(amount) = self.top_up {
            if let Ok(QueryResponse::Deployment(Some(info))) =
                view.chain.ledger.query(&Query::Deployment { dseq })
            {
                let hour = tensorgrid_types::time::MS_PER_HOUR;
                if info.deployment.escrow.dry_at.is_some_and(|t| t.since(view.now) < hour) {
                    return vec![Msg::DepositDeployment { dseq, amount }];
                }
            }
        }
        vec![]
    }
}

/// A client that submits one job at `submit_at`.
#[derive(Debug)]
pub struct JobClient {
    pub name: String,
    pub key: SecretKey,
    pub spec: JobSpec,
    pub submit_at: Timestamp,
    submitted: bool,
}

impl JobClient {
    pub fn new(name: &str, spec: JobSpec, submit_at: Timestamp) -> Self {
        JobClient { name: name.into(), key: SecretKey::from_label(name), spec, submit_at, submitted: false }
    }
}

impl Actor for JobClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> &SecretKey {
        &self.key
    }

    fn act(&mut self, view: &View<'_>, _rng: &mut ChaCha20Rng) -> Vec<Msg> {
        if !self.submitted && view.now >= self.submit_at {
            self.submitted = true;
            return vec![Msg::SubmitJob { spec: self.spec.clone() }];
        }
        vec![]
    }
}

/// A client that submits `count` jobs, one every `every_ms` from `start`, each with its own module (so each
/// has its own result). A griefing client disputes every single result in its challenge period, with the
/// least deposit the chain takes, whatever the result.
#[derive(Debug)]
pub struct JobStream {
    pub name: String,
    pub key: SecretKey,
    pub template: JobSpec,
    pub start: Timestamp,
    pub every_ms: u64,
    pub count: usize,
    pub griefing: bool,
    submitted: usize,
    /// The jobs it submitted, in order.
    pub jobs: Vec<u64>,
}

impl JobStream {
    pub fn new(name: &str, template: JobSpec, start: Timestamp, every_ms: u64, count: usize) -> Self {
        JobStream {
            name: name.into(),
            key: SecretKey::from_label(name),
            template,
            start,
            every_ms,
            count,
            griefing: false,
            submitted: 0,
            jobs: Vec::new(),
        }
    }
}

impl Actor for JobStream {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> &SecretKey {
        &self.key
    }

    fn act(&mut self, view: &View<'_>, _rng: &mut ChaCha20Rng) -> Vec<Msg> {
        let me = self.key.address();
        let mut out = Vec::new();
        for event in view.events {
            match event {
                Event::JobSubmitted { job, client, .. } if *client == me => self.jobs.push(*job),
                Event::JobChallengeStarted { job, .. } if self.griefing && self.jobs.contains(job) => {
                    if let Ok(QueryResponse::Job(Some(j))) =
                        view.chain.ledger.query(&Query::Job { job: *job })
                    {
                        let deposit = view.chain.params().dispute_deposit_for(j.work_price());
                        out.push(Msg::DisputeJob { job: *job, deposit });
                    }
                }
                _ => {}
            }
        }
        let due = self.start.plus(self.every_ms.saturating_mul(self.submitted as u64));
        if self.submitted < self.count && view.now >= due {
            let mut spec = self.template.clone();
            spec.workload.hash =
                Hash::of_parts(&[self.name.as_bytes(), &(self.submitted as u64).to_le_bytes()]);
            self.submitted += 1;
            out.push(Msg::SubmitJob { spec });
        }
        out
    }
}
