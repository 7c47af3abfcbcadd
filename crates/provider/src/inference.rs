//! Serving models: the provider's side of `tensorgrid_types::inference`.
//!
//! The provider loads the models its configuration names, announces an offer for each on chain (by the served
//! file's hash, with its prices), and answers signed generation and embedding requests paid through payment
//! channels. Per channel it keeps a tally: what it delivered (`owed`), the best voucher it holds (`paid`) and
//! what it redeemed. It refuses a request when the channel is not open to it or not the signer's, when the
//! unpaid amount passes its credit limit, or when the channel's deposit is spent; a stream stops at once
//! when one of those becomes true mid-way. A background task redeems the best voucher on chain.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use tensorgrid_engine_llm::{
    Embedder, EngineError, Event, FinishReason as EngineFinish, LlmEngine, LoadOptions, SamplingParams,
    TextCodec, TokenizerError,
};
use tensorgrid_types::channel::{Channel, ChannelId, ChannelState, Voucher};
use tensorgrid_types::channel_book::{ChargeError, Tab};
use tensorgrid_types::inference::{
    ChannelTally, EmbeddingsRequest, EmbeddingsResponse, FinishReason, GenerateRequest, InferenceEvent,
    INVOICE_EVERY_TOKENS,
};
use tensorgrid_types::model::{ListedOffer, ModelOffer, TokenPrice};
use tensorgrid_types::{Address, Amount, Hash, Msg};
use tracing::{info, warn};

use crate::config::ModelConfig;
use crate::http::{ApiError, Signed};
use crate::{ProviderError, Shared};

/// A model this provider serves.
#[derive(Clone, Debug)]
pub enum Engine {
    Llm(LlmEngine),
    Embeddings(Arc<Embedder>),
}

#[derive(Clone, Debug)]
pub struct ServedModel {
    pub offer: ModelOffer,
    pub engine: Engine,
}

impl ServedModel {
    fn codec(&self) -> &TextCodec {
        match &self.engine {
            Engine::Llm(engine) => engine.codec(),
            Engine::Embeddings(embedder) => embedder.codec(),
        }
    }
}

/// One channel as this provider sees it: the wire model's tab (the one definition of channel accounting) and
/// who may use it.
#[derive(Clone, Debug)]
struct Tally {
    client: Address,
    tab: Tab,
    /// When the channel was last read from the chain.
    checked_at: std::time::Instant,
}

/// How long a channel read from the chain is trusted before it is read again (a top-up or a client's close
/// is noticed within this; serving a closing channel is safe, its vouchers stay redeemable until it ends).
const CHANNEL_RECHECK: Duration = Duration::from_secs(5);

/// The served models and the channels that pay for them.
#[derive(Debug)]
pub struct Inference {
    pub models: Vec<ServedModel>,
    chain_id: String,
    credit: Amount,
    tallies: Mutex<HashMap<ChannelId, Tally>>,
    /// This provider's offers as the chain lists them: a price rise is charged only once its notice has run.
    listed: Mutex<HashMap<Hash, ListedOffer>>,
}

