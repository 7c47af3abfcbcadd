//! The one way a request reaches a provider: routes ranked once, tried in order until one answers (a provider
//! may fail or refuse before its first token and the next one is tried; after it, the answer is this
//! provider's), one event loop for generations that both the streaming and the non-streaming responses run
//! with their own [`Sink`], and payment for exactly what arrived. The HTTP handlers and the batch runner
//! both call here.

use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use tensorgrid_client::{ProviderClient, RpcError};
use tensorgrid_types::inference::{EmbeddingsRequest, FinishReason, GenerateRequest, InferenceEvent};
use tensorgrid_types::Amount;
use tracing::warn;

use crate::openai::{ApiError, Usage};
use crate::requests::{Call, EmbedCall, Kind};
use crate::{Gateway, KeyState, Route};

type EventStream = Pin<Box<dyn Stream<Item = Result<InferenceEvent, RpcError>> + Send>>;

pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Why one provider did not answer.
enum Failure {
    /// The request itself is wrong (the provider said so with a 400): no other provider will do better.
    Refused(ApiError),
    /// The channel with this provider cannot pay (402).
    Payment(String),
    /// The provider failed; it goes to the back of the line for a while.
    Failed(String),
}

fn failure(e: RpcError) -> Failure {
    match &e {
        RpcError::Node { status: 400, code, message, .. } => {
            let param = if code == "context_length_exceeded" { Some("messages") } else { None };
            Failure::Refused(ApiError::invalid(message.clone(), param, Some(code)))
        }
        RpcError::Node { status: 402, .. } => Failure::Payment(e.to_string()),
        _ => Failure::Failed(e.to_string()),
    }
}

/// Tries `attempt` on the routes for `model`, best first (rotated by `spread`, so a batch's requests spread
/// over every provider while each still falls back on the others), until one answers.
async fn first_answer<T, F, Fut>(
    gateway: &Gateway,
    key: &KeyState,
    model: &str,
    spread: usize,
    mut attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut routes = gateway.routing.routes(&gateway.payments.providers_of(key), model);
    if routes.is_empty() {
        return Err(ApiError::model_not_found(model));
    }
    let n = routes.len();
    routes.rotate_left(spread % n);
    let mut last = String::new();
    let mut payment = false;
    for route in routes {
        let provider = route.provider;
        match attempt(route).await {
            Ok(answer) => return Ok(answer),
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Payment(reason)) => {
                payment = true;
                last = reason;
            }
            Err(Failure::Failed(reason)) => {
                gateway.routing.record_failure(provider);
                warn!(%provider, %reason, "provider failed before answering; trying the next");
                last = reason;
            }
        }
    }
    if payment {
        return Err(ApiError::insufficient_quota(format!(
            "Your channels cannot pay for this request ({last}). Top up a channel or send vouchers."
        )));
    }
    Err(ApiError::unavailable(format!("No provider serving `{model}` could answer: {last}")))
}

/// A provider's answer, opened: the first token (or the end) has arrived, so retrying is no longer possible.
pub(crate) struct Attempt {
    route: Route,
    client: ProviderClient,
    stream: EventStream,
    pub(crate) prompt_tokens: u32,
    /// The event that ended the wait for the first token, handled first.
    pending: Option<InferenceEvent>,
}

/// Sends the generation to the best provider, then the next while they fail before the first token.
pub(crate) async fn open(
    gateway: &Gateway,
    key: &KeyState,
    call: &Call,
    spread: usize,
) -> Result<Attempt, ApiError> {
    first_answer(gateway, key, &call.model, spread, |route| async move {
        let request = GenerateRequest {
            model: route.offer.model_hash,
            prompt: call.prompt.clone(),
            sampling: call.sampling.clone(),
        };
        let client = gateway.client(&route.host_uri, &key.account);
        let started = gateway.clock.now_ms();
        let mut stream: EventStream =
            Box::pin(client.generate(route.channel, &request).await.map_err(failure)?);
        let mut prompt_tokens = 0;
        loop {
            match stream.next().await {
                Some(Ok(InferenceEvent::Started { prompt_tokens: p })) => prompt_tokens = p,
                Some(Ok(InferenceEvent::Invoice { .. })) => {}
                Some(Ok(event @ (InferenceEvent::Delta { .. } | InferenceEvent::Done { .. }))) => {
                    gateway
                        .routing
                        .record_latency(route.provider, gateway.clock.now_ms().saturating_sub(started));
                    return Ok(Attempt { route, client, stream, prompt_tokens, pending: Some(event) });
                }
                Some(Ok(InferenceEvent::Error { code, message })) => {
                    return Err(Failure::Failed(format!("{code}: {message}")))
                }
                Some(Err(e)) => return Err(Failure::Failed(e.to_string())),
                None => {
                    return Err(Failure::Failed(
                        "the provider closed the stream before the first token".into(),
                    ))
                }
            }
        }
    })
    .await
}

/// Pays for what was received: a voucher for the difference between the cost of the tokens received and what
/// this response has already paid.
#[derive(Default)]
struct Meter {
    paid: Amount,
}

impl Meter {
    fn settle(
        &mut self,
        gateway: &Gateway,
        key: &KeyState,
        route: &Route,
        client: &ProviderClient,
        prompt: u32,
        received: u32,
    ) {
        let due = route.offer.cost(u64::from(prompt), u64::from(received)).unwrap_or(self.paid);
        let delta = due.saturating_sub(self.paid);
        self.paid = self.paid.max(due);
        if let Some(voucher) = gateway.payments.sign(&key.account, route.channel, delta) {
            // Off the response's path: vouchers are cumulative, so one arriving late or out of order changes
            // nothing, and the provider's credit covers the moments in between.
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.send_voucher(&voucher).await {
                    warn!(channel = voucher.channel, error = %e, "the provider did not take a voucher");
                }
            });
        }
    }
}

