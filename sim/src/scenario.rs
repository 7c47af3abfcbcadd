//! The market tour: the scenario `tgrid sim` runs. Five providers (three honest, one cheater, one that goes
//! silent, one lazy), three tenants and one job client, over 100 minutes of block time.

use tensorgrid_types::job::{JobSpec, Workload, WorkloadKind};
use tensorgrid_types::market::GroupSpec;
use tensorgrid_types::resources::{Attribute, PlacementRequirements, ResourceUnit, ResourceUnits};
use tensorgrid_types::{Amount, Hash, Params, Timestamp};

use crate::actors::{Actor, Behaviour, JobClient, Provider, Tenant};
use crate::world::{SimError, World};

/// How long the tour runs, in milliseconds of block time.
pub const TOUR_MS: u64 = 100 * 60_000;

const MINUTE: u64 = 60_000;

fn at(ms: u64) -> Timestamp {
    tensorgrid_ledger::testing::GENESIS_TIME.plus(ms)
}

fn web_group(region: &str, max_price: Amount) -> GroupSpec {
    GroupSpec {
        name: "web".into(),
        requirements: PlacementRequirements {
            attributes: vec![Attribute::new("region", region)],
            ..Default::default()
        },
        resources: vec![ResourceUnit {
            resources: ResourceUnits { cpu_millis: 1_000, memory_bytes: 1 << 30, ..Default::default() },
            count: 1,
        }],
        max_price,
    }
}

fn wasm_job(budget: Amount, redundancy: u8, name: &str) -> JobSpec {
    JobSpec {
        workload: Workload {
            kind: WorkloadKind::Wasm,
            hash: Hash::of(format!("{name}.wasm").as_bytes()),
            runtime: "wasi-p1".into(),
            args: vec![],
        },
        inputs: vec![Hash::of(format!("{name}-input").as_bytes())],
        resources: ResourceUnits { cpu_millis: 1_000, memory_bytes: 256 << 20, ..Default::default() },
        max_fuel: 10_000_000_000,
        redundancy,
        budget,
        bid_window_ms: 20_000,
        run_timeout_ms: 2 * MINUTE,
        reveal_window_ms: MINUTE,
        requirements: Default::default(),
    }
}

fn tgr_milli(milli: u128) -> Amount {
    Amount::utgr(milli * 1_000)
}

/// Builds the tour's world for `seed`.
pub fn market_tour(seed: u64) -> Result<World, SimError> {
    let p = |milli| Some(tgr_milli(milli));
    let actors: Vec<Box<dyn Actor>> = vec![
        Box::new(Provider::new("atlas", "eu", tgr_milli(1_200), vec![p(300), p(300)], Behaviour::Honest)),
        Box::new(Provider::new("borealis", "eu", tgr_milli(900), vec![p(350), None], Behaviour::Honest)),
        Box::new(Provider::new("cirrus", "eu", tgr_milli(1_000), vec![None, p(250)], Behaviour::Cheater)),
        Box::new(Provider::new(
            "drift",
            "us",
            tgr_milli(800),
            vec![p(450), None],
            Behaviour::GoesSilentAt(at(40 * MINUTE)),
        )),
        Box::new(Provider::new("ember", "eu", tgr_milli(2_000), vec![None, p(200)], Behaviour::Lazy)),
        Box::new({
            let mut t =
                Tenant::new("alice", vec![web_group("eu", tgr_milli(1_500))], Amount::tgr(10), at(MINUTE));
            t.close_at = Some(at(90 * MINUTE));
            t
        }),
        Box::new(Tenant::new("bruno", vec![web_group("us", Amount::tgr(1))], Amount::tgr(5), at(MINUTE))),
        Box::new(Tenant::new(
            "carol",
            vec![web_group("eu", tgr_milli(1_500))],
            Amount::tgr(1),
            at(2 * MINUTE),
        )),
        Box::new(JobClient::new("dana", wasm_job(Amount::tgr(1), 2, "word-count"), at(3 * MINUTE))),
        Box::new(JobClient::new("erin", wasm_job(Amount::tgr(1), 2, "image-resize"), at(10 * MINUTE))),
    ];
    // A devnet-sized minimum deposit lets carol fund only about an hour, so her escrow runs dry on screen.
    let params =
        Params { bid_window_ms: 20_000, min_deployment_deposit: Amount::tgr(1), ..Params::default() };
    let mut world = World::new(seed, params, actors, Amount::tgr(1_000))?;
    world.block_ms = 5_000;
    Ok(world)
}

/// Runs the whole tour.
pub fn run_market_tour(seed: u64) -> Result<World, SimError> {
    let mut world = market_tour(seed)?;
    world.run_until(TOUR_MS)?;
    Ok(world)
}
