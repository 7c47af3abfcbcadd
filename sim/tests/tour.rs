//! The market tour's outcomes, each produced by an actor behaving well or badly, and its determinism.

use tensorgrid_sim::report::Report;
use tensorgrid_sim::scenario::run_market_tour;
use tensorgrid_sim::world::World;
use tensorgrid_types::job::{JobBidState, JobState, SlotState};
use tensorgrid_types::market::{CloseReason, DeploymentState, LeaseState, OrderId};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::time::MS_PER_HOUR;
use tensorgrid_types::{Amount, Event};

fn deployment(world: &World, dseq: u64) -> tensorgrid_types::query::DeploymentInfo {
    match world.chain.query(Query::Deployment { dseq }) {
        QueryResponse::Deployment(Some(d)) => d,
        other => panic!("{other:?}"),
    }
}

fn job(world: &World, id: u64) -> tensorgrid_types::job::Job {
    match world.chain.query(Query::Job { job: id }) {
        QueryResponse::Job(Some(j)) => j,
        other => panic!("{other:?}"),
    }
}

fn milli(m: u128) -> Amount {
    Amount(m * 1_000)
}

#[test]
fn the_tour_ends_as_each_actor_deserves() {
    let world = run_market_tour(1).unwrap();
    let name = |a| world.name(a);

    // Honest providers agree on job 1 and are paid their own bids; the client gets the rest back.
    let j1 = job(&world, 1);
    assert_eq!(j1.state, JobState::Completed);
    assert_eq!(j1.paid, milli(650));
    let paid: Vec<_> = j1.slots.iter().map(|s| (name(&s.provider), s.price, s.state)).collect();
    assert_eq!(
        paid,
        vec![("atlas".into(), milli(300), SlotState::Paid), ("borealis".into(), milli(350), SlotState::Paid)]
    );

    // Job 2: the lazy provider misses its commit and forfeits; the cheater's result differs from the honest
    // replacement's, so a referee committee of the other providers re-runs it: the honest result stands, the
    // cheater is slashed and unpaid, the honest provider is paid.
    let j2 = job(&world, 2);
    assert_eq!(j2.state, JobState::Completed);
    assert_eq!(
        j2.verdict,
        Some(tensorgrid_sim::actors::honest_result(&j2.spec.workload.hash, &j2.spec.inputs))
    );
    let slots: Vec<_> = j2.slots.iter().map(|s| (name(&s.provider), s.state)).collect();
    assert_eq!(
        slots,
        vec![
            ("ember".into(), SlotState::MissedCommit),
            ("cirrus".into(), SlotState::Slashed),
            ("atlas".into(), SlotState::Paid)
        ]
    );
    let cirrus = world.address_of("cirrus").unwrap();
    assert!(world
        .log
        .iter()
        .any(|l| matches!(l.event, Event::ProviderSlashed { provider, job: 2, .. } if provider == cirrus)));
    let QueryResponse::JobBids(bids) = world.chain.query(Query::JobBids { job: 2 }) else { panic!() };
    let ember = world.address_of("ember").unwrap();
    assert_eq!(bids.iter().find(|b| b.provider == ember).unwrap().state, JobBidState::Forfeited);

    // alice closed her deployment at 90 minutes: she paid borealis exactly for the time it ran.
    let alice = deployment(&world, 1);
    let lease = &alice.leases[0];
    let LeaseState::Closed { reason, at } = lease.state else { panic!("{:?}", lease.state) };
    assert_eq!(reason, CloseReason::TenantClosed);
    let expected = 900_000u128 * u128::from(at.since(lease.started_at)) / u128::from(MS_PER_HOUR);
    assert_eq!(lease.paid, Amount(expected));
    assert_eq!(alice.deployment.escrow.refunded, Amount(Amount::tgr(10).0 - expected));

    // drift went silent at 40 minutes: bruno's lease closed and he kept the unserved time.
    let bruno = deployment(&world, 2);
    assert!(matches!(
        bruno.leases[0].state,
        LeaseState::Closed { reason: CloseReason::ProviderUnresponsive, .. }
    ));
    assert!(bruno.deployment.escrow.refunded > Amount::tgr(4));

    // carol funded about an hour and never topped up: her escrow ran dry and closed as overdrawn.
    let carol = deployment(&world, 3);
    assert!(matches!(carol.deployment.state, DeploymentState::Closed { reason: CloseReason::Overdrawn, .. }));
    assert_eq!(carol.deployment.escrow.total_paid, Amount::tgr(1));

    // Nothing any actor sent was refused: the story is all protocol, no accidents.
    assert!(world.refused.is_empty(), "{:?}", world.refused);
    let report = Report::from_world(&world, 1);
    assert!(report.to_text().contains("job 2 is disputed"));
    assert!(report.to_text().contains("cirrus is slashed"));
    assert_eq!(report.total_supply, Amount::tgr(10_000));
    assert!(report.story.iter().any(|(_, line)| line.contains("missed its deadline")));
    assert!(world.log.iter().any(|l| matches!(l.event, Event::LeaseCreated { lease, .. } if lease.order() == OrderId { dseq: 3, gseq: 1 })));
}

#[test]
fn the_same_seed_gives_the_same_history_and_other_seeds_the_same_outcomes() {
    let a = run_market_tour(7).unwrap();
    let b = run_market_tour(7).unwrap();
    assert_eq!(a.chain.ledger.state_digest().unwrap(), b.chain.ledger.state_digest().unwrap());
    assert_eq!(Report::from_world(&a, 7).to_text(), Report::from_world(&b, 7).to_text());

    let c = run_market_tour(8).unwrap();
    assert_ne!(
        a.chain.ledger.state_digest().unwrap(),
        c.chain.ledger.state_digest().unwrap(),
        "timing differs"
    );
    for world in [&a, &c] {
        assert_eq!(job(world, 1).state, JobState::Completed);
        assert_eq!(job(world, 2).state, JobState::Completed);
        assert!(job(world, 2).slots.iter().any(|s| s.state == SlotState::Slashed));
    }
}
