//! The bid engine: whether this provider can serve an order or a job, and at what price.
//!
//! A decision runs through a chain of small components (like yagna's negotiator components), each of which
//! either passes the quote on (possibly changing the price) or declines with a reason. Every decline is
//! logged and kept, because "why did I get no bids?" is the first thing a tenant asks and the provider's
//! operator must be able to answer it (`tgrid provider status`, `GET /v1/provider`).

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tensorgrid_types::job::{Job, WorkloadKind};
use tensorgrid_types::market::Order;
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Address, Amount, Timestamp};

use crate::config::{Limits, Pricing};
use crate::inventory::{Capacity, Reservation};

/// Work the provider may bid on.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work<'a> {
    Order { order: &'a Order },
    Job { job: &'a Job },
}

impl Work<'_> {
    pub fn id(&self) -> String {
        match self {
            Work::Order { order } => format!("order {}", order.id),
            Work::Job { job } => format!("job {}", job.id),
        }
    }

    /// Who would pay.
    pub fn payer(&self) -> Address {
        match self {
            Work::Order { order } => order.owner,
            Work::Job { job } => job.client,
        }
    }

    /// The most the chain lets this provider ask.
    pub fn ceiling(&self) -> Amount {
        match self {
            Work::Order { order } => order.spec.max_price,
            Work::Job { job } => job.spec.max_bid(),
        }
    }

    /// What the work needs, in total.
    pub fn needs(&self) -> Reservation {
        let mut need = Reservation::default();
        match self {
            Work::Order { order } => {
                for unit in &order.spec.resources {
                    need.add(&unit.resources, unit.count);
                }
            }
            Work::Job { job } => need.add(&job.spec.resources, 1),
        }
        need
    }
}

/// What the provider knows about itself when it decides.
#[derive(Clone, Debug)]
pub struct Situation {
    /// Free capacity (reservations already taken off).
    pub free: Capacity,
    pub attributes: Vec<Attribute>,
    pub active_leases: u32,
    pub active_jobs: u32,
    /// `(kind, runtime)` pairs this provider's runners accept.
    pub runtimes: Vec<(WorkloadKind, String)>,
    /// Whether this provider can run container leases at all.
    pub runs_leases: bool,
}

/// A decline: which component said no, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoBid {
    pub component: &'static str,
    pub reason: String,
}

/// One link of the chain.
pub trait PriceComponent: Send + Sync {
    fn name(&self) -> &'static str;
    /// Passes `price` on (the same or changed), or declines with a reason.
    fn apply(&self, work: &Work<'_>, situation: &Situation, price: Amount) -> Result<Amount, String>;
}

/// Tenants and job clients this provider never serves.
struct DenyList(Vec<Address>);

impl PriceComponent for DenyList {
    fn name(&self) -> &'static str {
        "deny_list"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, price: Amount) -> Result<Amount, String> {
        let payer = work.payer();
        if self.0.contains(&payer) {
            return Err(format!("{payer} is on this provider's deny list"));
        }
        Ok(price)
    }
}

/// Whether the work can run here at all: runners, resources, GPUs, placement attributes, auditors.
struct Fits;

impl PriceComponent for Fits {
    fn name(&self) -> &'static str {
        "fits"
    }

    fn apply(&self, work: &Work<'_>, situation: &Situation, price: Amount) -> Result<Amount, String> {
        match work {
            Work::Order { order } => {
                if !situation.runs_leases {
                    return Err("this provider has no container runtime for leases".into());
                }
                let requirements = &order.spec.requirements;
                if let Some(missing) = requirements.first_unmet(&situation.attributes) {
                    return Err(format!(
                        "placement requires {}={}, which this provider lacks",
                        missing.key, missing.value
                    ));
                }
                let auditors = requirements.signed_by.all_of.len() + requirements.signed_by.any_of.len();
                if auditors > 0 {
                    return Err(format!(
                        "the order wants attributes signed by {auditors} auditor(s); this provider has no audited attributes"
                    ));
                }
            }
            Work::Job { job } => {
                let workload = &job.spec.workload;
                if !situation.runtimes.iter().any(|(k, r)| *k == workload.kind && *r == workload.runtime) {
                    return Err(format!(
                        "no runner for {:?} jobs on runtime `{}`",
                        workload.kind, workload.runtime
                    ));
                }
            }
        }
        work.needs().fits(&situation.free).map(|()| price)
    }
}

/// The operator's cap on concurrent work.
struct Concurrency {
    max_leases: u32,
    max_jobs: u32,
}

impl PriceComponent for Concurrency {
    fn name(&self) -> &'static str {
        "concurrency"
    }

    fn apply(&self, work: &Work<'_>, situation: &Situation, price: Amount) -> Result<Amount, String> {
        match work {
            Work::Order { .. } if situation.active_leases >= self.max_leases => {
                Err(format!("already running {} leases (limits.max_leases)", situation.active_leases))
            }
            Work::Job { .. } if situation.active_jobs >= self.max_jobs => {
                Err(format!("already running {} jobs (limits.max_jobs)", situation.active_jobs))
            }
            _ => Ok(price),
        }
    }
}

/// A linear price: per resource unit and hour for leases, per 10⁹ fuel units for jobs.
struct Linear(Pricing);

