//! The daemon's interpreter of the provider core: every input goes through [`dispatch`], which hands it to
//! the core and carries out the effects it returns, in order. Quick ones (persisting a record, logging) run
//! inline; slow ones (a transaction, a chain read, waiting for an upload, a run, the price script) run as
//! tasks that answer with the next input. A `Persist` that fails stops the rest of its batch, so nothing is
//! committed whose salt is not on disk.

use std::sync::Arc;

use tensorgrid_provider_core::{Effect, Input, QuotedWork, WorkRef};
use tracing::{info, warn};

use crate::{jobs, Shared};

/// Hands `input` to the core and carries out what it asks.
pub fn dispatch(shared: &Arc<Shared>, input: Input) {
    let effects = shared.core.lock().handle(crate::now(), input);
    for effect in effects {
        if !carry_out(shared, effect) {
            break;
        }
    }
}

/// Carries out one effect; `false` when the effects after it must not run.
fn carry_out(shared: &Arc<Shared>, effect: Effect) -> bool {
    match effect {
        Effect::Send { msg, purpose } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let result =
                    shared.chain.execute(msg).await.map(|r| r.receipt.events).map_err(|e| e.to_string());
                dispatch(&shared, Input::TxDone { purpose, result });
            });
        }
        Effect::ReadJob(id) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                match shared.chain.client.job(id).await {
                    Ok(job) => dispatch(&shared, Input::JobRead(id, job)),
                    Err(e) => warn!(job = id, error = %e, "reading a job failed"),
                }
            });
        }
        Effect::ReadOrder(id) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                match shared.chain.client.order(id).await {
                    Ok(order) => dispatch(&shared, Input::OrderRead(id, order)),
                    Err(e) => warn!(order = %id, error = %e, "reading an order failed"),
                }
            });
        }
        Effect::AskPriceScript { work, price } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let reference = match &*work {
                    QuotedWork::Order { order } => WorkRef::Order(order.id),
                    QuotedWork::Job { job } => WorkRef::Job(job.id),
                };
                let pricing = &shared.config.pricing;
                let answer = match &pricing.price_script {
                    Some(path) => {
                        crate::bidding::run_script(path, pricing.price_script_timeout, &work, price).await
                    }
                    None => Ok(price),
                };
                dispatch(&shared, Input::PriceScript { work: reference, answer });
            });
        }
        Effect::AwaitContent { job, hashes, until } => {
            tokio::spawn(jobs::await_content(shared.clone(), job, hashes, until));
        }
        Effect::CheckModule { job, kind, runtime, module } => {
            tokio::spawn(jobs::check_module(shared.clone(), job, kind, runtime, module));
        }
        Effect::Run(spec) => {
            tokio::spawn(jobs::run(shared.clone(), *spec));
        }
        Effect::StopLease(lease) => {
            tokio::spawn(crate::leases::stop(shared.clone(), lease));
        }
        Effect::Persist(record) => {
            if let Err(e) = jobs::save_record(shared, &record) {
                warn!(job = record.job, error = %e, "cannot save the job record; not going on with it");
                return false;
            }
        }
        Effect::Decided(decision) => match &decision.outcome {
            tensorgrid_provider_core::bidding::Outcome::Bid { price } => {
                info!(work = %decision.work, %price, "bidding")
            }
            tensorgrid_provider_core::bidding::Outcome::NoBid(no) => {
                info!(work = %decision.work, component = no.component, reason = %no.reason, "not bidding")
            }
        },
        Effect::Log { warn: true, message } => warn!("{message}"),
        Effect::Log { warn: false, message } => info!("{message}"),
    }
    true
}
