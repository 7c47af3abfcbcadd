//! Token amounts. Everything is an integer number of base units (`utgr`, 10⁻⁶ TGR); there are no floats
//! anywhere in money.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Base units per whole TGR.
pub const UTGR_PER_TGR: u128 = 1_000_000;

/// An amount of `utgr`. Arithmetic is checked: every operation that could overflow or go below zero returns
/// `None`, so callers turn it into a typed error instead of wrapping silently.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Amount(pub u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn utgr(units: u128) -> Self {
        Amount(units)
    }

    /// Whole TGR; saturates rather than overflowing, which only matters for absurd literals in tests.
    pub const fn tgr(whole: u128) -> Self {
        Amount(whole.saturating_mul(UTGR_PER_TGR))
    }

    pub const fn units(self) -> u128 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: u128) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}utgr", self.0)
    }
}

/// Displays as base units with the denomination, e.g. `1500000utgr`: exact, and what the CLI accepts back.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}utgr", self.0)
    }
}

impl Amount {
    /// Human form in whole TGR with up to six decimals, e.g. `1.5 TGR`.
    pub fn to_tgr_string(self) -> String {
        let whole = self.0 / UTGR_PER_TGR;
        let frac = self.0 % UTGR_PER_TGR;
        if frac == 0 {
            format!("{whole} TGR")
        } else {
            let digits = format!("{frac:06}");
            format!("{whole}.{} TGR", digits.trim_end_matches('0'))
        }
    }
}

/// Why a text amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountParseError {
    #[error("amount is empty")]
    Empty,
    #[error("amount `{0}` has no denomination: write e.g. `1.5tgr` or `1500000utgr`")]
    MissingDenom(String),
    #[error("unknown denomination `{0}`: use `tgr` or `utgr`")]
    UnknownDenom(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` has more than 6 decimals; 1 utgr is the smallest unit")]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Accepts `1500000utgr`, `1.5tgr`, `2TGR` (denominations are case-insensitive, spaces allowed before them).
impl FromStr for Amount {
    type Err = AmountParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AmountParseError::Empty);
        }
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, denom) = (&s[..split], s[split..].trim());
        if number.is_empty() {
            return Err(AmountParseError::NotANumber(s.to_string()));
        }
        let scale = match denom.to_ascii_lowercase().as_str() {
            "" => return Err(AmountParseError::MissingDenom(s.to_string())),
            "utgr" => 1,
            "tgr" => UTGR_PER_TGR,
            other => return Err(AmountParseError::UnknownDenom(other.to_string())),
        };
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(AmountParseError::NotANumber(s.to_string()));
        }
        let frac_digits = frac_part.len();
        let max_frac = if scale == 1 { 0 } else { 6 };
        if frac_digits > max_frac {
            return Err(AmountParseError::TooPrecise(s.to_string()));
        }
        let overflow = || AmountParseError::Overflow(s.to_string());
        let int_value: u128 =
            if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| overflow())? };
        let mut frac_value: u128 =
            if frac_part.is_empty() { 0 } else { frac_part.parse().map_err(|_| overflow())? };
        for _ in frac_digits..max_frac {
            frac_value *= 10;
        }
        let units =
            int_value.checked_mul(scale).and_then(|v| v.checked_add(frac_value)).ok_or_else(overflow)?;
        Ok(Amount(units))
    }
}

/// JSON carries amounts as decimal strings of base units, because JavaScript numbers lose precision past 2⁵³.
/// Plain JSON integers are accepted on input for convenience.
impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Int(u64),
        }
        match <Repr as Deserialize>::deserialize(deserializer)? {
            Repr::Int(v) => Ok(Amount(u128::from(v))),
            Repr::Str(s) => {
                if let Ok(v) = s.parse::<u128>() {
                    Ok(Amount(v))
                } else {
                    s.parse::<Amount>().map_err(serde::de::Error::custom)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_denominations() {
        let cases = [
            ("1500000utgr", Some(1_500_000)),
            ("1.5tgr", Some(1_500_000)),
            ("1.5 TGR", Some(1_500_000)),
            ("2tgr", Some(2_000_000)),
            ("0.000001tgr", Some(1)),
            (".5tgr", Some(500_000)),
            ("0.0000001tgr", None),
            ("1.5utgr", None),
            ("15", None),
            ("15atom", None),
            ("", None),
            ("1..2tgr", None),
            ("tgr", None),
            ("999999999999999999999999999999999999999999tgr", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Amount>().ok().map(Amount::units), want, "{text}");
        }
    }

    #[test]
    fn displays_exact_and_human_forms() {
        assert_eq!(Amount(1_500_000).to_string(), "1500000utgr");
        assert_eq!(Amount(1_500_000).to_tgr_string(), "1.5 TGR");
        assert_eq!(Amount(3_000_000).to_tgr_string(), "3 TGR");
        assert_eq!(Amount(1).to_tgr_string(), "0.000001 TGR");
    }

    #[test]
    fn json_is_a_string_and_accepts_integers() {
        assert_eq!(serde_json::to_string(&Amount(u128::MAX)).unwrap(), format!("\"{}\"", u128::MAX));
        assert_eq!(serde_json::from_str::<Amount>("42").unwrap(), Amount(42));
        assert_eq!(serde_json::from_str::<Amount>("\"2tgr\"").unwrap(), Amount(2_000_000));
        assert!(serde_json::from_str::<Amount>("-1").is_err());
        assert!(serde_json::from_str::<Amount>("1.5").is_err());
    }

    #[test]
    fn checked_arithmetic_never_wraps() {
        assert_eq!(Amount(u128::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(0).checked_sub(Amount(1)), None);
        assert_eq!(Amount(u128::MAX).checked_mul(2), None);
    }
}
