//! The block consensus orders: a header and the transactions, with the digest validators vote on.
//!
//! The header commits to the state with a delay (as Monad's "delayed Merkle root"): `state_root` is the
//! root after executing the finalized block at `state_height`, which is below `height` and never below
//! the parent's claim. Consensus therefore never waits for execution, no block is executed speculatively,
//! and every root a header claims is one that honest validators have committed to disk. A validator checks
//! a proposal's claim against its own root at that height before it votes, and checks it again when the
//! block is finalized; a mismatch there means its state diverged and it stops rather than sign anything.

use bytes::BufMut;
use commonware_codec::{varint::UInt, Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use commonware_consensus::types::Height;
use commonware_cryptography::sha256::{Digest, Sha256};
use commonware_cryptography::{Digestible, Hasher};
use tensorgrid_types::Hash;

/// Most transactions a block may carry on the wire. The ledger's params bound blocks more tightly; this
/// only bounds what a decoder allocates for a block from a peer.
pub const MAX_BLOCK_TXS: usize = 50_000;
/// Most bytes of one transaction on the wire (the params' `max_tx_bytes` is the real limit).
pub const MAX_WIRE_TX_BYTES: usize = 1 << 20;
/// Most bytes of all transactions in one block on the wire.
pub const MAX_WIRE_BLOCK_BYTES: usize = 32 << 20;

/// A block of the tensorgrid chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub parent: Digest,
    pub height: u64,
    /// Milliseconds since the Unix epoch; strictly above the parent's.
    pub timestamp: u64,
    /// The finalized height whose post-execution state root this block carries.
    pub state_height: u64,
    pub state_root: Hash,
    /// Encoded signed transactions, in execution order.
    pub txs: Vec<Vec<u8>>,
    /// The Merkle root over the transaction hashes (blake3 of each encoded transaction).
    tx_root: Hash,
    digest: Digest,
}

impl Block {
    pub fn new(
        parent: Digest,
        height: u64,
        timestamp: u64,
        state_height: u64,
        state_root: Hash,
        txs: Vec<Vec<u8>>,
    ) -> Block {
        let tx_root = tx_root(&txs);
        let digest = header_digest(&parent, height, timestamp, state_height, &state_root, &tx_root);
        Block { parent, height, timestamp, state_height, state_root, txs, tx_root, digest }
    }

    /// The block every validator starts from: height 0, the genesis time and the state root right after
    /// genesis. Its parent is a hash of the chain id, so two chains never share a genesis digest.
    pub fn genesis(chain_id: &str, genesis_time: u64, genesis_root: Hash) -> Block {
        let parent = Sha256::hash(&[b"tensorgrid/genesis\0", chain_id.as_bytes()]);
        Block::new(parent, 0, genesis_time, 0, genesis_root, Vec::new())
    }

    pub fn tx_root(&self) -> Hash {
        self.tx_root
    }

    /// The hashes of the block's transactions, in order.
    pub fn tx_hashes(&self) -> impl Iterator<Item = Hash> + '_ {
        self.txs.iter().map(|tx| Hash::of(tx))
    }

    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(Vec::len).sum()
    }
}

/// A binary Merkle tree over the transaction hashes (an odd node is carried up unchanged), so that one
/// transaction's inclusion can be proven with log₂ n hashes.
fn tx_root(txs: &[Vec<u8>]) -> Hash {
    let mut level: Vec<Hash> = txs.iter().map(|tx| Hash::of(tx)).collect();
    if level.is_empty() {
        return Hash::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update(&a.0);
                    hasher.update(&b.0);
                    Hash(*hasher.finalize().as_bytes())
                }
                [a] => *a,
                _ => Hash::ZERO,
            })
            .collect();
    }
    level[0]
}

fn header_digest(
    parent: &Digest,
    height: u64,
    timestamp: u64,
    state_height: u64,
    state_root: &Hash,
    tx_root: &Hash,
) -> Digest {
    Sha256::hash(&[
        b"tensorgrid/block\0",
        parent.as_ref(),
        &height.to_be_bytes(),
        &timestamp.to_be_bytes(),
        &state_height.to_be_bytes(),
        &state_root.0,
        &tx_root.0,
    ])
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        UInt(self.height).write(buf);
        UInt(self.timestamp).write(buf);
        UInt(self.state_height).write(buf);
        buf.put_slice(&self.state_root.0);
        UInt(self.txs.len() as u64).write(buf);
        for tx in &self.txs {
            UInt(tx.len() as u64).write(buf);
            buf.put_slice(tx);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + UInt(self.height).encode_size()
            + UInt(self.timestamp).encode_size()
            + UInt(self.state_height).encode_size()
            + 32
            + UInt(self.txs.len() as u64).encode_size()
            + self.txs.iter().map(|tx| UInt(tx.len() as u64).encode_size() + tx.len()).sum::<usize>()
    }
}

