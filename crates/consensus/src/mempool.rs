//! Mempool gossip: a transaction admitted by one validator is sent to the others, so whichever validator
//! leads the next view can include it. Every receiver runs the same admission checks as the RPC does, so a
//! peer cannot push anything into a mempool that a client could not.

use std::sync::Arc;

use bytes::{Buf as _, BufMut, Bytes};
use commonware_codec::varint::UInt;
use commonware_codec::{EncodeSize, ReadExt, Write};
use commonware_cryptography::ed25519::PublicKey;
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Handle, Spawner};
use commonware_utils::channel::mpsc;
use tensorgrid_types::Timestamp;
use tracing::debug;

use crate::app::Chain;

/// Most bytes of transactions in one gossip message (the p2p message limit is larger).
pub const MAX_GOSSIP_BATCH_BYTES: usize = 1 << 20;
/// Most transactions in one gossip message.
pub const MAX_GOSSIP_BATCH_TXS: usize = 4096;

/// Hands locally admitted transactions to the gossip task.
#[derive(Clone, Debug)]
pub struct Gossip {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Gossip {
    /// Queues an admitted transaction for the other validators. Never blocks.
    pub fn send(&self, raw: Vec<u8>) {
        // The receiver only goes away when the validator stops, and then nobody needs the transaction.
        let _ = self.tx.send(raw);
    }
}

/// Encodes a batch of transactions for one gossip message.
pub fn encode_batch(txs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txs.iter().map(|t| t.len() + 4).sum::<usize>() + 4);
    UInt(txs.len() as u64).write(&mut out);
    for tx in txs {
        UInt(tx.len() as u64).write(&mut out);
        out.put_slice(tx);
    }
    out
}

/// Decodes a gossip message; `None` if it is malformed or exceeds the batch limits.
pub fn decode_batch(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let count: u64 = UInt::read(&mut buf).ok()?.into();
    let count = usize::try_from(count).ok().filter(|c| *c <= MAX_GOSSIP_BATCH_TXS)?;
    let mut txs = Vec::with_capacity(count);
    for _ in 0..count {
        let len: u64 = UInt::read(&mut buf).ok()?.into();
        let len =
            usize::try_from(len).ok().filter(|l| *l <= MAX_GOSSIP_BATCH_BYTES && *l <= buf.remaining())?;
        txs.push(buf.split_to(len).to_vec());
    }
    buf.is_empty().then_some(txs)
}

/// Starts the gossip task over the mempool channel.
pub fn start_gossip<E, S, R>(
    context: E,
    chain: Arc<Chain>,
    (mut sender, mut receiver): (S, R),
) -> (Gossip, Handle<()>)
where
    E: Spawner + Clock,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let (tx, mut local) = mpsc::unbounded_channel::<Vec<u8>>();
    let handle = context.spawn(move |context| async move {
        loop {
            select! {
                next = local.recv() => {
                    let Some(first) = next else { return };
                    // Everything already queued goes out in one message, up to the batch limits.
                    let mut batch = vec![first];
                    let mut bytes = batch[0].len();
                    while batch.len() < MAX_GOSSIP_BATCH_TXS && bytes < MAX_GOSSIP_BATCH_BYTES / 2 {
                        match local.try_recv() {
                            Ok(raw) => {
                                bytes += raw.len();
                                batch.push(raw);
                            }
                            Err(_) => break,
                        }
                    }
                    let message = encode_batch(&batch);
                    debug_assert!(message.encode_size() > 0);
                    sender.send(Recipients::All, message, false);
                },
                message = receiver.recv() => {
                    let Ok((peer, message)) = message else { return };
                    let Some(txs) = decode_batch(message.as_ref()) else {
                        debug!(?peer, "ignoring a malformed mempool message");
                        continue;
                    };
                    let now = crate::app::millis(&context);
                    // Duplicates and transactions the ledger refuses are simply not kept.
                    let _ = chain.core().lock().submit_batch(txs, Timestamp::from_millis(now));
                },
            }
        }
    });
    (Gossip { tx }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_malformed_ones_are_refused() {
        let txs = vec![vec![1, 2, 3], vec![], vec![9; 1000]];
        let bytes = encode_batch(&txs);
        assert_eq!(decode_batch(&bytes), Some(txs));
        for cut in 0..bytes.len() {
            assert_eq!(decode_batch(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(7);
        assert_eq!(decode_batch(&trailing), None);
        let mut huge = Vec::new();
        UInt(u64::MAX).write(&mut huge);
        assert_eq!(decode_batch(&huge), None);
    }
}