/// Loads every configured model (GGUF files as chat models, directories as embedding models).
pub fn load(models: &[ModelConfig], chain_id: String, credit: Amount) -> Result<Inference, ProviderError> {
    let mut served = Vec::new();
    for m in models {
        let bad = |e: EngineError| ProviderError::Model {
            path: m.path.display().to_string(),
            reason: e.to_string(),
        };
        let (engine, offer) = if m.path.is_dir() {
            let embedder = Embedder::load(&m.path, &tensorgrid_engine_llm::default_device()).map_err(bad)?;
            let info = embedder.info().clone();
            let offer = ModelOffer {
                model_hash: Hash(info.content_hash),
                name: m.name.clone().unwrap_or(info.name),
                source_hash: Hash(info.content_hash),
                quantization: "f32".into(),
                tokenizer_hash: embedder.codec().hash(),
                context_length: info.max_tokens,
                price_input_per_m: m.price_input_per_m,
                price_output_per_m: m.price_output_per_m,
                throughput_tps: m.throughput_tps,
            };
            (Engine::Embeddings(Arc::new(embedder)), offer)
        } else {
            let options =
                LoadOptions { device: tensorgrid_engine_llm::default_device(), ..Default::default() };
            let engine = LlmEngine::load(&m.path, options).map_err(bad)?;
            let info = engine.info().clone();
            let offer = ModelOffer {
                model_hash: Hash(info.content_hash),
                name: m.name.clone().unwrap_or(info.name),
                source_hash: Hash(info.source_hash),
                quantization: info.quantization,
                tokenizer_hash: engine.codec().hash(),
                context_length: info.context_length,
                price_input_per_m: m.price_input_per_m,
                price_output_per_m: m.price_output_per_m,
                throughput_tps: m.throughput_tps,
            };
            (Engine::Llm(engine), offer)
        };
        info!(model = %offer.name, hash = %offer.model_hash, "model loaded");
        served.push(ServedModel { offer, engine });
    }
    Ok(Inference {
        models: served,
        chain_id,
        credit,
        tallies: Mutex::new(HashMap::new()),
        listed: Mutex::new(HashMap::new()),
    })
}

impl Inference {
    fn model(&self, hash: &Hash) -> Result<&ServedModel, ApiError> {
        self.models.iter().find(|m| &m.offer.model_hash == hash).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("this provider serves no model {hash}"),
            )
        })
    }

    /// The lowest price a request may name: the price in effect on chain (a rise still under notice is not
    /// charged yet), or the configured one before the offer is listed.
    fn floor(&self, model: &ServedModel) -> TokenPrice {
        match self.listed.lock().get(&model.offer.model_hash) {
            Some(listed) => listed.price_at(crate::now()),
            None => model.offer.price(),
        }
    }

    /// The offer a request is billed by: the price it names, if that is not below the floor.
    fn priced(&self, model: &ServedModel, price: TokenPrice) -> Result<ModelOffer, ApiError> {
        let floor = self.floor(model);
        if !floor.within(&price) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "price_changed",
                format!(
                    "this offer's price is {} per million input and {} per million output tokens; the request offers {} and {}",
                    floor.input_per_m, floor.output_per_m, price.input_per_m, price.output_per_m
                ),
            ));
        }
        Ok(model.offer.at_price(price))
    }

    /// Adds `delta` to what the channel owes; refuses (and adds nothing) past the deposit or the credit limit.
    fn charge(&self, channel: ChannelId, delta: Amount) -> Result<(), ApiError> {
        let mut tallies = self.tallies.lock();
        let tally = tallies
            .get_mut(&channel)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_channel", "unknown channel"))?;
        tally.tab.charge(delta, self.credit).map_err(|e| {
            let code = match e {
                ChargeError::Exhausted { .. } => "channel_exhausted",
                ChargeError::OverCredit { .. } => "payment_required",
            };
            ApiError::new(StatusCode::PAYMENT_REQUIRED, code, e.to_string())
        })
    }
}

fn inference(shared: &Shared) -> Result<&Inference, ApiError> {
    shared
        .inference
        .as_deref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_models", "this provider serves no models"))
}

/// Checks that the channel is open, to this provider, and the signer's; refreshes its deposit from the chain.
async fn open_channel(shared: &Shared, channel: ChannelId, signer: Address) -> Result<(), ApiError> {
    let inference = inference(shared)?;
    let known = inference.tallies.lock().get(&channel).map(|t| (t.client, t.checked_at.elapsed()));
    if let Some((client, _)) = known {
        if client != signer {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("channel {channel} is not yours"),
            ));
        }
    }
    if known.is_some_and(|(_, age)| age < CHANNEL_RECHECK) {
        return Ok(());
    }
    let on_chain: Channel = shared
        .chain
        .client
        .channel(channel)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable", e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "no_channel", format!("channel {channel} does not exist"))
        })?;
    if on_chain.provider != shared.address() || on_chain.client != signer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("channel {channel} is not yours with this provider"),
        ));
    }
    if on_chain.state != ChannelState::Open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "channel_closing",
            format!("channel {channel} is closing or closed"),
        ));
    }
    let mut tallies = inference.tallies.lock();
    let tally = tallies.entry(channel).or_insert(Tally {
        client: signer,
        tab: Tab::new(channel, on_chain.deposit, on_chain.redeemed),
        checked_at: std::time::Instant::now(),
    });
    tally.tab.deposit = on_chain.deposit;
    tally.checked_at = std::time::Instant::now();
    Ok(())
}

