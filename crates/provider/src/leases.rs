//! Lease effects as the daemon carries them out: check a tenant's manifest against the chain and start its
//! containers, stop them when the chain closes the lease, report what runs, and after a restart reconcile what
//! runs with what the chain says. Bidding, waiting for manifests (and closing leases whose manifest never
//! came), the capacity leases hold and collecting earnings are the core's (`tensorgrid_provider_core`).
//!
//! The chain decides whether a lease lives. A workload is removed only when the chain *says* the lease is
//! closed, never because the chain could not be asked: a transient error leaves everything running.

use std::path::PathBuf;
use std::sync::Arc;

use tensorgrid_provider_core::Input;
use tensorgrid_types::manifest::MappedDeployment;
use tensorgrid_types::market::{LeaseId, LeaseState};
use tensorgrid_types::provider_api::{LeaseRunState, LeaseStatus};
use tensorgrid_types::query::Page;
use tracing::{info, warn};

use crate::interpreter::dispatch;
use crate::Shared;

/// A lease's key on this provider (a provider holds at most one lease per order).
pub fn key(lease: &LeaseId) -> String {
    format!("{}-{}", lease.dseq, lease.gseq)
}

fn lease_dir(shared: &Shared, lease: &LeaseId) -> PathBuf {
    shared.config.work_dir.join("leases").join(key(lease))
}

/// The chain closed the lease: stop its workloads and remove what was kept for it.
pub async fn stop(shared: Arc<Shared>, lease: LeaseId) {
    if let Some(runner) = &shared.lease_runner {
        match runner.stop(&key(&lease)).await {
            Ok(()) => info!(lease = %lease, "lease closed; its workloads are removed"),
            Err(e) => warn!(lease = %lease, error = %e, "removing a closed lease's workloads failed"),
        }
    }
    let _ = std::fs::remove_dir_all(lease_dir(&shared, &lease));
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("lease {0} is not active on this provider")]
    NotActive(LeaseId),
    #[error("the manifest's hash is {got}; deployment {dseq} was created with {expected}")]
    HashMismatch { dseq: u64, got: tensorgrid_types::Hash, expected: tensorgrid_types::Hash },
    #[error("the manifest has no group {0}")]
    NoGroup(u32),
    #[error("the manifest's group {gseq} differs from order {gseq}'s resources and placement on chain")]
    GroupMismatch { gseq: u32 },
    #[error(transparent)]
    ExceedsGroup(#[from] tensorgrid_types::manifest::ExceedsGroup),
    #[error("the workloads could not start: {0}")]
    Start(String),
    #[error("this provider has no container runtime")]
    NoRuntime,
    #[error("the chain: {0}")]
    Chain(String),
}

/// Checks a tenant's manifest against the chain and starts it. The caller has checked that the signer owns
/// the lease.
pub async fn deploy(
    shared: &Arc<Shared>,
    lease: LeaseId,
    manifest: MappedDeployment,
) -> Result<LeaseStatus, ManifestError> {
    let runner = shared.lease_runner.clone().ok_or(ManifestError::NoRuntime)?;
    let chain = &shared.chain.client;
    let on_chain = chain.lease(lease).await.map_err(|e| ManifestError::Chain(e.to_string()))?;
    if !on_chain.is_some_and(|l| l.state == LeaseState::Active) {
        return Err(ManifestError::NotActive(lease));
    }
    let deployment = chain
        .deployment(lease.dseq)
        .await
        .map_err(|e| ManifestError::Chain(e.to_string()))?
        .ok_or(ManifestError::NotActive(lease))?;
    let got = manifest.manifest_hash();
    let expected = deployment.deployment.manifest_hash;
    if got != expected {
        return Err(ManifestError::HashMismatch { dseq: lease.dseq, got, expected });
    }
    let order =
        deployment.orders.iter().find(|o| o.id == lease.order()).ok_or(ManifestError::NoGroup(lease.gseq))?;
    // An order posted again after another provider closed its lease serves the same group under a new gseq.
    let index = usize::try_from(order.group_number()).unwrap_or(usize::MAX).wrapping_sub(1);
    let (Some(spec), Some(group)) = (manifest.groups.get(index), manifest.manifest.get(index)) else {
        return Err(ManifestError::NoGroup(lease.gseq));
    };
    if *spec != order.spec {
        return Err(ManifestError::GroupMismatch { gseq: lease.gseq });
    }
    // The manifest's hash only proves it is the tenant's own: what runs must also fit what the order pays.
    group.fits(&order.spec)?;
    let dir = lease_dir(shared, &lease);
    std::fs::create_dir_all(&dir).map_err(|e| ManifestError::Start(e.to_string()))?;
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap_or_default())
        .map_err(|e| ManifestError::Start(e.to_string()))?;
    dispatch(shared, Input::ManifestReceived { lease, spec: order.spec.clone() });
    match runner.start(&key(&lease), group).await {
        Ok(services) => {
            info!(lease = %lease, services = services.len(), "lease running");
            dispatch(shared, Input::LeaseDeployed { lease, result: Ok(()) });
            Ok(LeaseStatus { lease, state: LeaseRunState::Running, services: public(shared, services) })
        }
        Err(e) => {
            dispatch(shared, Input::LeaseDeployed { lease, result: Err(e.to_string()) });
            Err(ManifestError::Start(e.to_string()))
        }
    }
}

