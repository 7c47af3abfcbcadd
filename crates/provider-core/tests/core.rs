//! The provider core, one input at a time, with no runtime: a job's whole life, what survives a restart,
//! walking away before the confirmation, heartbeats, and the price script's last word.

use tensorgrid_provider_core::capacity::Capacity;
use tensorgrid_provider_core::{
    Effect, Identity, Input, JobRecord, Policy, ProviderCore, RunSummary, TxPurpose, WorkRef,
};
use tensorgrid_types::job::{
    result_commitment, Job, JobExit, JobSlot, JobSpec, JobState, SlotState, Workload, WorkloadKind,
};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::provider_api::JobRunState;
use tensorgrid_types::resources::ResourceUnits;
use tensorgrid_types::{Amount, Event, Hash, Msg, Params, SecretKey, Timestamp};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(1_000_000 + ms)
}

fn me() -> SecretKey {
    SecretKey::from_label("core-provider")
}

fn core(policy: Policy) -> ProviderCore {
    let identity = Identity {
        address: me().address(),
        host_uri: "https://p.example.org".into(),
        info: ProviderInfo::default(),
        stake: Amount::tgr(100),
        attributes: vec![],
        runtimes: vec![(WorkloadKind::Wasm, "wasi-p1".into())],
        runs_leases: false,
        referee: true,
    };
    let mut core = ProviderCore::new(identity, policy);
    let capacity =
        Capacity { cpu_millis: 4_000, memory_bytes: 8 << 30, storage_bytes: 1 << 30, gpus: vec![] };
    let effects = core.handle(at(0), Input::Started { params: Params::default(), capacity, records: vec![] });
    assert!(effects.is_empty());
    core
}

fn job(state: JobState, slot: Option<SlotState>) -> Job {
    Job {
        id: 9,
        client: SecretKey::from_label("client").address(),
        spec: JobSpec {
            workload: Workload {
                kind: WorkloadKind::Wasm,
                hash: Hash::of(b"module"),
                runtime: "wasi-p1".into(),
                args: vec![],
            },
            inputs: vec![Hash::of(b"input")],
            resources: ResourceUnits { cpu_millis: 1_000, memory_bytes: 64 << 20, ..Default::default() },
            max_fuel: 1_000_000,
            redundancy: 1,
            budget: Amount::tgr(1),
            bid_window_ms: 5_000,
            run_timeout_ms: 60_000,
            reveal_window_ms: 10_000,
            requirements: Default::default(),
        },
        state,
        created_at: at(0),
        bid_deadline: at(5_000),
        reveal_deadline: None,
        challenge_deadline: None,
        slots: slot
            .map(|state| JobSlot {
                provider: me().address(),
                price: Amount(1_000),
                assigned_at: at(5_000),
                content_deadline: at(125_000),
                commit_deadline: None,
                commitment: None,
                result: None,
                state,
            })
            .into_iter()
            .collect(),
        live_bids: vec![],
        held: Amount::tgr(1),
        paid: Amount::ZERO,
        finished_at: None,
        storage_deposit: Amount::ZERO,
        audit_fee: Amount::ZERO,
        checks: Vec::new(),
        verdict: None,
    }
}

