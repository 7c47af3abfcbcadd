//! The HTTP API: a transaction goes in, a block includes it, queries see it; bad input gets a typed JSON error.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tensorgrid_ledger::testing::{GENESIS_TIME, TEST_CHAIN_ID};
use tensorgrid_ledger::{Ledger, MemStore};
use tensorgrid_node::core::NodeCore;
use tensorgrid_node::mempool::MempoolConfig;
use tensorgrid_node::rpc::{router, Shared};
use tensorgrid_types::{Amount, Genesis, GenesisAccount, Hash, Msg, Params, SecretKey, SignedTx, Tx};
use tower::ServiceExt;

fn node(mempool: MempoolConfig) -> (Shared<MemStore>, SecretKey, SecretKey) {
    let (alice, bob) = (SecretKey::from_label("alice"), SecretKey::from_label("bob"));
    let mut ledger = Ledger::new(MemStore::new());
    ledger
        .init_genesis(&Genesis {
            chain_id: TEST_CHAIN_ID.into(),
            genesis_time: GENESIS_TIME,
            params: Params::default(),
            accounts: vec![GenesisAccount { address: alice.address(), balance: Amount::tgr(100) }],
        })
        .unwrap();
    (Arc::new(Mutex::new(NodeCore::new(ledger, mempool).unwrap())), alice, bob)
}

async fn call(node: &Shared<MemStore>, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    raw_call(node, request).await
}

