//! The daemon's life: wait for the node, register (or update) the provider on chain, serve the API, send
//! heartbeats, and follow the chain's event stream, bidding on work and running what it wins. A broken
//! stream is reconnected and the chain re-read; nothing is torn down because the node was briefly away.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tensorgrid_client::RpcClient;
use tensorgrid_runner::JobRunner;
use tensorgrid_types::job::JobId;
use tensorgrid_types::provider::{ProviderInfo, ProviderStatus};
use tensorgrid_types::query::Page;
use tensorgrid_types::{Event, Msg, SecretKey};
use tracing::{info, warn};

use crate::bidding::BidEngine;
use crate::content::ContentStore;
use crate::error::ProviderError;
use crate::{jobs, leases, Chain, ProviderConfig, Shared};

/// Event kinds the daemon acts on.
const KINDS: [&str; 6] =
    ["job_submitted", "job_assigned", "job_reveal_started", "order_created", "lease_created", "lease_closed"];

/// A running provider: its shared state and where its API listens.
#[derive(Debug, Clone)]
pub struct Provider {
    pub shared: Arc<Shared>,
    pub api: SocketAddr,
}

/// The runners this build has.
fn runners() -> Result<Vec<Arc<dyn JobRunner>>, ProviderError> {
    Ok(vec![
        #[cfg(feature = "wasm")]
        Arc::new(
            tensorgrid_runner_wasm::WasmRunner::new()
                .map_err(|e| ProviderError::Registration(format!("the WASM runner: {e}")))?,
        ),
    ])
}

/// The container runtime, if this build has one and the host's Docker Engine answers.
async fn lease_runner(
    me: &tensorgrid_types::Address,
    publish_ip: &str,
) -> Option<Arc<dyn tensorgrid_runner::LeaseRunner>> {
    #[cfg(feature = "docker")]
    match tensorgrid_runner_docker::DockerRunner::connect(me.to_string(), publish_ip).await {
        Ok(runner) => return Some(Arc::new(runner)),
        Err(e) => info!(error = %e, "no Docker Engine: this provider runs jobs only and bids on no leases"),
    }
    let _ = (me, publish_ip);
    None
}

/// Starts the provider on the current tokio runtime and returns once it is registered and serving.
pub async fn start(config: ProviderConfig, key: SecretKey) -> Result<Provider, ProviderError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|e| ProviderError::io(&config.work_dir, e))?;
    let content = ContentStore::open(config.work_dir.join("content"))?;
    let capacity = crate::inventory::detect(&config.work_dir);
    let client = RpcClient::new(&config.node);
    let lease_runner = lease_runner(&key.address(), &config.limits.publish_ip).await;
    #[cfg(feature = "llm")]
    let inference = load_models(&config, &client).await?;
    #[cfg(not(feature = "llm"))]
    if !config.models.is_empty() {
        return Err(ProviderError::Model {
            path: config.models[0].path.display().to_string(),
            reason: "this build serves no models (built without the `llm` feature)".into(),
        });
    }
    let shared = Arc::new(Shared {
        #[cfg(feature = "llm")]
        inference,
        lease_runner,
        leases: Mutex::new(Default::default()),
        engine: Mutex::new(BidEngine::from_policy(&crate::bidding::policy(&config.pricing, &config.limits))),
        chain: Chain::new(client, key),
        content,
        capacity: parking_lot::RwLock::new(capacity),
        runners: runners()?,
        jobs: Mutex::new(Default::default()),
        reserved: Mutex::new(Default::default()),
        nonces: Mutex::new(Default::default()),
        config,
    });
    wait_for_node(&shared).await;
    register(&shared).await?;
    let listener = tokio::net::TcpListener::bind(shared.config.listen).await.map_err(|e| {
        ProviderError::Listen { addr: shared.config.listen.to_string(), reason: e.to_string() }
    })?;
    let api = listener.local_addr().map_err(|e| ProviderError::Listen {
        addr: shared.config.listen.to_string(),
        reason: e.to_string(),
    })?;
    let router = crate::api::router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            warn!(error = %e, "the provider API stopped");
        }
    });
    info!(address = %shared.address(), %api, host_uri = %shared.config.host_uri, "provider API listening");
    tokio::spawn(heartbeats(shared.clone()));
    tokio::spawn(inventory(shared.clone()));
    tokio::spawn(leases::withdrawals(shared.clone()));
    #[cfg(feature = "llm")]
    {
        crate::inference::announce(&shared).await?;
        tokio::spawn(crate::inference::redemptions(shared.clone(), shared.config.inference.redeem_interval));
    }
    recover(&shared).await;
    leases::reconcile(&shared).await;
    tokio::spawn(follow(shared.clone()));
    Ok(Provider { shared, api })
}