fn sends(effects: &[Effect]) -> Vec<(Msg, TxPurpose)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { msg, purpose } => Some((msg.clone(), *purpose)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_won_job_is_confirmed_run_persisted_committed_and_revealed_in_that_order() {
    let mut c = core(Policy::default());
    // A new job: the core reads it and bids the engine's price.
    assert_eq!(
        c.handle(
            at(1),
            Input::Event(Event::JobSubmitted {
                job: 9,
                client: job(JobState::Bidding, None).client,
                budget: Amount::tgr(1)
            })
        ),
        vec![Effect::ReadJob(9)]
    );
    let effects = c.handle(at(2), Input::JobRead(9, Some(job(JobState::Bidding, None))));
    assert!(
        matches!(sends(&effects)[..], [(Msg::BidJob { job: 9, .. }, TxPurpose::BidJob(9))]),
        "{effects:?}"
    );
    assert!(matches!(effects.first(), Some(Effect::Decided(_))));
    // Assigned: it holds the job's resources and waits for the upload, never past the content deadline.
    let effects = c
        .handle(at(6_000), Input::JobRead(9, Some(job(JobState::Running, Some(SlotState::AwaitingContent)))));
    let waiting = effects.iter().find_map(|e| match e {
        Effect::AwaitContent { job, hashes, until } => Some((*job, hashes.clone(), *until)),
        _ => None,
    });
    assert_eq!(waiting, Some((9, vec![Hash::of(b"module"), Hash::of(b"input")], at(125_000))));
    assert_eq!(c.reserved().cpu_millis, 1_000);
    assert_eq!(c.job(9).map(|e| e.state.clone()), Some(JobRunState::WaitingForContent));
    // Content, then the module check, then the confirmation.
    let effects = c.handle(at(7_000), Input::ContentArrived { job: 9 });
    assert!(matches!(effects[..], [Effect::CheckModule { job: 9, .. }]), "{effects:?}");
    let effects = c.handle(at(7_100), Input::ModuleChecked { job: 9, result: Ok(()) });
    assert!(matches!(
        sends(&effects)[..],
        [(Msg::ConfirmJobContent { job: 9 }, TxPurpose::ConfirmContent(9))]
    ));
    // The confirmation's receipt names the commit deadline; the run must leave room to commit before it.
    let started = Event::JobStarted { job: 9, provider: me().address(), commit_deadline: at(70_000) };
    let effects = c.handle(
        at(10_000),
        Input::TxDone { purpose: TxPurpose::ConfirmContent(9), result: Ok(vec![started]) },
    );
    let Some(Effect::Run(spec)) = effects.first() else { panic!("{effects:?}") };
    assert_eq!(spec.wall_timeout_ms, 60_000 - 3_000);
    assert_eq!((spec.max_fuel, spec.module), (1_000_000, Hash::of(b"module")));
    // The result is persisted before the commitment is sent, and the resources come back.
    let result =
        RunSummary { result_hash: Hash::of(b"out"), exit: JobExit::Exited { code: 0 }, fuel_used: 7 };
    let salt = [5u8; 32];
    let effects = c.handle(at(20_000), Input::RunFinished { job: 9, result: Ok(result), salt });
    let persist =
        effects.iter().position(|e| matches!(e, Effect::Persist(r) if !r.committed)).expect("persisted");
    let commit = effects
        .iter()
        .position(|e| matches!(e, Effect::Send { purpose: TxPurpose::Commit(9), .. }))
        .expect("committed");
    assert!(persist < commit, "{effects:?}");
    let expected = result_commitment(&Hash::of(b"out"), &me().address(), &salt);
    assert!(
        matches!(&effects[commit], Effect::Send { msg: Msg::CommitResult { commitment, .. }, .. } if *commitment == expected)
    );
    assert_eq!(c.reserved().cpu_millis, 0);
    // The commit's block opened the reveal phase: reveal at once, once.
    let opened = Event::JobRevealStarted { job: 9, deadline: at(90_000) };
    let effects = c.handle(
        at(21_000),
        Input::TxDone { purpose: TxPurpose::Commit(9), result: Ok(vec![opened.clone()]) },
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(r) if r.committed && !r.revealed)));
    assert!(
        matches!(sends(&effects)[..], [(Msg::RevealResult { job: 9, salt: s, .. }, TxPurpose::Reveal(9))] if s == salt)
    );
    assert!(sends(&c.handle(at(21_500), Input::Event(opened))).is_empty(), "no second reveal");
    let effects = c.handle(at(22_000), Input::TxDone { purpose: TxPurpose::Reveal(9), result: Ok(vec![]) });
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(r) if r.revealed)));
}

