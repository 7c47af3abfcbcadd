//! The node's HTTP JSON API.
//!
//! - `POST /v1/tx` with `{"tx": "<hex of the encoded signed transaction>", "wait": false}` → `{"hash": "…"}`
//!   once admitted to the mempool; with `"wait": true`, answers once the transaction is committed, with its
//!   record (height, index, receipt), or 504 after [`WAIT_LIMIT`] with the hash to look up later.
//! - `GET /v1/tx/{hash}` → where a committed transaction landed and its receipt; 404 until it commits.
//! - `POST /v1/query` with a [`Query`] as JSON → its [`QueryResponse`] (accounts, providers, deployments,
//!   orders, bids, leases, jobs, …).
//! - `GET /v1/blocks/latest`, `GET /v1/blocks/{height}` → the block's record.
//! - `GET /v1/accounts/{address}/txs?limit=50&after=<cursor>` → `{"items": [tx records], "next": cursor}`:
//!   the transactions the account signed or that named it, newest first, paged like queries.
//! - `GET /v1/status` → chain id, height, time, mempool size, and what the node adds (consensus, version).
//! - `GET /v1/events?kind=transfer,lease_created&account=tg1…` → a server-sent event stream, one `block`
//!   event per committed block carrying the events that pass the filters.
//! - `GET /metrics` → Prometheus text.
//!
//! Every error is JSON: `{"error": {"code": "…", "message": "…", "details": …}}` with the HTTP status saying
//! whose fault it is (400 malformed or refused, 404 unknown, 409 conflict, 413 too large, 503 full: try
//! later, 504 not committed in time, 500 ours). Bodies are read with an explicit limit so an oversized
//! request gets that JSON error too.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::{json, Value};
use tensorgrid_ledger::{QueryError, Store};
use tensorgrid_types::query::{Query, QueryResponse};
use tensorgrid_types::{BlockRecord, Event, Hash, Timestamp, TxError, TxRecord};
use tokio::sync::mpsc;

use crate::core::{NodeCore, SubmitError};
use crate::mempool::MempoolError;
use crate::ReadError;

/// Blocks an event subscriber may fall behind before it is dropped (it reconnects with `from=` and misses
/// nothing).
pub const EVENT_BUFFER: usize = 128;

/// What the API lets one client do: requests per second per IP address (bursts of twice that; 0 is no
/// limit), and event streams open at once over all clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    pub requests_per_sec: u32,
    pub max_subscribers: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits { requests_per_sec: 1_000, max_subscribers: 1_024 }
    }
}

type IpLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

/// The API's shared guards: the per-address rate limiter and the count of open event streams.
struct Guards {
    limiter: Option<IpLimiter>,
    rate: u32,
    subscribers: std::sync::atomic::AtomicUsize,
    max_subscribers: usize,
}

