//! Addresses, hashes, keys and signatures.
//!
//! An address *is* an ed25519 public key, written in bech32m with the human-readable part `tg` (`tg1…`), so a
//! transaction can be verified without looking anything up. Hashes are blake3. Verification follows ZIP-215
//! (through `ed25519-consensus`), which makes batch verification accept exactly what single verification
//! accepts: a requirement for consensus, where every validator must reach the same verdict.

use std::fmt;
use std::str::FromStr;

use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The human-readable part of every tensorgrid address.
pub const ADDRESS_HRP: &str = "tg";

/// A 32-byte ed25519 public key, which doubles as the account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

/// Why a text address could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{text}` is not a bech32m string: {reason}")]
    NotBech32 { text: String, reason: String },
    #[error("`{text}` has prefix `{found}`; tensorgrid addresses start with `tg1`")]
    WrongPrefix { text: String, found: String },
    #[error("`{text}` holds {len} bytes; an address holds 32")]
    WrongLength { text: String, len: usize },
}

impl Address {
    /// The address of a module account (escrow, bonds, fees, ...). It is a hash, not a point anyone holds the
    /// private key for, so funds in it move only through ledger rules.
    pub fn module(name: &str) -> Address {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"tensorgrid/module-account/");
        hasher.update(name.as_bytes());
        Address(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_bech32(&self) -> String {
        // The HRP is a valid constant and 32 bytes are far below bech32's length limit, so neither call can
        // fail; the fallback keeps the function total without a panic path.
        match Hrp::parse(ADDRESS_HRP) {
            Ok(hrp) => bech32::encode::<Bech32m>(hrp, &self.0).unwrap_or_else(|_| hex::encode(self.0)),
            Err(_) => hex::encode(self.0),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<Bech32m>(text)
            .map_err(|e| AddressError::NotBech32 { text: text.to_string(), reason: e.to_string() })?;
        if checked.hrp().as_str() != ADDRESS_HRP {
            return Err(AddressError::WrongPrefix {
                text: text.to_string(),
                found: checked.hrp().as_str().to_string(),
            });
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength { text: text.to_string(), len: bytes.len() })?;
        Ok(Address(arr))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_bech32())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A blake3 digest: content addresses, transaction hashes, commitments.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// Hashes several parts as one message. Parts are length-prefixed so that `("ab", "c")` and `("a", "bc")`
    /// never collide.
    pub fn of_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Why a text hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a 64-digit hex hash")]
pub struct HashParseError {
    pub text: String,
}

impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| HashParseError { text: text.to_string() })?;
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a 128-digit hex signature")))?;
        Ok(Signature(out))
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signer's public key is not a valid ed25519 point")]
    MalformedKey,
    #[error("the signature does not match the signer and message")]
    Invalid,
}

/// An ed25519 signing key. Its `Debug` never prints the secret, and dropping it wipes the secret from
/// memory (each clone wipes its own copy).
#[derive(Clone)]
pub struct SecretKey(ed25519_consensus::SigningKey);

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.address())
    }
}

impl SecretKey {
    /// A fresh key from a cryptographically secure generator (the caller supplies it: this crate has no
    /// source of randomness of its own).
    pub fn generate<R: RngCore + CryptoRng>(rng: R) -> Self {
        SecretKey(ed25519_consensus::SigningKey::new(rng))
    }