#[test]
fn content_that_never_arrives_is_given_up_before_any_confirmation() {
    let mut c = core(Policy::default());
    c.handle(at(6_000), Input::JobRead(9, Some(job(JobState::Running, Some(SlotState::AwaitingContent)))));
    let effects = c.handle(at(126_000), Input::ContentMissing { job: 9, salt: [0; 32] });
    assert!(sends(&effects).is_empty(), "nothing is confirmed, so the slot lapses at no cost: {effects:?}");
    assert!(matches!(c.job(9).map(|e| e.state.clone()), Some(JobRunState::Failed { .. })));
    assert_eq!(c.reserved().cpu_millis, 0);
    // A module the runner refuses is not confirmed either.
    let mut c = core(Policy::default());
    c.handle(at(6_000), Input::JobRead(9, Some(job(JobState::Running, Some(SlotState::AwaitingContent)))));
    c.handle(at(7_000), Input::ContentArrived { job: 9 });
    let effects = c.handle(at(7_100), Input::ModuleChecked { job: 9, result: Err("no _start".into()) });
    assert!(sends(&effects).is_empty());
}

#[test]
fn a_restart_finishes_what_the_record_says_was_left() {
    let record = JobRecord {
        job: 9,
        result_hash: Hash::of(b"out"),
        salt: hex::encode([7u8; 32]),
        exit: JobExit::Exited { code: 0 },
        fuel_used: 1,
        committed: true,
        revealed: false,
        referee: None,
    };
    let mut c = ProviderCore::new(
        Identity {
            address: me().address(),
            host_uri: String::new(),
            info: ProviderInfo::default(),
            stake: Amount::ZERO,
            attributes: vec![],
            runtimes: vec![],
            runs_leases: false,
            referee: true,
        },
        Policy::default(),
    );
    let effects = c.handle(
        at(0),
        Input::Started { params: Params::default(), capacity: Capacity::default(), records: vec![record] },
    );
    assert_eq!(effects, vec![Effect::ReadJob(9)], "the chain says where the job is");
    let mut revealing = job(JobState::Revealing, Some(SlotState::Committed));
    revealing.reveal_deadline = Some(at(50_000));
    let effects = c.handle(at(1), Input::JobRead(9, Some(revealing)));
    assert!(
        matches!(sends(&effects)[..], [(Msg::RevealResult { job: 9, .. }, TxPurpose::Reveal(9))]),
        "{effects:?}"
    );
    assert!(matches!(c.job(9).map(|e| e.state.clone()), Some(JobRunState::Finished { .. })));
}

#[test]
fn heartbeats_fall_due_by_the_chains_interval() {
    let mut c = core(Policy::default());
    let interval = Params::default().heartbeat_interval_ms;
    assert!(c.handle(at(interval - 1), Input::Tick).is_empty());
    assert!(matches!(
        sends(&c.handle(at(interval), Input::Tick))[..],
        [(Msg::Heartbeat, TxPurpose::Heartbeat)]
    ));
    assert!(c.handle(at(interval + 1), Input::Tick).is_empty());
}

#[test]
fn the_price_script_has_the_last_word_under_the_chains_ceiling() {
    let mut c = core(Policy { price_script: true, ..Policy::default() });
    let effects = c.handle(at(2), Input::JobRead(9, Some(job(JobState::Bidding, None))));
    assert!(matches!(effects[..], [Effect::AskPriceScript { .. }]), "{effects:?}");
    // Above the job's share of its budget: the ceiling declines it, and it is decided once.
    let effects = c.handle(at(3), Input::PriceScript { work: WorkRef::Job(9), answer: Ok(Amount::tgr(2)) });
    assert!(sends(&effects).is_empty());
    assert_eq!(c.no_bids().last().map(|d| d.work.clone()), Some("job 9".into()));
    assert!(c.handle(at(4), Input::JobRead(9, Some(job(JobState::Bidding, None)))).is_empty());
}

fn order_for(lease: tensorgrid_types::market::LeaseId) -> tensorgrid_types::market::Order {
    use tensorgrid_types::market::{GroupSpec, Order, OrderState};
    use tensorgrid_types::resources::{PlacementRequirements, ResourceUnit};
    Order {
        id: lease.order(),
        owner: SecretKey::from_label("tenant").address(),
        group: 1,
        spec: GroupSpec {
            name: "web".into(),
            requirements: PlacementRequirements::default(),
            resources: vec![ResourceUnit {
                resources: ResourceUnits { cpu_millis: 500, memory_bytes: 1 << 30, ..Default::default() },
                count: 2,
            }],
            max_price: Amount::tgr(1),
        },
        state: OrderState::Active,
        created_at: at(0),
        window_ends: None,
        live_bids: vec![],
    }
}