impl PriceComponent for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, _: Amount) -> Result<Amount, String> {
        const GIB: u128 = 1 << 30;
        let p = &self.0;
        let price: u128 = match work {
            Work::Order { order } => order
                .spec
                .resources
                .iter()
                .map(|unit| {
                    let r = &unit.resources;
                    let storage: u128 = r.storage.iter().map(|s| u128::from(s.bytes)).sum();
                    let one = u128::from(r.cpu_millis) * p.cpu_core_hour.0 / 1000
                        + u128::from(r.memory_bytes) * p.memory_gib_hour.0 / GIB
                        + storage * p.storage_gib_hour.0 / GIB
                        + u128::from(r.gpu.units) * p.gpu_hour.0;
                    one * u128::from(unit.count)
                })
                .sum(),
            Work::Job { job } => {
                u128::from(job.spec.max_fuel).saturating_mul(p.job_gfuel.0).div_ceil(1_000_000_000)
            }
        };
        Ok(Amount(price))
    }
}

/// The least this provider asks.
struct Floor {
    lease: Amount,
    job: Amount,
}

impl PriceComponent for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, price: Amount) -> Result<Amount, String> {
        let floor = match work {
            Work::Order { .. } => self.lease,
            Work::Job { .. } => self.job,
        };
        Ok(price.max(floor))
    }
}

/// The operator's own script (as Akash's bid-price script): the work and the price so far as JSON on stdin,
/// the price on stdout, or a non-zero exit to decline.
struct Script {
    path: std::path::PathBuf,
    timeout: Duration,
}

impl PriceComponent for Script {
    fn name(&self) -> &'static str {
        "price_script"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, price: Amount) -> Result<Amount, String> {
        let input =
            serde_json::json!({ "work": work, "price": price, "ceiling": work.ceiling() }).to_string();
        let mut child = Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A script that does not read its input closes the pipe early; its answer still counts.
            let _ = stdin.write_all(input.as_bytes());
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{} took longer than {:?}", self.path.display(), self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for {}: {e}", self.path.display())),
            }
        }
        let output = child.wait_with_output().map_err(|e| format!("reading {}: {e}", self.path.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(format!("{} declined ({}): {stderr}", self.path.display(), output.status));
        }
        let parsed = stdout.parse::<u128>().map(Amount).or_else(|_| stdout.parse::<Amount>());
        parsed.map_err(|_| format!("{} printed `{stdout}`, not a price", self.path.display()))
    }
}

/// The chain's own limit: a bid above the order's maximum (or the job's budget share) would be refused.
struct Ceiling;

impl PriceComponent for Ceiling {
    fn name(&self) -> &'static str {
        "ceiling"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, price: Amount) -> Result<Amount, String> {
        let ceiling = work.ceiling();
        if price > ceiling {
            return Err(format!("our price {price} is above what the {} pays ({ceiling})", work.id()));
        }
        Ok(price)
    }
}

/// A decision, as the daemon keeps the recent ones.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub at: Timestamp,
    pub work: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    Bid { price: Amount },
    NoBid(NoBid),
}

/// How many recent decisions are kept.
const HISTORY: usize = 100;

/// The chain of components and the record of what it decided.
pub struct BidEngine {
    components: Vec<Box<dyn PriceComponent>>,
    history: Mutex<VecDeque<Decision>>,
}

impl std::fmt::Debug for BidEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.components.iter().map(|c| c.name()).collect();
        f.debug_struct("BidEngine").field("components", &names).finish()
    }
}

impl BidEngine {
    /// The standard chain: deny list, fit, concurrency, linear price, floor, the operator's script, ceiling.
    pub fn from_config(pricing: &Pricing, limits: &Limits) -> BidEngine {
        let mut components: Vec<Box<dyn PriceComponent>> = vec![
            Box::new(DenyList(pricing.deny.clone())),
            Box::new(Fits),
            Box::new(Concurrency { max_leases: limits.max_leases, max_jobs: limits.max_jobs }),
            Box::new(Linear(pricing.clone())),
            Box::new(Floor { lease: pricing.floor, job: pricing.job_floor }),
        ];
        if let Some(path) = &pricing.price_script {
            components.push(Box::new(Script { path: path.clone(), timeout: pricing.price_script_timeout }));
        }
        components.push(Box::new(Ceiling));
        BidEngine::new(components)
    }

    pub fn new(components: Vec<Box<dyn PriceComponent>>) -> BidEngine {
        BidEngine { components, history: Mutex::new(VecDeque::new()) }
    }

    /// Runs the chain, logs and records the outcome.
    pub fn decide(&self, work: &Work<'_>, situation: &Situation, now: Timestamp) -> Result<Amount, NoBid> {
        let mut price = Amount::ZERO;
        let mut outcome = Ok(Amount::ZERO);
        for component in &self.components {
            match component.apply(work, situation, price) {
                Ok(next) => price = next,
                Err(reason) => {
                    outcome = Err(NoBid { component: component.name(), reason });
                    break;
                }
            }
        }
        let outcome = outcome.map(|_| price);
        match &outcome {
            Ok(price) => tracing::info!(work = %work.id(), %price, "bidding"),
            Err(no) => {
                tracing::info!(work = %work.id(), component = no.component, reason = %no.reason, "not bidding")
            }
        }
        let mut history = self.history.lock();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(Decision {
            at: now,
            work: work.id(),
            outcome: match &outcome {
                Ok(price) => Outcome::Bid { price: *price },
                Err(no) => Outcome::NoBid(no.clone()),
            },
        });
        outcome
    }

    /// The recent decisions, newest last.
    pub fn history(&self) -> Vec<Decision> {
        self.history.lock().iter().cloned().collect()
    }

    /// The recent declines, newest last.
    pub fn no_bids(&self) -> Vec<Decision> {
        self.history.lock().iter().filter(|d| matches!(d.outcome, Outcome::NoBid(_))).cloned().collect()
    }
}