/// An open event stream's place among the subscribers, given back when the stream is dropped.
struct Slot(Arc<Guards>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Guards {
    fn limiter_rate(&self) -> u32 {
        self.rate
    }

    fn take_slot(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.subscribers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slot = Slot(self.clone());
        (taken < self.max_subscribers).then_some(slot)
    }
}

/// Refuses a client past its rate before anything else is done for it (429 with `retry-after`).
async fn rate_limit(
    axum::extract::Extension(guards): axum::extract::Extension<Arc<Guards>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer =
        request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let (Some(limiter), Some(ip)) = (&guards.limiter, peer) {
        if limiter.len() > 100_000 {
            // Addresses that have been quiet for a while are forgotten, so the table stays bounded.
            limiter.retain_recent();
        }
        if let Err(not_until) = limiter.check_key(&ip) {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than this node's {} requests per second from {ip}; slow down",
                    guards.limiter_rate()
                ),
            );
            error.details = json!({ "retry_after_ms": wait.as_millis() as u64 });
            let mut response = error.into_response();
            if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    next.run(request).await
}

/// How long `POST /v1/tx` with `"wait": true` waits for the commit.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A committed block's height, time and events, as the event stream carries them.
#[derive(Clone, Debug)]
pub struct BlockEvents {
    pub height: u64,
    pub time: Timestamp,
    pub events: Vec<Event>,
}

/// What a node offers the API. The in-process [`NodeCore`] (behind a mutex) implements the basics; a
/// validator adds blocks, the transaction index, the event stream and metrics.
pub trait NodeApi: Send + Sync + 'static {
    /// Admits a transaction to the mempool (and, on a validator, gossips it).
    fn submit(&self, raw: Vec<u8>) -> Result<Hash, SubmitError>;
    fn query(&self, query: &Query) -> Result<QueryResponse, QueryError>;
    /// The status document: at least `chain` and the mempool size.
    fn status(&self) -> Result<Value, ReadError>;
    /// A committed transaction's record.
    fn tx(&self, _hash: &Hash) -> Result<Option<TxRecord>, ReadError> {
        Ok(None)
    }
    /// Up to `limit` of an account's committed transactions, newest first, strictly before `before`
    /// (`(height, position)`); `None` if this node keeps no account index.
    fn account_txs(
        &self,
        _account: &tensorgrid_types::Address,
        _before: Option<(u64, u32)>,
        _limit: usize,
    ) -> Result<Option<Vec<TxRecord>>, ReadError> {
        Ok(None)
    }
    /// A committed block's record; `None` asks for the latest.
    fn block(&self, _height: Option<u64>) -> Result<Option<BlockRecord>, ReadError> {
        Ok(None)
    }
    /// Every block committed from now on, or `None` if this node has no stream. The channel is bounded
    /// ([`EVENT_BUFFER`] blocks): a subscriber that falls that far behind is dropped (its stream ends and it
    /// reconnects), so a stalled reader never makes the node buffer without limit.
    fn subscribe(&self) -> Option<mpsc::Receiver<BlockEvents>> {
        None
    }
    /// The committed height as it changes, or `None` if this node cannot say (then `wait` polls).
    fn committed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Prometheus text exposition.
    fn metrics(&self) -> String {
        String::new()
    }
}

impl<S: Store + Send + 'static> NodeApi for Mutex<NodeCore<S>> {
    fn submit(&self, raw: Vec<u8>) -> Result<Hash, SubmitError> {
        crate::mempool::verify_signature(&raw)?;
        self.lock().map_err(|_| SubmitError::Poisoned)?.submit_verified(raw, crate::wall_clock())
    }

    fn query(&self, query: &Query) -> Result<QueryResponse, QueryError> {
        match self.lock() {
            Ok(node) => node.query(query),
            Err(_) => Err(QueryError::Ledger(tensorgrid_ledger::LedgerError::Invariant {
                what: "the node's state lock is poisoned".into(),
            })),
        }
    }

    fn status(&self) -> Result<Value, ReadError> {
        let node = self.lock().map_err(|_| ReadError::Poisoned)?;
        let status = node.status()?;
        serde_json::to_value(status).map_err(|e| ReadError::Encode(e.to_string()))
    }
}

/// Largest request body: a maximum-size transaction as hex, with room for the JSON around it.
pub const MAX_BODY_BYTES: usize = 2 * 64 * 1024 + 1024;

/// An in-process node shared between request handlers.
pub type Shared<S> = Arc<Mutex<NodeCore<S>>>;

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into(), details: Value::Null }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "code": self.code, "message": self.message, "details": self.details } });
        (self.status, Json(body)).into_response()
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> ApiError {
        let details = serde_json::to_value(&e).unwrap_or(Value::Null);
        let code = details.get("code").and_then(Value::as_str).unwrap_or("rejected").to_string();
        ApiError { status: StatusCode::BAD_REQUEST, code, message: e.to_string(), details }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Mempool(MempoolError::Rejected(e)) => e.into(),
            SubmitError::Mempool(e @ MempoolError::Full { .. }) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "mempool_full", e.to_string())
            }
            SubmitError::Mempool(
                e @ (MempoolError::AlreadyKnown { .. } | MempoolError::NonceTaken { .. }),
            ) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            SubmitError::Mempool(e @ MempoolError::TooFarAhead { .. }) => {
                ApiError::new(StatusCode::BAD_REQUEST, "nonce_too_far_ahead", e.to_string())
            }
            SubmitError::Mempool(e @ MempoolError::Unfunded { .. }) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unfunded", e.to_string())
            }
            SubmitError::Ledger(e) => internal(e),
            SubmitError::Poisoned => internal(e),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`].
async fn json_body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, ApiError> {
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not valid JSON for this endpoint: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct SubmitBody {
    /// Hex of the encoded `SignedTx`.
    tx: String,
    /// Answer once the transaction is committed instead of once it is admitted.
    #[serde(default)]
    wait: bool,
}

async fn submit<A: NodeApi>(State(node): State<Arc<A>>, body: Body) -> Result<Response, ApiError> {
    let request: SubmitBody = json_body(body).await?;
    let raw = hex::decode(request.tx.trim()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`tx` must be the hex of an encoded transaction",
        )
    })?;
    let hash = node.submit(raw)?;
    if !request.wait {
        return Ok(Json(json!({ "hash": hash })).into_response());
    }
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    // Woken by each commit rather than polling, where the node can say when one happens.
    let mut commits = node.committed();
    loop {
        if let Some(record) = node.tx(&hash).map_err(internal)? {
            return Ok(Json(json!({ "hash": hash, "committed": record })).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            let mut error = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "not_committed_yet",
                format!(
                    "the transaction was admitted but not committed within {} s; look it up later with GET \
                     /v1/tx/{hash}",
                    WAIT_LIMIT.as_secs()
                ),
            );
            error.details = json!({ "hash": hash });
            return Err(error);
        }
        match commits.as_mut() {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout_at(deadline, rx.changed()).await {
                    commits = None;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    text.parse::<Hash>().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{text}` is not a 64-digit hex hash"))
    })
}

