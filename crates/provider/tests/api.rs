//! The provider API's guard: unsigned, forged, stale and replayed requests are refused, someone else's
//! signature gets 403 and nothing, and uploads must be the job's own content.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use parking_lot::Mutex;
use tensorgrid_client::RpcClient;
use tensorgrid_provider::content::ContentStore;
use tensorgrid_provider::{Chain, ProviderConfig, Shared};
use tensorgrid_provider_core::Input;
use tensorgrid_types::job::{Job, JobSlot, JobSpec, JobState, SlotState, Workload, WorkloadKind};
use tensorgrid_types::provider_api::{JobRunState, RequestAuth};
use tensorgrid_types::resources::ResourceUnits;
use tensorgrid_types::{Address, Amount, Hash, SecretKey, Timestamp};
use tower::ServiceExt as _;

/// The provider's registered API address, which every request here is signed for.
const AUDIENCE: &str = "http://127.0.0.1:0";

fn shared(dir: &std::path::Path, client: &SecretKey, module: Hash) -> Arc<Shared> {
    let config = ProviderConfig {
        key: "provider".into(),
        // No node is needed: the job is already known to the provider, so nothing asks the chain.
        node: "http://127.0.0.1:9".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_uri: AUDIENCE.into(),
        stake: Amount::tgr(100),
        work_dir: dir.to_path_buf(),
        attributes: Default::default(),
        email: String::new(),
        website: String::new(),
        pricing: Default::default(),
        limits: Default::default(),
        models: Vec::new(),
        inference: Default::default(),
        referee: false,
    };
    let provider = SecretKey::from_label("provider");
    let core = tensorgrid_provider::core_for(&config, provider.address(), &[], false);
    let shared = Arc::new(Shared {
        inference: None,
        core: Mutex::new(core),
        chain: Chain::new(RpcClient::new(&config.node), provider.clone()),
        content: ContentStore::open(dir.join("content")).unwrap(),
        runners: vec![],
        lease_runner: None,
        guard: Mutex::new(tensorgrid_provider::http::RequestGuard::new(config.limits.requests_per_sec)),
        config,
    });
    // The core learns of job 7 the way it does from the chain: it reads the job and finds its own slot. The
    // effects it asks for (waiting for the upload) are not carried out here.
    let now = tensorgrid_provider::now();
    let job = assigned_job(7, client.address(), provider.address(), module, now);
    shared.core.lock().handle(now, Input::JobRead(7, Some(job)));
    assert_eq!(shared.job(7).map(|v| v.state), Some(JobRunState::WaitingForContent));
    shared
}

/// Job `id` of `client` whose only slot `provider` won and is waiting for `module`.
fn assigned_job(id: u64, client: Address, provider: Address, module: Hash, now: Timestamp) -> Job {
    Job {
        id,
        client,
        spec: JobSpec {
            workload: Workload {
                kind: WorkloadKind::Wasm,
                hash: module,
                runtime: "wasi-p1".into(),
                args: vec![],
            },
            inputs: vec![],
            resources: ResourceUnits::default(),
            max_fuel: 1_000,
            redundancy: 1,
            budget: Amount::tgr(1),
            bid_window_ms: 1_000,
            run_timeout_ms: 60_000,
            reveal_window_ms: 1_000,
            requirements: Default::default(),
        },
        state: JobState::Running,
        created_at: now,
        bid_deadline: now,
        reveal_deadline: None,
        challenge_deadline: None,
        slots: vec![JobSlot {
            provider,
            price: Amount(1),
            assigned_at: now,
            content_deadline: now.plus(120_000),
            commit_deadline: None,
            commitment: None,
            result: None,
            state: SlotState::AwaitingContent,
        }],
        live_bids: vec![],
        held: Amount::tgr(1),
        paid: Amount::ZERO,
        finished_at: None,
        storage_deposit: Amount::ZERO,
        audit_fee: Amount::ZERO,
        checks: Vec::new(),
        verdict: None,
    }
}

fn now_ms() -> u64 {
    tensorgrid_provider::now().millis()
}

fn signed(key: &SecretKey, method: &str, path: &str, body: &[u8], at: u64, nonce: u8) -> Request<Body> {
    let auth = RequestAuth::sign(key, AUDIENCE, method, path, at, [nonce; 16], body);
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in auth.headers() {
        request = request.header(name, value);
    }
    request.body(Body::from(body.to_vec())).unwrap()
}

