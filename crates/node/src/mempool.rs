//! Transactions waiting for a block.
//!
//! On entry a transaction passes the same admission checks the ledger applies (size, decoding, stateless
//! validation, chain id, signature, nonce, fee payable) against the latest committed state, so a block built
//! from the pool carries no transaction the ledger would refuse for a reason known in advance. The pool is
//! bounded in transactions, bytes and transactions per account; when full it refuses with [`MempoolError::Full`]
//! ("try later"), never blocks. Blocks are filled per account in nonce order (a gap stops that account),
//! accounts taking turns in arrival order so that one busy account cannot starve the others.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand_core::{CryptoRng, RngCore};
use tensorgrid_types::crypto::SignatureError;
use tensorgrid_types::tx::signing_bytes_of_raw;
use tensorgrid_types::{Account, Address, Hash, Params, SignedTx, Timestamp, TxError};

/// What the pool may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// Transactions one account may have waiting (nonces `next .. next + max_per_account`).
    pub max_per_account: u64,
    /// Entries older than this are dropped.
    pub ttl_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig { max_txs: 50_000, max_bytes: 64 << 20, max_per_account: 64, ttl_ms: 10 * 60_000 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The ledger would refuse it at admission; the error says why.
    #[error(transparent)]
    Rejected(#[from] TxError),
    #[error("the mempool is full ({txs} transactions, {bytes} bytes); try again in a few seconds")]
    Full { txs: usize, bytes: usize },
    #[error("transaction {hash} is already waiting")]
    AlreadyKnown { hash: Hash },
    #[error("another transaction from {signer} with nonce {nonce} is already waiting")]
    NonceTaken { signer: Address, nonce: u64 },
    #[error("nonce {got} is too far ahead: at most {max} transactions of one account may wait (next nonce {next})")]
    TooFarAhead { next: u64, got: u64, max: u64 },
}

/// Read access to committed accounts, as the node's store provides it.
pub trait AccountView {
    fn account(&self, address: &Address) -> Option<Account>;
}

#[derive(Clone, Debug)]
struct Entry {
    raw: Vec<u8>,
    signer: Address,
    nonce: u64,
    arrived: Timestamp,
    /// Arrival order, to let accounts take turns fairly and deterministically.
    seq: u64,
}

/// The pool.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    entries: HashMap<Hash, Entry>,
    by_account: BTreeMap<Address, BTreeMap<u64, Hash>>,
    bytes: usize,
    next_seq: u64,
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool { config, ..Mempool::default() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Checks `raw` against the committed state and adds it. Returns its hash.
    pub fn insert(
        &mut self,
        raw: Vec<u8>,
        chain_id: &str,
        params: &Params,
        accounts: &impl AccountView,
        now: Timestamp,
    ) -> Result<Hash, MempoolError> {
        let (hash, signed) = self.precheck(&raw, chain_id, params)?;
        let tx = &signed.tx;
        let message = signing_bytes_of_raw(&raw).ok_or(TxError::BadSignature { signer: tx.signer })?;
        tensorgrid_types::crypto::verify(&tx.signer, &message, &signed.signature)
            .map_err(|_: SignatureError| TxError::BadSignature { signer: tx.signer })?;
        self.admit(raw, hash, &signed, params, accounts, now)
    }

    /// Admits many transactions at once (what a validator receives from a peer), verifying their signatures
    /// as one batch: the same verdicts as [`Mempool::insert`] one by one, for about a third of the work.
    pub fn insert_batch<R: RngCore + CryptoRng>(
        &mut self,
        raws: Vec<Vec<u8>>,
        chain_id: &str,
        params: &Params,
        accounts: &impl AccountView,
        now: Timestamp,
        rng: R,
    ) -> Vec<Result<Hash, MempoolError>> {
        let mut results: Vec<Option<Result<Hash, MempoolError>>> = Vec::with_capacity(raws.len());
        let mut candidates = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            match self.precheck(raw, chain_id, params) {
                Ok((hash, signed)) => match signing_bytes_of_raw(raw) {
                    Some(message) => {
                        candidates.push((i, hash, signed, message));
                        results.push(None);
                    }
                    None => {
                        results.push(Some(Err(TxError::BadSignature { signer: signed.tx.signer }.into())))
                    }
                },
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let verdicts = tensorgrid_types::crypto::verify_batch(
            candidates
                .iter()
                .map(|(_, _, signed, message)| (&signed.tx.signer, message.as_slice(), &signed.signature)),
            rng,
        );
        let mut raws: Vec<Option<Vec<u8>>> = raws.into_iter().map(Some).collect();
        for ((i, hash, signed, _), verdict) in candidates.into_iter().zip(verdicts) {
            let Some(raw) = raws[i].take() else { continue };
            results[i] = Some(match verdict {
                Ok(()) => self.admit(raw, hash, &signed, params, accounts, now),
                Err(_) => Err(TxError::BadSignature { signer: signed.tx.signer }.into()),
            });
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(MempoolError::AlreadyKnown { hash: Hash::ZERO })))
            .collect()
    }

    /// The checks that need no signature verification or account: not already here, size, decoding,
    /// well-formedness and chain id.
    fn precheck(
        &self,
        raw: &[u8],
        chain_id: &str,
        params: &Params,
    ) -> Result<(Hash, SignedTx), MempoolError> {
        let hash = Hash::of(raw);
        if self.entries.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown { hash });
        }
        if raw.len() > params.max_tx_bytes as usize {
            return Err(
                TxError::TooLarge { size: raw.len() as u64, max: u64::from(params.max_tx_bytes) }.into()
            );
        }
        let signed = SignedTx::decode(raw).map_err(|e| TxError::Undecodable { reason: e.reason })?;
        let tx = &signed.tx;
        tx.validate().map_err(|malformed| TxError::Malformed { malformed })?;
        if tx.chain_id != chain_id {
            return Err(TxError::WrongChainId { expected: chain_id.into(), got: tx.chain_id.clone() }.into());
        }
        Ok((hash, signed))
    }

    /// The account checks and the insertion, for a transaction whose signature verified.
    fn admit(
        &mut self,
        raw: Vec<u8>,
        hash: Hash,
        signed: &SignedTx,
        params: &Params,
        accounts: &impl AccountView,
        now: Timestamp,
    ) -> Result<Hash, MempoolError> {
        // A batch can carry the same transaction twice; the second copy finds the first here.
        if self.entries.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown { hash });
        }
        let tx = &signed.tx;
        let account = accounts.account(&tx.signer).ok_or(TxError::UnknownAccount { address: tx.signer })?;
        if tx.nonce < account.nonce {
            return Err(TxError::NonceReplayed { expected: account.nonce, got: tx.nonce }.into());
        }
        let ahead = tx.nonce - account.nonce;
        if ahead >= self.config.max_per_account {
            return Err(MempoolError::TooFarAhead {
                next: account.nonce,
                got: tx.nonce,
                max: self.config.max_per_account,
            });
        }
        let fee = params.fee_for(raw.len()).ok_or(TxError::CannotPayFee {
            required: tensorgrid_types::Amount(u128::MAX),
            available: account.balance,
        })?;
        if tx.max_fee < fee {
            return Err(TxError::FeeTooLow { required: fee, offered: tx.max_fee }.into());
        }
        // Every waiting transaction of the account pays its fee first; the balance must cover them all.
        let waiting = u128::from(ahead).saturating_add(1);
        if account.balance.0 < fee.0.saturating_mul(waiting) {
            return Err(TxError::CannotPayFee { required: fee, available: account.balance }.into());
        }
        if self.by_account.get(&tx.signer).is_some_and(|n| n.contains_key(&tx.nonce)) {
            return Err(MempoolError::NonceTaken { signer: tx.signer, nonce: tx.nonce });
        }
        if self.entries.len() >= self.config.max_txs || self.bytes + raw.len() > self.config.max_bytes {
            return Err(MempoolError::Full { txs: self.entries.len(), bytes: self.bytes });
        }
        self.bytes += raw.len();
        self.by_account.entry(tx.signer).or_default().insert(tx.nonce, hash);
        let entry = Entry { raw, signer: tx.signer, nonce: tx.nonce, arrived: now, seq: self.next_seq };
        self.next_seq += 1;
        self.entries.insert(hash, entry);
        Ok(hash)
    }

    /// Transactions for the next block, at most `max_txs` and `max_bytes`: each account's run of consecutive
    /// nonces from its committed nonce, accounts taking turns in the order their first waiting transaction
    /// arrived. Nothing is removed: that happens when the block commits ([`Mempool::committed`]).
    pub fn reap(&self, max_txs: usize, max_bytes: usize, accounts: &impl AccountView) -> Vec<Vec<u8>> {
        self.reap_excluding(max_txs, max_bytes, accounts, &HashSet::new())
    }

    /// [`Mempool::reap`] for a block whose ancestors are not committed yet: transactions in `pending` (those
    /// the uncommitted ancestors carry) are skipped but still count as taking their nonce, so an account's
    /// later transactions follow them instead of repeating them.
    pub fn reap_excluding(
        &self,
        max_txs: usize,
        max_bytes: usize,
        accounts: &impl AccountView,
        pending: &HashSet<Hash>,
    ) -> Vec<Vec<u8>> {
        // Each account's runnable queue, ordered by nonce, starting at the committed nonce.
        let mut queues: Vec<(u64, Vec<&Entry>)> = Vec::new();
        for (signer, nonces) in &self.by_account {
            let Some(mut next) = accounts.account(signer).map(|a| a.nonce) else { continue };
            let mut run = Vec::new();
            for (nonce, hash) in nonces.range(next..) {
                if *nonce != next {
                    break;
                }
                if let Some(entry) = self.entries.get(hash) {
                    if !pending.contains(hash) {
                        run.push(entry);
                    }
                }
                next += 1;
            }
            if let Some(first) = run.first() {
                queues.push((first.seq, run));
            }
        }
        queues.sort_by_key(|(seq, _)| *seq);
        let (mut out, mut bytes, mut round) = (Vec::new(), 0usize, 0usize);
        loop {
            let mut took_any = false;
            for (_, run) in &queues {
                let Some(entry) = run.get(round) else { continue };
                if out.len() >= max_txs {
                    return out;
                }
                if bytes + entry.raw.len() > max_bytes {
                    continue;
                }
                bytes += entry.raw.len();
                out.push(entry.raw.clone());
                took_any = true;
            }
            if !took_any {
                return out;
            }
            round += 1;
        }
    }

    /// After a block commits: drops what it included, and anything whose nonce the accounts have moved past.
    pub fn committed(&mut self, included: &[Hash], accounts: &impl AccountView) {
        for hash in included {
            self.remove(hash);
        }
        let stale: Vec<Hash> = self
            .by_account
            .iter()
            .flat_map(|(signer, nonces)| {
                let next = accounts.account(signer).map(|a| a.nonce).unwrap_or(0);
                nonces.range(..next).map(|(_, h)| *h).collect::<Vec<_>>()
            })
            .collect();
        for hash in stale {
            self.remove(&hash);
        }
    }

    /// Drops entries older than the configured time to live.
    pub fn evict_expired(&mut self, now: Timestamp) {
        let ttl = self.config.ttl_ms;
        let old: Vec<Hash> =
            self.entries.iter().filter(|(_, e)| now.since(e.arrived) > ttl).map(|(h, _)| *h).collect();
        for hash in old {
            self.remove(&hash);
        }
    }

    fn remove(&mut self, hash: &Hash) {
        if let Some(entry) = self.entries.remove(hash) {
            self.bytes -= entry.raw.len();
            if let Some(nonces) = self.by_account.get_mut(&entry.signer) {
                nonces.remove(&entry.nonce);
                if nonces.is_empty() {
                    self.by_account.remove(&entry.signer);
                }
            }
        }
    }
}