/// `GET /v1/inference/models`: what this provider serves, as offered.
pub async fn models(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<ModelOffer>>, ApiError> {
    Ok(Json(inference(&shared)?.models.iter().map(|m| m.offer.clone()).collect()))
}

/// `GET /v1/tokenizers/{hash}`: a served model's tokenizer file, which gateways fetch once by the hash its
/// offer names to count tokens themselves. Public, like the offers that name it.
pub async fn tokenizer(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<Hash>,
) -> Result<Response, ApiError> {
    let inference = inference(&shared)?;
    let model = inference.models.iter().find(|m| m.offer.tokenizer_hash == hash).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "tokenizer_not_found",
            format!("this provider serves no tokenizer {hash}"),
        )
    })?;
    let bytes = Bytes::copy_from_slice(model.codec().bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// `POST /v1/inference/{channel}/vouchers`.
pub async fn voucher(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<ChannelId>,
    signed: Signed,
) -> Result<Json<ChannelTally>, ApiError> {
    let voucher: Voucher = parse(&signed.body)?;
    if voucher.channel != channel {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_voucher",
            "the voucher is for another channel",
        ));
    }
    open_channel(&shared, channel, signed.signer).await?;
    let inference = inference(&shared)?;
    voucher.verify(&signed.signer, &inference.chain_id).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_voucher", format!("voucher signature: {e}"))
    })?;
    let mut tallies = inference.tallies.lock();
    let tally = tallies
        .get_mut(&channel)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_channel", "unknown channel"))?;
    tally
        .tab
        .accept(voucher)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_voucher", e.to_string()))?;
    Ok(Json(tally.tab.view(inference.credit)))
}

/// `GET /v1/inference/{channel}`: the tally, for the channel's client.
pub async fn tally(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<ChannelId>,
    signed: Signed,
) -> Result<Json<ChannelTally>, ApiError> {
    open_channel(&shared, channel, signed.signer).await?;
    let inference = inference(&shared)?;
    let tallies = inference.tallies.lock();
    let tally = tallies
        .get(&channel)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_channel", "unknown channel"))?;
    Ok(Json(tally.tab.view(inference.credit)))
}

/// `POST /v1/inference/{channel}/embeddings`.
pub async fn embeddings(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<ChannelId>,
    signed: Signed,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    // The channel is checked first: only its client gets the provider to parse a request.
    open_channel(&shared, channel, signed.signer).await?;
    let request: EmbeddingsRequest = parse(&signed.body)?;
    let inference = inference(&shared)?;
    let model = inference.model(&request.model)?.clone();
    let Engine::Embeddings(embedder) = model.engine.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "wrong_model_kind",
            "this model generates text; it does not embed",
        ));
    };
    if request.input.is_empty() || request.input.len() > 2048 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", "input takes 1 to 2048 texts"));
    }
    // Price the request before running it, so an unpayable one costs the provider nothing.
    let offer = inference.priced(&model, request.price)?;
    let tokens: u64 =
        embedder.count_tokens(&request.input).map_err(engine_error)?.iter().map(|&n| u64::from(n)).sum();
    let cost = offer.cost(tokens, 0).unwrap_or(Amount(u128::MAX));
    inference.charge(channel, cost)?;
    let input = request.input;
    let result = tokio::task::spawn_blocking(move || embedder.embed(&input))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            // Nothing was delivered: take the charge back.
            refund(inference, channel, cost);
            return Err(engine_error(e));
        }
    };
    let cumulative = inference.tallies.lock().get(&channel).map(|t| t.tab.owed).unwrap_or_default();
    Ok(Json(EmbeddingsResponse { vectors: out.vectors, prompt_tokens: out.prompt_tokens, cost, cumulative }))
}