async fn status_of(shared: &Arc<Shared>, request: Request<Body>) -> (StatusCode, String) {
    let response = tensorgrid_provider::api::router(shared.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn only_the_jobs_client_may_upload_and_never_twice_with_one_signature() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = SecretKey::from_label("tenant");
    let module = b"(module)".to_vec();
    let hash = Hash::of(&module);
    let shared = shared(dir.path(), &tenant, hash);
    let path = format!("/v1/jobs/7/content/{hash}");

    let unsigned = Request::builder().method("PUT").uri(&path).body(Body::from(module.clone())).unwrap();
    let (status, body) = status_of(&shared, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("x-tgrid-signer"), "{body}");

    let mallory = SecretKey::from_label("mallory");
    let (status, body) = status_of(&shared, signed(&mallory, "PUT", &path, &module, now_ms(), 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains(&hash.to_string()), "a stranger learns nothing about the job: {body}");
    assert!(!shared.content.has(&hash));

    // A signature over other bytes than those sent is no signature.
    let mut tampered = signed(&tenant, "PUT", &path, &module, now_ms(), 2);
    *tampered.body_mut() = Body::from(b"(module $evil)".to_vec());
    assert_eq!(status_of(&shared, tampered).await.0, StatusCode::UNAUTHORIZED);

    // A request the tenant signed for another provider (which that one could replay here) is refused.
    let auth = RequestAuth::sign(
        &tenant,
        "https://another-provider.example.org",
        "PUT",
        &path,
        now_ms(),
        [30; 16],
        &module,
    );
    let mut elsewhere = Request::builder().method("PUT").uri(&path);
    for (name, value) in auth.headers() {
        elsewhere = elsewhere.header(name, value);
    }
    let (status, body) = status_of(&shared, elsewhere.body(Body::from(module.clone())).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!shared.content.has(&hash));

    let stale = signed(&tenant, "PUT", &path, &module, now_ms() - 120_000, 3);
    let (status, body) = status_of(&shared, stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("ms away"), "{body}");

    let other = Hash::of(b"not the job's");
    let wrong = format!("/v1/jobs/7/content/{other}");
    let (status, body) =
        status_of(&shared, signed(&tenant, "PUT", &wrong, b"not the job's", now_ms(), 4)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("names no module or input"), "{body}");
    let (status, body) = status_of(&shared, signed(&tenant, "PUT", &path, b"(module 2)", now_ms(), 5)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "bytes that do not hash to the path's hash: {body}");

    let at = now_ms();
    let (status, body) = status_of(&shared, signed(&tenant, "PUT", &path, &module, at, 6)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(shared.content.has(&hash));
    let (status, body) = status_of(&shared, signed(&tenant, "PUT", &path, &module, at, 6)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replay is refused");
    assert!(body.contains("already used"), "{body}");

    let (status, body) =
        status_of(&shared, signed(&tenant, "GET", "/v1/jobs/7/status", b"", now_ms(), 7)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["missing"], serde_json::json!([]));
    let (status, _) =
        status_of(&shared, signed(&mallory, "GET", "/v1/jobs/7/status", b"", now_ms(), 8)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let open = Request::builder().uri("/v1/provider").body(Body::empty()).unwrap();
    let (status, body) = status_of(&shared, open).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("no_bid_reasons"), "{body}");
}

/// A 256 MiB body made on demand, counting what the server pulls of it.
fn huge_body(pulled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    let chunk = axum::body::Bytes::from(vec![0u8; 1 << 20]);
    Body::from_stream(futures_util::stream::iter((0..256).map(move |_| {
        pulled.fetch_add(1 << 20, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    })))
}

#[tokio::test]
async fn a_huge_body_without_a_valid_signature_is_refused_before_a_byte_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = SecretKey::from_label("tenant");
    let hash = Hash::of(b"(module)");
    let shared = shared(dir.path(), &tenant, hash);
    let path = format!("/v1/jobs/7/content/{hash}");
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let unsigned = Request::builder().method("PUT").uri(&path).body(huge_body(pulled.clone())).unwrap();
    assert_eq!(status_of(&shared, unsigned).await.0, StatusCode::UNAUTHORIZED);
    // Mallory's signature presented as the tenant's: the headers do not verify, so the body is never read.
    let mallory = SecretKey::from_label("mallory");
    let forged = RequestAuth {
        signer: tenant.address(),
        ..RequestAuth::sign(&mallory, AUDIENCE, "PUT", &path, now_ms(), [9; 16], b"")
    };
    let mut request = Request::builder().method("PUT").uri(&path);
    for (name, value) in forged.headers() {
        request = request.header(name, value);
    }
    let (status, body) = status_of(&shared, request.body(huge_body(pulled.clone())).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 0, "not a byte of either body was read");
}

#[tokio::test]
async fn each_signer_keeps_to_its_request_rate_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = SecretKey::from_label("tenant");
    let shared = shared(dir.path(), &tenant, Hash::of(b"(module)"));
    let burst = 2 * shared.config.limits.requests_per_sec as usize;
    let flooder = SecretKey::from_label("flooder");
    let mut refused = 0;
    // Requests as fast as the test can make them: the bucket refills at the rate meanwhile, so a few more
    // than the burst get through before the refusals start.
    for n in 0u32..(4 * burst as u32) {
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        let auth = RequestAuth::sign(&flooder, AUDIENCE, "GET", "/v1/jobs/7/status", now_ms(), nonce, b"");
        let mut request = Request::builder().method("GET").uri("/v1/jobs/7/status");
        for (name, value) in auth.headers() {
            request = request.header(name, value);
        }
        if status_of(&shared, request.body(Body::empty()).unwrap()).await.0 == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 1, "a burst past twice the rate is refused");
    let (status, body) =
        status_of(&shared, signed(&tenant, "GET", "/v1/jobs/7/status", b"", now_ms(), 1)).await;
    assert_eq!(status, StatusCode::OK, "the job's own client is not slowed by the flood: {body}");
}
