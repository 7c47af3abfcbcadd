//! Akash's quantity rules, with exact decimal arithmetic instead of Akash's float64 (which can truncate one
//! unit low, e.g. `1.001` CPU). Suffixes are case-sensitive as in Akash: `Mi` is 2²⁰, `M` is 10⁶, and
//! `MB`, `Mb` or `mi` are not units.

/// Decimal (`k` … `E`) and binary (`Ki` … `Ei`) suffixes: storage sizes take both.
const ALL_SUFFIXES: [(&str, u128); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// Memory takes binary suffixes only, as Akash's `memoryQuantity` does.
const MEMORY_SUFFIXES: [(&str, u128); 6] =
    [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("Pi", 1 << 50), ("Ei", 1 << 60)];

/// A non-negative decimal number, exactly: `digits / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub digits: u128,
    pub scale: u32,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.strip_prefix('+').unwrap_or(text);
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 18
        {
            return None;
        }
        let mut digits: u128 = 0;
        for c in int.chars().chain(frac.chars()) {
            digits = digits.checked_mul(10)?.checked_add(u128::from(c.to_digit(10)?))?;
        }
        Some(Decimal { digits, scale: frac.len() as u32 })
    }

    /// `⌊self × factor⌋`, `None` on overflow.
    pub fn times_floor(self, factor: u128) -> Option<u128> {
        Some(self.digits.checked_mul(factor)? / 10u128.checked_pow(self.scale)?)
    }
}

/// Why a quantity was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(pub String);

fn with_suffix(
    text: &str,
    suffixes: &[(&str, u128)],
    what: &str,
    example: &str,
) -> Result<u128, QuantityError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(QuantityError(format!("`{text}` is negative")));
    }
    let (number, unit) = suffixes
        .iter()
        .find_map(|(suffix, unit)| trimmed.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((trimmed, 1));
    let value = Decimal::parse(number.trim()).ok_or_else(|| {
        let known: Vec<&str> = suffixes.iter().map(|(s, _)| *s).collect();
        let hint = likely_meant(trimmed).map(|m| format!("did you mean `{m}`? ")).unwrap_or_default();
        QuantityError(format!(
            "`{text}` is not a {what}: {hint}write a number with one of the suffixes {} (e.g. `{example}`); suffixes are case-sensitive",
            known.join(", ")
        ))
    })?;
    value.times_floor(unit).ok_or_else(|| QuantityError(format!("`{text}` is too large")))
}

/// The binary-suffixed spelling of a size written with a common but invalid unit: `16GB`, `16gi`, `512Mb`,
/// `4GiB` → `16Gi`, `16Gi`, `512Mi`, `4Gi`. Container tools read these as binary sizes, so that is the guess.
fn likely_meant(text: &str) -> Option<String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let canonical = match unit.trim().to_ascii_lowercase().trim_end_matches('b') {
        "k" | "ki" => "Ki",
        "m" | "mi" => "Mi",
        "g" | "gi" => "Gi",
        "t" | "ti" => "Ti",
        "p" | "pi" => "Pi",
        "e" | "ei" => "Ei",
        _ => return None,
    };
    Decimal::parse(number).map(|_| format!("{number}{canonical}"))
}

/// Bytes of memory: `512Mi`, `4Gi`, or a plain number of bytes.
pub fn memory_bytes(text: &str) -> Result<u64, QuantityError> {
    let value = with_suffix(text, &MEMORY_SUFFIXES, "memory size", "512Mi")?;
    u64::try_from(value).map_err(|_| QuantityError(format!("`{text}` is too large")))
}

/// Bytes of storage: `1Gi`, `10G`, `500M`, or a plain number of bytes.
pub fn storage_bytes(text: &str) -> Result<u64, QuantityError> {
    let value = with_suffix(text, &ALL_SUFFIXES, "storage size", "10Gi")?;
    u64::try_from(value).map_err(|_| QuantityError(format!("`{text}` is too large")))
}

/// Thousandths of a CPU: `0.5` → 500, `2` → 2000, `250m` → 250.
pub fn cpu_millis(text: &str) -> Result<u64, QuantityError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(QuantityError(format!("`{text}` is negative")));
    }
    let bad = || {
        QuantityError(format!(
            "`{text}` is not a CPU amount: write cores (`0.5`, `2`) or millicores (`500m`)"
        ))
    };
    let millis = match trimmed.strip_suffix('m') {
        Some(m) => m.parse::<u128>().map_err(|_| bad())?,
        None => Decimal::parse(trimmed).ok_or_else(bad)?.times_floor(1_000).ok_or_else(bad)?,
    };
    u64::try_from(millis).map_err(|_| QuantityError(format!("`{text}` is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_akash() {
        assert_eq!(memory_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(memory_bytes("4.75Gi"), Ok((19u64 << 30) / 4));
        assert_eq!(memory_bytes("1024"), Ok(1024));
        assert!(memory_bytes("512M").is_err(), "memory takes binary suffixes only");
        assert!(memory_bytes("16GB").is_err());
        assert!(memory_bytes("16gi").is_err(), "suffixes are case-sensitive");
        assert!(memory_bytes("-1Gi").is_err());
        assert_eq!(storage_bytes("10G"), Ok(10_000_000_000));
        assert_eq!(storage_bytes("1Ti"), Ok(1 << 40));
        assert_eq!(storage_bytes("2.5Gi"), Ok(5 << 29));
        assert!(storage_bytes("10Gb").is_err());
        let err = memory_bytes("16GB").unwrap_err().0;
        assert!(err.contains("did you mean `16Gi`?"), "{err}");
        assert!(memory_bytes("512Mb").unwrap_err().0.contains("`512Mi`"));
        assert!(memory_bytes("lots").unwrap_err().0.contains("suffixes"));
    }

    #[test]
    fn cpu_follows_akash_exactly() {
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("1.0"), Ok(1000));
        assert_eq!(cpu_millis("16"), Ok(16_000));
        assert_eq!(cpu_millis("250m"), Ok(250));
        assert_eq!(cpu_millis("0.0005"), Ok(0), "truncated like Akash; validation rejects zero later");
        assert_eq!(cpu_millis("1.001"), Ok(1001), "exact where Akash's float64 would give 1000");
        assert!(cpu_millis("one").is_err());
        assert!(cpu_millis("-1").is_err());
        assert!(cpu_millis("0.5m").is_err());
    }
}
