//! The bid engine: whether this provider can serve an order or a job, and at what price.
//!
//! A decision runs through a chain of small components (like yagna's negotiator components), each of which
//! either passes the quote on (possibly changing the price) or declines with a reason. Every decline is
//! kept, because "why did I get no bids?" is the first thing a tenant asks and the provider's operator must
//! be able to answer it (`tgrid provider status`, `GET /v1/provider`). The operator's own price script is a
//! process, so the engine does not run it: a quote that needs it comes back as [`Quote::AskScript`], the
//! interpreter runs the script, and [`BidEngine::after_script`] finishes the decision.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tensorgrid_types::job::{Job, WorkloadKind};
use tensorgrid_types::market::Order;
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Address, Amount, Timestamp};

use crate::capacity::{Capacity, Reservation};
use crate::Policy;

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
            Work::Order { order } => need.add_group(&order.spec),
            Work::Job { job } => need.add(&job.spec.resources, 1),
        }
        need
    }
}

/// What the provider knows about itself when it decides.
#[derive(Clone, Debug, Default)]
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
        // GPU models, vendors and memory the work names must be among the free GPUs.
        let units: Vec<&tensorgrid_types::resources::ResourceUnits> = match work {
            Work::Order { order } => order.spec.resources.iter().map(|u| &u.resources).collect(),
            Work::Job { job } => vec![&job.spec.resources],
        };
        for resources in units.into_iter().filter(|r| r.gpu.units > 0 && !r.gpu.models.is_empty()) {
            let offered = situation.free.gpus.iter().any(|have| {
                resources.gpu.models.iter().any(|want| {
                    want.vendor.eq_ignore_ascii_case(&have.vendor)
                        && want.model.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&have.model))
                        && want.vram_bytes.is_none_or(|v| v <= have.vram_bytes)
                })
            });
            if !offered {
                let wanted: Vec<String> = resources
                    .gpu
                    .models
                    .iter()
                    .map(|m| format!("{}/{}", m.vendor, m.model.as_deref().unwrap_or("*")))
                    .collect();
                return Err(format!(
                    "wants a GPU among [{}]; this provider has none of those free",
                    wanted.join(", ")
                ));
            }
        }
        work.needs().fits(&situation.free).map(|()| price)
    }
}

/// Whether a job's fuel can burn here within its run timeout and this provider's own wall-clock limit,
/// with room left for the commitment to reach a block. A job that cannot is declined: once this provider
/// confirms a job's content, missing the commit deadline costs its deposit.
struct RunTime {
    fuel_per_sec: u64,
    wall_timeout: Duration,
}

/// What a run leaves for the commitment transaction to reach a block.
pub const COMMIT_MARGIN: Duration = Duration::from_secs(3);

impl PriceComponent for RunTime {
    fn name(&self) -> &'static str {
        "run_time"
    }

    fn apply(&self, work: &Work<'_>, _: &Situation, price: Amount) -> Result<Amount, String> {
        let Work::Job { job } = work else { return Ok(price) };
        let needed_ms =
            u128::from(job.spec.max_fuel).saturating_mul(1_000) / u128::from(self.fuel_per_sec.max(1));
        let needed = Duration::from_millis(u64::try_from(needed_ms).unwrap_or(u64::MAX));
        let allowed = Duration::from_millis(job.spec.run_timeout_ms).min(self.wall_timeout);
        if needed.saturating_add(COMMIT_MARGIN) > allowed {
            return Err(format!(
                "{} fuel takes about {needed:?} here ({} fuel/s); the run may take at most {allowed:?} \
                 (the job's run timeout, or limits.job_wall_timeout) less {COMMIT_MARGIN:?} to commit",
                job.spec.max_fuel, self.fuel_per_sec
            ));
        }
        Ok(price)
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
struct Linear(Policy);

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub at: Timestamp,
    pub work: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    Bid { price: Amount },
    NoBid(NoBid),
}

/// How many recent decisions are kept.
const HISTORY: usize = 100;

/// What the components before the operator's script made of a piece of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quote {
    Bid(Amount),
    NoBid(NoBid),
    /// Every component passed it at this price; the operator's script has the last word.
    AskScript(Amount),
}

/// The chain of components and the record of what it decided.
pub struct BidEngine {
    components: Vec<Box<dyn PriceComponent>>,
    script: bool,
    history: VecDeque<Decision>,
}

impl std::fmt::Debug for BidEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.components.iter().map(|c| c.name()).collect();
        f.debug_struct("BidEngine").field("components", &names).field("script", &self.script).finish()
    }
}

