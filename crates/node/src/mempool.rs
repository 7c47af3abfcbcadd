//! Transactions waiting for a block.
//!
//! On entry a transaction passes the same admission checks the ledger applies (size, decoding, stateless
//! validation, chain id, signature, nonce, fee payable) against the latest committed state, and the account's
//! balance must cover the fees *and spends* ([`Msg::max_spend`]) of all its waiting transactions: a balance
//! only shrinks through its owner's transactions, so nothing the pool offers a block can fail to pay its fee
//! (an account cannot send its balance away and have its followers ride along for free). The pool is bounded
//! in transactions, bytes and transactions per account, with a lane of its own for heartbeats; when full it
//! refuses with [`MempoolError::Full`] ("try later"), never blocks.
//!
//! Blocks are filled per account in nonce order (a gap stops that account): first heartbeats, up to
//! [`HEARTBEAT_SHARE`] of the block, so that a flood never makes a live provider look dead; then by tip per
//! byte, accounts with equal tips taking turns in arrival order so that one busy account cannot starve the
//! others. [`check_block`] applies the same funding and nonce rules to a proposed block.

use std::collections::{BTreeMap, HashMap};

use rand_core::{CryptoRng, RngCore};
use tensorgrid_types::crypto::SignatureError;
use tensorgrid_types::tx::signing_bytes_of_raw;
use tensorgrid_types::{Account, Address, Amount, Hash, Msg, Params, SignedTx, Timestamp, TxError};

/// The share of a block's transactions kept for heartbeats (one in this many).
pub const HEARTBEAT_SHARE: usize = 4;

/// What the pool may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// Transactions one account may have waiting (nonces `next .. next + max_per_account`).
    pub max_per_account: u64,
    /// Entries older than this are dropped.
    pub ttl_ms: u64,
    /// Heartbeats waiting, on top of `max_txs`: a pool full of other transactions still takes them.
    pub max_heartbeats: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 50_000,
            max_bytes: 64 << 20,
            max_per_account: 64,
            ttl_ms: 10 * 60_000,
            max_heartbeats: 20_000,
        }
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
    #[error(
        "the balance {available} does not cover the fees and amounts of this account's waiting transactions \
         and this one ({required})"
    )]
    Unfunded { required: Amount, available: Amount },
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
    /// The fee with its tip plus what the message may spend: what the balance must cover.
    cost: u128,
    /// Tip per byte in millionths of a utgr: the block's order of preference.
    priority: u128,
    heartbeat: bool,
}

/// What a transaction may take from its signer's balance in all: its fee (with tip) and its spend.
fn cost_of(signed: &SignedTx, size: usize, params: &Params) -> Option<u128> {
    let fee = params.fee_with_tip(size, signed.tx.tip)?;
    fee.0.checked_add(signed.tx.msg.max_spend(params).0)
}

/// Checks a transaction's signature on its own, needing neither the pool nor the state: the expensive part
/// of admission, done by the API before it takes the lock that block execution also takes.
pub fn verify_signature(raw: &[u8]) -> Result<(), MempoolError> {
    let signed = SignedTx::decode(raw).map_err(|e| TxError::Undecodable { reason: e.reason })?;
    check_signature(raw, &signed)
}

/// Whether `signed` (decoded from `raw`) carries its signer's signature over the bytes as received.
fn check_signature(raw: &[u8], signed: &SignedTx) -> Result<(), MempoolError> {
    let signer = signed.tx.signer;
    let message = signing_bytes_of_raw(raw).ok_or(TxError::BadSignature { signer })?;
    tensorgrid_types::crypto::verify(&signer, &message, &signed.signature)
        .map_err(|_: SignatureError| TxError::BadSignature { signer })?;
    Ok(())
}

