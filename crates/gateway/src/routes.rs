//! The HTTP handlers: authentication, request translation, routing with retries, streaming and payment.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::{Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use tensorgrid_client::{ProviderClient, RpcError};
use tensorgrid_types::inference::{
    EmbeddingsRequest, FinishReason, GenerateRequest, InferenceEvent, Message, Prompt, Sampling,
};
use tensorgrid_types::Amount;
use tracing::warn;

use crate::openai::{
    self, ApiError, ChatRequest, CompletionRequest, Content, EmbeddingRequest, SamplingFields, Usage,
};
use crate::{batch, Gateway, KeyState, Route};

type Shared = Arc<Gateway>;
type EventStream = Pin<Box<dyn Stream<Item = Result<InferenceEvent, RpcError>> + Send>>;

/// Chat answers are capped here unless the request says otherwise.
const DEFAULT_CHAT_MAX_TOKENS: u32 = 512;
/// OpenAI's default for text completions.
const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

pub(crate) fn router(gateway: Shared) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/channels", get(channels))
        .route("/v1/files", post(batch::upload).get(batch::list_files))
        .route("/v1/files/{id}", get(batch::get_file).delete(batch::delete_file))
        .route("/v1/files/{id}/content", get(batch::file_content))
        .route("/v1/batches", post(batch::create_batch).get(batch::list_batches))
        .route("/v1/batches/{id}", get(batch::get_batch))
        .route("/v1/batches/{id}/cancel", post(batch::cancel_batch))
        .fallback(|| async {
            ApiError::not_found("Unknown request URL. Please check the URL and method.".into())
        })
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(gateway)
}

pub(crate) fn authenticate(gateway: &Gateway, headers: &HeaderMap) -> Result<Arc<KeyState>, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::missing_key)?;
    let token = value.strip_prefix("Bearer ").map(str::trim).ok_or_else(ApiError::missing_key)?;
    if token.is_empty() {
        return Err(ApiError::missing_key());
    }
    gateway.key(token).ok_or_else(|| ApiError::wrong_key(token))
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

fn model_json(offer: &tensorgrid_types::model::ModelOffer) -> Value {
    json!({
        "id": offer.name,
        "object": "model",
        "created": 0,
        "owned_by": "tensorgrid",
        "model_hash": offer.model_hash.to_string(),
        "context_length": offer.context_length,
        "quantization": offer.quantization,
    })
}