impl BidEngine {
    /// The standard chain: deny list, fit, concurrency, run time, linear price, floor, then (when the
    /// policy names one) the operator's script, then the chain's ceiling.
    pub fn from_policy(policy: &Policy) -> BidEngine {
        let components: Vec<Box<dyn PriceComponent>> = vec![
            Box::new(DenyList(policy.deny.clone())),
            Box::new(Fits),
            Box::new(Concurrency { max_leases: policy.max_leases, max_jobs: policy.max_jobs }),
            Box::new(RunTime {
                fuel_per_sec: policy.job_fuel_per_sec,
                wall_timeout: Duration::from_millis(policy.job_wall_timeout_ms),
            }),
            Box::new(Linear(policy.clone())),
            Box::new(Floor { lease: policy.floor, job: policy.job_floor }),
        ];
        BidEngine::new(components, policy.price_script)
    }

    pub fn new(components: Vec<Box<dyn PriceComponent>>, script: bool) -> BidEngine {
        BidEngine { components, script, history: VecDeque::new() }
    }

    /// Runs the chain up to the operator's script. A final answer is recorded; `AskScript` is recorded
    /// once [`BidEngine::after_script`] has the script's answer.
    pub fn decide(&mut self, work: &Work<'_>, situation: &Situation, now: Timestamp) -> Quote {
        let mut price = Amount::ZERO;
        for component in &self.components {
            match component.apply(work, situation, price) {
                Ok(next) => price = next,
                Err(reason) => {
                    let no = NoBid { component: component.name(), reason };
                    self.record(work, Err(no.clone()), now);
                    return Quote::NoBid(no);
                }
            }
        }
        if self.script {
            return Quote::AskScript(price);
        }
        match self.finish(work, Ok(price), now) {
            Ok(price) => Quote::Bid(price),
            Err(no) => Quote::NoBid(no),
        }
    }

    /// Finishes a decision with the operator's script's answer: its price (still under the chain's
    /// ceiling) or its reason for declining.
    pub fn after_script(
        &mut self,
        work: &Work<'_>,
        answer: Result<Amount, String>,
        now: Timestamp,
    ) -> Result<Amount, NoBid> {
        let answer = answer.map_err(|reason| NoBid { component: "price_script", reason });
        match answer {
            Ok(price) => self.finish(work, Ok(price), now),
            Err(no) => {
                self.record(work, Err(no.clone()), now);
                Err(no)
            }
        }
    }

    fn finish(
        &mut self,
        work: &Work<'_>,
        price: Result<Amount, NoBid>,
        now: Timestamp,
    ) -> Result<Amount, NoBid> {
        let outcome = price.and_then(|price| {
            Ceiling
                .apply(work, &Situation::default(), price)
                .map_err(|reason| NoBid { component: Ceiling.name(), reason })
        });
        self.record(work, outcome.clone(), now);
        outcome
    }