/// The pool.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    entries: HashMap<Hash, Entry>,
    by_account: BTreeMap<Address, BTreeMap<u64, Hash>>,
    bytes: usize,
    heartbeats: usize,
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
        check_signature(&raw, &signed)?;
        self.admit(raw, hash, &signed, params, accounts, now)
    }

    /// [`Mempool::insert`] for a transaction whose signature [`verify_signature`] already checked: what the API
    /// does, so the check runs before the node's lock is taken.
    pub fn insert_verified(
        &mut self,
        raw: Vec<u8>,
        chain_id: &str,
        params: &Params,
        accounts: &impl AccountView,
        now: Timestamp,
    ) -> Result<Hash, MempoolError> {
        let (hash, signed) = self.precheck(&raw, chain_id, params)?;
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
        let fee = params
            .fee_with_tip(raw.len(), tx.tip)
            .ok_or(TxError::CannotPayFee { required: Amount(u128::MAX), available: account.balance })?;
        if tx.max_fee < fee {
            return Err(TxError::FeeTooLow { required: fee, offered: tx.max_fee }.into());
        }
        if account.balance < fee {
            return Err(TxError::CannotPayFee { required: fee, available: account.balance }.into());
        }
        if self.by_account.get(&tx.signer).is_some_and(|n| n.contains_key(&tx.nonce)) {
            return Err(MempoolError::NonceTaken { signer: tx.signer, nonce: tx.nonce });
        }
        // Every waiting transaction of the account pays its fee and may spend its amount; the balance must
        // cover them all, this one included.
        let cost = cost_of(signed, raw.len(), params).unwrap_or(u128::MAX);
        let waiting: u128 = self
            .by_account
            .get(&tx.signer)
            .into_iter()
            .flat_map(|nonces| nonces.values())
            .filter_map(|h| self.entries.get(h))
            .fold(0u128, |sum, e| sum.saturating_add(e.cost));
        let required = waiting.saturating_add(cost);
        if account.balance.0 < required {
            return Err(MempoolError::Unfunded { required: Amount(required), available: account.balance });
        }
        let heartbeat = matches!(tx.msg, Msg::Heartbeat);
        let full = if heartbeat {
            self.heartbeats >= self.config.max_heartbeats
        } else {
            self.entries.len() - self.heartbeats >= self.config.max_txs
                || self.bytes + raw.len() > self.config.max_bytes
        };
        if full {
            return Err(MempoolError::Full { txs: self.entries.len(), bytes: self.bytes });
        }
        if heartbeat {
            self.heartbeats += 1;
        } else {
            self.bytes += raw.len();
        }
        let priority = tx.tip.0.saturating_mul(1_000_000) / (raw.len().max(1) as u128);
        self.by_account.entry(tx.signer).or_default().insert(tx.nonce, hash);
        let entry = Entry {
            raw,
            signer: tx.signer,
            nonce: tx.nonce,
            arrived: now,
            seq: self.next_seq,
            cost,
            priority,
            heartbeat,
        };
        self.next_seq += 1;
        self.entries.insert(hash, entry);
        Ok(hash)
    }

    /// Transactions for the next block, at most `max_txs` and `max_bytes` (see the module's doc for the
    /// order). Nothing is removed: that happens when the block commits ([`Mempool::committed`]).
    pub fn reap(
        &self,
        max_txs: usize,
        max_bytes: usize,
        params: &Params,
        accounts: &impl AccountView,
    ) -> Vec<Vec<u8>> {
        self.reap_after(max_txs, max_bytes, params, accounts, &[])
    }

    /// [`Mempool::reap`] for a block whose ancestors are not committed yet and carry `pending`: each account
    /// continues after its pending transactions' nonces, and its balance must cover their fees and spends
    /// as well as those of what this block takes, exactly as [`check_block`] will require.
    pub fn reap_after(
        &self,
        max_txs: usize,
        max_bytes: usize,
        params: &Params,
        accounts: &impl AccountView,
        pending: &[Vec<u8>],
    ) -> Vec<Vec<u8>> {
        let pending = Pending::of(pending, params);
        // Each account's runnable queue: consecutive nonces after its pending ones, as long as the balance
        // covers them.
        let mut queues: Vec<Vec<&Entry>> = Vec::new();
        for (signer, nonces) in &self.by_account {
            let Some(account) = accounts.account(signer) else { continue };
            let (count, spent) = pending.of_account(signer);
            let first = account.nonce.saturating_add(count);
            let mut left = account.balance.0.saturating_sub(spent);
            let mut run = Vec::new();
            for (next, (nonce, hash)) in (first..).zip(nonces.range(first..)) {
                let Some(entry) = self.entries.get(hash) else { break };
                if *nonce != next || entry.cost > left {
                    break;
                }
                left -= entry.cost;
                run.push(entry);
            }
            if !run.is_empty() {
                queues.push(run);
            }
        }
        // Heartbeats first, up to their share of the block, oldest first.
        let reserve = max_txs.div_ceil(HEARTBEAT_SHARE);
        let mut heads: Vec<(usize, &Entry)> =
            queues.iter().enumerate().filter(|(_, q)| q[0].heartbeat).map(|(i, q)| (i, q[0])).collect();
        heads.sort_by_key(|(_, e)| e.seq);
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        let mut taken = vec![0usize; queues.len()];
        for (i, entry) in heads.into_iter().take(reserve) {
            if bytes + entry.raw.len() > max_bytes {
                continue;
            }
            bytes += entry.raw.len();
            out.push(entry.raw.clone());
            taken[i] = 1;
        }
        // Then by tip per byte; at equal tips, accounts take turns (fewest taken first), by arrival.
        let mut heap: std::collections::BinaryHeap<Turn> = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                q.get(taken[i]).map(|e| (e.priority, std::cmp::Reverse((taken[i], q[0].seq)), i))
            })
            .collect();
        while let Some((_, _, i)) = heap.pop() {
            if out.len() >= max_txs {
                break;
            }
            let entry = queues[i][taken[i]];
            if bytes + entry.raw.len() > max_bytes {
                // This account's run stops here; later nonces cannot go before this one.
                continue;
            }
            bytes += entry.raw.len();
            out.push(entry.raw.clone());
            taken[i] += 1;
            if let Some(next) = queues[i].get(taken[i]) {
                heap.push((next.priority, std::cmp::Reverse((taken[i], queues[i][0].seq)), i));
            }
        }
        out
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
            if entry.heartbeat {
                self.heartbeats -= 1;
            } else {
                self.bytes -= entry.raw.len();
            }
            if let Some(nonces) = self.by_account.get_mut(&entry.signer) {
                nonces.remove(&entry.nonce);
                if nonces.is_empty() {
                    self.by_account.remove(&entry.signer);
                }
            }
        }
    }
}

