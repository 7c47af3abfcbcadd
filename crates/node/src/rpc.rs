//! The node's HTTP JSON API.
//!
//! - `POST /v1/tx` with `{"tx": "<hex of the encoded signed transaction>"}` → `{"hash": "…"}` once admitted to
//!   the mempool.
//! - `POST /v1/query` with a [`Query`] as JSON → its [`QueryResponse`].
//! - `GET /v1/status` → chain id, height, time and mempool size.
//!
//! Every error is JSON: `{"error": {"code": "…", "message": "…", "details": …}}` with the HTTP status saying
//! whose fault it is (400 malformed or refused, 409 conflict, 413 too large, 503 full: try later, 500 ours).
//! Bodies are read with an explicit limit so an oversized request gets that JSON error too.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tensorgrid_ledger::Store;
use tensorgrid_types::query::Query;
use tensorgrid_types::{Timestamp, TxError};

use crate::core::{NodeCore, SubmitError};
use crate::mempool::MempoolError;

/// Largest request body: a maximum-size transaction as hex, with room for the JSON around it.
pub const MAX_BODY_BYTES: usize = 2 * 64 * 1024 + 1024;

/// The node shared between request handlers.
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
            SubmitError::Ledger(e) => internal(e),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn lock<S: Store>(node: &Shared<S>) -> Result<std::sync::MutexGuard<'_, NodeCore<S>>, ApiError> {
    node.lock().map_err(|_| internal("the node's state lock is poisoned"))
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

fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[derive(Deserialize)]
struct SubmitBody {
    /// Hex of the encoded `SignedTx`.
    tx: String,
}

async fn submit<S: Store>(State(node): State<Shared<S>>, body: Body) -> Result<Json<Value>, ApiError> {
    let request: SubmitBody = json_body(body).await?;
    let raw = hex::decode(request.tx.trim()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`tx` must be the hex of an encoded transaction",
        )
    })?;
    let hash = lock(&node)?.submit(raw, now())?;
    Ok(Json(json!({ "hash": hash })))
}

async fn query<S: Store>(State(node): State<Shared<S>>, body: Body) -> Result<Json<Value>, ApiError> {
    let request: Query = json_body(body).await?;
    let answer = lock(&node)?.query(&request).map_err(|e| match e {
        tensorgrid_ledger::QueryError::BadCursor(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
        }
        other => internal(other),
    })?;
    serde_json::to_value(answer).map(Json).map_err(internal)
}

async fn status<S: Store>(State(node): State<Shared<S>>) -> Result<Json<Value>, ApiError> {
    let status = lock(&node)?.status().map_err(internal)?;
    serde_json::to_value(status).map(Json).map_err(internal)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /v1/status, /v1/tx, /v1/query")
}

/// The API over a shared node.
pub fn router<S: Store + Send + 'static>(node: Shared<S>) -> Router {
    Router::new()
        .route("/v1/tx", post(submit::<S>))
        .route("/v1/query", post(query::<S>))
        .route("/v1/status", get(status::<S>))
        .fallback(not_found)
        .with_state(node)
}