async fn raw_call(node: &Shared<MemStore>, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(node.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn send(from: &SecretKey, nonce: u64, to: &SecretKey, amount: u128) -> String {
    hex::encode(
        Tx::new(
            TEST_CHAIN_ID,
            from.address(),
            nonce,
            Amount::tgr(1),
            Msg::Send { to: to.address(), amount: Amount(amount) },
        )
        .sign(from)
        .encode(),
    )
}

#[tokio::test]
async fn a_transaction_goes_in_a_block_makes_it_and_queries_see_it() {
    let (node, alice, bob) = node(MempoolConfig::default());
    let (status, body) =
        call(&node, "POST", "/v1/tx", Some(json!({ "tx": send(&alice, 0, &bob, 5_000_000) }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash: Hash = serde_json::from_value(body["hash"].clone()).unwrap();

    let (_, status_body) = call(&node, "GET", "/v1/status", None).await;
    assert_eq!(status_body["mempool_txs"], 1);
    assert_eq!(status_body["chain"]["chain_id"], TEST_CHAIN_ID);

    let outcome = node.lock().unwrap().produce_block(GENESIS_TIME.plus(1_000), Hash::of(b"r1")).unwrap();
    assert_eq!(outcome.receipts.len(), 1);
    assert!(outcome.receipts[0].succeeded());
    assert_eq!(outcome.receipts[0].tx_hash, hash);

    let (status, body) =
        call(&node, "POST", "/v1/query", Some(json!({ "query": "account", "address": bob.address() }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "account");
    assert_eq!(body["value"]["balance"], "5000000");
    let (_, status_body) = call(&node, "GET", "/v1/status", None).await;
    assert_eq!(
        (status_body["chain"]["height"].clone(), status_body["mempool_txs"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test]
async fn bad_input_gets_a_typed_json_error_and_no_crash() {
    let (node, alice, bob) = node(MempoolConfig { max_txs: 1, ..MempoolConfig::default() });
    let mut forged = SignedTx::decode(&hex::decode(send(&alice, 0, &bob, 1)).unwrap()).unwrap();
    forged.signature.0[3] ^= 1;
    let wrong_chain = hex::encode(
        Tx::new("other-chain", alice.address(), 0, Amount::tgr(1), Msg::Heartbeat).sign(&alice).encode(),
    );
    let cases = [
        (json!({ "tx": "not hex" }), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({ "nope": 1 }), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({ "tx": "00ff00ff" }), StatusCode::BAD_REQUEST, "undecodable"),
        (json!({ "tx": hex::encode(forged.encode()) }), StatusCode::BAD_REQUEST, "bad_signature"),
        (json!({ "tx": wrong_chain }), StatusCode::BAD_REQUEST, "wrong_chain_id"),
        (json!({ "tx": send(&bob, 0, &alice, 1) }), StatusCode::BAD_REQUEST, "unknown_account"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = call(&node, "POST", "/v1/tx", Some(body.clone())).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let garbage =
        Request::builder().method("POST").uri("/v1/tx").body(Body::from(vec![0xffu8, 0, 1, 2])).unwrap();
    let (got, answer) = raw_call(&node, garbage).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));

    let huge = json!({ "tx": "ab".repeat(200_000) });
    let (got, answer) = call(&node, "POST", "/v1/tx", Some(huge)).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));

    let first = send(&alice, 0, &bob, 1);
    assert_eq!(call(&node, "POST", "/v1/tx", Some(json!({ "tx": first }))).await.0, StatusCode::OK);
    let (got, answer) = call(&node, "POST", "/v1/tx", Some(json!({ "tx": first }))).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (got, answer) = call(&node, "POST", "/v1/tx", Some(json!({ "tx": send(&alice, 1, &bob, 1) }))).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("mempool_full"))
    );

    let (got, answer) = call(&node, "POST", "/v1/query", Some(json!({ "query": "no_such_query" }))).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (got, answer) = call(&node, "GET", "/v2/nothing", None).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // After all that, the node still works.
    let (_, status_body) = call(&node, "GET", "/v1/status", None).await;
    assert_eq!(status_body["mempool_txs"], 1);
}

/// A node whose event stream stays open: the in-process core with a stream per subscriber.
struct Streaming {
    core: Shared<MemStore>,
    senders: Mutex<Vec<tokio::sync::mpsc::Sender<tensorgrid_node::rpc::BlockEvents>>>,
}

impl tensorgrid_node::rpc::NodeApi for Streaming {
    fn submit(&self, raw: Vec<u8>) -> Result<Hash, tensorgrid_node::core::SubmitError> {
        self.core.submit(raw)
    }
    fn query(
        &self,
        query: &tensorgrid_types::query::Query,
    ) -> Result<tensorgrid_types::query::QueryResponse, tensorgrid_ledger::QueryError> {
        self.core.query(query)
    }
    fn status(&self) -> Result<Value, tensorgrid_node::ReadError> {
        self.core.status()
    }
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<tensorgrid_node::rpc::BlockEvents>> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        self.senders.lock().unwrap().push(tx);
        Some(rx)
    }
}

/// A client that floods the API from one address is slowed to its rate with 429 and `retry-after`, while a
/// client from another address is served as usual; event streams past the cap get 503, and a closed stream
/// gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_slowed_alone_and_event_streams_are_capped() {
    use tensorgrid_node::rpc::{router_with, ApiLimits};
    let (core, _, _) = node(MempoolConfig::default());
    let api = Arc::new(Streaming { core, senders: Mutex::new(Vec::new()) });
    let app = router_with(api, ApiLimits { requests_per_sec: 5, max_subscribers: 1 });
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .unwrap()
    });
    let from =
        |ip: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().unwrap();
    let (flooder, other) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = flooder.get(url("/v1/status")).send().await.unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=15).contains(&served), "a burst of about twice the rate is served, then 429: {statuses:?}");
    assert_eq!(
        other.get(url("/v1/status")).send().await.unwrap().status(),
        200,
        "another address is not slowed"
    );

    // One event stream at a time; the second waits for the first to close.
    let streams = from([127, 0, 0, 3]);
    let first = streams.get(url("/v1/events")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = streams.get(url("/v1/events")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_subscribers", "{body}");
    drop(first);
    let mut reopened = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let again = streams.get(url("/v1/events")).send().await.unwrap();
        if again.status() == 200 {
            reopened += 1;
            break;
        }
    }
    assert_eq!(reopened, 1, "a closed stream gives its place back");
}