/// An account's place in the block's order: its next transaction's tip per byte, then (fewest taken so
/// far, earliest arrival) so that equal tips take turns, then the account's index.
type Turn = (u128, std::cmp::Reverse<(usize, u64)>, usize);

/// What uncommitted ancestors already take from each account: how many nonces and how much of its balance
/// (fees and spends), decoded from their transactions.
#[derive(Debug, Default)]
struct Pending(HashMap<Address, (u64, u128)>);

impl Pending {
    fn of(raws: &[Vec<u8>], params: &Params) -> Pending {
        let mut by_account: HashMap<Address, (u64, u128)> = HashMap::new();
        for raw in raws {
            let Ok(signed) = SignedTx::decode(raw) else { continue };
            let cost = cost_of(&signed, raw.len(), params).unwrap_or(u128::MAX);
            let slot = by_account.entry(signed.tx.signer).or_default();
            slot.0 = slot.0.saturating_add(1);
            slot.1 = slot.1.saturating_add(cost);
        }
        Pending(by_account)
    }

    fn of_account(&self, signer: &Address) -> (u64, u128) {
        self.0.get(signer).copied().unwrap_or_default()
    }
}

/// Why a proposed block's transactions are refused ([`check_block`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockCheckError {
    #[error("transaction {index}: {error}")]
    Refused { index: usize, error: TxError },
    #[error("transaction {index}: nonce {got} of {signer}, expected {expected}")]
    OutOfOrder { index: usize, signer: Address, expected: u64, got: u64 },
    #[error(
        "transaction {index}: {signer}'s balance {available} does not cover {required} of fees and amounts"
    )]
    Unfunded { index: usize, signer: Address, required: Amount, available: Amount },
}

/// Whether every transaction of a proposed block would be admitted and could pay, given the committed
/// `accounts` and the transactions of the block's uncommitted ancestors (`pending`): the bytes decode, are
/// well-formed, name this chain, carry a valid signature and a sufficient `max_fee`, each account's nonces
/// follow on from its committed and pending ones without a gap, and its balance covers the fees and spends
/// of all of them. This is the rule honest proposers follow ([`Mempool::reap_after`]), so a proposer can
/// no longer fill blocks with transactions that are refused at execution and pay nothing.
pub fn check_block<R: RngCore + CryptoRng>(
    txs: &[Vec<u8>],
    pending: &[Vec<u8>],
    chain_id: &str,
    params: &Params,
    accounts: &impl AccountView,
    rng: R,
) -> Result<(), BlockCheckError> {
    let signed = check_signed(txs, chain_id, params, rng)?;
    check_funded(&signed, pending, params, accounts)
}

