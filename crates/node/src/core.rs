//! The node's state machine host: the ledger over its store, and the mempool in front of it. Consensus decides
//! when a block is made and with what time and randomness; [`NodeCore::produce_block`] makes it.

use rand_core::{CryptoRng, OsRng, RngCore};
use serde::Serialize;
use tensorgrid_ledger::{Ledger, LedgerError, QueryError, Store, StoreError};
use tensorgrid_types::query::{ChainInfo, Query, QueryResponse};
use tensorgrid_types::{Account, Address, BlockContext, BlockOutcome, Hash, Timestamp};

use crate::mempool::{
    check_funded, AccountView, BlockCheckError, Mempool, MempoolConfig, MempoolError, SignedBlock,
};

/// What `GET /v1/status` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub chain: ChainInfo,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
}

struct Accounts<'a, S: Store>(&'a Ledger<S>);

impl<S: Store> AccountView for Accounts<'_, S> {
    fn account(&self, address: &Address) -> Option<Account> {
        self.0.account(address).ok().flatten()
    }
}

/// The ledger (with genesis applied) and the mempool.
#[derive(Debug)]
pub struct NodeCore<S: Store> {
    ledger: Ledger<S>,
    mempool: Mempool,
    /// Most transactions and bytes one block takes from the mempool.
    pub block_max_txs: usize,
    pub block_max_bytes: usize,
}

impl<S: Store> NodeCore<S> {
    pub fn new(ledger: Ledger<S>, mempool: MempoolConfig) -> Result<NodeCore<S>, LedgerError> {
        ledger.chain_info()?;
        Ok(NodeCore {
            ledger,
            mempool: Mempool::new(mempool),
            block_max_txs: 10_000,
            block_max_bytes: 4 << 20,
        })
    }

    pub fn ledger(&self) -> &Ledger<S> {
        &self.ledger
    }

    /// Admits a transaction into the mempool after the ledger's admission checks.
    pub fn submit(&mut self, raw: Vec<u8>, now: Timestamp) -> Result<Hash, SubmitError> {
        let chain = self.ledger.chain_info()?;
        let params = self.ledger.params()?;
        Ok(self.mempool.insert(raw, &chain.chain_id, &params, &Accounts(&self.ledger), now)?)
    }

    /// Admits a transaction whose signature [`crate::mempool::verify_signature`] already checked.
    pub fn submit_verified(&mut self, raw: Vec<u8>, now: Timestamp) -> Result<Hash, SubmitError> {
        let chain = self.ledger.chain_info()?;
        let params = self.ledger.params()?;
        Ok(self.mempool.insert_verified(raw, &chain.chain_id, &params, &Accounts(&self.ledger), now)?)
    }

    /// Admits transactions received from a peer, verifying their signatures as one batch.
    pub fn submit_batch(&mut self, raws: Vec<Vec<u8>>, now: Timestamp) -> Vec<Result<Hash, SubmitError>> {
        let (chain, params) = match (self.ledger.chain_info(), self.ledger.params()) {
            (Ok(chain), Ok(params)) => (chain, params),
            (Err(e), _) | (_, Err(e)) => {
                let reason = e.to_string();
                return raws
                    .iter()
                    .map(|_| Err(SubmitError::Ledger(LedgerError::Invariant { what: reason.clone() })))
                    .collect();
            }
        };
        let results =
            self.mempool.insert_batch(raws, &chain.chain_id, &params, &Accounts(&self.ledger), now, OsRng);
        results.into_iter().map(|r| r.map_err(SubmitError::from)).collect()
    }

    pub fn query(&self, query: &Query) -> Result<QueryResponse, QueryError> {
        self.ledger.query(query)
    }

    pub fn status(&self) -> Result<Status, LedgerError> {
        Ok(Status {
            chain: self.ledger.chain_info()?,
            mempool_txs: self.mempool.len(),
            mempool_bytes: self.mempool.bytes(),
        })
    }