/// Loads the configured models (slow: seconds per model), once the node says which chain vouchers are for.
#[cfg(feature = "llm")]
async fn load_models(
    config: &ProviderConfig,
    client: &RpcClient,
) -> Result<Option<Arc<crate::inference::Inference>>, ProviderError> {
    if config.models.is_empty() {
        return Ok(None);
    }
    let mut delay = Duration::from_millis(200);
    let chain_id = loop {
        match client.chain_info().await {
            Ok(info) => break info.chain_id,
            Err(e) => {
                warn!(error = %e, "waiting for the node");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    let models = config.models.clone();
    let credit = config.inference.credit;
    let inference = tokio::task::spawn_blocking(move || crate::inference::load(&models, chain_id, credit))
        .await
        .map_err(|e| ProviderError::Model { path: "models".into(), reason: e.to_string() })??;
    Ok(Some(Arc::new(inference)))
}

/// Runs the provider until the process ends.
pub async fn run(config: ProviderConfig, key: SecretKey) -> Result<(), ProviderError> {
    start(config, key).await?;
    std::future::pending::<()>().await;
    Ok(())
}

async fn wait_for_node(shared: &Shared) {
    let mut delay = Duration::from_millis(200);
    loop {
        match shared.chain.client.chain_info().await {
            Ok(info) => {
                info!(chain = %info.chain_id, height = info.height, "connected to the node");
                return;
            }
            Err(e) => {
                warn!(error = %e, "waiting for the node");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Registers the provider, re-activates it, or brings its host URI and attributes up to date.
async fn register(shared: &Shared) -> Result<(), ProviderError> {
    let me = shared.address();
    let attributes = shared.attributes();
    let info = ProviderInfo { email: shared.config.email.clone(), website: shared.config.website.clone() };
    let host_uri = shared.config.host_uri.clone();
    match shared.chain.client.provider(&me).await? {
        Some(p) if p.status == ProviderStatus::Active => {
            if p.host_uri != host_uri || p.attributes != attributes || p.info != info {
                shared
                    .chain
                    .execute(Msg::UpdateProvider {
                        host_uri: Some(host_uri),
                        attributes: Some(attributes),
                        info: Some(info),
                    })
                    .await?;
                info!("updated the provider registration");
            }
        }
        _ => {
            let stake = shared.config.stake;
            shared
                .chain
                .execute(Msg::RegisterProvider { host_uri, attributes, info, stake })
                .await
                .map_err(|e| ProviderError::Registration(format!("registering with {stake} stake: {e}")))?;
            info!(%stake, "registered as a provider");
        }
    }
    Ok(())
}

/// One heartbeat per interval keeps leases accruing and the provider eligible to win work.
async fn heartbeats(shared: Arc<Shared>) {
    let interval = match shared.chain.client.params().await {
        Ok(params) => Duration::from_millis(params.heartbeat_interval_ms),
        Err(_) => Duration::from_secs(60),
    };
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = shared.chain.execute(Msg::Heartbeat).await {
            warn!(error = %e, "heartbeat failed; retrying next interval");
        }
    }
}

/// Keeps the inventory current: the disk fills, memory is added, a GPU goes away.
async fn inventory(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let dir = shared.config.work_dir.clone();
        if let Ok(capacity) = tokio::task::spawn_blocking(move || crate::inventory::detect(&dir)).await {
            *shared.capacity.write() = capacity;
        }
    }
}

/// After a restart: reveal what was committed but not yet revealed.
async fn recover(shared: &Arc<Shared>) {
    let Ok(entries) = std::fs::read_dir(shared.config.work_dir.join("jobs")) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<JobId>().ok()) else {
            continue;
        };
        if jobs::load_record(shared, id).is_some_and(|r| r.committed && !r.revealed) {
            if let Err(e) = jobs::reveal_if_due(shared, id).await {
                warn!(job = id, error = %e, "revealing after a restart failed");
            }
        }
    }
}

/// Reads open jobs and orders and bids on those still taking bids: at start and after every reconnect, since
/// events missed while away are not replayed.
async fn catch_up(shared: &Arc<Shared>) {
    let mut page = Page::first(200);
    loop {
        let Ok(open) = shared.chain.client.open_orders(page.clone()).await else {
            break;
        };
        for order in open.items {
            tokio::spawn(leases::consider(shared.clone(), order));
        }
        match open.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let mut page = Page::first(200);
    loop {
        let Ok(open) = shared.chain.client.open_jobs(page.clone()).await else {
            return;
        };
        for job in open.items {
            tokio::spawn(jobs::consider(shared.clone(), job));
        }
        match open.next {
            Some(next) => page.after = Some(next),
            None => return,
        }
    }
}

/// Follows the event stream for as long as the daemon runs, reconnecting when it breaks.
async fn follow(shared: Arc<Shared>) {
    let started: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let mut delay = Duration::from_millis(200);
    loop {
        match shared.chain.client.blocks(&KINDS, None).await {
            Ok(mut stream) => {
                delay = Duration::from_millis(200);
                catch_up(&shared).await;
                while let Some(block) = stream.next().await {
                    match block {
                        Ok(block) => {
                            for event in block.events {
                                handle(&shared, &started, event);
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "the event stream broke");
                            break;
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot open the event stream"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn handle(shared: &Arc<Shared>, started: &Arc<Mutex<HashSet<JobId>>>, event: Event) {
    let me = shared.address();
    match event {
        Event::JobSubmitted { job, .. } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                match shared.chain.client.job(job).await {
                    Ok(Some(job)) => jobs::consider(shared, job).await,
                    Ok(None) => {}
                    Err(e) => warn!(job, error = %e, "reading a new job failed"),
                }
            });
        }
        Event::JobAssigned { job, provider, .. } if provider == me && started.lock().insert(job) => {
            tokio::spawn(jobs::run_assigned(shared.clone(), job));
        }
        Event::JobRevealStarted { job, .. } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = jobs::reveal_if_due(&shared, job).await {
                    warn!(job, error = %e, "revealing failed");
                }
            });
        }
        Event::OrderCreated { order, .. } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                match shared.chain.client.order(order).await {
                    Ok(Some(order)) => leases::consider(shared, order).await,
                    Ok(None) => {}
                    Err(e) => warn!(%order, error = %e, "reading a new order failed"),
                }
            });
        }
        Event::LeaseCreated { lease, .. } if lease.provider == me => {
            tokio::spawn(leases::started(shared.clone(), lease));
        }
        Event::LeaseClosed { lease, .. } if lease.provider == me => {
            tokio::spawn(leases::closed(shared.clone(), lease));
        }
        _ => {}
    }
}
