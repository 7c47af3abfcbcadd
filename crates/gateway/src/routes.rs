//! The HTTP handlers of the OpenAI API: models, chat and text completions (streamed as server-sent events or
//! whole), embeddings, and tensorgrid's `/v1/channels`. They translate (`requests`), call (`call`) and shape
//! the answer; routing, retries and payment are `call`'s.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tensorgrid_types::inference::FinishReason;

use crate::call::{self, finish_text, new_id, Ended, Sink};
use crate::openai::{ApiError, Usage};
use crate::requests::{self, Call, Kind};
use crate::{Gateway, KeyState};

type Shared = Arc<Gateway>;

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

pub(crate) async fn list_models(
    State(gateway): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let data: Vec<Value> =
        gateway.routing.models_for(&gateway.payments.providers_of(&key)).iter().map(model_json).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/channels` (tensorgrid's own): the key's channels and what the gateway has signed on each.
pub(crate) async fn channels(
    State(gateway): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let data: Vec<Value> = gateway
        .payments
        .channels_of(&key)
        .into_iter()
        .map(|(id, provider, deposit, signed)| {
            json!({ "id": id, "provider": provider, "deposit": deposit, "signed": signed })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

pub(crate) async fn get_model(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let found = gateway.routing.routes(&gateway.payments.providers_of(&key), &model, &key.ceiling);
    let route = found.routes.first().ok_or_else(|| ApiError::model_not_found(&model))?;
    Ok(Json(model_json(&route.offer)))
}

pub(crate) async fn chat(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let call = requests::chat_call(&body)?;
    respond(gateway, key, call).await
}

pub(crate) async fn completions(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let call = requests::text_call(&body)?;
    respond(gateway, key, call).await
}

pub(crate) async fn embeddings(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let call = requests::embed_call(&body)?;
    let answer = detached(async move { call::embed(&gateway, &key, call, 0).await }).await?;
    Ok(Json(answer).into_response())
}

/// Runs a whole (non-streaming) answer in a task of its own: if the client hangs up, the request's future is
/// dropped but the task reads the provider's answer to its end and pays for it, so the channel stays settled
/// and the provider's credit is not left eaten by an abandoned request.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|e| ApiError::upstream(format!("The request's task failed: {e}")))?
}

async fn respond(gateway: Shared, key: Arc<KeyState>, call: Call) -> Result<Response, ApiError> {
    if !call.stream {
        let answer = detached(async move { call::complete(&gateway, &key, call, 0).await }).await?;
        return Ok(Json(answer).into_response());
    }
    let attempt = call::open(&gateway, &key, &call, 0).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    let chunks = Chunks {
        tx,
        id: new_id(if call.kind == Kind::Chat { "chatcmpl" } else { "cmpl" }),
        created: gateway.clock.now_ms() / 1000,
        model: call.model,
        kind: call.kind,
    };
    let include_usage = call.include_usage;
    tokio::spawn(async move { stream(&gateway, &key, attempt, chunks, include_usage).await });
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Ok(Sse::new(events).into_response())
}

/// A streaming answer's chunks, in OpenAI's shape, sent to the client as they are made.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Chunks {
    fn object(&self) -> &'static str {
        if self.kind == Kind::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        }
    }

    async fn send(&self, data: String) -> bool {
        self.tx.send(Ok(SseEvent::default().data(data))).await.is_ok()
    }

    async fn choice(&self, text: Option<&str>, first: bool, finish: Option<FinishReason>) -> bool {
        let finish = finish.map(finish_text);
        let choice = match self.kind {
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
            "id": self.id, "object": self.object(), "created": self.created, "model": self.model,
            "system_fingerprint": null, "choices": [choice],
        });
        self.send(data.to_string()).await
    }

    async fn usage(&self, usage: Usage) -> bool {
        let data = json!({
            "id": self.id, "object": self.object(), "created": self.created, "model": self.model,
            "system_fingerprint": null, "choices": [], "usage": usage,
        });
        self.send(data.to_string()).await
    }
}

impl Sink for Chunks {
    async fn text(&mut self, text: &str) -> bool {
        self.choice(Some(text), false, None).await
    }
}

/// Forwards a provider's stream as OpenAI chunks; what was delivered is billed, and said so with the usage
/// chunk when asked, before an error ends the stream.
async fn stream(
    gateway: &Gateway,
    key: &KeyState,
    attempt: call::Attempt,
    mut chunks: Chunks,
    include_usage: bool,
) {
    if chunks.kind == Kind::Chat && !chunks.choice(None, true, None).await {
        return;
    }
    let outcome = call::drive(gateway, key, attempt, &mut chunks).await;
    match outcome.ended {
        Ended::Left => {}
        Ended::Done(reason) => {
            chunks.choice(None, false, Some(reason)).await;
            if include_usage {
                chunks.usage(outcome.usage).await;
            }
            chunks.send("[DONE]".into()).await;
        }
        Ended::Failed(error) => {
            if include_usage {
                chunks.usage(outcome.usage).await;
            }
            chunks.send(error.body().to_string()).await;
        }
    }
}
