//! The provider API's wire model: how a tenant or job client proves who sends a request, and what the
//! endpoints take and return. The provider daemon serves it; the SDK's provider client calls it.
//!
//! Every request carries five headers: the signer's address, a timestamp (ms since the Unix epoch), a random
//! 16-byte nonce, the blake3 of the body and an ed25519 signature over [`signing_bytes`] (the provider's API
//! address as registered on chain, method, path with query, timestamp, nonce and that body hash). Naming
//! the provider's address binds a request to the one provider it was sent to: no other provider accepts it. The address *is* the public key, so the provider verifies the
//! headers without a lookup and before it reads a byte of the body (which must then hash to what was signed),
//! then checks on chain that the signer owns the lease or job the path names. A provider refuses timestamps
//! more than [`MAX_SKEW_MS`] from its clock and remembers nonces for that long, so a captured request cannot
//! be replayed.

use serde::{Deserialize, Serialize};

use crate::crypto::{verify, Address, Hash, SecretKey, Signature, SignatureError};
use crate::job::JobId;
use crate::market::LeaseId;
use crate::time::Timestamp;

pub const HEADER_SIGNER: &str = "x-tgrid-signer";
pub const HEADER_TIMESTAMP: &str = "x-tgrid-timestamp";
pub const HEADER_NONCE: &str = "x-tgrid-nonce";
pub const HEADER_SIGNATURE: &str = "x-tgrid-signature";
pub const HEADER_BODY_HASH: &str = "x-tgrid-body-hash";

/// How far a request's timestamp may stray from the provider's clock, either way.
pub const MAX_SKEW_MS: u64 = 60_000;

/// The form of a provider's API address that requests are bound to: as registered (`host_uri`), without a
/// trailing slash, in lowercase.
pub fn audience_of(host_uri: &str) -> String {
    host_uri.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// What is signed: every part that gives a request its meaning, length-prefixed and hashed. `audience` is the
/// provider's [`audience_of`] its registered address.
pub fn signing_bytes(
    audience: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &[u8; 16],
    body_hash: &Hash,
) -> Hash {
    Hash::of_parts(&[
        b"tensorgrid/provider-api/v3",
        audience_of(audience).as_bytes(),
        method.as_bytes(),
        path_and_query.as_bytes(),
        &timestamp_ms.to_le_bytes(),
        nonce,
        body_hash.as_bytes(),
    ])
}

/// Why a request's authentication headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the request has no `{0}` header; requests must be signed (see the provider API's documentation)"
    )]
    Missing(&'static str),
    #[error("header `{header}`: {reason}")]
    Malformed { header: &'static str, reason: String },
    #[error(
        "the timestamp is {skew_ms} ms away from the provider's clock (at most {MAX_SKEW_MS} ms allowed)"
    )]
    Skewed { skew_ms: u64 },
    #[error("this nonce was already used: a request is accepted once")]
    Replayed,
    #[error("the body does not hash to the signed `{HEADER_BODY_HASH}`")]
    BodyMismatch,
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
}

/// A request's proof of origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestAuth {
    pub signer: Address,
    pub timestamp_ms: u64,
    pub nonce: [u8; 16],
    /// blake3 of the body, signed, so the headers can be checked before the body is read.
    pub body_hash: Hash,
    pub signature: Signature,
}

impl RequestAuth {
    /// Signs a request. The caller supplies the time and the nonce (this crate has no clock or randomness).
    pub fn sign(
        key: &SecretKey,
        audience: &str,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        nonce: [u8; 16],
        body: &[u8],
    ) -> RequestAuth {
        let body_hash = Hash::of(body);
        let message = signing_bytes(audience, method, path_and_query, timestamp_ms, &nonce, &body_hash);
        RequestAuth {
            signer: key.address(),
            timestamp_ms,
            nonce,
            body_hash,
            signature: key.sign(message.as_bytes()),
        }
    }

    /// Checks the signature over the headers (the body by its signed hash) and the timestamp against
    /// `now_ms`, without the body: what a server does before reading one. Replay protection (nonces seen
    /// before) is the server's, since it needs memory.
    pub fn verify_headers(
        &self,
        audience: &str,
        method: &str,
        path_and_query: &str,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let skew_ms = now_ms.abs_diff(self.timestamp_ms);
        if skew_ms > MAX_SKEW_MS {
            return Err(AuthError::Skewed { skew_ms });
        }
        let message =
            signing_bytes(audience, method, path_and_query, self.timestamp_ms, &self.nonce, &self.body_hash);
        Ok(verify(&self.signer, message.as_bytes(), &self.signature)?)
    }

    /// Whether `body` is the one that was signed.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        if Hash::of(body) == self.body_hash {
            Ok(())
        } else {
            Err(AuthError::BodyMismatch)
        }
    }

    /// The headers and the body together.
    pub fn verify(
        &self,
        audience: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), AuthError> {
        self.verify_headers(audience, method, path_and_query, now_ms)?;
        self.check_body(body)
    }

    /// The five headers, as (name, value).
    pub fn headers(&self) -> [(&'static str, String); 5] {
        [
            (HEADER_SIGNER, self.signer.to_string()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_NONCE, hex::encode(self.nonce)),
            (HEADER_BODY_HASH, self.body_hash.to_string()),
            (HEADER_SIGNATURE, hex::encode(self.signature.0)),
        ]
    }

    /// Reads the five headers through `get` (a header lookup by lowercase name).
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<RequestAuth, AuthError> {
        let header = |name: &'static str| get(name).ok_or(AuthError::Missing(name));
        let malformed = |header: &'static str, reason: String| AuthError::Malformed { header, reason };
        let signer =
            header(HEADER_SIGNER)?.parse::<Address>().map_err(|e| malformed(HEADER_SIGNER, e.to_string()))?;
        let timestamp_ms = header(HEADER_TIMESTAMP)?
            .parse::<u64>()
            .map_err(|_| malformed(HEADER_TIMESTAMP, "not milliseconds since the Unix epoch".into()))?;
        let mut nonce = [0u8; 16];
        hex::decode_to_slice(header(HEADER_NONCE)?, &mut nonce)
            .map_err(|_| malformed(HEADER_NONCE, "not 32 hex digits".into()))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(header(HEADER_SIGNATURE)?, &mut signature)
            .map_err(|_| malformed(HEADER_SIGNATURE, "not 128 hex digits".into()))?;
        let body_hash = header(HEADER_BODY_HASH)?
            .parse::<Hash>()
            .map_err(|_| malformed(HEADER_BODY_HASH, "not a 64-hex-digit blake3 hash".into()))?;
        Ok(RequestAuth { signer, timestamp_ms, nonce, body_hash, signature: Signature(signature) })
    }
}