#[test]
fn a_lease_holds_its_resources_waits_for_its_manifest_and_is_closed_without_one() {
    use tensorgrid_types::market::{CloseReason, OrderId};
    use tensorgrid_types::provider_api::LeaseRunState;
    let mut c = core(Policy::default());
    let lease = OrderId { dseq: 4, gseq: 1 }.bid(me().address());
    let created =
        Event::LeaseCreated { lease, owner: SecretKey::from_label("tenant").address(), price: Amount(1) };
    assert_eq!(c.handle(at(1), Input::Event(created.clone())), vec![Effect::ReadOrder(lease.order())]);
    assert!(c.handle(at(2), Input::Event(created)).is_empty(), "read once");
    c.handle(at(3), Input::OrderRead(lease.order(), Some(order_for(lease))));
    let deadline = at(3 + Policy::default().manifest_timeout_ms);
    assert_eq!(c.lease(&lease).map(|e| e.state.clone()), Some(LeaseRunState::AwaitingManifest { deadline }));
    assert_eq!((c.reserved().cpu_millis, c.situation().active_leases), (1_000, 1), "two units of 500 mCPU");
    // No manifest by the deadline: the provider closes the lease, once.
    assert!(sends(&c.handle(at(4), Input::Tick)).is_empty());
    let effects = c.handle(deadline, Input::Tick);
    assert!(sends(&effects)
        .iter()
        .any(|(m, p)| *m == Msg::CloseLease { lease } && *p == TxPurpose::CloseLease(lease)));
    assert!(!sends(&c.handle(deadline.plus(1), Input::Tick))
        .iter()
        .any(|(m, _)| matches!(m, Msg::CloseLease { .. })));
    // The chain closes it: its workloads go and its resources come back.
    let closed = Event::LeaseClosed {
        lease,
        owner: SecretKey::from_label("tenant").address(),
        reason: CloseReason::ProviderClosed,
    };
    assert_eq!(c.handle(deadline.plus(2), Input::Event(closed)), vec![Effect::StopLease(lease)]);
    assert_eq!(c.reserved().cpu_millis, 0);
}

#[test]
fn a_running_lease_is_paid_by_periodic_withdrawals() {
    use tensorgrid_types::market::OrderId;
    use tensorgrid_types::provider_api::LeaseRunState;
    let mut c = core(Policy::default());
    let lease = OrderId { dseq: 4, gseq: 1 }.bid(me().address());
    let spec = order_for(lease).spec;
    // A manifest for a lease the core had not read yet (the API is faster than the event stream).
    c.handle(at(1), Input::ManifestReceived { lease, spec });
    assert_eq!(c.lease(&lease).map(|e| e.state.clone()), Some(LeaseRunState::Starting));
    c.handle(at(2), Input::LeaseDeployed { lease, result: Ok(()) });
    assert_eq!(c.lease(&lease).map(|e| e.state.clone()), Some(LeaseRunState::Running));
    let interval = Policy::default().withdraw_interval_ms;
    let withdrawals = |effects: &[Effect]| {
        sends(effects).iter().filter(|(m, _)| matches!(m, Msg::WithdrawLease { .. })).count()
    };
    assert_eq!(withdrawals(&c.handle(at(interval - 1), Input::Tick)), 0);
    assert_eq!(withdrawals(&c.handle(at(interval), Input::Tick)), 1);
    assert_eq!(withdrawals(&c.handle(at(interval + 1), Input::Tick)), 0);
    // A failed start is reported as such.
    c.handle(at(interval + 2), Input::LeaseDeployed { lease, result: Err("no such image".into()) });
    assert!(matches!(c.lease(&lease).map(|e| e.state.clone()), Some(LeaseRunState::Failed { .. })));
}

