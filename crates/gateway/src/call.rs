//! The one way a request reaches a provider: routes ranked once, tried in order until one answers (a provider
//! may fail or refuse before its first token and the next one is tried; after it, the answer is this
//! provider's), one event loop for generations that both the streaming and the non-streaming responses run
//! with their own [`Sink`], and payment for exactly what arrived. The HTTP handlers and the batch runner
//! both call here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use tensorgrid_client::{ProviderClient, RpcError};
use tensorgrid_tokenizer::{StreamDecoder, TextCodec, TokenizerError};
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
    /// The provider's price changed on chain since the offers were read: they are read again now.
    Stale(String),
}

fn failure(e: RpcError) -> Failure {
    match &e {
        RpcError::Node { status: 400, code, message, .. } => {
            let param = if code == "context_length_exceeded" { Some("messages") } else { None };
            Failure::Refused(ApiError::invalid(message.clone(), param, Some(code)))
        }
        RpcError::Node { status: 402, .. } => Failure::Payment(e.to_string()),
        RpcError::Node { status: 409, code, .. } if code == "price_changed" => Failure::Stale(e.to_string()),
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
    let found = gateway.routing.routes(&gateway.payments.providers_of(key), model, &key.ceiling);
    let mut routes = found.routes;
    if routes.is_empty() && found.over_ceiling {
        return Err(ApiError::insufficient_quota(format!(
            "Every provider of `{model}` asks more than the price ceiling set for this key or model."
        )));
    }
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
            Err(Failure::Stale(reason)) => {
                gateway.refresh_now.notify_one();
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

/// The tokenizer a route's offer names, fetched through that provider if the gateway lacks it.
async fn codec_of(
    gateway: &Gateway,
    route: &Route,
    client: &ProviderClient,
) -> Result<Arc<TextCodec>, Failure> {
    gateway.tokenizers.get(client, route.offer.tokenizer_hash).await.map_err(Failure::Failed)
}

/// A prompt the tokenizer cannot take is the request's fault, whichever provider would get it.
fn refused(e: TokenizerError) -> Failure {
    let message = match e {
        TokenizerError::EmptyPrompt => "The prompt is empty.".to_string(),
        other => other.to_string(),
    };
    Failure::Refused(ApiError::invalid(message, Some("messages"), Some("invalid_prompt")))
}

/// A provider's answer, opened: the first token (or the end) has arrived, so retrying is no longer possible.
pub(crate) struct Attempt {
    route: Route,
    client: ProviderClient,
    stream: EventStream,
    codec: Arc<TextCodec>,
    decoder: StreamDecoder,
    /// The prompt's tokens as the gateway counted them with the offer's tokenizer.
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
        let client = gateway.client(&route.host_uri, &key.account);
        let codec = codec_of(gateway, &route, &client).await?;
        let prompt_tokens = u32::try_from(codec.prompt_ids(&call.prompt).map_err(refused)?.len()).unwrap_or(u32::MAX);
        let context = route.offer.context_length;
        if u64::from(prompt_tokens) + u64::from(call.sampling.max_tokens) > u64::from(context) {
            return Err(Failure::Refused(ApiError::invalid(
                format!(
                    "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_tokens} in the messages, {} in the completion).",
                    u64::from(prompt_tokens) + u64::from(call.sampling.max_tokens),
                    call.sampling.max_tokens
                ),
                Some("messages"),
                Some("context_length_exceeded"),
            )));
        }
        let request = GenerateRequest {
            model: route.offer.model_hash,
            prompt: call.prompt.clone(),
            sampling: call.sampling.clone(),
            price: route.offer.price(),
        };
        let started = gateway.clock.now_ms();
        let mut stream: EventStream =
            Box::pin(client.generate(route.channel, &request).await.map_err(failure)?);
        let decoder = StreamDecoder::new(call.sampling.stop.clone(), call.sampling.max_tokens);
        loop {
            match stream.next().await {
                // The provider's own counts are not what the gateway pays by.
                Some(Ok(InferenceEvent::Started { .. } | InferenceEvent::Invoice { .. })) => {}
                Some(Ok(event @ (InferenceEvent::Delta { .. } | InferenceEvent::Done { .. }))) => {
                    gateway
                        .routing
                        .record_latency(route.provider, gateway.clock.now_ms().saturating_sub(started));
                    return Ok(Attempt {
                        route,
                        client,
                        stream,
                        codec,
                        decoder,
                        prompt_tokens,
                        pending: Some(event),
                    });
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
/// that arrived. What arrived is counted here: the token ids, each rebuilt into text with the offer's
/// tokenizer by the same decoder the provider's engine runs, up to the end that decoder finds (a stop token, a
/// stop string, `max_tokens`); the client reads exactly the text of the ids it pays for, and ids after the end
/// are neither shown nor paid.
pub(crate) async fn drive<S: Sink>(
    gateway: &Gateway,
    key: &KeyState,
    mut attempt: Attempt,
    sink: &mut S,
) -> Outcome {
    let mut meter = Meter::default();
    let (route, client, prompt) = (&attempt.route, &attempt.client, attempt.prompt_tokens);
    let codec = attempt.codec.clone();
    let mut pending = attempt.pending.take();
    let ended = 'read: loop {
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
            Ok(InferenceEvent::Delta { ids, .. }) => {
                for id in ids {
                    if let Some(reason) = attempt.decoder.finished() {
                        warn!(provider = %route.provider, "the provider sent tokens after the answer's end");
                        gateway.routing.record_failure(route.provider);
                        break 'read Ended::Done(reason);
                    }
                    let step = match attempt.decoder.push(&codec, id, false) {
                        Ok(step) => step,
                        Err(e) => {
                            gateway.routing.record_failure(route.provider);
                            break 'read Ended::Failed(ApiError::upstream(format!(
                                "The provider sent a token its tokenizer cannot decode ({e})."
                            )));
                        }
                    };
                    // Dropping the provider's stream stops its generation.
                    if !step.text.is_empty() && !sink.text(&step.text).await {
                        break 'read Ended::Left;
                    }
                }
                if let Some(reason) = attempt.decoder.finished() {
                    // Everything the client pays for has arrived; the provider's closing words are not needed.
                    break Ended::Done(reason);
                }
            }
            Ok(InferenceEvent::Invoice { .. }) => {
                meter.settle(gateway, key, route, client, prompt, received(&attempt.decoder))
            }
            Ok(InferenceEvent::Started { .. }) => {}
            // The provider ended without the end the decoder knows (its context ran out): what arrived stands.
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
    let received = received(&attempt.decoder);
    meter.settle(gateway, key, route, client, prompt, received);
    Outcome { ended, usage: Usage::new(prompt, received) }
}

fn received(decoder: &StreamDecoder) -> u32 {
    u32::try_from(decoder.generated().len()).unwrap_or(u32::MAX)
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
    let (route, client, out, tokens) = first_answer(gateway, key, &call.model, spread, |route| async {
        let client = gateway.client(&route.host_uri, &key.account);
        let codec = codec_of(gateway, &route, &client).await?;
        let counts = codec.count(&call.input).map_err(refused)?;
        let tokens: u64 = counts.iter().map(|&n| u64::from(n)).sum();
        let request = EmbeddingsRequest {
            model: route.offer.model_hash,
            input: call.input.clone(),
            price: route.offer.price(),
        };
        let out = client.embeddings(route.channel, &request).await.map_err(failure)?;
        if out.vectors.len() != call.input.len() {
            return Err(Failure::Failed(format!(
                "the provider answered {} inputs with {} vectors",
                call.input.len(),
                out.vectors.len()
            )));
        }
        Ok((route, client, out, tokens))
    })
    .await?;
    // The gateway's own count at the price it named, whatever the provider reports.
    let cost = route.offer.cost(tokens, 0).unwrap_or(Amount::ZERO);
    let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
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
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
}