fn refund(inference: &Inference, channel: ChannelId, amount: Amount) {
    if let Some(t) = inference.tallies.lock().get_mut(&channel) {
        t.tab.refund(amount);
    }
}

/// `POST /v1/inference/{channel}/generate`: a stream of newline-delimited [`InferenceEvent`]s.
pub async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<ChannelId>,
    signed: Signed,
) -> Result<Response, ApiError> {
    // The channel is checked first: only its client gets the provider to parse a request.
    open_channel(&shared, channel, signed.signer).await?;
    let request: GenerateRequest = parse(&signed.body)?;
    let inference = inference(&shared)?;
    let model = inference.model(&request.model)?.clone();
    let Engine::Llm(engine) = model.engine.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "wrong_model_kind",
            "this model embeds; it does not generate text",
        ));
    };
    let offer = inference.priced(&model, request.price)?;
    // The same count the paying gateway makes with the tokenizer file this offer names.
    let prompt = engine.codec().prompt_ids(&request.prompt).map_err(text_error)?;
    let context = engine.info().context_length as usize;
    let s = &request.sampling;
    if prompt.len() + s.max_tokens as usize > context {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            format!(
                "this model's maximum context length is {context} tokens; the prompt has {} and max_tokens asks for {}",
                prompt.len(),
                s.max_tokens
            ),
        ));
    }
    let params = SamplingParams {
        max_tokens: s.max_tokens,
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k.map(|k| k as usize),
        stop: s.stop.clone(),
        seed: s.seed,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
    };
    let prompt_tokens = prompt.len() as u64;
    // Reading the prompt is charged up front: it is the first thing computed.
    let cost_of = move |completion: u64| offer.cost(prompt_tokens, completion).unwrap_or(Amount(u128::MAX));
    inference.charge(channel, cost_of(0))?;
    let generation = match engine.generate(tensorgrid_engine_llm::GenerateRequest {
        prompt,
        params,
        hidden_states: false,
        commit: false,
    }) {
        Ok(g) => g,
        Err(e) => {
            refund(inference, channel, cost_of(0));
            return Err(engine_error(e));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let shared = shared.clone();
    tokio::spawn(async move {
        let Some(inference) = shared.inference.as_deref() else { return };
        stream(inference, channel, generation, &cost_of, tx).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Pumps engine events into the response, charging the channel token by token.
async fn stream(
    inference: &Inference,
    channel: ChannelId,
    mut generation: tensorgrid_engine_llm::Generation,
    cost_of: &(dyn Fn(u64) -> Amount + Send + Sync),
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let prompt_tokens = generation.prompt_tokens;
    let line = |event: &InferenceEvent| -> Bytes {
        let mut bytes = serde_json::to_vec(event).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    };
    let cumulative = || inference.tallies.lock().get(&channel).map(|t| t.tab.owed).unwrap_or_default();
    if tx.send(Ok(line(&InferenceEvent::Started { prompt_tokens }))).await.is_err() {
        return;
    }
    let mut completion = 0u64;
    while let Some(event) = generation.next().await {
        match event {
            Event::Token { id, text, .. } => {
                // Charge before sending: a token is delivered only once the channel can pay for it.
                if let Err(e) =
                    inference.charge(channel, cost_of(completion + 1).saturating_sub(cost_of(completion)))
                {
                    let _ = tx
                        .send(Ok(line(&InferenceEvent::Error {
                            code: e.code().into(),
                            message: e.message().into(),
                        })))
                        .await;
                    return;
                }
                completion += 1;
                if tx.send(Ok(line(&InferenceEvent::Delta { ids: vec![id], text }))).await.is_err() {
                    // The client went away; dropping the generation cancels it in the engine.
                    return;
                }
                if completion % u64::from(INVOICE_EVERY_TOKENS) == 0 {
                    let invoice = InferenceEvent::Invoice {
                        prompt_tokens,
                        completion_tokens: completion as u32,
                        cost: cost_of(completion),
                        cumulative: cumulative(),
                    };
                    if tx.send(Ok(line(&invoice))).await.is_err() {
                        return;
                    }
                }
            }
            Event::Done { reason, .. } => {
                let done = InferenceEvent::Done {
                    finish_reason: match reason {
                        EngineFinish::Stop => FinishReason::Stop,
                        EngineFinish::Length => FinishReason::Length,
                    },
                    prompt_tokens,
                    completion_tokens: completion as u32,
                    cost: cost_of(completion),
                    cumulative: cumulative(),
                };
                let _ = tx.send(Ok(line(&done))).await;
                return;
            }
            Event::Failed(message) => {
                let _ =
                    tx.send(Ok(line(&InferenceEvent::Error { code: "engine_failed".into(), message }))).await;
                return;
            }
            // Only `Engine::replay` is answered with a replay.
            Event::Replayed(_) => {}
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("body: {e}")))
}

fn text_error(e: TokenizerError) -> ApiError {
    match e {
        TokenizerError::EmptyPrompt => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_prompt", "the prompt is empty")
        }
        TokenizerError::ChatTemplate(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_prompt", format!("chat template: {m}"))
        }
        TokenizerError::NoChatTemplate => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_prompt", e.to_string())
        }
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine_failed", other.to_string()),
    }
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Text(e) => text_error(e),
        EngineError::ContextExceeded { tokens, limit } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            format!("this model's maximum context length is {limit} tokens; the request has {tokens}"),
        ),
        EngineError::BadParameter(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", m),
        EngineError::EmptyPrompt => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_prompt", "the prompt is empty")
        }
        EngineError::ChatTemplate(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_prompt", format!("chat template: {m}"))
        }
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine_failed", other.to_string()),
    }
}

