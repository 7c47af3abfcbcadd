//! Commitments to what a model computed, after TOPLOC ("A Locality Sensitive Hashing Scheme for Trustless
//! Verifiable Inference", Ong et al., 2025): for a chunk of tokens (the prompt's prefill, then every 32
//! generated tokens) take the `k` largest entries by magnitude of the last hidden states, flattened, and
//! commit to them as a polynomial through the points (index, bf16 bits of the value) over the prime field
//! of [`FIELD`] elements. The indices are first reduced by the largest modulus at most [`FIELD`] that keeps
//! them distinct, so a commitment is that modulus and `k` coefficients: `2 + 2k` bytes, 258 at k = 128.
//!
//! A checker replays the same token ids, finds the top-k of its own hidden states, evaluates the polynomial
//! at their (reduced) indices and compares what it gets with its own values as bf16: how many exponents
//! differ, and for the rest how far the mantissas are (mean and median). Honest hardware and kernels differ
//! in the last bits; another model, precision or prompt moves exponents and mantissas far more. Where the
//! replay's top-k index is not among the committed ones, the polynomial yields an unrelated value, which
//! shows up as a mismatch: the same test catches different top-k sets.
//!
//! Pure and deterministic: the engine builds commitments, the gateway and referees check them, both with
//! this crate.

use std::fmt;

/// The prime field's size: the largest prime below 2¹⁶ that is not too close to it, so that every bf16 bit
/// pattern a finite activation has (below 0xFF80) is an element.
pub const FIELD: u32 = 65_497;
/// Entries committed per chunk by default.
pub const TOP_K: usize = 128;
/// Generated tokens per chunk.
pub const TOKENS_PER_CHUNK: usize = 32;
/// The smallest modulus tried when looking for one that keeps the indices distinct.
const MIN_MODULUS: u32 = 1 << 15;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error("a commitment is 2 + 2k bytes with k ≥ 1; got {len}")]
    BadLength { len: usize },
    #[error("the commitment's modulus {modulus} is outside [{MIN_MODULUS}, {FIELD}]")]
    BadModulus { modulus: u32 },
    #[error("a coefficient {value} is not an element of the field of {FIELD}")]
    BadCoefficient { value: u32 },
    #[error("the chunk has {len} values, fewer than the {k} to commit to")]
    TooFewValues { len: usize, k: usize },
    #[error("no modulus in [{MIN_MODULUS}, {FIELD}] keeps the chunk's top-k indices distinct")]
    NoModulus,
}

/// One chunk's commitment: the index modulus and the polynomial's coefficients, lowest degree first.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkCommitment {
    pub modulus: u16,
    pub coeffs: Vec<u16>,
}

impl fmt::Debug for ChunkCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkCommitment(mod {}, {} coefficients)", self.modulus, self.coeffs.len())
    }
}

/// An f32 rounded to bf16 (round to nearest, ties to even), as bits.
pub fn bf16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The positions of the `k` entries largest in magnitude, ties to the lower position, in that order.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let magnitude = |i: usize| values.get(i).map(|v| v.abs()).unwrap_or(0.0);
    order.sort_by(|&a, &b| magnitude(b).total_cmp(&magnitude(a)).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn reduce(v: i64) -> u32 {
    v.rem_euclid(i64::from(FIELD)) as u32
}

fn mul(a: u32, b: u32) -> u32 {
    ((u64::from(a) * u64::from(b)) % u64::from(FIELD)) as u32
}

/// a⁻¹ in the field by Fermat's little theorem (the field size is prime); 0 has none and maps to 0.
fn inverse(a: u32) -> u32 {
    let mut result = 1u32;
    let mut base = a % FIELD;
    let mut exp = FIELD - 2;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exp >>= 1;
    }
    result
}

/// The largest modulus in [`MIN_MODULUS`, `FIELD`] under which the indices stay distinct.
fn injective_modulus(indices: &[usize]) -> Option<u32> {
    let mut seen = vec![false; FIELD as usize];
    (MIN_MODULUS..=FIELD).rev().find(|&m| {
        let mut touched = Vec::with_capacity(indices.len());
        let mut distinct = true;
        for &i in indices {
            let r = (i as u64 % u64::from(m)) as usize;
            if seen[r] {
                distinct = false;
                break;
            }
            seen[r] = true;
            touched.push(r);
        }
        for r in touched {
            seen[r] = false;
        }
        distinct
    })
}

/// The coefficients (lowest degree first) of the polynomial of degree < n through the n points, whose x are
/// distinct field elements: Newton's divided differences, then expanded into monomials.
fn interpolate(xs: &[u32], ys: &[u32]) -> Vec<u32> {
    let n = xs.len();
    let mut dd: Vec<u32> = ys.iter().map(|&y| y % FIELD).collect();
    for level in 1..n {
        for i in (level..n).rev() {
            let num = reduce(i64::from(dd[i]) - i64::from(dd[i - 1]));
            let den = reduce(i64::from(xs[i]) - i64::from(xs[i - level]));
            dd[i] = mul(num, inverse(den));
        }
    }
    // Σ dd[i] · Π_{j<i} (x − x_j), accumulated with the running product's coefficients.
    let mut coeffs = vec![0u32; n];
    let mut basis = vec![0u32; n];
    basis[0] = 1;
    for i in 0..n {
        for j in 0..=i {
            coeffs[j] = (coeffs[j] + mul(dd[i], basis[j])) % FIELD;
        }
        if i + 1 < n {
            let minus = reduce(-i64::from(xs[i]));
            for j in (0..=i + 1).rev() {
                let shifted = if j > 0 { basis[j - 1] } else { 0 };
                basis[j] = (shifted + mul(basis[j], minus)) % FIELD;
            }
        }
    }
    coeffs
}

