//! The execution state of one block: a write overlay over the committed store.
//!
//! Every write goes to the overlay and is journalled, so a failing transaction rolls back exactly its own
//! writes and events. The overlay reaches the store only when the whole block has executed; a fatal error
//! leaves the store untouched.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use tensorgrid_types::{codec, Event, Hash, Params, Timestamp};

use crate::error::LedgerError;
use crate::store::{KeyValue, Store, StoreError, WriteBatch};

type Journal = Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>;

/// A point to roll back to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checkpoint {
    journal: usize,
    events: usize,
}

pub(crate) struct State<'s, S: Store + ?Sized> {
    base: &'s S,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    journal: Journal,
    pub(crate) events: Vec<Event>,
    pub(crate) params: Params,
    pub(crate) now: Timestamp,
    pub(crate) randomness: Hash,
}

impl<'s, S: Store + ?Sized> State<'s, S> {
    pub(crate) fn new(base: &'s S, params: Params, now: Timestamp, randomness: Hash) -> Self {
        State {
            base,
            writes: BTreeMap::new(),
            journal: Vec::new(),
            events: Vec::new(),
            params,
            now,
            randomness,
        }
    }

    // --- raw access

    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let previous = self.writes.insert(key.clone(), value);
        self.journal.push((key, previous));
    }

    pub(crate) fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    /// Up to `limit` pairs under `prefix` with keys after `after` (a full key), merged from the overlay and the
    /// store, in key order.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        self.visit(prefix, after, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Calls `visit` on each pair under `prefix` with a key after `after`, merged from the overlay and the
    /// store in key order, until it returns `false`. Entries deleted in the overlay are skipped.
    pub(crate) fn visit(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let past = |k: &[u8]| after.is_none_or(|a| k > a);
        let mut base = self.base.scan_prefix(prefix).filter(|item| match item {
            Ok((k, _)) => past(k),
            Err(_) => true,
        });
        let start = match after {
            Some(a) if a >= prefix => a.to_vec(),
            _ => prefix.to_vec(),
        };
        let mut overlay = self
            .writes
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| past(k))
            .peekable();
        let mut next_base = base.next().transpose()?;
        loop {
            let take_overlay = match (overlay.peek(), &next_base) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ok, _)), Some((bk, _))) => ok.as_slice() <= bk.as_slice(),
            };
            let more = if take_overlay {
                let Some((k, v)) = overlay.next() else { return Ok(()) };
                if next_base.as_ref().is_some_and(|(bk, _)| bk == k) {
                    next_base = base.next().transpose()?;
                }
                match v {
                    Some(v) => visit(k, v),
                    None => true,
                }
            } else {
                let Some((k, v)) = next_base.take() else { return Ok(()) };
                next_base = base.next().transpose()?;
                visit(&k, &v)
            };
            if !more {
                return Ok(());
            }
        }
    }

    // --- typed access

    pub(crate) fn get<T: BorshDeserialize>(&self, key: &[u8]) -> Result<Option<T>, LedgerError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => decode_stored(key, &bytes).map(Some),
        }
    }

    pub(crate) fn put<T: BorshSerialize>(&mut self, key: Vec<u8>, value: &T) {
        self.put_raw(key, codec::encode(value));
    }

    pub(crate) fn scan_values<T: BorshDeserialize>(&self, prefix: &[u8]) -> Result<Vec<T>, LedgerError> {
        self.scan(prefix, None, usize::MAX)?.iter().map(|(k, v)| decode_stored(k, v)).collect()
    }

    // --- transactions within the block

    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint { journal: self.journal.len(), events: self.events.len() }
    }

    pub(crate) fn rollback(&mut self, to: Checkpoint) {
        while self.journal.len() > to.journal {
            if let Some((key, previous)) = self.journal.pop() {
                match previous {
                    Some(value) => {
                        self.writes.insert(key, value);
                    }
                    None => {
                        self.writes.remove(&key);
                    }
                }
            }
        }
        self.events.truncate(to.events);
    }

    /// Forgets the undo information once a transaction is final, so the journal stays small.
    pub(crate) fn release(&mut self) {
        self.journal.clear();
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Everything the block wrote, for the store, and the events it produced.
    pub(crate) fn into_parts(self) -> (WriteBatch, Vec<Event>) {
        (self.writes.into_iter().collect(), self.events)
    }
}

pub(crate) fn decode_stored<T: BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T, LedgerError> {
    codec::decode("stored state", bytes).map_err(|e| LedgerError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.reason,
    })
}
