//! Actors that sign transactions in reaction to what the chain did. Misbehaving ones are first-class: each
//! deviation from the honest provider is a variant with its own name.

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;
use tensorgrid_ledger::testing::TestChain;
use tensorgrid_types::job::{result_commitment, JobSpec};
use tensorgrid_types::market::{GroupSpec, OrderId};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Address, Amount, Event, Hash, Msg, SecretKey, Timestamp};

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
}

/// How a provider deviates from the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Reveals a made-up result instead of running the job.
    Cheater,
    /// Stops sending heartbeats (and everything else) at this time: a crash or a disconnect.
    GoesSilentAt(Timestamp),
    /// Bids on jobs but never runs them, so it misses every commit deadline.
    Lazy,
}

/// What an honest provider gets by running a job. The ledger only sees hashes; running real workloads is the
/// provider daemon's job, so here the outcome is a deterministic function of what was asked.
pub fn honest_result(spec: &JobSpec) -> Hash {
    let mut parts: Vec<&[u8]> = vec![b"result", spec.workload.hash.as_bytes()];
    parts.extend(spec.inputs.iter().map(|h| h.as_bytes().as_slice()));
    Hash::of_parts(&parts)
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub key: SecretKey,
    pub region: String,
    /// Price per hour it asks for a lease.
    pub lease_price: Amount,
    /// What it bids on the n-th job it sees (`None`: no bid), so a scenario can script who wins.
    pub job_prices: Vec<Option<Amount>>,
    pub behaviour: Behaviour,
    registered: bool,
    last_heartbeat: Timestamp,
    salts: Vec<(u64, [u8; 32], Hash)>,
    jobs_seen: usize,
}

impl Provider {
    pub fn new(
        name: &str,
        region: &str,
        lease_price: Amount,
        job_prices: Vec<Option<Amount>>,
        behaviour: Behaviour,
    ) -> Self {
        Provider {
            name: name.into(),
            key: SecretKey::from_label(name),
            region: region.into(),
            lease_price,
            job_prices,
            behaviour,
            registered: false,
            last_heartbeat: Timestamp(0),
            salts: Vec::new(),
            jobs_seen: 0,
        }
    }

    fn address(&self) -> Address {
        self.key.address()
    }

    fn silent(&self, now: Timestamp) -> bool {
        matches!(self.behaviour, Behaviour::GoesSilentAt(at) if now >= at)
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
        let mut out = Vec::new();
        if self.silent(view.now) {
            return out;
        }
        if !self.registered {
            self.registered = true;
            self.last_heartbeat = view.now;
            out.push(Msg::RegisterProvider {
                host_uri: format!("https://{}.example.org:8443", self.name),
                attributes: vec![Attribute::new("region", self.region.clone())],
                info: ProviderInfo {
                    email: format!("ops@{}.example.org", self.name),
                    website: String::new(),
                },
                stake: view.chain.params().min_provider_stake,
            });
            return out;
        }
        let params = view.chain.params();
        if view.now.since(self.last_heartbeat) >= params.heartbeat_interval_ms {
            self.last_heartbeat = view.now;
            out.push(Msg::Heartbeat);
        }
        let me = self.address();
        for event in view.events {
            match event {
                Event::OrderCreated { order, max_price }
                    if self.lease_price <= *max_price && serves(view.chain, order, &self.region) =>
                {
                    out.push(Msg::CreateBid { order: *order, price: self.lease_price });
                }
                Event::JobSubmitted { job, .. } => {
                    let price = self.job_prices.get(self.jobs_seen).copied().flatten();
                    self.jobs_seen += 1;
                    if let (Some(price), Some(spec)) = (price, job_spec(view.chain, *job)) {
                        if price <= spec.max_bid() {
                            out.push(Msg::BidJob { job: *job, price });
                        }
                    }
                }
                Event::JobAssigned { job, provider, .. } if *provider == me => {
                    // The sim's clients serve their content at once, so every provider has the work and
                    // confirms it; the lazy one then never commits and forfeits its deposit.
                    out.push(Msg::ConfirmJobContent { job: *job });
                    if self.behaviour == Behaviour::Lazy {
                        continue;
                    }
                    let Some(spec) = job_spec(view.chain, *job) else { continue };
                    let result = match self.behaviour {
                        Behaviour::Cheater => Hash::of(b"made up without running anything"),
                        _ => honest_result(&spec),
                    };
                    let mut salt = [0u8; 32];
                    rng.fill_bytes(&mut salt);
                    self.salts.push((*job, salt, result));
                    out.push(Msg::CommitResult {
                        job: *job,
                        commitment: result_commitment(&result, &me, &salt),
                    });
                }
                Event::JobRevealStarted { job, .. } => {
                    if let Some((_, salt, result)) = self.salts.iter().find(|(j, ..)| j == job) {
                        out.push(Msg::RevealResult { job: *job, result_hash: *result, salt: *salt });
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn serves(chain: &TestChain, order: &OrderId, region: &str) -> bool {
    match chain.ledger.query(&Query::Order { order: *order }) {
        Ok(QueryResponse::Order(Some(o))) => {
            o.spec.requirements.attributes.iter().all(|a| a.key != "region" || a.value == region)
        }
        _ => false,
    }
}

fn job_spec(chain: &TestChain, job: u64) -> Option<JobSpec> {
    match chain.ledger.query(&Query::Job { job }) {
        Ok(QueryResponse::Job(Some(j))) => Some(j.spec),
        _ => None,
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