impl ChunkCommitment {
    /// Commits to the `k` largest-magnitude entries of a chunk's hidden states (flattened, token after
    /// token).
    pub fn build(values: &[f32], k: usize) -> Result<ChunkCommitment, CommitmentError> {
        if k == 0 || values.len() < k {
            return Err(CommitmentError::TooFewValues { len: values.len(), k });
        }
        let indices = top_k(values, k);
        let modulus = injective_modulus(&indices).ok_or(CommitmentError::NoModulus)?;
        let xs: Vec<u32> = indices.iter().map(|&i| (i as u64 % u64::from(modulus)) as u32).collect();
        let ys: Vec<u32> = indices.iter().map(|&i| u32::from(bf16_bits(values[i]))).collect();
        let coeffs = interpolate(&xs, &ys);
        Ok(ChunkCommitment {
            modulus: modulus as u16,
            coeffs: coeffs.into_iter().map(|c| c as u16).collect(),
        })
    }

    /// The polynomial at the index `index` (reduced by the modulus first): the committed bf16 bits when
    /// `index` was among the committed entries.
    pub fn eval(&self, index: usize) -> u16 {
        let x = (index as u64 % u64::from(self.modulus.max(1))) as u32;
        let mut acc = 0u32;
        for &c in self.coeffs.iter().rev() {
            acc = (mul(acc, x) + u32::from(c)) % FIELD;
        }
        acc as u16
    }

    /// Little-endian: the modulus, then each coefficient.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 2 * self.coeffs.len());
        out.extend_from_slice(&self.modulus.to_le_bytes());
        for c in &self.coeffs {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ChunkCommitment, CommitmentError> {
        if bytes.len() < 4 || bytes.len() % 2 != 0 {
            return Err(CommitmentError::BadLength { len: bytes.len() });
        }
        let word = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let modulus = word(0);
        if u32::from(modulus) < MIN_MODULUS || u32::from(modulus) > FIELD {
            return Err(CommitmentError::BadModulus { modulus: u32::from(modulus) });
        }
        let coeffs: Vec<u16> = (2..bytes.len()).step_by(2).map(word).collect();
        if let Some(bad) = coeffs.iter().find(|&&c| u32::from(c) >= FIELD) {
            return Err(CommitmentError::BadCoefficient { value: u32::from(*bad) });
        }
        Ok(ChunkCommitment { modulus, coeffs })
    }

    /// How many entries it commits to.
    pub fn k(&self) -> usize {
        self.coeffs.len()
    }
}

/// How a replay's hidden states compare with a commitment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Of the replay's top-k entries, how many have a different exponent than the commitment gives.
    pub exponent_mismatches: usize,
    /// Over the entries whose exponents match: the mean and median absolute mantissa difference (bf16's 7
    /// bits); infinite when none match.
    pub mean_mantissa_diff: f64,
    pub median_mantissa_diff: f64,
}

/// What a comparison may show for the replay to pass. TOPLOC's reference at k = 128: at most 38 exponents
/// differ (≥ 90 equal), mean mantissa difference ≤ 10, median ≤ 8; calibrated on this engine by the
/// detection table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub max_exponent_mismatches: usize,
    pub max_mean_mantissa_diff: f64,
    pub max_median_mantissa_diff: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { max_exponent_mismatches: 38, max_mean_mantissa_diff: 10.0, max_median_mantissa_diff: 8.0 }
    }
}

impl Comparison {
    pub fn passes(&self, tolerance: &Tolerance) -> bool {
        self.exponent_mismatches <= tolerance.max_exponent_mismatches
            && self.mean_mantissa_diff <= tolerance.max_mean_mantissa_diff
            && self.median_mantissa_diff <= tolerance.max_median_mantissa_diff
    }
}

/// What a replayer reports for a chunk: its own top-k entries (positions in the flattened chunk and bf16
/// bits), never a verdict. The checker compares them with the provider's commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopK {
    pub indices: Vec<u32>,
    pub values: Vec<u16>,
}

impl TopK {
    pub fn of(values: &[f32], k: usize) -> TopK {
        let indices = top_k(values, k);
        TopK {
            values: indices.iter().map(|&i| bf16_bits(values[i])).collect(),
            indices: indices.into_iter().map(|i| i as u32).collect(),
        }
    }
}

/// Compares a replay of a chunk (its hidden states, flattened the same way) with the commitment.
pub fn compare(replayed: &[f32], commitment: &ChunkCommitment) -> Comparison {
    compare_top_k(&TopK::of(replayed, commitment.k().min(replayed.len())), commitment)
}

