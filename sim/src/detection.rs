//! The detection table: for each way of cheating, seeded worlds run a stream of jobs through the real provider
//! core and the ledger's committees, audits and slashing, and measure how soon the cheat is caught, what it
//! earns against an honest actor in the same place, what checking costs, and that no job is left unresolved
//! and no utgr appears or vanishes.
//!
//! Every row runs twice on the same seed: once with the misbehaving actor and once with an honest one in its
//! place (the baseline). Four honest referees that never bid sit on committees in every world.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tensorgrid_types::committee::{CheckKind, CommitteePhase, SeatState};
use tensorgrid_types::job::{JobSpec, JobState, SlotState, Workload, WorkloadKind};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::resources::ResourceUnits;
use tensorgrid_types::{Address, Amount, Event, Hash, Params};

use crate::actors::{Actor, Behaviour, JobStream, Provider};
use crate::world::{SimError, World};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
/// A job is submitted every this often.
const JOB_INTERVAL_MS: u64 = 30 * SECOND;
/// The window the detection rate is measured over.
pub const WINDOW: usize = 100;

/// A way of cheating the table measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// A provider that reveals a made-up result for every job it runs (k = 1).
    AlwaysWrong,
    /// Wrong for one job in ten (k = 1).
    WrongOneInTen,
    /// Skips the work and reveals a guess that is right for half the jobs (k = 1).
    SkipsAndGuesses,
    /// Two identities of one operator win a k = 2 job together and reveal the same invented result.
    TwoColluders,
    /// A client that disputes every honest single result.
    GriefingClient,
    /// A committee member that votes a made-up result (every job goes to a committee: k = 2, one of the two
    /// workers is always wrong).
    LyingReferee,
    /// A committee member that never commits (same jobs as for the lying one).
    SilentReferee,
}