    /// The committed height.
    pub fn height(&self) -> Result<u64, LedgerError> {
        Ok(self.ledger.chain_info()?.height)
    }

    /// Transactions for a block built on `ancestors` (height and transactions of each block not known to be
    /// committed; those at or below the committed height are ignored), see [`Mempool::reap_after`]. Stale
    /// entries expire first.
    pub fn reap(&mut self, now: Timestamp, ancestors: &[(u64, Vec<Vec<u8>>)]) -> Vec<Vec<u8>> {
        self.mempool.evict_expired(now);
        let Ok(params) = self.ledger.params() else { return Vec::new() };
        let pending = self.pending(ancestors);
        self.mempool.reap_after(
            self.block_max_txs,
            self.block_max_bytes,
            &params,
            &Accounts(&self.ledger),
            &pending,
        )
    }

    /// The chain id and params a proposal's stateless checks need ([`crate::mempool::check_signed`]), read
    /// under the lock so the expensive part can run without it.
    pub fn chain_params(&self) -> Result<(String, tensorgrid_types::Params), LedgerError> {
        Ok((self.ledger.chain_info()?.chain_id, self.ledger.params()?))
    }

    /// Whether a proposed block's transactions, already checked by [`crate::mempool::check_signed`], are
    /// funded and in nonce order on top of `ancestors` (as in [`NodeCore::reap`]); see [`check_block`].
    pub fn check_funded(
        &self,
        block: &SignedBlock,
        ancestors: &[(u64, Vec<Vec<u8>>)],
    ) -> Result<(), BlockCheckError> {
        let params = self.ledger.params().map_err(|e| BlockCheckError::Refused {
            index: 0,
            error: tensorgrid_types::TxError::Undecodable { reason: format!("the ledger failed: {e}") },
        })?;
        let pending = self.pending(ancestors);
        check_funded(block, &pending, &params, &Accounts(&self.ledger))
    }

    /// The transactions of the ancestors above the committed height.
    fn pending(&self, ancestors: &[(u64, Vec<Vec<u8>>)]) -> Vec<Vec<u8>> {
        let committed = self.height().unwrap_or(0);
        ancestors.iter().filter(|(h, _)| *h > committed).flat_map(|(_, txs)| txs.iter().cloned()).collect()
    }

    /// Executes a finalized block and drops from the mempool what it included or made stale. `before_write`
    /// sees the outcome before the state commits (a node indexes the block there), and its error aborts the
    /// commit.
    pub fn commit_block(
        &mut self,
        ctx: &BlockContext,
        txs: &[Vec<u8>],
        rng: impl RngCore + CryptoRng,
        before_write: impl FnOnce(&S, &BlockOutcome) -> Result<(), StoreError>,
    ) -> Result<BlockOutcome, LedgerError> {
        // What this mempool admitted had its signature verified already; the exact bytes (the hash covers the
        // signature) need no second check.
        let mempool = &self.mempool;
        let verified = |raw: &[u8]| mempool.contains(&Hash::of(raw));
        let (outcome, writes) = self.ledger.simulate_block_with(ctx, txs, rng, &verified)?;
        before_write(self.ledger.store(), &outcome)?;
        self.ledger.apply(writes)?;
        let included: Vec<Hash> = outcome.receipts.iter().map(|r| r.tx_hash).collect();
        self.mempool.committed(&included, &Accounts(&self.ledger));
        Ok(outcome)
    }

    /// Makes the next block from the mempool at `time` with `randomness`, executes it and clears what it
    /// included. Stale mempool entries expire first.
    pub fn produce_block(&mut self, time: Timestamp, randomness: Hash) -> Result<BlockOutcome, LedgerError> {
        let height = self.height()?.saturating_add(1);
        let txs = self.reap(time, &[]);
        self.commit_block(&BlockContext { height, time, randomness }, &txs, OsRng, |_, _| Ok(()))
    }
}

/// Why a submitted transaction was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the node's state lock is poisoned")]
    Poisoned,
}