/// Announces an offer for every served model whose offer on chain differs (or is missing).
pub async fn announce(shared: &Shared) -> Result<(), ProviderError> {
    let Some(inference) = shared.inference.as_deref() else { return Ok(()) };
    let me = shared.address();
    for model in &inference.models {
        let mine = |items: Vec<ListedOffer>| items.into_iter().find(|l| l.provider == me);
        let hash = Some(model.offer.model_hash);
        let listed = mine(shared.chain.client.model_offers(hash, Default::default()).await?.items);
        // Listed as configured, a rise still under notice counting as announced.
        let announced = listed
            .as_ref()
            .is_some_and(|l| l.offer.at_price(l.pending.map_or(l.offer.price(), |p| p.price)) == model.offer);
        let listed = if announced {
            listed
        } else {
            shared.chain.execute(Msg::AnnounceModel { offer: model.offer.clone() }).await?;
            info!(model = %model.offer.name, "model offer announced");
            mine(shared.chain.client.model_offers(hash, Default::default()).await?.items)
        };
        if let Some(listed) = listed {
            if let Some(p) = listed.pending {
                info!(model = %model.offer.name, effective_at = %p.effective_at, "a price rise waits out its notice");
            }
            inference.listed.lock().insert(model.offer.model_hash, listed);
        }
    }
    Ok(())
}

/// Redeems the best voucher of every channel that has one beyond what was redeemed, every `interval`.
pub async fn redemptions(shared: Arc<Shared>, interval: Duration) {
    let Some(inference) = shared.inference.as_deref() else { return };
    loop {
        tokio::time::sleep(interval).await;
        let due: Vec<Voucher> = inference
            .tallies
            .lock()
            .values()
            .filter_map(|t| t.tab.best.filter(|v| v.cumulative > t.tab.redeemed))
            .collect();
        for voucher in due {
            match shared.chain.execute(Msg::RedeemVoucher { voucher }).await {
                Ok(_) => {
                    if let Some(t) = inference.tallies.lock().get_mut(&voucher.channel) {
                        t.tab.redeemed = t.tab.redeemed.max(voucher.cumulative);
                    }
                    info!(channel = voucher.channel, amount = %voucher.cumulative, "voucher redeemed");
                }
                Err(e) => warn!(channel = voucher.channel, error = %e, "redeeming a voucher failed"),
            }
        }
    }
}