    fn record(&mut self, work: &Work<'_>, outcome: Result<Amount, NoBid>, now: Timestamp) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Decision {
            at: now,
            work: work.id(),
            outcome: match outcome {
                Ok(price) => Outcome::Bid { price },
                Err(no) => Outcome::NoBid(no),
            },
        });
    }

    /// The newest decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.history.back()
    }

    /// The recent decisions, newest last.
    pub fn history(&self) -> Vec<Decision> {
        self.history.iter().cloned().collect()
    }

    /// The recent declines, newest last.
    pub fn no_bids(&self) -> Vec<Decision> {
        self.history.iter().filter(|d| matches!(d.outcome, Outcome::NoBid(_))).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use tensorgrid_types::job::{JobSpec, Workload};
    use tensorgrid_types::market::{GroupSpec, OrderId, OrderState};
    use tensorgrid_types::resources::{Gpu, GpuModel, PlacementRequirements, ResourceUnit, ResourceUnits};
    use tensorgrid_types::SecretKey;

    use super::*;
    use crate::capacity::GpuInfo;

    fn units(cpu_millis: u64, memory_bytes: u64, gpus: u32) -> ResourceUnits {
        ResourceUnits {
            cpu_millis,
            memory_bytes,
            gpu: Gpu { units: gpus, models: vec![] },
            ..ResourceUnits::default()
        }
    }

    fn order(resources: ResourceUnits, count: u32, max_price: Amount) -> Order {
        Order {
            id: OrderId { dseq: 7, gseq: 1 },
            owner: SecretKey::from_label("tenant").address(),
            group: 1,
            spec: GroupSpec {
                name: "g".into(),
                requirements: PlacementRequirements::default(),
                resources: vec![ResourceUnit { resources, count }],
                max_price,
            },
            state: OrderState::Open,
            created_at: Timestamp::from_millis(0),
            window_ends: None,
            live_bids: vec![],
        }
    }

    fn job(max_fuel: u64, budget: Amount, runtime: &str) -> Job {
        Job {
            id: 3,
            client: SecretKey::from_label("client").address(),
            spec: JobSpec {
                workload: Workload {
                    kind: WorkloadKind::Wasm,
                    hash: tensorgrid_types::Hash::ZERO,
                    runtime: runtime.into(),
                    args: vec![],
                },
                inputs: vec![],
                resources: units(1000, 64 << 20, 0),
                max_fuel,
                redundancy: 2,
                budget,
                bid_window_ms: 1000,
                run_timeout_ms: 60_000,
                reveal_window_ms: 1000,
                requirements: Default::default(),
            },
            state: tensorgrid_types::job::JobState::Bidding,
            created_at: Timestamp::from_millis(0),
            bid_deadline: Timestamp::from_millis(1000),
            reveal_deadline: None,
            challenge_deadline: None,
            slots: vec![],
            live_bids: vec![],
            held: budget,
            paid: Amount::ZERO,
            finished_at: None,
            storage_deposit: Amount::ZERO,
            audit_fee: Amount::ZERO,
            checks: Vec::new(),
            verdict: None,
        }
    }

    fn situation() -> Situation {
        Situation {
            free: Capacity {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                storage_bytes: 100 << 30,
                gpus: vec![GpuInfo { vendor: "nvidia".into(), model: "h100".into(), vram_bytes: 80 << 30 }],
            },
            attributes: vec![Attribute::new("region", "eu")],
            active_leases: 0,
            active_jobs: 0,
            runtimes: vec![(WorkloadKind::Wasm, "wasi-p1".into())],
            runs_leases: true,
        }
    }

    fn engine(policy: Policy) -> BidEngine {
        BidEngine::from_policy(&Policy { max_leases: 1, max_jobs: 1, ..policy })
    }

    /// The engine's answer when no price script is configured.
    fn decide(
        engine: &mut BidEngine,
        work: &Work<'_>,
        situation: &Situation,
        now: Timestamp,
    ) -> Result<Amount, NoBid> {
        match engine.decide(work, situation, now) {
            Quote::Bid(price) => Ok(price),
            Quote::NoBid(no) => Err(no),
            Quote::AskScript(_) => panic!("no script is configured"),
        }
    }

    #[test]
    fn a_lease_is_priced_per_unit_and_hour_with_a_floor_under_the_ceiling() {
        let pricing = Policy {
            cpu_core_hour: Amount(1_000),
            memory_gib_hour: Amount(100),
            gpu_hour: Amount(50_000),
            floor: Amount(10),
            ..Policy::default()
        };
        let mut engine = engine(pricing);
        let s = situation();
        let now = Timestamp::from_millis(1);
        // 2 × (1.5 cores × 1000 + 2 GiB × 100 + 1 GPU × 50 000) = 2 × 51 700.
        let o = order(units(1500, 2 << 30, 1), 2, Amount::tgr(1));
        let mut two_gpus = s.clone();
        two_gpus.free.gpus.push(two_gpus.free.gpus[0].clone());
        assert_eq!(decide(&mut engine, &Work::Order { order: &o }, &two_gpus, now), Ok(Amount(103_400)));
        // One GPU free for two instances: no bid, and the reason is kept.
        let no = decide(&mut engine, &Work::Order { order: &o }, &s, now).unwrap_err();
        assert_eq!(no.component, "fits");
        assert!(no.reason.contains("GPUs"), "{no:?}");
        let cheap = order(units(1, 1, 0), 1, Amount(1_000));
        assert_eq!(decide(&mut engine, &Work::Order { order: &cheap }, &s, now), Ok(Amount(10)), "the floor");
        let stingy = order(units(4000, 1 << 30, 0), 1, Amount(1_000));
        let no = decide(&mut engine, &Work::Order { order: &stingy }, &s, now).unwrap_err();
        assert_eq!(no.component, "ceiling");
        assert_eq!(engine.no_bids().len(), 2);
        assert_eq!(engine.history().len(), 4);
    }

    #[test]
    fn placement_gpu_models_deny_lists_and_limits_decline_with_reasons() {
        let tenant = SecretKey::from_label("tenant").address();
        let mut denying = engine(Policy { deny: vec![tenant], ..Policy::default() });
        let now = Timestamp::from_millis(1);
        let o = order(units(100, 1 << 20, 0), 1, Amount::tgr(1));
        assert_eq!(
            decide(&mut denying, &Work::Order { order: &o }, &situation(), now).unwrap_err().component,
            "deny_list"
        );

        let mut engine = engine(Policy::default());
        let mut placed = o.clone();
        placed.spec.requirements.attributes = vec![Attribute::new("region", "us")];
        let no = decide(&mut engine, &Work::Order { order: &placed }, &situation(), now).unwrap_err();
        assert!(no.reason.contains("region=us"), "{no:?}");

        let mut a100 = order(units(100, 1 << 20, 1), 1, Amount::tgr(10));
        a100.spec.resources[0].resources.gpu.models = vec![GpuModel {
            vendor: "nvidia".into(),
            model: Some("a100".into()),
            vram_bytes: None,
            interface: None,
        }];
        let no = decide(&mut engine, &Work::Order { order: &a100 }, &situation(), now).unwrap_err();
        assert!(no.reason.contains("nvidia/a100"), "{no:?}");
        let mut h100 = a100.clone();
        h100.spec.resources[0].resources.gpu.models[0].model = Some("H100".into());
        assert!(
            decide(&mut engine, &Work::Order { order: &h100 }, &situation(), now).is_ok(),
            "model names match case-insensitively"
        );

        let mut busy = situation();
        busy.active_leases = 1;
        assert_eq!(
            decide(&mut engine, &Work::Order { order: &o }, &busy, now).unwrap_err().component,
            "concurrency"
        );
        let mut jobs_only = situation();
        jobs_only.runs_leases = false;
        let no = decide(&mut engine, &Work::Order { order: &o }, &jobs_only, now).unwrap_err();
        assert!(no.reason.contains("container runtime"), "{no:?}");
    }

    #[test]
    fn a_job_is_priced_by_fuel_and_needs_a_runner_for_its_runtime() {
        let mut engine =
            engine(Policy { job_gfuel: Amount(1_000), job_floor: Amount(5), ..Policy::default() });
        let now = Timestamp::from_millis(1);
        let j = job(2_500_000_000, Amount::tgr(1), "wasi-p1");
        assert_eq!(decide(&mut engine, &Work::Job { job: &j }, &situation(), now), Ok(Amount(2_500)));
        let tiny = job(1, Amount::tgr(1), "wasi-p1");
        assert_eq!(
            decide(&mut engine, &Work::Job { job: &tiny }, &situation(), now),
            Ok(Amount(5)),
            "the job floor"
        );
        let other = job(1, Amount::tgr(1), "wasi-p2");
        assert!(decide(&mut engine, &Work::Job { job: &other }, &situation(), now)
            .unwrap_err()
            .reason
            .contains("wasi-p2"));
        // Budget 4 000 for k = 2 leaves at most 2 000 each, under our 2 500.
        let poor = job(2_500_000_000, Amount(4_000), "wasi-p1");
        assert_eq!(
            decide(&mut engine, &Work::Job { job: &poor }, &situation(), now).unwrap_err().component,
            "ceiling"
        );
    }

    #[test]
    fn a_job_whose_fuel_cannot_burn_within_its_run_timeout_here_is_declined() {
        let mut engine = engine(Policy::default());
        let now = Timestamp::from_millis(1);
        // 150 M fuel/s by default: 60 s of run timeout holds 57 s of fuel after the commit margin.
        let fits = job(8_000_000_000, Amount::tgr(100), "wasi-p1");
        assert!(decide(&mut engine, &Work::Job { job: &fits }, &situation(), now).is_ok());
        let mut tight = job(9_000_000_000, Amount::tgr(100), "wasi-p1");
        let no = decide(&mut engine, &Work::Job { job: &tight }, &situation(), now).unwrap_err();
        assert_eq!(no.component, "run_time", "{no:?}");
        // The provider's own wall-clock limit binds too.
        tight.spec.max_fuel = 1_000_000_000;
        let mut short = BidEngine::from_policy(&Policy { job_wall_timeout_ms: 5_000, ..Policy::default() });
        assert_eq!(
            decide(&mut short, &Work::Job { job: &tight }, &situation(), now).unwrap_err().component,
            "run_time"
        );
    }
}
