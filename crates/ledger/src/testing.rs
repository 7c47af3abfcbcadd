#![allow(clippy::panic)] // A harness whose setup fails must stop the test that uses it.

//! A chain harness for tests, simulations, benchmarks and fuzzing: an in-memory ledger with a genesis,
//! a block clock, and signing with nonces tracked for the caller. Everything is seeded; nothing reads the
//! machine's clock or entropy.

use std::collections::BTreeMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{
    Account, Address, Amount, BlockContext, BlockOutcome, Genesis, GenesisAccount, Hash, Msg, Params,
    Receipt, SecretKey, Timestamp, Tx,
};

use crate::ledger::Ledger;
use crate::store::{MemStore, Store};
use crate::LedgerError;

pub const TEST_CHAIN_ID: &str = "tg-test";
pub const GENESIS_TIME: Timestamp = Timestamp(1_700_000_000_000);

/// An in-memory chain that produces a block per call.
#[derive(Debug)]
pub struct TestChain {
    pub ledger: Ledger<MemStore>,
    pub chain_id: String,
    /// Time of the last block.
    pub now: Timestamp,
    pub height: u64,
    /// Milliseconds between consecutive blocks made by [`TestChain::block`].
    pub block_ms: u64,
    /// Fee ceiling put on every transaction this harness signs.
    pub max_fee: Amount,
    seed: u64,
    pending: BTreeMap<Address, u64>,
    rng: ChaCha20Rng,
}

impl TestChain {
    /// A chain whose genesis funds the given keys, with 1-second blocks.
    pub fn new(accounts: &[(&SecretKey, Amount)], params: Params) -> Self {
        Self::with_seed(accounts, params, 0)
    }

    /// Like [`TestChain::new`]; `seed` drives block randomness, so different seeds break ties differently.
    pub fn with_seed(accounts: &[(&SecretKey, Amount)], params: Params, seed: u64) -> Self {
        let genesis = Genesis {
            chain_id: TEST_CHAIN_ID.into(),
            genesis_time: GENESIS_TIME,
            params,
            accounts: accounts
                .iter()
                .map(|(key, balance)| GenesisAccount { address: key.address(), balance: *balance })
                .collect(),
        };
        Self::from_genesis(&genesis, seed).unwrap_or_else(|e| panic!("test genesis is invalid: {e}"))
    }

    pub fn from_genesis(genesis: &Genesis, seed: u64) -> Result<Self, LedgerError> {
        let mut ledger = Ledger::new(MemStore::new());
        ledger.init_genesis(genesis)?;
        Ok(TestChain {
            ledger,
            chain_id: genesis.chain_id.clone(),
            now: genesis.genesis_time,
            height: 0,
            block_ms: 1_000,
            max_fee: Amount::tgr(1),
            seed,
            pending: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
        })
    }

    pub fn params(&self) -> Params {
        self.ledger.params().unwrap_or_default()
    }

    /// The next nonce for `signer`, counting transactions signed since the last block.
    pub fn next_nonce(&self, signer: &Address) -> u64 {
        let on_chain = self.account(signer).map(|a| a.nonce).unwrap_or(0);
        on_chain + self.pending.get(signer).copied().unwrap_or(0)
    }

    /// Signs `msg` from `key` with its next nonce and returns the encoded transaction.
    pub fn tx(&mut self, key: &SecretKey, msg: Msg) -> Vec<u8> {
        let signer = key.address();
        let nonce = self.next_nonce(&signer);
        *self.pending.entry(signer).or_default() += 1;
        Tx::new(self.chain_id.clone(), signer, nonce, self.max_fee, msg).sign(key).encode()
    }

    /// Executes a block `block_ms` after the previous one.
    pub fn block(&mut self, txs: &[Vec<u8>]) -> BlockOutcome {
        let at = self.now.plus(self.block_ms);
        self.block_at(at, txs)
    }

    /// Executes a block at `time`.
    pub fn block_at(&mut self, time: Timestamp, txs: &[Vec<u8>]) -> BlockOutcome {
        self.try_block_at(time, txs).unwrap_or_else(|e| panic!("block at {time} failed: {e}"))
    }

    pub fn try_block_at(&mut self, time: Timestamp, txs: &[Vec<u8>]) -> Result<BlockOutcome, LedgerError> {
        let ctx =
            BlockContext { height: self.height + 1, time, randomness: self.randomness(self.height + 1) };
        let outcome = self.ledger.execute_block(&ctx, txs, &mut self.rng)?;
        self.height += 1;
        self.now = time;
        self.pending.clear();
        Ok(outcome)
    }

    /// The randomness a block at `height` gets: a hash of the seed and height.
    pub fn randomness(&self, height: u64) -> Hash {
        Hash::of_parts(&[b"test-randomness", &self.seed.to_le_bytes(), &height.to_le_bytes()])
    }

    /// Signs and executes one message in its own block; returns its receipt.
    pub fn exec(&mut self, key: &SecretKey, msg: Msg) -> Receipt {
        let tx = self.tx(key, msg);
        let mut outcome = self.block(&[tx]);
        outcome.receipts.remove(0)
    }

    /// An empty block at `now + ms`.
    pub fn advance(&mut self, ms: u64) -> BlockOutcome {
        let at = self.now.plus(ms);
        self.block_at(at, &[])
    }

    pub fn query(&self, query: Query) -> QueryResponse {
        self.ledger.query(&query).unwrap_or_else(|e| panic!("query {query:?} failed: {e}"))
    }

    pub fn account(&self, address: &Address) -> Option<Account> {
        self.ledger.account(address).ok().flatten()
    }

    pub fn balance(&self, address: &Address) -> Amount {
        self.account(address).map(|a| a.balance).unwrap_or_default()
    }

    /// Keys whose values differ between this chain's state and `other`'s.
    pub fn diff_keys(&self, other: &TestChain) -> Vec<Vec<u8>> {
        let all = |s: &MemStore| -> BTreeMap<Vec<u8>, Vec<u8>> {
            s.scan_prefix(b"").filter_map(Result::ok).collect()
        };
        let (a, b) = (all(self.ledger.store()), all(other.ledger.store()));
        let mut keys: Vec<Vec<u8>> = a.keys().chain(b.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
    }
}

/// The store key of an account, for comparing state in tests.
pub fn account_key(address: &Address) -> Vec<u8> {
    crate::keys::account(address)
}
