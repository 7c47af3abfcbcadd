//! The inference API between a gateway (or any client holding a channel) and a provider serving models.
//!
//! Every request is signed by the channel's client (`provider_api` headers) and names the channel that pays.
//! A generation answers with a stream of newline-delimited JSON [`InferenceEvent`]s. The provider keeps, per
//! channel, what it has delivered (`owed`, cumulative over every response) and the best voucher it holds;
//! every [`INVOICE_EVERY_TOKENS`] output tokens and at the end it sends an invoice with the cumulative amount
//! due, and the client answers with a voucher for what it has received (`POST …/vouchers`). A provider stops
//! serving a channel whose unpaid amount passes its credit limit, and never delivers past the channel's
//! balance; a client never signs for tokens it did not receive. Costs follow the provider's on-chain
//! [`ModelOffer`](crate::model::ModelOffer): `cost(prompt, completion)` per response, rounded up, at the price
//! the request names. A paying client counts tokens itself with the offer's tokenizer: the prompt's ids and
//! the completion ids it received.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::channel::{ChannelId, Voucher};
use crate::crypto::Hash;
use crate::model::TokenPrice;

/// Output tokens between two invoices of a streaming response.
pub const INVOICE_EVERY_TOKENS: u32 = 256;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What to generate from: a conversation (rendered with the model's chat template) or raw text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prompt {
    Chat { messages: Vec<Message> },
    Text { text: String },
}

/// Sampling settings with OpenAI's meanings and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub max_tokens: u32,
    pub temperature: f64,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub stop: Vec<String>,
    pub seed: u64,
    #[serde(default)]
    pub frequency_penalty: f32,
    #[serde(default)]
    pub presence_penalty: f32,
}

/// `POST /v1/inference/{channel}/generate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The served file's content hash, as in the provider's model offer.
    pub model: Hash,
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// What the client agrees to pay. The provider refuses a price below the one in effect on chain for its
    /// offer and bills at this one, so both sides price the answer the same way.
    pub price: TokenPrice,
}

/// Why a generation ended, in OpenAI's words (`stop`, `length`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
}

/// One line of a generation's response stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InferenceEvent {
    /// The prompt was read; generation begins.
    Started { prompt_tokens: u32 },
    /// More output tokens: their ids, and the text they add as the provider decoded it (empty while a stop
    /// string might be forming). A paying client counts the ids and rebuilds the text from them with the
    /// offer's tokenizer; the text is for clients that trust the provider.
    Delta { ids: Vec<u32>, text: String },
    /// What the channel owes in total, so far, including this response's tokens up to now.
    Invoice {
        prompt_tokens: u32,
        completion_tokens: u32,
        /// This response's cost so far.
        cost: Amount,
        /// Everything delivered on the channel, all responses together.
        cumulative: Amount,
    },
    Done {
        finish_reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        cost: Amount,
        cumulative: Amount,
    },
    /// The generation failed after it started; nothing more follows.
    Error { code: String, message: String },
}

/// `POST /v1/inference/{channel}/embeddings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: Hash,
    pub input: Vec<String>,
    /// What the client agrees to pay (see [`GenerateRequest::price`]).
    pub price: TokenPrice,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
    pub cost: Amount,
    pub cumulative: Amount,
}

/// A provider's view of one channel: `GET /v1/inference/{channel}` and the answer to a voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTally {
    pub channel: ChannelId,
    /// Everything delivered, all responses together.
    pub owed: Amount,
    /// The highest voucher received.
    pub paid: Amount,
    /// The highest voucher redeemed on chain.
    pub redeemed: Amount,
    /// How far `owed` may run ahead of `paid` before the provider stops serving.
    pub credit: Amount,
    /// The voucher behind `paid`, so a client that lost count (a restarted gateway) can check its own
    /// signature instead of believing `paid`.
    #[serde(default)]
    pub voucher: Option<Voucher>,
}
