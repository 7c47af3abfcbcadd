//! The daemon's life: wait for the node, register (or update) the provider on chain, serve the API, send
//! heartbeats, and follow the chain's event stream, bidding on work and running what it wins. A broken
//! stream is reconnected and the chain re-read; nothing is torn down because the node was briefly away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tensorgrid_client::RpcClient;
use tensorgrid_provider_core::Input;
use tensorgrid_runner::JobRunner;
use tensorgrid_types::query::Page;
use tensorgrid_types::{Event, Msg, SecretKey};
use tracing::{info, warn};

use crate::content::ContentStore;
use crate::error::ProviderError;
use crate::interpreter::dispatch;
use crate::{jobs, leases, Chain, ProviderConfig, Shared};

/// Event kinds the daemon acts on.
const KINDS: [&str; 8] = [
    "job_submitted",
    "job_assigned",
    "job_reveal_started",
    "order_created",
    "lease_created",
    "lease_closed",
    "committee_drawn",
    "committee_reveal_started",
];

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
    limits: &crate::config::Limits,
) -> Option<Arc<dyn tensorgrid_runner::LeaseRunner>> {
    #[cfg(feature = "docker")]
    match tensorgrid_runner_docker::DockerRunner::connect(me.to_string(), &limits.publish_ip).await {
        Ok(runner) => {
            if let Some(why) = runner.firewall_unavailable() {
                warn!(reason = %why, "lease networks can reach this host and link-local (metadata) addresses");
            }
            return Some(Arc::new(runner.with_read_only_root(limits.read_only_root)));
        }
        Err(e) => info!(error = %e, "no Docker Engine: this provider runs jobs only and bids on no leases"),
    }
    let _ = (me, limits);
    None
}

/// Starts the provider on the current tokio runtime and returns once it is registered and serving.
pub async fn start(config: ProviderConfig, key: SecretKey) -> Result<Provider, ProviderError> {
    start_with_runners(config, key, runners()?).await
}

/// [`start`] with the given job runners instead of the build's own: what a test uses to run a provider
/// whose runner misbehaves (a test double never built into the binary).
pub async fn start_with_runners(
    config: ProviderConfig,
    key: SecretKey,
    runners: Vec<Arc<dyn JobRunner>>,
) -> Result<Provider, ProviderError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|e| ProviderError::io(&config.work_dir, e))?;
    let content = ContentStore::open(config.work_dir.join("content"))?;
    let capacity = crate::inventory::detect(&config.work_dir);
    let client = RpcClient::new(&config.node);
    let lease_runner = lease_runner(&key.address(), &config.limits).await;
    #[cfg(feature = "llm")]
    let inference = load_models(&config, &client).await?;
    #[cfg(not(feature = "llm"))]
    if !config.models.is_empty() {
        return Err(ProviderError::Model {
            path: config.models[0].path.display().to_string(),
            reason: "this build serves no models (built without the `llm` feature)".into(),
        });
    }
    let core = crate::core_for(&config, key.address(), &runners, lease_runner.is_some());
    let shared = Arc::new(Shared {
        #[cfg(feature = "llm")]
        inference,
        lease_runner,
        core: Mutex::new(core),
        chain: Chain::new(client, key),
        content,
        runners,
        guard: Mutex::new(crate::http::RequestGuard::new(config.limits.requests_per_sec)),
        config,
    });
    wait_for_node(&shared).await;
    let params = shared.chain.client.params().await?;
    // The core knows the machine (and so the attributes it registers) from here on; records kept on disk
    // are what a restarted provider still has to commit or reveal.
    let records = jobs::load_records(&shared);
    dispatch(&shared, Input::Started { params, capacity, records });
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
    tokio::spawn(ticks(shared.clone()));
    tokio::spawn(inventory(shared.clone()));
    tokio::spawn(disk_guard(shared.clone()));
    #[cfg(feature = "llm")]
    {
        crate::inference::announce(&shared).await?;
        tokio::spawn(crate::inference::redemptions(shared.clone(), shared.config.inference.redeem_interval));
    }
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

/// Registers the provider, re-activates it, or brings its host URI and attributes up to date: the core says
/// which, from the chain's record.
async fn register(shared: &Shared) -> Result<(), ProviderError> {
    let me = shared.address();
    let on_chain = shared.chain.client.provider(&me).await?;
    let Some(msg) = shared.core.lock().registration(on_chain.as_ref()) else { return Ok(()) };
    match msg {
        Msg::RegisterProvider { stake, .. } => {
            shared
                .chain
                .execute(msg)
                .await
                .map_err(|e| ProviderError::Registration(format!("registering with {stake} stake: {e}")))?;
            info!(%stake, "registered as a provider");
        }
        msg => {
            shared.chain.execute(msg).await?;
            info!("updated the provider registration");
        }
    }
    Ok(())
}

/// The core's clock: heartbeats fall due on these ticks.
async fn ticks(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        dispatch(&shared, Input::Tick);
    }
}

/// How often lease containers' disk use is measured against the storage they pay for.
const DISK_CHECK: Duration = Duration::from_secs(15);

/// Stops lease instances that write more than their service's storage, so one tenant cannot fill the host's
/// disk (the storage driver may have no quotas).
async fn disk_guard(shared: Arc<Shared>) {
    let Some(runner) = shared.lease_runner.clone() else { return };
    // The first round runs at once: it puts back the network isolation of leases adopted at start.
    loop {
        match runner.enforce().await {
            Ok(evicted) => {
                for e in evicted {
                    warn!(lease = %e.lease, instance = %e.instance, used = e.used_bytes, limit = e.limit_bytes,
                        "stopped an instance that outgrew its storage");
                }
            }
            Err(e) => warn!(error = %e, "holding leases to their limits failed"),
        }
        tokio::time::sleep(DISK_CHECK).await;
    }
}

/// Keeps the inventory current: the disk fills, memory is added, a GPU goes away.
async fn inventory(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let dir = shared.config.work_dir.clone();
        if let Ok(capacity) = tokio::task::spawn_blocking(move || crate::inventory::detect(&dir)).await {
            dispatch(&shared, Input::Inventory(capacity));
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
            dispatch(shared, Input::OrderRead(order.id, Some(order)));
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
            dispatch(shared, Input::JobRead(job.id, Some(job)));
        }
        match open.next {
            Some(next) => page.after = Some(next),
            None => return,
        }
    }
}

/// Follows the event stream for as long as the daemon runs, reconnecting when it breaks. A reconnect resumes
/// from the block after the last one handled (the node replays what was missed: an assignment, a reveal
/// phase, a lease closing), so being away never costs the provider a deposit; open orders and jobs are read
/// again as well, for a node that cannot replay that far.
async fn follow(shared: Arc<Shared>) {
    let mut delay = Duration::from_millis(200);
    let mut last: Option<u64> = None;
    loop {
        let from = last.map(|h| h + 1);
        match shared.chain.client.blocks_from(&KINDS, None, from).await {
            Ok(mut stream) => {
                delay = Duration::from_millis(200);
                catch_up(&shared).await;
                while let Some(block) = stream.next().await {
                    match block {
                        Ok(block) => {
                            for event in block.events {
                                handle(&shared, event);
                            }
                            last = Some(block.height);
                        }
                        Err(e) => {
                            warn!(error = %e, "the event stream broke");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot open the event stream");
                // A node that cannot replay that far (or another error) gets a fresh subscription next time.
                if matches!(e, tensorgrid_client::RpcError::Node { status: 400, .. }) {
                    last = None;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn handle(shared: &Arc<Shared>, event: Event) {
    dispatch(shared, Input::Event(event));
}
