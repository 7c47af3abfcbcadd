//! Read-only answers from the committed state.

use borsh::BorshDeserialize;
use tensorgrid_types::job::Job;
use tensorgrid_types::market::{Bid, Deployment, Lease, Order};
use tensorgrid_types::provider::Provider;
use tensorgrid_types::query::{DeploymentInfo, Page, Paged, Query, QueryResponse, Supply};
use tensorgrid_types::{Amount, Hash};

use crate::bank::Module;
use crate::error::{ExecError, LedgerError, QueryError};
use crate::keys;
use crate::ledger::Ledger;
use crate::state::{decode_stored, State};
use crate::store::Store;

fn lift(e: ExecError) -> QueryError {
    match e {
        ExecError::Fatal(e) => QueryError::Ledger(e),
        // Reads never produce transaction errors; keep the message if one ever does.
        ExecError::Tx(e) => QueryError::Ledger(LedgerError::Invariant { what: e.to_string() }),
    }
}

/// Lists items under an index `prefix`, `page.limit` at a time. `load` turns an index entry (key suffix,
/// value) into the item.
fn paged<S, T, F>(st: &State<'_, S>, prefix: &[u8], page: &Page, load: F) -> Result<Paged<T>, QueryError>
where
    S: Store + ?Sized,
    F: Fn(&State<'_, S>, &[u8], &[u8]) -> Result<Option<T>, LedgerError>,
{
    let after = match &page.after {
        None => None,
        Some(cursor) => {
            let suffix = hex::decode(cursor).map_err(|_| QueryError::BadCursor(cursor.clone()))?;
            let mut key = prefix.to_vec();
            key.extend_from_slice(&suffix);
            Some(key)
        }
    };
    let limit = page.effective_limit();
    let entries = st.scan(prefix, after.as_deref(), limit + 1).map_err(LedgerError::Store)?;
    let more = entries.len() > limit;
    let mut items = Vec::with_capacity(limit);
    let mut last = None;
    for (key, value) in entries.into_iter().take(limit) {
        let suffix = key.get(prefix.len()..).unwrap_or_default();
        if let Some(item) = load(st, suffix, &value)? {
            items.push(item);
        }
        last = Some(hex::encode(suffix));
    }
    Ok(Paged { items, next: if more { last } else { None } })
}

fn by_key<S: Store + ?Sized, T: BorshDeserialize>(
    record_prefix: &'static [u8],
) -> impl Fn(&State<'_, S>, &[u8], &[u8]) -> Result<Option<T>, LedgerError> {
    move |st, suffix, _| {
        let mut key = record_prefix.to_vec();
        key.extend_from_slice(suffix);
        st.get(&key)
    }
}

impl<S: Store> Ledger<S> {
    pub fn query(&self, query: &Query) -> Result<QueryResponse, QueryError> {
        let st = self.reader()?;
        Ok(match query {
            Query::ChainInfo => QueryResponse::ChainInfo(self.chain_info()?),
            Query::Params => QueryResponse::Params(st.params.clone()),
            Query::Supply => {
                let total: Amount = st.get(keys::SUPPLY)?.ok_or(LedgerError::NotInitialized)?;
                let mut modules = Vec::new();
                for module in Module::ALL {
                    modules.push((module.name().to_string(), st.balance(&module.address()).map_err(lift)?));
                }
                QueryResponse::Supply(Supply { total, modules })
            }
            Query::Account { address } => QueryResponse::Account(st.account(address).map_err(lift)?),
            Query::Provider { address } => QueryResponse::Provider(st.provider(address).map_err(lift)?),
            Query::Providers { page } => {
                QueryResponse::Providers(paged(&st, keys::PROVIDER, page, |_, k, v| {
                    decode_stored::<Provider>(k, v).map(Some)
                })?)
            }
            Query::Deployment { dseq } => {
                let deployment = st.deployment(*dseq).map_err(lift)?;
                QueryResponse::Deployment(match deployment {
                    None => None,
                    Some(deployment) => Some(DeploymentInfo {
                        orders: st.scan_values(&keys::orders_of(*dseq))?,
                        leases: st.scan_values(&keys::leases_of(*dseq))?,
                        deployment,
                    }),
                })
            }
            Query::DeploymentsByOwner { owner, page } => QueryResponse::Deployments(paged(
                &st,
                &keys::ix_deployments_of_owner(owner),
                page,
                |st, k, _| {
                    let mut key = keys::DEPLOYMENT.to_vec();
                    key.extend_from_slice(k);
                    st.get::<Deployment>(&key)
                },
            )?),
            Query::Order { order } => QueryResponse::Order(st.order(order).map_err(lift)?),
            Query::OpenOrders { page } => {
                QueryResponse::Orders(paged(&st, keys::IX_OPEN_ORDER, page, by_key::<S, Order>(keys::ORDER))?)
            }
            Query::Bids { order } => QueryResponse::Bids(st.scan_values::<Bid>(&keys::bids_of(order))?),
            Query::Lease { lease } => QueryResponse::Lease(st.lease(lease).map_err(lift)?),
            Query::LeasesByProvider { provider, page } => QueryResponse::Leases(paged(
                &st,
                &keys::ix_leases_of_provider(provider),
                page,
                |st, k, v| {
                    let id = decode_stored(k, v)?;
                    st.get::<Lease>(&keys::lease(&id))
                },
            )?),
            Query::Job { job } => QueryResponse::Job(st.job(*job).map_err(lift)?),
            Query::Channel { channel } => QueryResponse::Channel(st.channel(*channel).map_err(lift)?),
            Query::Committee { committee } => {
                QueryResponse::Committee(st.committee(*committee).map_err(lift)?)
            }
            Query::ModelOffers { model_hash, page } => {
                let prefix = match model_hash {
                    Some(hash) => keys::model_offers_of(hash),
                    None => keys::MODEL_OFFER.to_vec(),
                };
                QueryResponse::ModelOffers(paged(&st, &prefix, page, |_, key, value| {
                    decode_stored(key, value).map(Some)
                })?)
            }
            Query::JobBids { job } => QueryResponse::JobBids(st.scan_values(&keys::job_bids_of(*job))?),
            Query::OpenJobs { page } => {
                QueryResponse::Jobs(paged(&st, keys::IX_OPEN_JOB, page, by_key::<S, Job>(keys::JOB))?)
            }
        })
    }

    /// The hash of a stored value's key space, for tests that compare two ledgers' whole state.
    pub fn state_digest(&self) -> Result<Hash, LedgerError> {
        let mut hasher = Vec::new();
        for item in self.store().scan_prefix(b"") {
            let (k, v) = item?;
            hasher.extend_from_slice(Hash::of_parts(&[&k, &v]).as_bytes());
        }
        Ok(Hash::of(&hasher))
    }
}