/// A proposal's transactions that passed every check needing no state ([`check_signed`]).
#[derive(Debug)]
pub struct SignedBlock {
    /// Each transaction, its encoded size and the fee it offers to pay (minimum plus tip).
    txs: Vec<(SignedTx, usize)>,
}

/// The part of [`check_block`] that needs no account: decoding, well-formedness, chain id, the signatures
/// (batch-verified) and `max_fee`. It takes no lock, so a verifier runs it beside block execution.
pub fn check_signed<R: RngCore + CryptoRng>(
    txs: &[Vec<u8>],
    chain_id: &str,
    params: &Params,
    rng: R,
) -> Result<SignedBlock, BlockCheckError> {
    let mut decoded = Vec::with_capacity(txs.len());
    for (index, raw) in txs.iter().enumerate() {
        let refused = |error: TxError| BlockCheckError::Refused { index, error };
        if raw.len() > params.max_tx_bytes as usize {
            return Err(refused(TxError::TooLarge {
                size: raw.len() as u64,
                max: u64::from(params.max_tx_bytes),
            }));
        }
        let signed = SignedTx::decode(raw).map_err(|e| refused(TxError::Undecodable { reason: e.reason }))?;
        signed.tx.validate().map_err(|malformed| refused(TxError::Malformed { malformed }))?;
        if signed.tx.chain_id != chain_id {
            return Err(refused(TxError::WrongChainId {
                expected: chain_id.into(),
                got: signed.tx.chain_id,
            }));
        }
        let message =
            signing_bytes_of_raw(raw).ok_or(refused(TxError::BadSignature { signer: signed.tx.signer }))?;
        decoded.push((signed, message));
    }
    let verdicts = tensorgrid_types::crypto::verify_batch(
        decoded.iter().map(|(signed, message)| (&signed.tx.signer, message.as_slice(), &signed.signature)),
        rng,
    );
    let mut out = Vec::with_capacity(decoded.len());
    for (index, (((signed, _), verdict), raw)) in decoded.into_iter().zip(verdicts).zip(txs).enumerate() {
        let tx = &signed.tx;
        let refused = |error: TxError| BlockCheckError::Refused { index, error };
        if verdict.is_err() {
            return Err(refused(TxError::BadSignature { signer: tx.signer }));
        }
        let fee = params
            .fee_with_tip(raw.len(), tx.tip)
            .ok_or(refused(TxError::FeeTooLow { required: Amount(u128::MAX), offered: tx.max_fee }))?;
        if tx.max_fee < fee {
            return Err(refused(TxError::FeeTooLow { required: fee, offered: tx.max_fee }));
        }
        out.push((signed, raw.len()));
    }
    Ok(SignedBlock { txs: out })
}

/// The part of [`check_block`] that reads accounts: each account's nonces continue without a gap after its
/// committed and pending ones, and its balance covers the fees and spends of all of them.
pub fn check_funded(
    block: &SignedBlock,
    pending: &[Vec<u8>],
    params: &Params,
    accounts: &impl AccountView,
) -> Result<(), BlockCheckError> {
    let pending = Pending::of(pending, params);
    let mut seen: HashMap<Address, (u64, u128, Amount)> = HashMap::new();
    for (index, (signed, size)) in block.txs.iter().enumerate() {
        let tx = &signed.tx;
        let refused = |error: TxError| BlockCheckError::Refused { index, error };
        let state = match seen.entry(tx.signer) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let account = accounts
                    .account(&tx.signer)
                    .ok_or(refused(TxError::UnknownAccount { address: tx.signer }))?;
                let (count, spent) = pending.of_account(&tx.signer);
                v.insert((account.nonce.saturating_add(count), spent, account.balance))
            }
        };
        if tx.nonce != state.0 {
            return Err(BlockCheckError::OutOfOrder {
                index,
                signer: tx.signer,
                expected: state.0,
                got: tx.nonce,
            });
        }
        state.0 += 1;
        state.1 = state.1.saturating_add(cost_of(signed, *size, params).unwrap_or(u128::MAX));
        if state.1 > state.2 .0 {
            return Err(BlockCheckError::Unfunded {
                index,
                signer: tx.signer,
                required: Amount(state.1),
                available: state.2,
            });
        }
    }
    Ok(())
}