async fn get_tx<A: NodeApi>(
    State(node): State<Arc<A>>,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hash = parse_hash(&hash)?;
    match node.tx(&hash).map_err(internal)? {
        Some(record) => serde_json::to_value(record).map(Json).map_err(internal),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_transaction",
            format!("no committed transaction {hash} (it may still be in a mempool)"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryPage {
    #[serde(default)]
    limit: u32,
    after: Option<String>,
}

async fn account_txs<A: NodeApi>(
    State(node): State<Arc<A>>,
    Path(address): Path<String>,
    UrlQuery(page): UrlQuery<HistoryPage>,
) -> Result<Json<Value>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    let account: tensorgrid_types::Address = address.parse().map_err(|e| bad(format!("`{address}`: {e}")))?;
    let before = match &page.after {
        None => None,
        Some(cursor) => Some(
            cursor
                .split_once('.')
                .and_then(|(h, i)| Some((h.parse::<u64>().ok()?, i.parse::<u32>().ok()?)))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_cursor",
                        format!("`{cursor}` is not a cursor this API handed out (height.position)"),
                    )
                })?,
        ),
    };
    let limit = tensorgrid_types::query::Page { after: None, limit: page.limit }.effective_limit();
    let Some(items) = node.account_txs(&account, before, limit).map_err(internal)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_index",
            "this node keeps no account history; ask a validator's API",
        ));
    };
    let next =
        (items.len() == limit).then(|| items.last().map(|r| format!("{}.{}", r.height, r.index))).flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn get_block<A: NodeApi>(
    State(node): State<Arc<A>>,
    Path(which): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let height = match which.as_str() {
        "latest" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`{text}` is not a height or `latest`"),
            )
        })?),
    };
    match node.block(height).map_err(internal)? {
        Some(record) => serde_json::to_value(record).map(Json).map_err(internal),
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_block", format!("no committed block {which}")))
        }
    }
}

async fn query<A: NodeApi>(State(node): State<Arc<A>>, body: Body) -> Result<Json<Value>, ApiError> {
    let request: Query = json_body(body).await?;
    let answer = node.query(&request).map_err(|e| match e {
        QueryError::BadCursor(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string()),
        other => internal(other),
    })?;
    serde_json::to_value(answer).map(Json).map_err(internal)
}

async fn status<A: NodeApi>(State(node): State<Arc<A>>) -> Result<Json<Value>, ApiError> {
    node.status().map(Json).map_err(internal)
}

async fn metrics<A: NodeApi>(State(node): State<Arc<A>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics()).into_response()
}

#[derive(Deserialize)]
struct EventFilter {
    /// Comma-separated event kinds (`transfer`, `lease_created`, …); all when absent.
    kind: Option<String>,
    /// Only events that name this address.
    account: Option<String>,
    /// Replay committed blocks from this height before the live ones, so a subscriber that reconnects
    /// misses nothing (at most [`MAX_REPLAY`] blocks back).
    from: Option<u64>,
}

/// The most blocks a subscription replays; older history is read from `/v1/blocks/{height}`.
pub const MAX_REPLAY: u64 = 10_000;