/// The job as the chain has it while committee `committee` referees it (this provider is not a worker).
fn refereed(committee: u64) -> Job {
    let mut j = job(JobState::Refereeing, None);
    j.checks = (1..=committee).collect();
    j
}

fn drawn(committee: u64, deadline: Timestamp) -> Event {
    Event::CommitteeDrawn {
        committee,
        subject: tensorgrid_types::committee::CheckSubject::Job { job: 9 },
        check: tensorgrid_types::committee::CheckKind::Audit,
        round: 1,
        members: vec![me().address()],
        commit_deadline: deadline,
    }
}

#[test]
fn a_referee_seat_fetches_runs_commits_and_reveals_without_a_confirmation() {
    let mut c = core(Policy::default());
    assert_eq!(c.handle(at(1_000), Input::Event(drawn(1, at(181_000)))), vec![Effect::ReadJob(9)]);
    let effects = c.handle(at(1_100), Input::JobRead(9, Some(refereed(1))));
    let until = effects.iter().find_map(|e| match e {
        Effect::AwaitContent { job: 9, until, .. } => Some(*until),
        _ => None,
    });
    // At most half of the seat's time goes to waiting for the content.
    assert_eq!(until, Some(at(1_100 + (181_000 - 1_100) / 2)));
    assert_eq!(c.job(9).and_then(|e| e.referee), Some(1));
    // The content arrives: it runs at once against the seat's deadline, no confirmation sent.
    let effects = c.handle(at(2_000), Input::ContentArrived { job: 9 });
    assert!(sends(&effects).is_empty());
    let Some(Effect::Run(spec)) = effects.first() else { panic!("{effects:?}") };
    assert_eq!(spec.module, Hash::of(b"module"));
    let result =
        RunSummary { result_hash: Hash::of(b"out"), exit: JobExit::Exited { code: 0 }, fuel_used: 7 };
    let effects = c.handle(at(3_000), Input::RunFinished { job: 9, result: Ok(result), salt: [4; 32] });
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(r) if r.referee == Some(1))));
    assert!(matches!(sends(&effects)[..], [(Msg::CommitResult { job: 9, .. }, TxPurpose::Commit(9))]));
    let effects = c.handle(at(4_000), Input::TxDone { purpose: TxPurpose::Commit(9), result: Ok(vec![]) });
    assert!(sends(&effects).is_empty(), "a worker's reveal phase is not the committee's");
    let effects = c.handle(
        at(5_000),
        Input::Event(Event::CommitteeRevealStarted { committee: 1, deadline: at(35_000) }),
    );
    assert!(matches!(
        sends(&effects)[..],
        [(Msg::RevealResult { job: 9, salt: [4, ..], .. }, TxPurpose::Reveal(9))]
    ));
}

#[test]
fn a_referee_without_the_content_votes_content_unavailable_and_a_later_check_of_the_job_seats_it_again() {
    let mut c = core(Policy::default());
    c.handle(at(1_000), Input::Event(drawn(1, at(181_000))));
    c.handle(at(1_100), Input::JobRead(9, Some(refereed(1))));
    let effects = c.handle(at(91_100), Input::ContentMissing { job: 9, salt: [6; 32] });
    let client = job(JobState::Bidding, None).client;
    let vote = tensorgrid_types::committee::unavailable_vote(&client);
    let expected = result_commitment(&vote, &me().address(), &[6; 32]);
    assert!(
        matches!(sends(&effects)[..], [(Msg::CommitResult { job: 9, commitment }, _)] if commitment == expected),
        "{effects:?}"
    );
    c.handle(at(92_000), Input::TxDone { purpose: TxPurpose::Commit(9), result: Ok(vec![]) });
    // The client's later dispute of the same job draws it again: the new seat starts afresh.
    c.handle(at(200_000), Input::Event(drawn(2, at(380_000))));
    let effects = c.handle(at(200_100), Input::JobRead(9, Some(refereed(2))));
    assert!(effects.iter().any(|e| matches!(e, Effect::AwaitContent { job: 9, .. })), "{effects:?}");
    assert_eq!(c.job(9).and_then(|e| e.referee), Some(2));
}
