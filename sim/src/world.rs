//! A seeded world: actors act on each block's events, the ledger executes their transactions, and every
//! invariant is checked after every block. Same seed, same actors ⇒ same history.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use tensorgrid_ledger::testing::{TestChain, GENESIS_TIME};
use tensorgrid_ledger::{InvariantError, LedgerError};
use tensorgrid_types::{Address, Amount, Event, Genesis, GenesisAccount, Params, Timestamp, TxError};

use crate::actors::{Actor, View};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Invariant(#[from] InvariantError),
}

/// One event and when it happened.
#[derive(Clone, Debug, Serialize)]
pub struct Logged {
    pub height: u64,
    /// Milliseconds since genesis.
    pub at_ms: u64,
    pub event: Event,
}

/// A transaction an actor sent that the ledger refused or failed.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub at_ms: u64,
    pub actor: String,
    pub error: TxError,
}

#[derive(Debug)]
pub struct World {
    pub chain: TestChain,
    actors: Vec<Box<dyn Actor>>,
    names: BTreeMap<Address, String>,
    pub log: Vec<Logged>,
    pub refused: Vec<Refused>,
    /// Average milliseconds between blocks; each block varies by up to a fifth of it, from the seed.
    pub block_ms: u64,
    /// Every ledger invariant is checked after every `check_every` blocks (1: after each). Long runs check
    /// less often, since a check reads the whole state.
    pub check_every: u64,
    rng: ChaCha20Rng,
    last_events: Vec<Event>,
    pub genesis_balances: Vec<(String, Amount)>,
}

impl World {
    /// A world whose genesis gives every actor `funds`.
    pub fn new(
        seed: u64,
        params: Params,
        actors: Vec<Box<dyn Actor>>,
        funds: Amount,
    ) -> Result<World, SimError> {
        let genesis = Genesis {
            chain_id: "tg-sim".into(),
            genesis_time: GENESIS_TIME,
            params,
            accounts: actors
                .iter()
                .map(|a| GenesisAccount { address: a.key().address(), balance: funds })
                .collect(),
        };
        let chain = TestChain::from_genesis(&genesis, seed)?;
        let names = actors.iter().map(|a| (a.key().address(), a.name().to_string())).collect();
        let genesis_balances = actors.iter().map(|a| (a.name().to_string(), funds)).collect();
        Ok(World {
            chain,
            actors,
            names,
            log: Vec::new(),
            refused: Vec::new(),
            block_ms: 6_000,
            check_every: 1,
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x5eed),
            last_events: Vec::new(),
            genesis_balances,
        })
    }

    /// Milliseconds since genesis.
    pub fn elapsed(&self) -> u64 {
        self.chain.now.since(GENESIS_TIME)
    }

    /// The actor's name for an address, or the short address.
    pub fn name(&self, address: &Address) -> String {
        self.names.get(address).cloned().unwrap_or_else(|| {
            let text = address.to_string();
            format!("{}…", &text[..text.len().min(10)])
        })
    }

    pub fn address_of(&self, name: &str) -> Option<Address> {
        self.names.iter().find(|(_, n)| n.as_str() == name).map(|(a, _)| *a)
    }

    /// Executes one block of whatever the actors want to do now.
    pub fn step(&mut self) -> Result<(), SimError> {
        let jitter = self.block_ms / 5;
        let step = self.block_ms - jitter + self.rng.next_u64() % (2 * jitter + 1);
        let at: Timestamp = self.chain.now.plus(step.max(1));
        let mut txs = Vec::new();
        let mut senders = Vec::new();
        {
            let view = View { chain: &self.chain, events: &self.last_events, now: at };
            let mut wanted = Vec::new();
            for (index, actor) in self.actors.iter_mut().enumerate() {
                for msg in actor.act(&view, &mut self.rng) {
                    wanted.push((actor.key().clone(), index, msg));
                }
            }
            for (key, index, msg) in wanted {
                txs.push(self.chain.tx(&key, msg));
                senders.push(index);
            }
        }
        let outcome = self.chain.try_block_at(at, &txs)?;
        for (index, actor) in self.actors.iter_mut().enumerate() {
            let receipts: Vec<_> = outcome
                .receipts
                .iter()
                .zip(&senders)
                .filter(|(_, sender)| **sender == index)
                .map(|(receipt, _)| receipt.clone())
                .collect();
            actor.settled(&self.chain, &receipts, &mut self.rng);
        }
        let senders: Vec<String> = senders.iter().map(|i| self.actors[*i].name().to_string()).collect();
        if self.chain.height % self.check_every.max(1) == 0 {
            self.chain.ledger.check_invariants()?;
        }
        let elapsed = self.elapsed();
        for (receipt, actor) in outcome.receipts.iter().zip(senders) {
            if let Some(error) = receipt.error() {
                self.refused.push(Refused { at_ms: elapsed, actor, error: error.clone() });
            }
        }
        for event in &outcome.events {
            self.log.push(Logged { height: self.chain.height, at_ms: elapsed, event: event.clone() });
        }
        self.last_events = outcome.events;
        Ok(())
    }

    /// Runs until `ms` after genesis.
    pub fn run_until(&mut self, ms: u64) -> Result<(), SimError> {
        while self.elapsed() < ms {
            self.step()?;
        }
        Ok(())
    }

    /// Every actor's balance now, in the order they were given.
    pub fn balances(&self) -> Vec<(String, Amount)> {
        self.genesis_balances
            .iter()
            .map(|(name, _)| {
                let address = self.address_of(name).unwrap_or(Address([0; 32]));
                (name.clone(), self.chain.balance(&address))
            })
            .collect()
    }
}