/// Whether `value` (an event as JSON) mentions `needle` anywhere.
fn mentions(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s == needle,
        Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        Value::Object(map) => map.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

async fn events<A: NodeApi>(
    State(node): State<Arc<A>>,
    axum::extract::Extension(guards): axum::extract::Extension<Arc<Guards>>,
    UrlQuery(filter): UrlQuery<EventFilter>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let slot = guards.take_slot().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("this node serves {} event streams at once; try again later", guards.max_subscribers),
        )
    })?;
    let kinds: Option<Vec<String>> =
        filter.kind.map(|k| k.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    if let Some(account) = &filter.account {
        account
            .parse::<tensorgrid_types::Address>()
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`account`: {e}")))?;
    }
    // Subscribe before reading the replay, so no block falls between the two; the live stream then skips
    // what the replay already carried.
    let Some(rx) = node.subscribe() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_event_stream", "this node has no event stream"));
    };
    let replay = match filter.from {
        None => Vec::new(),
        Some(from) => {
            let latest = node.block(None).map_err(internal)?.map(|b| b.height).unwrap_or(0);
            if latest.saturating_sub(from) > MAX_REPLAY {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "too_far_back",
                    format!(
                        "`from` {from} is more than {MAX_REPLAY} blocks behind {latest}; read older blocks from \
                         /v1/blocks/{{height}}"
                    ),
                ));
            }
            let mut replay = Vec::new();
            for height in from.max(1)..=latest {
                if let Some(b) = node.block(Some(height)).map_err(internal)? {
                    replay.push(BlockEvents { height: b.height, time: b.time, events: b.events });
                }
            }
            replay
        }
    };
    let replayed_to = replay.last().map(|b| b.height).unwrap_or(0);
    let account = filter.account;
    let frame = move |block: &BlockEvents| -> Result<SseEvent, Infallible> {
        let events: Vec<Value> = block
            .events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .filter(|v| {
                kinds
                    .as_ref()
                    .is_none_or(|ks| ks.iter().any(|k| v.get("kind").and_then(Value::as_str) == Some(k)))
            })
            .filter(|v| account.as_ref().is_none_or(|a| mentions(v, a)))
            .collect();
        let data = json!({ "height": block.height, "time": block.time, "events": events });
        Ok(SseEvent::default().event("block").data(data.to_string()))
    };
    let live_frame = frame.clone();
    let live = stream::unfold((rx, slot), move |(mut rx, slot)| async move {
        loop {
            let block = rx.recv().await?;
            if block.height > replayed_to {
                return Some((block, (rx, slot)));
            }
        }
    })
    .map(move |block| live_frame(&block));
    let replayed = stream::iter(replay.into_iter().map(move |block| frame(&block)));
    Ok(Sse::new(replayed.chain(live)).keep_alive(KeepAlive::default()))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /v1/status, /v1/tx, /v1/tx/{hash}, /v1/query, /v1/blocks/{height|latest}, \
         /v1/events, /metrics",
    )
}

/// The API over a node, with the default [`ApiLimits`].
pub fn router<A: NodeApi>(node: Arc<A>) -> Router {
    router_with(node, ApiLimits::default())
}

/// The API over a node. The rate limit needs the peer's address: serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (without, no client is rate limited).
pub fn router_with<A: NodeApi>(node: Arc<A>, limits: ApiLimits) -> Router {
    let limiter = std::num::NonZeroU32::new(limits.requests_per_sec).map(|rate| {
        let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
        governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
    });
    let guards = Arc::new(Guards {
        limiter,
        rate: limits.requests_per_sec,
        subscribers: std::sync::atomic::AtomicUsize::new(0),
        max_subscribers: limits.max_subscribers,
    });
    Router::new()
        .route("/v1/tx", post(submit::<A>))
        .route("/v1/tx/{hash}", get(get_tx::<A>))
        .route("/v1/query", post(query::<A>))
        .route("/v1/blocks/{which}", get(get_block::<A>))
        .route("/v1/accounts/{address}/txs", get(account_txs::<A>))
        .route("/v1/status", get(status::<A>))
        .route("/v1/events", get(events::<A>))
        .route("/metrics", get(metrics::<A>))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(rate_limit))
        .layer(axum::Extension(guards))
        .with_state(node)
}