    /// The key whose 32-byte seed is given (a BIP39-derived seed, a keystore entry, a test fixture).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(ed25519_consensus::SigningKey::from(seed))
    }

    /// A deterministic key for tests and simulations, derived from a label. Never use for real funds.
    pub fn from_label(label: &str) -> Self {
        Self::from_seed(*Hash::of_parts(&[b"tensorgrid/test-key", label.as_bytes()]).as_bytes())
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.0.verification_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// Verifies one signature under ZIP-215 rules.
pub fn verify(signer: &Address, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
    let key =
        ed25519_consensus::VerificationKey::try_from(signer.0).map_err(|_| SignatureError::MalformedKey)?;
    key.verify(&ed25519_consensus::Signature::from(signature.0), message).map_err(|_| SignatureError::Invalid)
}

/// Verifies many signatures at once and returns one verdict per item, identical to what [`verify`] would say
/// for each. The batch check is about twice as fast as one-by-one; when it fails, the items are checked one by
/// one to name the bad ones. `rng` supplies the batch's random coefficients; with ZIP-215 the verdicts do not
/// depend on it, but it must be unpredictable to whoever made the signatures, or forged signatures could be
/// built to cancel out inside a batch.
pub fn verify_batch<'a, R, I>(items: I, rng: R) -> Vec<Result<(), SignatureError>>
where
    R: RngCore + CryptoRng,
    I: IntoIterator<Item = (&'a Address, &'a [u8], &'a Signature)>,
{
    let items: Vec<_> = items.into_iter().collect();
    let mut batch = ed25519_consensus::batch::Verifier::new();
    for (signer, message, signature) in &items {
        let key = ed25519_consensus::VerificationKeyBytes::from(signer.0);
        batch.queue((key, ed25519_consensus::Signature::from(signature.0), message));
    }
    if items.is_empty() || batch.verify(rng).is_ok() {
        return vec![Ok(()); items.len()];
    }
    items.iter().map(|(signer, message, signature)| verify(signer, message, signature)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn address_roundtrips_through_bech32m() {
        let key = SecretKey::from_label("alice");
        let text = key.address().to_string();
        assert!(text.starts_with("tg1"), "{text}");
        assert_eq!(text.parse::<Address>().unwrap(), key.address());
        let json = serde_json::to_string(&key.address()).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), key.address());
    }

    #[test]
    fn bad_addresses_name_the_problem() {
        let good = SecretKey::from_label("alice").address().to_string();
        let mut typo = good.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(matches!(typo.parse::<Address>(), Err(AddressError::NotBech32 { .. })));
        let other_hrp = bech32::encode::<Bech32m>(Hrp::parse("akash").unwrap(), &[1u8; 32]).unwrap();
        assert!(matches!(other_hrp.parse::<Address>(), Err(AddressError::WrongPrefix { .. })));
        let short = bech32::encode::<Bech32m>(Hrp::parse("tg").unwrap(), &[1u8; 20]).unwrap();
        assert!(matches!(short.parse::<Address>(), Err(AddressError::WrongLength { len: 20, .. })));
    }

    #[test]
    fn sign_and_verify() {
        let key = SecretKey::from_label("bob");
        let sig = key.sign(b"hello");
        assert_eq!(verify(&key.address(), b"hello", &sig), Ok(()));
        assert_eq!(verify(&key.address(), b"hellO", &sig), Err(SignatureError::Invalid));
        let other = SecretKey::from_label("carol").address();
        assert_eq!(verify(&other, b"hello", &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn batch_verdicts_match_single_verdicts() {
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let keys: Vec<_> = (0..16).map(|i| SecretKey::from_label(&format!("k{i}"))).collect();
        let msgs: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let addrs: Vec<_> = keys.iter().map(SecretKey::address).collect();
        let all_good =
            verify_batch(addrs.iter().zip(&msgs).zip(&sigs).map(|((a, m), s)| (a, &m[..], s)), rng);
        assert!(all_good.iter().all(Result::is_ok));

        sigs[3].0[0] ^= 1;
        sigs[11] = keys[0].sign(&msgs[11]);
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let verdicts =
            verify_batch(addrs.iter().zip(&msgs).zip(&sigs).map(|((a, m), s)| (a, &m[..], s)), rng);
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(v.is_ok(), i != 3 && i != 11, "item {i}");
            assert_eq!(*v, verify(&addrs[i], &msgs[i], &sigs[i]));
        }
    }

    #[test]
    fn module_addresses_are_distinct_and_stable() {
        assert_ne!(Address::module("escrow"), Address::module("bonds"));
        assert_eq!(Address::module("escrow"), Address::module("escrow"));
    }
}