/// Compares a replayer's top-k entries with the commitment.
pub fn compare_top_k(replayed: &TopK, commitment: &ChunkCommitment) -> Comparison {
    let k = replayed.indices.len();
    let mut mismatches = 0;
    let mut diffs = Vec::with_capacity(k);
    for (&index, &ours) in replayed.indices.iter().zip(&replayed.values) {
        let committed = commitment.eval(index as usize);
        let exponent = |bits: u16| (bits >> 7) & 0xFF;
        // The sign is part of what was committed: a flipped sign counts as a different exponent.
        if exponent(committed) != exponent(ours) || (committed ^ ours) & 0x8000 != 0 {
            mismatches += 1;
        } else {
            diffs.push(f64::from((i32::from(committed & 0x7F) - i32::from(ours & 0x7F)).unsigned_abs()));
        }
    }
    if diffs.is_empty() {
        return Comparison {
            exponent_mismatches: mismatches,
            mean_mantissa_diff: f64::INFINITY,
            median_mantissa_diff: f64::INFINITY,
        };
    }
    diffs.sort_by(f64::total_cmp);
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let mid = diffs.len() / 2;
    let median = if diffs.len() % 2 == 0 { (diffs[mid - 1] + diffs[mid]) / 2.0 } else { diffs[mid] };
    Comparison { exponent_mismatches: mismatches, mean_mantissa_diff: mean, median_mantissa_diff: median }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values shaped like hidden states: mostly small, a few large, from a simple generator.
    fn states(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let unit = ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                if i % 37 == 0 {
                    unit * 40.0
                } else {
                    unit * 2.0
                }
            })
            .collect()
    }

    #[test]
    fn a_commitment_is_258_bytes_at_k_128_and_reads_back() {
        let values = states(1, 576 * TOKENS_PER_CHUNK);
        let c = ChunkCommitment::build(&values, TOP_K).unwrap();
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), 258);
        assert_eq!(ChunkCommitment::from_bytes(&bytes).unwrap(), c);
    }

    #[test]
    fn the_polynomial_gives_back_every_committed_value() {
        let values = states(2, 576 * 4);
        let c = ChunkCommitment::build(&values, TOP_K).unwrap();
        for i in top_k(&values, TOP_K) {
            assert_eq!(c.eval(i), bf16_bits(values[i]), "index {i}");
        }
    }

    #[test]
    fn the_same_states_pass_with_nothing_off_and_last_bit_noise_passes_too() {
        let values = states(3, 576 * TOKENS_PER_CHUNK);
        let c = ChunkCommitment::build(&values, TOP_K).unwrap();
        let same = compare(&values, &c);
        assert_eq!((same.exponent_mismatches, same.mean_mantissa_diff), (0, 0.0));
        // What another thread count or kernel changes: relative noise far below bf16's resolution.
        let noisy: Vec<f32> =
            values.iter().enumerate().map(|(i, v)| v * (1.0 + 1e-4 * ((i % 7) as f32 - 3.0))).collect();
        let near = compare(&noisy, &c);
        assert!(near.passes(&Tolerance::default()), "{near:?}");
    }

    #[test]
    fn other_states_fail() {
        let values = states(4, 576 * TOKENS_PER_CHUNK);
        let c = ChunkCommitment::build(&values, TOP_K).unwrap();
        let other = compare(&states(5, 576 * TOKENS_PER_CHUNK), &c);
        assert!(!other.passes(&Tolerance::default()), "{other:?}");
        // Scaled by a few percent (a cruder quantization moves values this much): mantissas move.
        let scaled: Vec<f32> = values.iter().map(|v| v * 1.06).collect();
        let off = compare(&scaled, &c);
        assert!(!off.passes(&Tolerance::default()), "{off:?}");
    }

    #[test]
    fn malformed_bytes_are_typed_errors() {
        assert_eq!(ChunkCommitment::from_bytes(&[1, 2, 3]), Err(CommitmentError::BadLength { len: 3 }));
        assert_eq!(
            ChunkCommitment::from_bytes(&[0, 0, 1, 0]),
            Err(CommitmentError::BadModulus { modulus: 0 })
        );
        let mut bytes = 65_000u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&65_535u16.to_le_bytes());
        assert_eq!(
            ChunkCommitment::from_bytes(&bytes),
            Err(CommitmentError::BadCoefficient { value: 65_535 })
        );
        assert_eq!(
            ChunkCommitment::build(&[1.0, 2.0], 4),
            Err(CommitmentError::TooFewValues { len: 2, k: 4 })
        );
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        // 1 + 2⁻⁸ is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
    }

    proptest! {
        #[test]
        fn interpolation_passes_through_every_point(seed in 0u64..10_000, k in 1usize..64) {
            let values = states(seed, 512);
            let c = ChunkCommitment::build(&values, k).unwrap();
            for i in top_k(&values, k) {
                prop_assert_eq!(c.eval(i), bf16_bits(values[i]));
            }
        }
    }
}