fn read_len(buf: &mut impl Buf, max: usize, what: &'static str) -> Result<usize, CodecError> {
    let len: u64 = UInt::read(buf)?.into();
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(CodecError::Invalid("tensorgrid block", what)),
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height: u64 = UInt::read(buf)?.into();
        let timestamp: u64 = UInt::read(buf)?.into();
        let state_height: u64 = UInt::read(buf)?.into();
        if buf.remaining() < 32 {
            return Err(CodecError::EndOfBuffer);
        }
        let mut root = [0u8; 32];
        buf.copy_to_slice(&mut root);
        let count = read_len(buf, MAX_BLOCK_TXS, "too many transactions")?;
        let mut txs = Vec::with_capacity(count.min(1024));
        let mut total = 0usize;
        for _ in 0..count {
            let len = read_len(buf, MAX_WIRE_TX_BYTES, "transaction too large")?;
            total += len;
            if total > MAX_WIRE_BLOCK_BYTES {
                return Err(CodecError::Invalid("tensorgrid block", "transactions too large in total"));
            }
            if buf.remaining() < len {
                return Err(CodecError::EndOfBuffer);
            }
            let mut tx = vec![0u8; len];
            buf.copy_to_slice(&mut tx);
            txs.push(tx);
        }
        Ok(Block::new(parent, height, timestamp, state_height, Hash(root), txs))
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl commonware_consensus::Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn encoding_round_trips_and_digest_covers_every_field() {
        let parent = Sha256::hash(&[b"p"]);
        let block = Block::new(parent, 7, 1_000, 5, Hash([9; 32]), vec![vec![1, 2, 3], vec![4; 300]]);
        let bytes = block.encode();
        assert_eq!(bytes.len(), block.encode_size());
        let back = Block::decode(bytes).expect("decodes");
        assert_eq!(back, block);
        assert_eq!(back.digest(), block.digest());
        let variants = [
            Block::new(Sha256::hash(&[b"q"]), 7, 1_000, 5, Hash([9; 32]), block.txs.clone()),
            Block::new(parent, 8, 1_000, 5, Hash([9; 32]), block.txs.clone()),
            Block::new(parent, 7, 1_001, 5, Hash([9; 32]), block.txs.clone()),
            Block::new(parent, 7, 1_000, 4, Hash([9; 32]), block.txs.clone()),
            Block::new(parent, 7, 1_000, 5, Hash([8; 32]), block.txs.clone()),
            Block::new(parent, 7, 1_000, 5, Hash([9; 32]), vec![vec![1, 2, 3]]),
            Block::new(parent, 7, 1_000, 5, Hash([9; 32]), vec![vec![4; 300], vec![1, 2, 3]]),
        ];
        for other in variants {
            assert_ne!(other.digest(), block.digest(), "{other:?}");
        }
    }

    #[test]
    fn decoding_refuses_truncation_trailing_bytes_and_huge_counts() {
        let block = Block::new(Sha256::hash(&[b"p"]), 1, 2, 0, Hash::ZERO, vec![vec![7; 10]]);
        let bytes = block.encode().to_vec();
        for cut in 0..bytes.len() {
            assert!(Block::decode(bytes::Bytes::copy_from_slice(&bytes[..cut])).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Block::decode(bytes::Bytes::from(trailing)).is_err());
        let mut huge = Block::new(Sha256::hash(&[b"p"]), 1, 2, 0, Hash::ZERO, vec![]).encode().to_vec();
        huge.pop();
        UInt(u64::MAX).write(&mut huge);
        assert!(Block::decode(bytes::Bytes::from(huge)).is_err());
    }

    #[test]
    fn tx_root_is_order_sensitive_and_handles_odd_counts() {
        let a = tx_root(&[vec![1], vec![2], vec![3]]);
        let b = tx_root(&[vec![2], vec![1], vec![3]]);
        assert_ne!(a, b);
        assert_eq!(tx_root(&[]), Hash::ZERO);
        assert_eq!(tx_root(&[vec![5]]), Hash::of(&[5]));
    }
}
