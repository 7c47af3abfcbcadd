//! The canonical binary encoding: borsh. It has one encoding per value (no maps with free order, no floats in
//! our types) and decoding refuses trailing bytes, so `decode(bytes)` succeeding means `bytes` *is* the
//! canonical form and its hash identifies the value.

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail: borsh only reports errors from the underlying writer.
    borsh::to_vec(value).unwrap_or_default()
}

/// Decodes exactly one value that must span all of `bytes`.
pub fn decode<T: BorshDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    borsh::from_slice(bytes).map_err(|e| DecodeError { what, reason: e.to_string() })
}