impl Strategy {
    pub const ALL: [Strategy; 7] = [
        Strategy::AlwaysWrong,
        Strategy::WrongOneInTen,
        Strategy::SkipsAndGuesses,
        Strategy::TwoColluders,
        Strategy::GriefingClient,
        Strategy::LyingReferee,
        Strategy::SilentReferee,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Strategy::AlwaysWrong => "always-wrong provider",
            Strategy::WrongOneInTen => "wrong with probability 0.1",
            Strategy::SkipsAndGuesses => "skips the work, reveals a guess (right 1 in 2)",
            Strategy::TwoColluders => "two colluders in a k = 2 job",
            Strategy::GriefingClient => "griefing client disputing honest results",
            Strategy::LyingReferee => "lying referee",
            Strategy::SilentReferee => "silent referee",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub strategy: Strategy,
    /// The job's price as a share of `min_provider_stake`, in percent.
    pub price_percent: u32,
    pub price: Amount,
    pub jobs: usize,
    /// Windows of [`WINDOW`] consecutive jobs the actor took part in (worked on, sat on a committee of,
    /// disputed; the whole run when shorter) in which it was caught at least once, over all windows.
    pub caught_within_window: f64,
    /// Jobs the actor took part in.
    pub took_part: usize,
    /// Times it was caught in all.
    pub caught: usize,
    /// What the misbehaving actor gained per job, in utgr (negative: lost).
    pub profit_per_job: i128,
    /// What an honest actor in its place gained per job on the same seed.
    pub honest_profit_per_job: i128,
    /// Committee and audit runs per useful (paid) run.
    pub overhead: f64,
    /// The same with no cheater in the world: the audits alone.
    pub honest_overhead: f64,
    /// Jobs not settled when the run ended (must be 0).
    pub unresolved: usize,
    /// Total supply at the end equals the genesis supply, in both worlds.
    pub supply_conserved: bool,
}

/// What one world measured.
struct Outcome {
    caught_jobs: BTreeSet<u64>,
    /// Jobs the misbehaving actor took part in, in order.
    took_part: Vec<u64>,
    caught: usize,
    profit: i128,
    overhead: f64,
    unresolved: usize,
    supply_conserved: bool,
}

fn spec(price: Amount, redundancy: u8) -> JobSpec {
    JobSpec {
        workload: Workload {
            kind: WorkloadKind::Wasm,
            hash: Hash::ZERO,
            runtime: "wasi-p1".into(),
            args: vec![],
        },
        inputs: vec![],
        resources: ResourceUnits { cpu_millis: 500, memory_bytes: 64 << 20, ..Default::default() },
        max_fuel: 1_000_000,
        redundancy,
        budget: Amount(price.0 * u128::from(redundancy)),
        bid_window_ms: 20 * SECOND,
        run_timeout_ms: MINUTE,
        reveal_window_ms: 30 * SECOND,
        requirements: Default::default(),
    }
}

/// A provider that bids `price` on every job (`None`: never bids, referees only).
fn provider(name: &str, price: Option<Amount>, behaviour: Behaviour) -> Provider {
    let mut p = Provider::new(name, "eu", Amount::tgr(1), Vec::new(), behaviour);
    p.job_price = price;
    p.rebond_when_jailed = true;
    p
}

/// Net worth of an account: its balance, plus its stake and unbonding entries when it is a provider.
fn worth(world: &World, address: &Address) -> i128 {
    let balance = world.chain.balance(address).0 as i128;
    match world.chain.query(Query::Provider { address: *address }) {
        QueryResponse::Provider(Some(p)) => {
            balance + p.stake.0 as i128 + p.unbonding.iter().map(|u| u.amount.0 as i128).sum::<i128>()
        }
        _ => balance,
    }
}

/// Runs one world: `strategy`'s actors (honest ones in their place when `cheat` is false), `jobs` jobs at
/// `price`, until every job settled (or a generous tail ran out).
fn run_world(
    strategy: Strategy,
    price: Amount,
    jobs: usize,
    seed: u64,
    cheat: bool,
) -> Result<Outcome, SimError> {
    let bad = |b: Behaviour| if cheat { b } else { Behaviour::Honest };
    let mut actors: Vec<Box<dyn Actor>> = Vec::new();
    let (subjects, k, griefing): (Vec<&str>, u8, bool) = match strategy {
        Strategy::AlwaysWrong | Strategy::WrongOneInTen | Strategy::SkipsAndGuesses => {
            let behaviour = match strategy {
                Strategy::AlwaysWrong => Behaviour::Cheater,
                Strategy::WrongOneInTen => Behaviour::WrongSometimes { per_mille: 100 },
                _ => Behaviour::Guesser { right_per_mille: 500 },
            };
            actors.push(Box::new(provider("mallory", Some(price), bad(behaviour))));
            (vec!["mallory"], 1, false)
        }
        Strategy::TwoColluders => {
            actors.push(Box::new(provider("mallory", Some(price), bad(Behaviour::Colluder))));
            actors.push(Box::new(provider("mallet", Some(price), bad(Behaviour::Colluder))));
            (vec!["mallory"], 2, false)
        }
        Strategy::GriefingClient => {
            actors.push(Box::new(provider("worker", Some(price), Behaviour::Honest)));
            (vec!["client"], 1, cheat)
        }
        Strategy::LyingReferee | Strategy::SilentReferee => {
            let behaviour = if strategy == Strategy::LyingReferee {
                Behaviour::LyingReferee
            } else {
                Behaviour::SilentReferee
            };
            actors.push(Box::new(provider("worker", Some(price), Behaviour::Honest)));
            actors.push(Box::new(provider("mallory", Some(price), Behaviour::Cheater)));
            actors.push(Box::new(provider("liar", None, bad(behaviour))));
            (vec!["liar"], 2, false)
        }
    };
    for name in ["ref-a", "ref-b", "ref-c", "ref-d"] {
        actors.push(Box::new(provider(name, None, Behaviour::Honest)));
    }
    // Jobs start once every provider has registered.
    let start = tensorgrid_ledger::testing::GENESIS_TIME.plus(MINUTE);
    let mut stream = JobStream::new("client", spec(price, k), start, JOB_INTERVAL_MS, jobs);
    stream.griefing = griefing;
    actors.push(Box::new(stream));
    let params = Params { bid_window_ms: 20 * SECOND, ..Params::default() };
    let funds = Amount::tgr(10_000_000);
    let count = actors.len() as u128;
    let mut world = World::new(seed, params, actors, funds)?;
    world.block_ms = 5 * SECOND;
    world.check_every = 50;
    let addresses: Vec<Address> = subjects.iter().filter_map(|n| world.address_of(n)).collect();
    let before: i128 = addresses.iter().map(|a| worth(&world, a)).sum();

    let submitted_by = MINUTE + JOB_INTERVAL_MS * jobs as u64;
    world.run_until(submitted_by)?;
    // The tail: challenge periods, committees (two rounds at most), retention is far off.
    let limit = submitted_by + 3 * 60 * MINUTE;
    while world.elapsed() < limit {
        world.run_until(world.elapsed() + 5 * MINUTE)?;
        if (1..=jobs as u64).all(|id| job_final(&world, id)) {
            break;
        }
    }
    world.chain.ledger.check_invariants()?;
    let after: i128 = addresses.iter().map(|a| worth(&world, a)).sum();

    let mut caught_jobs = BTreeSet::new();
    let mut took_part = BTreeSet::new();
    let mut caught = 0;
    let committee_job: BTreeMap<u64, u64> = world
        .log
        .iter()
        .filter_map(|l| match &l.event {
            Event::CommitteeDrawn {
                committee,
                subject: tensorgrid_types::committee::CheckSubject::Job { job },
                ..
            } => Some((*committee, *job)),
            _ => None,
        })
        .collect();
    for logged in &world.log {
        match &logged.event {
            Event::JobAssigned { job, provider, .. } if addresses.contains(provider) => {
                took_part.insert(*job);
            }
            Event::CommitteeDrawn { committee, members, .. }
                if members.iter().any(|m| addresses.contains(m)) =>
            {
                took_part.extend(committee_job.get(committee));
            }
            _ => {}
        }
        let job = match &logged.event {
            Event::ProviderSlashed { provider, job, .. } if addresses.contains(provider) => Some(*job),
            Event::RefereeForfeited { provider, committee, .. } if addresses.contains(provider) => {
                committee_job.get(committee).copied()
            }
            _ => None,
        };
        if let Some(job) = job {
            caught += 1;
            caught_jobs.insert(job);
        }
    }
    if strategy == Strategy::GriefingClient {
        // The client is caught each time its dispute ends with the accused result standing.
        for id in 1..=jobs as u64 {
            let Some(job) = read_job(&world, id) else { continue };
            for committee in &job.checks {
                let QueryResponse::Committee(Some(c)) =
                    world.chain.query(Query::Committee { committee: *committee })
                else {
                    continue;
                };
                let accused = job.slots.iter().find_map(|s| s.result);
                if c.kind != CheckKind::Dispute {
                    continue;
                }
                took_part.insert(id);
                if c.phase == (CommitteePhase::Concluded { verdict: accused }) {
                    caught += 1;
                    caught_jobs.insert(id);
                }
            }
        }
    }

    let (mut useful, mut checking, mut unresolved) = (0u64, 0u64, 0usize);
    for id in 1..=jobs as u64 {
        let Some(job) = read_job(&world, id) else {
            unresolved += 1;
            continue;
        };
        if !job.state.is_final() {
            unresolved += 1;
        }
        useful += job.slots.iter().filter(|s| s.state == SlotState::Paid).count() as u64;
        for committee in &job.checks {
            if let QueryResponse::Committee(Some(c)) =
                world.chain.query(Query::Committee { committee: *committee })
            {
                checking += c
                    .seats
                    .iter()
                    .filter(|s| {
                        matches!(
                            s.state,
                            SeatState::Committed | SeatState::Revealed | SeatState::MissedReveal
                        )
                    })
                    .count() as u64;
            }
        }
    }
    let QueryResponse::Supply(supply) = world.chain.query(Query::Supply) else {
        return Err(SimError::Invariant(tensorgrid_ledger::InvariantError::Broken("no supply".into())));
    };
    Ok(Outcome {
        caught_jobs,
        took_part: took_part.into_iter().collect(),
        caught,
        profit: (after - before) / jobs.max(1) as i128,
        overhead: checking as f64 / useful.max(1) as f64,
        unresolved,
        supply_conserved: supply.total == Amount(funds.0 * count),
    })
}

fn read_job(world: &World, id: u64) -> Option<tensorgrid_types::job::Job> {
    match world.chain.query(Query::Job { job: id }) {
        QueryResponse::Job(job) => job,
        _ => None,
    }
}

fn job_final(world: &World, id: u64) -> bool {
    read_job(world, id).is_some_and(|j| j.state.is_final() && j.state != JobState::Refereeing)
}

/// One row: the misbehaving world and its honest baseline on the same seed.
pub fn row(strategy: Strategy, price_percent: u32, jobs: usize, seed: u64) -> Result<Row, SimError> {
    let stake = Params::default().min_provider_stake;
    let price = Amount(stake.0 * u128::from(price_percent) / 100);
    let cheat = run_world(strategy, price, jobs, seed, true)?;
    let honest = run_world(strategy, price, jobs, seed, false)?;
    let part = &cheat.took_part;
    let windows: Vec<&[u64]> = part.chunks(WINDOW).collect();
    let hit = windows.iter().filter(|w| w.iter().any(|job| cheat.caught_jobs.contains(job))).count();
    Ok(Row {
        strategy,
        price_percent,
        price,
        jobs,
        caught_within_window: hit as f64 / windows.len().max(1) as f64,
        took_part: part.len(),
        caught: cheat.caught,
        profit_per_job: cheat.profit,
        honest_profit_per_job: honest.profit,
        overhead: cheat.overhead,
        honest_overhead: honest.overhead,
        unresolved: cheat.unresolved + honest.unresolved,
        supply_conserved: cheat.supply_conserved && honest.supply_conserved,
    })
}

/// The whole table: every strategy at job prices of 1 %, 10 % and 100 % of the minimum provider stake.
pub fn table(jobs: usize, seed: u64) -> Result<Vec<Row>, SimError> {
    let mut rows = Vec::new();
    for strategy in Strategy::ALL {
        for percent in [1, 10, 100] {
            rows.push(row(strategy, percent, jobs, seed)?);
        }
    }
    Ok(rows)
}

fn tgr(utgr: i128) -> String {
    let sign = if utgr < 0 { "−" } else { "" };
    let abs = utgr.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1_000_000, (abs % 1_000_000) / 1_000)
}

/// The table as Markdown, for the README and the benchmark's output.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| misbehaviour | price | jobs (its part) | caught within 100 of its jobs | times caught | its profit/job (TGR) | honest in its place (TGR) | cheating's gain/job | overhead (honest network) | unresolved | supply |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} % ({} TGR) | {} ({}) | {:.1} % | {} | {} | {} | {} | {:.1} % ({:.1} %) | {} | {} |\n",
            r.strategy.describe(),
            r.price_percent,
            r.price.0 / 1_000_000,
            r.jobs,
            r.took_part,
            r.caught_within_window * 100.0,
            r.caught,
            tgr(r.profit_per_job),
            tgr(r.honest_profit_per_job),
            tgr(r.profit_per_job - r.honest_profit_per_job),
            r.overhead * 100.0,
            r.honest_overhead * 100.0,
            r.unresolved,
            if r.supply_conserved { "conserved" } else { "BROKEN" },
        ));
    }
    out
}