/// What a response does with text as it arrives: a non-streaming answer collects it, a streaming one
/// forwards it to the client.
pub(crate) trait Sink {
    /// `false` when the client has gone: the generation stops and what arrived is paid for.
    fn text(&mut self, text: &str) -> impl Future<Output = bool> + Send;
}

/// How a generation ended.
pub(crate) enum Ended {
    Done(FinishReason),
    /// The provider failed mid-answer; what arrived was paid for.
    Failed(ApiError),
    /// The client went away.
    Left,
}

/// The end of a generation: how, and the tokens it counted.
pub(crate) struct Outcome {
    pub(crate) ended: Ended,
    pub(crate) usage: Usage,
}

/// Reads a generation to its end into `sink`, paying at each invoice and, whatever the end, for everything
/// that arrived.
pub(crate) async fn drive<S: Sink>(
    gateway: &Gateway,
    key: &KeyState,
    mut attempt: Attempt,
    sink: &mut S,
) -> Outcome {
    let mut meter = Meter::default();
    let mut received = 0u32;
    let (route, client, prompt) = (&attempt.route, &attempt.client, attempt.prompt_tokens);
    let mut pending = attempt.pending.take();
    let ended = loop {
        let event = match pending.take() {
            Some(event) => Ok(event),
            None => attempt.stream.next().await.unwrap_or_else(|| {
                Err(RpcError::Transport {
                    url: route.host_uri.clone(),
                    reason: "the stream ended without a result".into(),
                })
            }),
        };
        match event {
            Ok(InferenceEvent::Delta { text, tokens }) => {
                received = received.saturating_add(tokens);
                if !text.is_empty() && !sink.text(&text).await {
                    // Dropping the provider's stream stops its generation.
                    break Ended::Left;
                }
            }
            Ok(InferenceEvent::Invoice { .. }) => meter.settle(gateway, key, route, client, prompt, received),
            Ok(InferenceEvent::Started { .. }) => {}
            Ok(InferenceEvent::Done { finish_reason, .. }) => break Ended::Done(finish_reason),
            Ok(InferenceEvent::Error { code, message }) => {
                break Ended::Failed(ApiError::upstream(format!(
                    "The provider failed mid-answer ({code}: {message})."
                )))
            }
            Err(e) => {
                gateway.routing.record_failure(route.provider);
                break Ended::Failed(ApiError::upstream(format!("The provider failed mid-answer: {e}")));
            }
        }
    };
    meter.settle(gateway, key, route, client, prompt, received);
    Outcome { ended, usage: Usage::new(prompt, received) }
}

pub(crate) fn finish_text(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Collects a non-streaming answer.
struct Collect(String);

impl Sink for Collect {
    async fn text(&mut self, text: &str) -> bool {
        self.0.push_str(text);
        true
    }
}

/// Runs a generation to its end and answers with OpenAI's (non-streaming) response body.
pub(crate) async fn complete(
    gateway: &Gateway,
    key: &KeyState,
    call: Call,
    spread: usize,
) -> Result<Value, ApiError> {
    let attempt = open(gateway, key, &call, spread).await?;
    let kind = call.kind;
    let id = new_id(if kind == Kind::Chat { "chatcmpl" } else { "cmpl" });
    let mut text = Collect(String::new());
    let outcome = drive(gateway, key, attempt, &mut text).await;
    let finish_reason = match outcome.ended {
        Ended::Done(reason) => reason,
        Ended::Failed(error) => return Err(error),
        Ended::Left => return Err(ApiError::upstream("The answer was abandoned.")),
    };
    let text = text.0;
    let choice = match kind {
        Kind::Chat => json!({
            "index": 0,
            "message": { "role": "assistant", "content": text, "refusal": null },
            "logprobs": null,
            "finish_reason": finish_text(finish_reason),
        }),
        Kind::Text => json!({
            "index": 0, "text": text, "logprobs": null, "finish_reason": finish_text(finish_reason),
        }),
    };
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(json!({
        "id": id, "object": object, "created": gateway.clock.now_ms() / 1000, "model": call.model,
        "system_fingerprint": null, "choices": [choice], "usage": outcome.usage,
    }))
}

/// Embeds through the best provider (rotated by `spread`), paying for the input tokens.
pub(crate) async fn embed(
    gateway: &Gateway,
    key: &KeyState,
    call: EmbedCall,
    spread: usize,
) -> Result<Value, ApiError> {
    let (route, client, out) = first_answer(gateway, key, &call.model, spread, |route| async {
        let client = gateway.client(&route.host_uri, &key.account);
        let request = EmbeddingsRequest { model: route.offer.model_hash, input: call.input.clone() };
        let out = client.embeddings(route.channel, &request).await.map_err(failure)?;
        Ok((route, client, out))
    })
    .await?;
    let cost = route.offer.cost(u64::from(out.prompt_tokens), 0).unwrap_or(Amount::ZERO);
    if let Some(voucher) = gateway.payments.sign(&key.account, route.channel, cost) {
        if let Err(e) = client.send_voucher(&voucher).await {
            warn!(channel = voucher.channel, error = %e, "the provider did not take a voucher");
        }
    }
    let dims = out.vectors.first().map(Vec::len).unwrap_or(0);
    if call.dimensions.is_some_and(|d| d as usize != dims) {
        return Err(ApiError::invalid(
            format!("This model's embeddings have {dims} dimensions and cannot be shortened."),
            Some("dimensions"),
            Some("invalid_value"),
        ));
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if call.base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": { "prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens },
    }))
}
