//! The provider API's shared vocabulary: its error (JSON with a code and a message) and the signed-request
//! extractor every handler but the public ones takes (signature, freshness and replay checked before a
//! handler runs). The job and lease handlers (`api`) and the inference handlers (`inference`) both build on
//! it, and neither on the other.

use std::collections::{BTreeSet, HashMap, HashSet};
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
        // Who sent it, checked from the headers alone: nobody gets the provider to read (or buffer) a body
        // without a valid signature, a fresh nonce and room in their rate.
        let auth = authenticate(shared, &parts.method, &parts.uri, &parts.headers)?;
        let limit = usize::try_from(shared.config.limits.max_upload_bytes).unwrap_or(usize::MAX);
        let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body exceeds {limit} bytes"),
            )
        })?;
        auth.check_body(&body)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()))?;
        Ok(Signed { signer: auth.signer, body })
    }
}

/// Checks a request's headers: signature (over the signed body hash), freshness, nonce and the signer's rate.
fn authenticate(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<RequestAuth, ApiError> {
    let unauthorized = |e: AuthError| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
    let auth = RequestAuth::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map_err(unauthorized)?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let now = crate::now().millis();
    // Bound to this provider's registered address: a request signed for another provider is refused here.
    auth.verify_headers(&shared.config.host_uri, method.as_str(), path, now).map_err(unauthorized)?;
    shared.guard.lock().admit(auth.signer, auth.nonce, auth.timestamp_ms, now).map_err(|refusal| {
        match refusal {
            Refusal::Replayed => unauthorized(AuthError::Replayed),
            Refusal::RateLimited => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests a second from {}",
                    shared.config.limits.requests_per_sec, auth.signer
                ),
            ),
            Refusal::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the provider is tracking too many requests",
            ),
        }
    })?;
    Ok(auth)
}

/// Why a request with a valid signature was still refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Replayed,
    RateLimited,
    /// The memory of nonces or signers is full (a flood of fresh keys): refused until it drains.
    Busy,
}

/// The most nonces remembered at once (each for about two minutes).
pub const MAX_NONCES: usize = 500_000;
/// The most signers whose rate is tracked at once.
pub const MAX_SIGNERS: usize = 100_000;

/// What the API remembers about requests, bounded: nonces until they could no longer pass the freshness check
/// (in expiry order, so forgetting is cheap), and each signer's token bucket.
#[derive(Debug)]
pub struct RequestGuard {
    expiring: BTreeSet<(u64, [u8; 16])>,
    seen: HashSet<[u8; 16]>,
    buckets: HashMap<Address, (f64, u64)>,
    per_sec: f64,
}

impl RequestGuard {
    /// `per_sec` requests a second per signer, with bursts of twice that.
    pub fn new(per_sec: u32) -> RequestGuard {
        RequestGuard {
            expiring: BTreeSet::new(),
            seen: HashSet::new(),
            buckets: HashMap::new(),
            per_sec: f64::from(per_sec.max(1)),
        }
    }

    /// Admits a request whose headers checked out: not a replay, within its signer's rate, and room to
    /// remember it.
    pub fn admit(
        &mut self,
        signer: Address,
        nonce: [u8; 16],
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        while let Some(&(forget_at, old)) = self.expiring.first() {
            if forget_at > now_ms {
                break;
            }
            self.expiring.pop_first();
            self.seen.remove(&old);
        }
        if self.seen.contains(&nonce) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(Refusal::Busy);
        }
        if !self.buckets.contains_key(&signer) && self.buckets.len() >= MAX_SIGNERS {
            // Forget signers idle long enough for their bucket to have refilled (a burst is two seconds' worth).
            let idle = 2_000;
            self.buckets.retain(|_, (_, last)| now_ms.saturating_sub(*last) < idle);
            if self.buckets.len() >= MAX_SIGNERS {
                return Err(Refusal::Busy);
            }
        }
        let burst = 2.0 * self.per_sec;
        let (tokens, last) = self.buckets.entry(signer).or_insert((burst, now_ms));
        let refilled = (*tokens + now_ms.saturating_sub(*last) as f64 / 1_000.0 * self.per_sec).min(burst);
        *last = now_ms;
        if refilled < 1.0 {
            *tokens = refilled;
            return Err(Refusal::RateLimited);
        }
        *tokens = refilled - 1.0;
        // A nonce must be remembered as long as its timestamp could still pass the freshness check.
        self.expiring.insert((timestamp_ms.saturating_add(MAX_SKEW_MS).saturating_add(1), nonce));
        self.seen.insert(nonce);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tensorgrid_types::SecretKey;

    use super::*;

    #[test]
    fn nonces_are_refused_twice_forgotten_after_their_window_and_each_signer_keeps_to_its_rate() {
        let mut guard = RequestGuard::new(10);
        let (alice, bob) = (SecretKey::from_label("alice").address(), SecretKey::from_label("bob").address());
        assert_eq!(guard.admit(alice, [1; 16], 1_000, 1_000), Ok(()));
        assert_eq!(guard.admit(alice, [1; 16], 1_000, 1_001), Err(Refusal::Replayed));
        // A burst of twice the rate, then refusals, while another signer is unaffected.
        for n in 2..=20u8 {
            assert_eq!(guard.admit(alice, [n; 16], 1_000, 1_002), Ok(()), "request {n}");
        }
        assert_eq!(guard.admit(alice, [21; 16], 1_000, 1_002), Err(Refusal::RateLimited));
        assert_eq!(guard.admit(bob, [22; 16], 1_000, 1_002), Ok(()));
        // A tenth of a second later one more fits.
        assert_eq!(guard.admit(alice, [23; 16], 1_000, 1_102), Ok(()));
        // Past its window the first nonce is forgotten (its timestamp could no longer pass).
        let later = 1_000 + MAX_SKEW_MS + 1;
        assert_eq!(guard.admit(bob, [24; 16], later, later), Ok(()));
        assert!(!guard.seen.contains(&[1; 16]));
    }
}
