//! The provider API's shared vocabulary: its error (JSON with a code and a message) and the signed-request
//! extractor every handler but the public ones takes (signature, freshness and replay checked before a
//! handler runs). The job and lease handlers (`api`) and the inference handlers (`inference`) both build on
//! it, and neither on the other.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tensorgrid_types::provider_api::{AuthError, RequestAuth, MAX_SKEW_MS};
use tensorgrid_types::Address;

use crate::Shared;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } })))
            .into_response()
    }
}

/// A request whose signature checked out: who signed it, and the body the signature covers.
#[derive(Debug)]
pub struct Signed {
    pub signer: Address,
    pub body: Bytes,
}

impl FromRequest<Arc<Shared>> for Signed {
    type Rejection = ApiError;

    async fn from_request(request: Request, shared: &Arc<Shared>) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(shared.config.limits.max_upload_bytes).unwrap_or(usize::MAX);
        let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body exceeds {limit} bytes"),
            )
        })?;
        let signer = authenticate(shared, &parts.method, &parts.uri, &parts.headers, &body)?;
        Ok(Signed { signer, body })
    }
}

/// Checks a request's signature, freshness and nonce; returns who signed it.
fn authenticate(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Address, ApiError> {
    let unauthorized = |e: AuthError| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
    let auth = RequestAuth::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map_err(unauthorized)?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let now = crate::now().millis();
    auth.verify(method.as_str(), path, body, now).map_err(unauthorized)?;
    let mut nonces = shared.nonces.lock();
    nonces.retain(|_, forget_at| *forget_at > now);
    if nonces.contains_key(&auth.nonce) {
        return Err(unauthorized(AuthError::Replayed));
    }
    // A nonce must be remembered as long as its timestamp could still pass the freshness check.
    nonces.insert(auth.nonce, auth.timestamp_ms.saturating_add(MAX_SKEW_MS).saturating_add(1));
    Ok(auth.signer)
}
