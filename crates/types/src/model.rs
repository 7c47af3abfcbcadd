//! Model offers: which models a provider serves for inference, at what price per token. The chain keeps them so
//! gateways and explorers can find providers for a model without asking each one.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::{Address, Hash};
use crate::limits::{self, Malformed};
use crate::time::Timestamp;

/// The most offers one provider keeps on chain.
pub const MAX_MODELS_PER_PROVIDER: usize = 32;

/// A model a provider serves. The model hash is the hash of the exact file it serves, and it names the file it
/// was made from and how, so two providers' offers of "the same model" can be told apart.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ModelOffer {
    /// blake3 of the served model file (e.g. a GGUF).
    pub model_hash: Hash,
    /// What people call it (`SmolLM2-135M-Instruct`).
    pub name: String,
    /// blake3 of the file it was derived from.
    pub source_hash: Hash,
    /// How it was derived (`Q8_0`, `F16`, …).
    pub quantization: String,
    /// blake3 of the model's tokenizer file (`tensorgrid_tokenizer`), which the provider serves at
    /// `GET /v1/tokenizers/{hash}`: a gateway counts prompt tokens and decodes the streamed ids with it, so it
    /// pays for tokens it counted itself.
    pub tokenizer_hash: Hash,
    /// The longest prompt plus completion, in tokens.
    pub context_length: u32,
    /// utgr per million input (prompt) tokens.
    pub price_input_per_m: Amount,
    /// utgr per million output (completion) tokens.
    pub price_output_per_m: Amount,
    /// Measured decode speed of one stream, tokens per second (informational).
    pub throughput_tps: u32,
}

impl ModelOffer {
    pub fn validate(&self, field: &str) -> Result<(), Malformed> {
        if self.name.is_empty() {
            return Err(Malformed::new(format!("{field}.name"), "is empty"));
        }
        limits::check_str(&format!("{field}.name"), &self.name, limits::MAX_NAME_LEN)?;
        limits::check_str(&format!("{field}.quantization"), &self.quantization, 16)?;
        if self.context_length == 0 {
            return Err(Malformed::new(format!("{field}.context_length"), "is zero"));
        }
        Ok(())
    }

    /// What a response costs: `⌈(input × price_in + output × price_out) / 10⁶⌉`, at least 1 utgr for any tokens
    /// (DESIGN: a response's cost is rounded up to 1 utgr). `None` on overflow.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Option<Amount> {
        let micro = self
            .price_input_per_m
            .0
            .checked_mul(u128::from(input_tokens))?
            .checked_add(self.price_output_per_m.0.checked_mul(u128::from(output_tokens))?)?;
        let cost = micro.div_ceil(1_000_000);
        Some(Amount(if cost == 0 && input_tokens + output_tokens > 0 { 1 } else { cost }))
    }
}

/// Token prices, utgr per million tokens: what a generation or embedding request agrees to pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TokenPrice {
    pub input_per_m: Amount,
    pub output_per_m: Amount,
}

impl TokenPrice {
    /// Whether this price is at or below `limit` on both counts.
    pub fn within(&self, limit: &TokenPrice) -> bool {
        self.input_per_m <= limit.input_per_m && self.output_per_m <= limit.output_per_m
    }
}

/// A price rise announced on chain and not yet in effect: clients keep the old price until `effective_at`
/// (DESIGN: price changes give notice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PendingPrice {
    pub price: TokenPrice,
    pub effective_at: Timestamp,
}

/// An offer as the chain lists it: who offers it and since when. `offer` carries the price in effect when
/// it was listed; a rise waits in `pending` until its notice has run.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ListedOffer {
    pub provider: Address,
    pub offer: ModelOffer,
    pub announced_at: Timestamp,
    #[serde(default)]
    pub pending: Option<PendingPrice>,
}

impl ModelOffer {
    pub fn price(&self) -> TokenPrice {
        TokenPrice { input_per_m: self.price_input_per_m, output_per_m: self.price_output_per_m }
    }

    /// The offer at another price (what a request that names its price is billed at).
    pub fn at_price(&self, price: TokenPrice) -> ModelOffer {
        ModelOffer {
            price_input_per_m: price.input_per_m,
            price_output_per_m: price.output_per_m,
            ..self.clone()
        }
    }
}

impl ListedOffer {
    /// The price in effect at `now`: the pending rise once its notice has run, else the listed price.
    pub fn price_at(&self, now: Timestamp) -> TokenPrice {
        match self.pending {
            Some(p) if p.effective_at <= now => p.price,
            _ => self.offer.price(),
        }
    }

    /// The offer as it stands at `now`.
    pub fn offer_at(&self, now: Timestamp) -> ModelOffer {
        self.offer.at_price(self.price_at(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(input: u128, output: u128) -> ModelOffer {
        ModelOffer {
            model_hash: Hash::of(b"model"),
            name: "SmolLM2-135M-Instruct".into(),
            source_hash: Hash::of(b"source"),
            quantization: "Q8_0".into(),
            tokenizer_hash: Hash::of(b"tokenizer"),
            context_length: 8192,
            price_input_per_m: Amount(input),
            price_output_per_m: Amount(output),
            throughput_tps: 100,
        }
    }

    #[test]
    fn a_response_costs_its_tokens_rounded_up_and_at_least_one_utgr() {
        assert_eq!(offer(100_000, 400_000).cost(1_000, 500), Some(Amount(300)));
        assert_eq!(offer(1, 1).cost(1, 1), Some(Amount(1)), "rounded up");
        assert_eq!(offer(0, 0).cost(10, 10), Some(Amount(1)), "never free once tokens flowed");
        assert_eq!(offer(0, 0).cost(0, 0), Some(Amount(0)));
        assert_eq!(offer(u128::MAX, 1).cost(2, 0), None);
        assert!(offer(1, 1).validate("offer").is_ok());
        assert!(ModelOffer { context_length: 0, ..offer(1, 1) }.validate("offer").is_err());
        assert!(ModelOffer { name: String::new(), ..offer(1, 1) }.validate("offer").is_err());
    }
}
