//! Fixtures shared by the ledger's integration tests.
#![allow(dead_code, unreachable_pub)]

use tensorgrid_ledger::testing::TestChain;
use tensorgrid_types::job::{JobSpec, Workload, WorkloadKind};
use tensorgrid_types::market::{BidId, GroupSpec, OrderId};
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::resources::{Attribute, PlacementRequirements, ResourceUnit, ResourceUnits};
use tensorgrid_types::{Amount, Hash, Msg, Params, Receipt, SecretKey, TxError};

pub fn key(label: &str) -> SecretKey {
    SecretKey::from_label(label)
}

pub struct World {
    pub chain: TestChain,
    pub tenant: SecretKey,
    pub providers: Vec<SecretKey>,
    pub outsider: SecretKey,
}

pub const FUNDS: Amount = Amount::tgr(10_000);

/// A chain with a tenant, `n` funded providers (not yet registered) and an outsider, all with [`FUNDS`].
pub fn world(n: usize, params: Params) -> World {
    world_seeded(n, params, 0)
}

pub fn world_seeded(n: usize, params: Params, seed: u64) -> World {
    let tenant = key("tenant");
    let outsider = key("outsider");
    let providers: Vec<SecretKey> = (0..n).map(|i| key(&format!("provider-{i}"))).collect();
    let mut funded: Vec<(&SecretKey, Amount)> = vec![(&tenant, FUNDS), (&outsider, FUNDS)];
    funded.extend(providers.iter().map(|p| (p, FUNDS)));
    let chain = TestChain::with_seed(&funded, params, seed);
    World { chain, tenant, providers, outsider }
}

pub fn register_msg(region: &str) -> Msg {
    Msg::RegisterProvider {
        host_uri: "https://provider.example.org:8443".into(),
        attributes: vec![Attribute::new("region", region)],
        info: ProviderInfo { email: "ops@example.org".into(), website: String::new() },
        stake: Params::default().min_provider_stake,
        runtimes: vec!["wasi-p1".into()],
        referee: false,
    }
}

/// A provider that runs `wasi-p1` and accepts referee seats, with `stake`.
pub fn referee_msg(stake: Amount) -> Msg {
    Msg::RegisterProvider {
        host_uri: "https://referee.example.org:8443".into(),
        attributes: vec![Attribute::new("region", "eu-west")],
        info: ProviderInfo::default(),
        stake,
        runtimes: vec!["wasi-p1".into()],
        referee: true,
    }
}

pub fn group(name: &str, max_price: Amount) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        requirements: PlacementRequirements::default(),
        resources: vec![ResourceUnit {
            resources: ResourceUnits { cpu_millis: 500, memory_bytes: 512 << 20, ..Default::default() },
            count: 1,
        }],
        max_price,
    }
}

pub fn deployment_msg(groups: Vec<GroupSpec>, deposit: Amount) -> Msg {
    Msg::CreateDeployment { groups, deposit, manifest_hash: Hash::of(b"manifest") }
}

pub fn ok(receipt: &Receipt) {
    assert!(receipt.succeeded(), "expected success, got {:?}", receipt.outcome);
}

pub fn failed_with(receipt: &Receipt) -> TxError {
    match receipt.error() {
        Some(e) if !e.is_admission() => e.clone(),
        other => panic!("expected an execution failure, got {other:?} ({:?})", receipt.outcome),
    }
}

pub fn rejected_with(receipt: &Receipt) -> TxError {
    match receipt.error() {
        Some(e) if e.is_admission() => e.clone(),
        other => panic!("expected an admission rejection, got {other:?}"),
    }
}

impl World {
    /// Registers every provider (one block).
    pub fn register_all(&mut self) {
        let txs: Vec<Vec<u8>> =
            self.providers.clone().iter().map(|p| self.chain.tx(p, register_msg("eu-west"))).collect();
        let out = self.chain.block(&txs);
        out.receipts.iter().for_each(ok);
    }

    /// Heartbeats from every registered provider (one block).
    pub fn heartbeat_all(&mut self) {
        let txs: Vec<Vec<u8>> =
            self.providers.clone().iter().map(|p| self.chain.tx(p, Msg::Heartbeat)).collect();
        self.chain.block(&txs);
    }

    pub fn deploy(&mut self, groups: Vec<GroupSpec>, deposit: Amount) -> u64 {
        let tenant = self.tenant.clone();
        let r = self.chain.exec(&tenant, deployment_msg(groups, deposit));
        ok(&r);
        r.events
            .iter()
            .find_map(|e| match e {
                tensorgrid_types::Event::DeploymentCreated { dseq, .. } => Some(*dseq),
                _ => None,
            })
            .expect("deployment event")
    }

    pub fn bid(&mut self, provider: usize, order: OrderId, price: Amount) -> Receipt {
        let key = self.providers[provider].clone();
        self.chain.exec(&key, Msg::CreateBid { order, price })
    }

    /// Deploys one group, has `provider` bid `price` on it and the tenant accept: returns the lease's id.
    pub fn lease_one(&mut self, provider: usize, max_price: Amount, deposit: Amount, price: Amount) -> BidId {
        let dseq = self.deploy(vec![group("web", max_price)], deposit);
        let order = OrderId { dseq, gseq: 1 };
        ok(&self.bid(provider, order, price));
        let tenant = self.tenant.clone();
        let lease = self.bid_id(provider, order);
        ok(&self.chain.exec(&tenant, Msg::AcceptBid { bid: lease }));
        lease
    }

    pub fn bid_id(&self, provider: usize, order: OrderId) -> BidId {
        order.bid(self.providers[provider].address())
    }

    pub fn lease(&self, id: BidId) -> tensorgrid_types::market::Lease {
        match self.chain.query(Query::Lease { lease: id }) {
            QueryResponse::Lease(Some(l)) => l,
            other => panic!("no lease {id}: {other:?}"),
        }
    }

    pub fn order(&self, id: OrderId) -> tensorgrid_types::market::Order {
        match self.chain.query(Query::Order { order: id }) {
            QueryResponse::Order(Some(o)) => o,
            other => panic!("no order {id}: {other:?}"),
        }
    }

    pub fn deployment(&self, dseq: u64) -> tensorgrid_types::query::DeploymentInfo {
        match self.chain.query(Query::Deployment { dseq }) {
            QueryResponse::Deployment(Some(d)) => d,
            other => panic!("no deployment {dseq}: {other:?}"),
        }
    }

    pub fn job(&self, id: u64) -> tensorgrid_types::job::Job {
        match self.chain.query(Query::Job { job: id }) {
            QueryResponse::Job(Some(j)) => j,
            other => panic!("no job {id}: {other:?}"),
        }
    }

    pub fn check(&self) {
        self.chain.ledger.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    }
}

pub fn job_spec(redundancy: u8, budget: Amount) -> JobSpec {
    JobSpec {
        workload: Workload {
            kind: WorkloadKind::Wasm,
            hash: Hash::of(b"module.wasm"),
            runtime: "wasi-p1".into(),
            args: vec![],
        },
        inputs: vec![Hash::of(b"input.txt")],
        resources: ResourceUnits { cpu_millis: 1000, memory_bytes: 64 << 20, ..Default::default() },
        max_fuel: 1_000_000,
        redundancy,
        budget,
        bid_window_ms: 5_000,
        run_timeout_ms: 60_000,
        reveal_window_ms: 10_000,
        requirements: Default::default(),
    }
}