/// `GET /v1/leases/{dseq}/{gseq}/status`: what runs for a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub lease: LeaseId,
    pub state: LeaseRunState,
    /// One entry per service in the manifest.
    pub services: Vec<ServiceStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseRunState {
    /// The lease exists on chain; the provider waits for its manifest until `deadline`.
    AwaitingManifest {
        deadline: Timestamp,
    },
    /// The manifest arrived and its workloads are being started.
    Starting,
    Running,
    /// A workload failed to start or stopped; `reason` says why.
    Failed {
        reason: String,
    },
    /// The lease closed and its workloads were removed.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Instances running out of those the manifest asks for.
    pub ready: u32,
    pub total: u32,
    /// Where each exposed port answers: `(container port, host:port)`.
    #[serde(default)]
    pub endpoints: Vec<(u16, String)>,
}

/// `GET /v1/jobs/{id}/status`: where the provider is with a job it was assigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: JobId,
    /// Content hashes the provider still waits for (the module and inputs the client must upload).
    pub missing: Vec<Hash>,
    pub state: JobRunState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobRunState {
    WaitingForContent,
    Running,
    /// Ran; the result hash is committed on chain and revealed when the reveal phase opens.
    Finished {
        result_hash: Hash,
        exit: crate::job::JobExit,
        fuel_used: u64,
    },
    /// Could not run (content never arrived, the runner failed); `reason` says why.
    Failed {
        reason: String,
    },
}

/// One output file of a finished job, as `GET /v1/jobs/{id}/outputs` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the job's output directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub hash: Hash,
}

/// `GET /v1/jobs/{id}/outputs`: everything the result hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutputs {
    pub job: JobId,
    pub result_hash: Hash,
    pub exit: crate::job::JobExit,
    /// Standard output and error, hex (they may be binary).
    pub stdout_hex: String,
    pub stderr_hex: String,
    pub files: Vec<OutputFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "https://provider.example.org:8443";

    #[test]
    fn a_signed_request_verifies_once_and_only_as_sent() {
        let key = SecretKey::from_label("tenant");
        let auth = RequestAuth::sign(&key, P, "PUT", "/v1/leases/7/1/x/manifest", 1_000_000, [7; 16], b"{}");
        let headers = auth.headers();
        let back = RequestAuth::from_headers(|name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
        })
        .unwrap();
        assert_eq!(back, auth);
        assert_eq!(back.verify(P, "PUT", "/v1/leases/7/1/x/manifest", b"{}", 1_030_000), Ok(()));
        // Anything changed breaks it: the body, the path, the method, the signed body hash.
        assert_eq!(
            back.verify(P, "PUT", "/v1/leases/7/1/x/manifest", b"{ }", 1_000_000),
            Err(AuthError::BodyMismatch)
        );
        let rehashed = RequestAuth { body_hash: Hash::of(b"{ }"), ..back };
        assert!(matches!(
            rehashed.verify(P, "PUT", "/v1/leases/7/1/x/manifest", b"{ }", 1_000_000),
            Err(AuthError::Signature(_))
        ));
        // Sent to another provider, it is refused there.
        assert!(matches!(
            back.verify("https://other.example.org", "PUT", "/v1/leases/7/1/x/manifest", b"{}", 1_000_000),
            Err(AuthError::Signature(_))
        ));
        assert_eq!(
            back.verify(
                "HTTPS://provider.example.org:8443/",
                "PUT",
                "/v1/leases/7/1/x/manifest",
                b"{}",
                1_000_000
            ),
            Ok(())
        );
        // The headers alone are checked without the body.
        assert_eq!(back.verify_headers(P, "PUT", "/v1/leases/7/1/x/manifest", 1_000_000), Ok(()));
        assert!(matches!(
            back.verify(P, "PUT", "/v1/leases/8/1/x/manifest", b"{}", 1_000_000),
            Err(AuthError::Signature(_))
        ));
        assert!(matches!(
            back.verify(P, "GET", "/v1/leases/7/1/x/manifest", b"{}", 1_000_000),
            Err(AuthError::Signature(_))
        ));
        assert_eq!(
            back.verify(P, "PUT", "/v1/leases/7/1/x/manifest", b"{}", 1_000_000 + MAX_SKEW_MS + 1),
            Err(AuthError::Skewed { skew_ms: MAX_SKEW_MS + 1 })
        );
        // Someone else's address with this signature fails too.
        let forged = RequestAuth { signer: SecretKey::from_label("mallory").address(), ..auth };
        assert!(forged.verify(P, "PUT", "/v1/leases/7/1/x/manifest", b"{}", 1_000_000).is_err());
        assert_eq!(RequestAuth::from_headers(|_| None), Err(AuthError::Missing(HEADER_SIGNER)));
    }
}