async fn list_models(State(gateway): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    let data: Vec<Value> = gateway.models_for(&key).iter().map(model_json).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/channels` (tensorgrid's own): the key's channels and what the gateway has signed on each.
async fn channels(State(gateway): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    let data: Vec<Value> = gateway
        .channels_of(&key)
        .into_iter()
        .map(|(id, provider, deposit, signed)| {
            json!({ "id": id, "provider": provider, "deposit": deposit, "signed": signed })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn get_model(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    let routes = gateway.routes(&key, &model);
    let route = routes.first().ok_or_else(|| ApiError::model_not_found(&model))?;
    Ok(Json(model_json(&route.offer)))
}

/// OpenAI's sampling fields, checked, as the provider takes them.
fn sampling(fields: &SamplingFields, default_max: u32) -> Result<(Sampling, bool, bool), ApiError> {
    if fields.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("Only n = 1 is supported.", Some("n"), Some("invalid_value")));
    }
    let max_tokens = fields.max_completion_tokens.or(fields.max_tokens).unwrap_or(default_max);
    if max_tokens == 0 {
        return Err(ApiError::invalid(
            "max_tokens must be at least 1.",
            Some("max_tokens"),
            Some("invalid_value"),
        ));
    }
    let temperature = fields.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("{temperature} is not valid for temperature: it must be between 0 and 2."),
            Some("temperature"),
            Some("invalid_value"),
        ));
    }
    if let Some(p) = fields.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                format!("{p} is not valid for top_p: it must be in (0, 1]."),
                Some("top_p"),
                Some("invalid_value"),
            ));
        }
    }
    let stop = fields.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop takes up to 4 non-empty strings.",
            Some("stop"),
            Some("invalid_value"),
        ));
    }
    for (name, value) in
        [("frequency_penalty", fields.frequency_penalty), ("presence_penalty", fields.presence_penalty)]
    {
        if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(ApiError::invalid(
                format!("{name} must be between -2 and 2."),
                Some(if name == "frequency_penalty" { "frequency_penalty" } else { "presence_penalty" }),
                Some("invalid_value"),
            ));
        }
    }
    // Without a seed every request samples differently, as OpenAI's do.
    let seed = fields.seed.unwrap_or_else(|| OsRng.next_u64());
    let include_usage = fields.stream_options.as_ref().is_some_and(|o| o.include_usage);
    Ok((
        Sampling {
            max_tokens,
            temperature,
            top_p: fields.top_p,
            top_k: fields.top_k,
            stop,
            seed,
            frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
            presence_penalty: fields.presence_penalty.unwrap_or(0.0),
        },
        fields.stream.unwrap_or(false),
        include_usage,
    ))
}

/// A provider's answer, opened: the first token (or the end) has arrived, so retrying is no longer possible.
struct Attempt {
    route: Route,
    client: ProviderClient,
    stream: EventStream,
    prompt_tokens: u32,
    /// Events read while waiting for the first token, to be handled first.
    pending: Option<InferenceEvent>,
}

/// Translates a provider's refusal into what the client is told.
fn provider_error(e: &RpcError) -> Option<ApiError> {
    match e {
        RpcError::Node { status: 400, code, message, .. } => {
            let param = if code == "context_length_exceeded" { Some("messages") } else { None };
            Some(ApiError::invalid(message.clone(), param, Some(code)))
        }
        _ => None,
    }
}

/// Sends the request to the best provider, then the next one while they fail before the first token.
async fn open(
    gateway: &Gateway,
    key: &KeyState,
    model: &str,
    prompt: Prompt,
    sampling: Sampling,
    spread: usize,
) -> Result<Attempt, ApiError> {
    let mut routes = gateway.routes(key, model);
    // Batches spread their requests over every provider (each still falls back on the others).
    if !routes.is_empty() {
        let n = routes.len();
        routes.rotate_left(spread % n);
    }
    if routes.is_empty() {
        return Err(ApiError::model_not_found(model));
    }
    let mut last = String::new();
    let mut payment = false;
    for route in routes {
        let request = GenerateRequest {
            model: route.offer.model_hash,
            prompt: prompt.clone(),
            sampling: sampling.clone(),
        };
        let client = gateway.client(&route.host_uri, &key.account);
        let started = Instant::now();
        let stream = match client.generate(route.channel, &request).await {
            Ok(stream) => stream,
            Err(e) => {
                if let Some(error) = provider_error(&e) {
                    return Err(error);
                }
                if matches!(&e, RpcError::Node { status: 402, .. }) {
                    payment = true;
                } else {
                    gateway.record_failure(route.provider);
                }
                warn!(provider = %route.provider, error = %e, "provider refused or failed; trying the next");
                last = e.to_string();
                continue;
            }
        };
        let mut stream: EventStream = Box::pin(stream);
        let mut prompt_tokens = 0;
        loop {
            match stream.next().await {
                Some(Ok(InferenceEvent::Started { prompt_tokens: p })) => prompt_tokens = p,
                Some(Ok(InferenceEvent::Invoice { .. })) => {}
                Some(Ok(event @ (InferenceEvent::Delta { .. } | InferenceEvent::Done { .. }))) => {
                    gateway.record_latency(route.provider, started);
                    return Ok(Attempt { route, client, stream, prompt_tokens, pending: Some(event) });
                }
                Some(Ok(InferenceEvent::Error { code, message })) => {
                    last = format!("{code}: {message}");
                    break;
                }
                Some(Err(e)) => {
                    last = e.to_string();
                    break;
                }
                None => {
                    last = "the provider closed the stream before the first token".into();
                    break;
                }
            }
        }
        gateway.record_failure(route.provider);
        warn!(provider = %route.provider, reason = %last, "provider failed before the first token; trying the next");
    }
    if payment {
        return Err(ApiError::insufficient_quota(format!(
            "Your channels cannot pay for this request ({last}). Top up a channel or send vouchers."
        )));
    }
    Err(ApiError::unavailable(format!("No provider serving `{model}` could answer: {last}")))
}

/// Pays for what was received: a voucher for the difference between the cost of the tokens received and what
/// this response has already paid.
struct Meter {
    paid: Amount,
}

impl Meter {
    async fn settle(&mut self, gateway: &Gateway, key: &KeyState, attempt: &Paying<'_>, received: u32) {
        let due = attempt
            .route
            .offer
            .cost(u64::from(attempt.prompt_tokens), u64::from(received))
            .unwrap_or(self.paid);
        let delta = due.saturating_sub(self.paid);
        self.paid = self.paid.max(due);
        if let Some(voucher) = gateway.sign(&key.account, attempt.route.channel, delta) {
            // Off the response's path: vouchers are cumulative, so one arriving late or out of order
            // changes nothing, and the provider's credit covers the moments in between.
            let client = attempt.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.send_voucher(&voucher).await {
                    warn!(channel = voucher.channel, error = %e, "the provider did not take a voucher");
                }
            });
        }
    }
}

/// The parts of an attempt that paying needs (the event stream is not shared across awaits).
struct Paying<'a> {
    route: &'a Route,
    client: &'a ProviderClient,
    prompt_tokens: u32,
}

/// An attempt's next event: the one read while choosing the provider first, then the stream's. A stream that
/// ends without a result is the provider's failure.
async fn next_event(
    pending: &mut Option<InferenceEvent>,
    stream: &mut EventStream,
    paying: &Paying<'_>,
) -> Result<InferenceEvent, RpcError> {
    if let Some(event) = pending.take() {
        return Ok(event);
    }
    stream.next().await.unwrap_or_else(|| {
        Err(RpcError::Transport {
            url: paying.route.host_uri.clone(),
            reason: "the stream ended without a result".into(),
        })
    })
}

impl Attempt {
    fn split(&mut self) -> (Paying<'_>, &mut EventStream) {
        (
            Paying { route: &self.route, client: &self.client, prompt_tokens: self.prompt_tokens },
            &mut self.stream,
        )
    }
}

/// What a generation ended with, for a non-streaming answer.
struct Finished {
    text: String,
    finish_reason: FinishReason,
    usage: Usage,
}

async fn run_to_end(gateway: &Gateway, key: &KeyState, mut attempt: Attempt) -> Result<Finished, ApiError> {
    let mut meter = Meter { paid: Amount::ZERO };
    let mut text = String::new();
    let mut received = 0u32;
    let mut next = attempt.pending.take();
    let (paying, stream) = attempt.split();
    loop {
        let event = next_event(&mut next, stream, &paying).await;
        match event {
            Ok(InferenceEvent::Delta { text: t, tokens }) => {
                text.push_str(&t);
                received += tokens;
            }
            Ok(InferenceEvent::Invoice { .. }) => meter.settle(gateway, key, &paying, received).await,
            Ok(InferenceEvent::Done { finish_reason, .. }) => {
                meter.settle(gateway, key, &paying, received).await;
                return Ok(Finished {
                    text,
                    finish_reason,
                    usage: Usage::new(paying.prompt_tokens, received),
                });
            }
            Ok(InferenceEvent::Started { .. }) => {}
            Ok(InferenceEvent::Error { code, message }) => {
                meter.settle(gateway, key, &paying, received).await;
                return Err(ApiError::upstream(format!(
                    "The provider failed mid-answer ({code}: {message})."
                )));
            }
            Err(e) => {
                gateway.record_failure(paying.route.provider);
                meter.settle(gateway, key, &paying, received).await;
                return Err(ApiError::upstream(format!("The provider failed mid-answer: {e}")));
            }
        }
    }
}

fn finish_text(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

async fn chat(State(gateway): State<Shared>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    let call = chat_call(&body)?;
    respond(gateway, key, call).await
}

/// A generation request, checked and translated.
pub(crate) struct Call {
    model: String,
    prompt: Prompt,
    sampling: Sampling,
    pub(crate) stream: bool,
    include_usage: bool,
    kind: Kind,
}

pub(crate) fn chat_call(body: &[u8]) -> Result<Call, ApiError> {
    let request: ChatRequest = openai::parse(body)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty.",
            Some("messages"),
            Some("invalid_value"),
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{}'. Supported roles are system, developer, user, assistant and tool.",
                    m.role
                ),
                Some("messages"),
                Some("invalid_value"),
            ));
        }
        let content = match &m.content {
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!(
                                    "Content parts of type `{}` are not supported by text models.",
                                    p.kind
                                ),
                                Some("messages"),
                                Some("invalid_value"),
                            ))
                        }
                    }
                }
                text
            }
            None => String::new(),
        };
        // Templates know `system`; OpenAI's newer `developer` role means the same.
        let role = if m.role == "developer" { "system".to_string() } else { m.role.clone() };
        messages.push(Message { role, content });
    }
    let (sampling, stream, include_usage) = sampling(&request.sampling, DEFAULT_CHAT_MAX_TOKENS)?;
    Ok(Call {
        model: request.model,
        prompt: Prompt::Chat { messages },
        sampling,
        stream,
        include_usage,
        kind: Kind::Chat,
    })
}

async fn completions(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    let call = text_call(&body)?;
    respond(gateway, key, call).await
}

pub(crate) fn text_call(body: &[u8]) -> Result<Call, ApiError> {
    let request: CompletionRequest = openai::parse(body)?;
    let prompts = request.prompt.clone().into_vec();
    if prompts.len() != 1 {
        return Err(ApiError::invalid("prompt takes one string.", Some("prompt"), Some("invalid_value")));
    }
    let text = prompts.into_iter().next().unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::invalid("prompt must not be empty.", Some("prompt"), Some("invalid_value")));
    }
    let (sampling, stream, include_usage) = sampling(&request.sampling, DEFAULT_COMPLETION_MAX_TOKENS)?;
    Ok(Call {
        model: request.model,
        prompt: Prompt::Text { text },
        sampling,
        stream,
        include_usage,
        kind: Kind::Text,
    })
}

async fn respond(gateway: Shared, key: Arc<KeyState>, call: Call) -> Result<Response, ApiError> {
    if !call.stream {
        return Ok(Json(complete(&gateway, &key, call, 0).await?).into_response());
    }
    let attempt = open(&gateway, &key, &call.model, call.prompt, call.sampling, 0).await?;
    let id = new_id(if call.kind == Kind::Chat { "chatcmpl" } else { "cmpl" });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(pump(gateway, key, attempt, tx, id, now_secs(), call.model, call.kind, call.include_usage));
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Ok(Sse::new(events).into_response())
}

/// Runs a generation to its end and answers with OpenAI's (non-streaming) response body.
pub(crate) async fn complete(
    gateway: &Gateway,
    key: &KeyState,
    call: Call,
    spread: usize,
) -> Result<Value, ApiError> {
    let attempt = open(gateway, key, &call.model, call.prompt, call.sampling, spread).await?;
    let kind = call.kind;
    let id = new_id(if kind == Kind::Chat { "chatcmpl" } else { "cmpl" });
    let done = run_to_end(gateway, key, attempt).await?;
    let choice = match kind {
        Kind::Chat => json!({
            "index": 0,
            "message": { "role": "assistant", "content": done.text, "refusal": null },
            "logprobs": null,
            "finish_reason": finish_text(done.finish_reason),
        }),
        Kind::Text => json!({
            "index": 0, "text": done.text, "logprobs": null, "finish_reason": finish_text(done.finish_reason),
        }),
    };
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(json!({
        "id": id, "object": object, "created": now_secs(), "model": call.model,
        "system_fingerprint": null, "choices": [choice], "usage": done.usage,
    }))
}

/// Forwards a provider's stream as OpenAI chunks, paying as invoices come and at the end.
#[allow(clippy::too_many_arguments)]
async fn pump(
    gateway: Shared,
    key: Arc<KeyState>,
    mut attempt: Attempt,
    tx: tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    include_usage: bool,
) {
    let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = |text: Option<&str>, first: bool, finish: Option<FinishReason>| -> SseEvent {
        let finish = finish.map(finish_text);
        let choice = match kind {
            Kind::Chat => {
                let delta = match (first, text) {
                    (true, _) => json!({ "role": "assistant", "content": "" }),
                    (false, Some(t)) => json!({ "content": t }),
                    (false, None) => json!({}),
                };
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish })
            }
            Kind::Text => {
                json!({ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish })
            }
        };
        let data = json!({
            "id": id, "object": object, "created": created, "model": model,
            "system_fingerprint": null, "choices": [choice],
        });
        SseEvent::default().data(data.to_string())
    };
    let prompt_tokens = attempt.prompt_tokens;
    let usage_chunk = |received: u32| -> SseEvent {
        let data = json!({
            "id": id, "object": object, "created": created, "model": model,
            "system_fingerprint": null, "choices": [], "usage": Usage::new(prompt_tokens, received),
        });
        SseEvent::default().data(data.to_string())
    };
    let send = |event: SseEvent| {
        let tx = tx.clone();
        async move { tx.send(Ok(event)).await.is_ok() }
    };
    if kind == Kind::Chat && !send(chunk(None, true, None)).await {
        return;
    }
    let mut meter = Meter { paid: Amount::ZERO };
    let mut received = 0u32;
    let mut next = attempt.pending.take();
    let (paying, stream) = attempt.split();
    loop {
        let event = next_event(&mut next, stream, &paying).await;
        match event {
            Ok(InferenceEvent::Delta { text, tokens }) => {
                received += tokens;
                if !text.is_empty() && !send(chunk(Some(&text), false, None)).await {
                    // The client left: pay for what arrived and drop the provider's stream, which stops it.
                    meter.settle(&gateway, &key, &paying, received).await;
                    return;
                }
            }
            Ok(InferenceEvent::Invoice { .. }) => meter.settle(&gateway, &key, &paying, received).await,
            Ok(InferenceEvent::Started { .. }) => {}
            Ok(InferenceEvent::Done { finish_reason, .. }) => {
                meter.settle(&gateway, &key, &paying, received).await;
                send(chunk(None, false, Some(finish_reason))).await;
                if include_usage {
                    send(usage_chunk(received)).await;
                }
                send(SseEvent::default().data("[DONE]")).await;
                return;
            }
            Ok(InferenceEvent::Error { code, message }) => {
                meter.settle(&gateway, &key, &paying, received).await;
                if include_usage {
                    send(usage_chunk(received)).await;
                }
                let error =
                    ApiError::upstream(format!("The provider failed mid-answer ({code}: {message})."));
                send(SseEvent::default().data(error.body().to_string())).await;
                return;
            }
            Err(e) => {
                gateway.record_failure(paying.route.provider);
                meter.settle(&gateway, &key, &paying, received).await;
                // What was delivered is billed, and said so, before the error ends the stream.
                if include_usage {
                    send(usage_chunk(received)).await;
                }
                let error = ApiError::upstream(format!("The provider failed mid-answer: {e}"));
                send(SseEvent::default().data(error.body().to_string())).await;
                return;
            }
        }
    }
}

async fn embeddings(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = authenticate(&gateway, &headers)?;
    Ok(Json(embed(&gateway, &key, &body, 0).await?).into_response())
}

/// Embeds through the best provider (rotated by `spread`), paying for the input tokens.
pub(crate) async fn embed(
    gateway: &Gateway,
    key: &KeyState,
    body: &[u8],
    spread: usize,
) -> Result<Value, ApiError> {
    let request: EmbeddingRequest = openai::parse(body)?;
    let input: Vec<String> = match &request.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Value::Array(items) if !items.is_empty() => {
            return Err(ApiError::invalid(
                "input must be a string or a list of strings; token arrays are not supported.",
                Some("input"),
                Some("invalid_value"),
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "input must be a non-empty string or list of strings.",
                Some("input"),
                Some("invalid_value"),
            ))
        }
    };
    if input.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "input must not contain empty strings.",
            Some("input"),
            Some("invalid_value"),
        ));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format `{other}` is not one of float, base64."),
                Some("encoding_format"),
                Some("invalid_value"),
            ))
        }
    };
    let mut routes = gateway.routes(key, &request.model);
    if routes.is_empty() {
        return Err(ApiError::model_not_found(&request.model));
    }
    let n = routes.len();
    routes.rotate_left(spread % n);
    let mut last = String::new();
    for route in routes {
        let client = gateway.client(&route.host_uri, &key.account);
        let call = EmbeddingsRequest { model: route.offer.model_hash, input: input.clone() };
        match client.embeddings(route.channel, &call).await {
            Ok(out) => {
                let dims = out.vectors.first().map(Vec::len).unwrap_or(0);
                if request.dimensions.is_some_and(|d| d as usize != dims) {
                    return Err(ApiError::invalid(
                        format!("This model's embeddings have {dims} dimensions and cannot be shortened."),
                        Some("dimensions"),
                        Some("invalid_value"),
                    ));
                }
                let cost = route.offer.cost(u64::from(out.prompt_tokens), 0).unwrap_or(Amount::ZERO);
                if let Some(voucher) = gateway.sign(&key.account, route.channel, cost) {
                    if let Err(e) = client.send_voucher(&voucher).await {
                        warn!(channel = voucher.channel, error = %e, "the provider did not take a voucher");
                    }
                }
                let data: Vec<Value> = out
                    .vectors
                    .iter()
                    .enumerate()
                    .map(|(index, v)| {
                        let embedding = if base64 {
                            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                        } else {
                            json!(v)
                        };
                        json!({ "object": "embedding", "index": index, "embedding": embedding })
                    })
                    .collect();
                return Ok(json!({
                    "object": "list",
                    "data": data,
                    "model": request.model,
                    "usage": { "prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens },
                }));
            }
            Err(e) => {
                if let Some(error) = provider_error(&e) {
                    return Err(error);
                }
                gateway.record_failure(route.provider);
                last = e.to_string();
            }
        }
    }
    Err(ApiError::unavailable(format!("No provider serving `{}` could answer: {last}", request.model)))
}