/// Endpoints as tenants reach them: the provider's public host instead of the address ports bind to.
fn public(
    shared: &Shared,
    mut services: Vec<tensorgrid_types::provider_api::ServiceStatus>,
) -> Vec<tensorgrid_types::provider_api::ServiceStatus> {
    let host = shared
        .config
        .host_uri
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or("localhost")
        .to_string();
    for service in &mut services {
        for (_, endpoint) in &mut service.endpoints {
            if let Some((_, port)) = endpoint.rsplit_once(':') {
                *endpoint = format!("{host}:{port}");
            }
        }
    }
    services
}

/// What runs for a lease, as the API reports it.
pub async fn status(shared: &Arc<Shared>, lease: LeaseId) -> LeaseStatus {
    let state = shared.core.lock().lease(&lease).map(|e| e.state.clone()).unwrap_or(LeaseRunState::Closed);
    let services = match &shared.lease_runner {
        Some(runner) => runner.status(&key(&lease)).await.unwrap_or_default(),
        None => Vec::new(),
    };
    LeaseStatus { lease, state, services: public(shared, services) }
}

/// After a restart: adopt workloads whose leases are still active, remove those the chain says are closed,
/// restart active leases whose manifest is on disk, and wait for the manifest of the others.
pub async fn reconcile(shared: &Arc<Shared>) {
    let Some(runner) = shared.lease_runner.clone() else { return };
    let me = shared.address();
    let running = match runner.leases().await {
        Ok(running) => running,
        Err(e) => {
            warn!(error = %e, "cannot list running leases; leaving them as they are");
            return;
        }
    };
    for lease_key in &running {
        let Some((dseq, gseq)) =
            lease_key.split_once('-').and_then(|(d, g)| Some((d.parse().ok()?, g.parse().ok()?)))
        else {
            continue;
        };
        let lease = LeaseId { dseq, gseq, provider: me };
        match shared.chain.client.lease(lease).await {
            Ok(Some(l)) if l.state == LeaseState::Active => {
                if let Ok(Some(order)) = shared.chain.client.order(lease.order()).await {
                    dispatch(shared, Input::LeaseAdopted { lease, spec: order.spec });
                }
            }
            Ok(_) => {
                info!(lease = %lease, "the chain says this lease is closed; removing its workloads");
                let _ = runner.stop(lease_key).await;
            }
            // Never tear down a live lease because the chain could not be asked.
            Err(e) => warn!(lease = %lease, error = %e, "cannot check a running lease; leaving it running"),
        }
    }
    let Ok(page) = shared.chain.client.leases_by_provider(me, Page::first(200)).await else { return };
    for lease in page.items.into_iter().filter(|l| l.state == LeaseState::Active) {
        if running.contains(&key(&lease.id)) {
            continue;
        }
        let saved = std::fs::read(lease_dir(shared, &lease.id).join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<MappedDeployment>(&b).ok());
        match saved {
            Some(manifest) => {
                if let Err(e) = deploy(shared, lease.id, manifest).await {
                    warn!(lease = %lease.id, error = %e, "restarting a lease from its saved manifest failed");
                }
            }
            None => dispatch(shared, Input::LeaseFound(lease.id)),
        }
    }
}
