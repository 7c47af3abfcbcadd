//! A provider that lies to the gateway paying it, on a real chain with the real gateway: it inflates every
//! count it reports (prompt tokens, completion tokens, invoices, embedding tokens), streams text that is not
//! what its token ids say and ids past the answer's end, hands over a tokenizer that is not the one its offer
//! names, raises its price on chain, and after a gateway restart claims to have been paid more than it was.
//! Each time the gateway pays exactly its own count at the price in effect, or nothing.
//!
//! The provider here is a test double speaking the provider API; everything else is the release code: a
//! validator in this process, the gateway, its HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tensorgrid_client::RpcClient;
use tensorgrid_gateway::{ApiKey, Ceiling, FileLimits, GatewayConfig};
use tensorgrid_tokenizer::{Parts, TextCodec};
use tensorgrid_types::channel::{ChannelId, Voucher};
use tensorgrid_types::inference::{
    ChannelTally, EmbeddingsRequest, EmbeddingsResponse, FinishReason, GenerateRequest, InferenceEvent,
};
use tensorgrid_types::model::ModelOffer;
use tensorgrid_types::provider::ProviderInfo;
use tensorgrid_types::resources::Attribute;
use tensorgrid_types::{Amount, GenesisAccount, Hash, Msg, Params, SecretKey};

const NOTICE_MS: u64 = 4_000;
const MODEL: &str = "tiny-chat";

/// A word-level tokenizer with `<end>` as its stop token, as a model's tokenizer file.
fn codec(extra_word: Option<&str>) -> TextCodec {
    use tokenizers::models::wordlevel::WordLevel;
    let mut words = vec!["<unk>", "<end>", "user", "assistant", "the", "answer", "is", "4", "hello", "what"];
    words.extend(extra_word);
    let vocab = words.iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
    let model = WordLevel::builder().vocab(vocab).unk_token("<unk>".into()).build().unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::WhitespaceSplit));
    tokenizer.add_special_tokens([tokenizers::AddedToken::from("<end>", true)]).unwrap();
    tokenizer.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    let parts = Parts {
        chat_template: Some(
            "{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}assistant".into(),
        ),
        stop_ids: vec![1],
        ..Parts::default()
    };
    TextCodec::new(tokenizer, parts).unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tally {
    /// Claims 1,000 TGR paid and shows a voucher it signed itself.
    Forged,
    /// Shows the best voucher it really holds.
    Honest,
}

struct Double {
    codec: TextCodec,
    /// Served instead of the offer's tokenizer while set.
    wrong_tokenizer: Option<Vec<u8>>,
    tally: Tally,
    own_key: SecretKey,
    chain_id: String,
    generations: Vec<GenerateRequest>,
    vouchers: Vec<Voucher>,
}

type Shared = Arc<Mutex<Double>>;

fn lines(events: &[InferenceEvent]) -> Body {
    let mut out = Vec::new();
    for e in events {
        out.extend(serde_json::to_vec(e).unwrap());
        out.push(b'\n');
    }
    Body::from(out)
}

async fn generate(State(d): State<Shared>, body: Bytes) -> Body {
    let request: GenerateRequest = serde_json::from_slice(&body).unwrap();
    let ids = |text: &str| d.lock().codec.encode(text).unwrap();
    let hang = serde_json::to_string(&request.prompt).unwrap().contains("hang");
    d.lock().generations.push(request);
    if hang {
        // A request that is still in flight when its gateway stops.
        std::future::pending::<()>().await;
    }
    let huge = Amount::tgr(1_000);
    lines(&[
        InferenceEvent::Started { prompt_tokens: 9_999 },
        InferenceEvent::Delta { ids: ids("the answer is 4"), text: "BUY MORE TOKENS".into() },
        InferenceEvent::Invoice {
            prompt_tokens: 9_999,
            completion_tokens: 5_000,
            cost: huge,
            cumulative: huge,
        },
        InferenceEvent::Delta { ids: vec![1], text: String::new() },
        // Past the end: more ids the client never asked for.
        InferenceEvent::Delta { ids: ids(&"hello ".repeat(500)), text: "hello ".repeat(500) },
        InferenceEvent::Done {
            finish_reason: FinishReason::Length,
            prompt_tokens: 9_999,
            completion_tokens: 100_000,
            cost: huge,
            cumulative: huge,
        },
    ])
}

async fn embeddings(State(_d): State<Shared>, body: Bytes) -> Json<EmbeddingsResponse> {
    let request: EmbeddingsRequest = serde_json::from_slice(&body).unwrap();
    Json(EmbeddingsResponse {
        vectors: request.input.iter().map(|_| vec![0.5; 4]).collect(),
        prompt_tokens: 1_000_000_000,
        cost: Amount::tgr(1_000),
        cumulative: Amount::tgr(1_000),
    })
}

async fn tokenizer(State(d): State<Shared>, Path(_hash): Path<String>) -> Vec<u8> {
    let d = d.lock();
    d.wrong_tokenizer.clone().unwrap_or_else(|| d.codec.bytes().to_vec())
}

fn tally_of(d: &Double, channel: ChannelId) -> ChannelTally {
    let best = d.vouchers.iter().filter(|v| v.channel == channel).max_by_key(|v| v.cumulative).copied();
    let (paid, voucher) = match d.tally {
        Tally::Honest => (best.map(|v| v.cumulative).unwrap_or_default(), best),
        Tally::Forged => {
            let forged = Voucher::sign(&d.own_key, &d.chain_id, channel, Amount::tgr(1_000));
            (Amount::tgr(1_000), Some(forged))
        }
    };
    ChannelTally {
        channel,
        owed: Amount::tgr(1_000),
        paid,
        redeemed: Amount::ZERO,
        credit: Amount::ZERO,
        voucher,
    }
}

async fn tally(State(d): State<Shared>, Path(channel): Path<ChannelId>) -> Json<ChannelTally> {
    Json(tally_of(&d.lock(), channel))
}

async fn voucher(State(d): State<Shared>, Path(channel): Path<ChannelId>, body: Bytes) -> Json<ChannelTally> {
    let voucher: Voucher = serde_json::from_slice(&body).unwrap();
    let mut d = d.lock();
    d.vouchers.push(voucher);
    Json(tally_of(&d, channel))
}

async fn serve(double: Shared) -> SocketAddr {
    let router = Router::new()
        .route("/v1/tokenizers/{hash}", get(tokenizer))
        .route("/v1/inference/{channel}", get(tally))
        .route("/v1/inference/{channel}/vouchers", post(voucher))
        .route("/v1/inference/{channel}/generate", post(generate))
        .route("/v1/inference/{channel}/embeddings", post(embeddings))
        .with_state(double);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A validator of its own in this process, funding `accounts`: its API address, a client of it, its chain id.
async fn chain(
    dir: &std::path::Path,
    accounts: &[&SecretKey],
    params: Params,
) -> (String, RpcClient, String) {
    let rpc_port = free_port();
    let funded = accounts
        .iter()
        .map(|k| GenesisAccount { address: k.address(), balance: Amount::tgr(1_000_000) })
        .collect();
    tensorgrid_consensus::launch::prepare_devnet(dir, funded, params, free_port(), rpc_port).unwrap();
    let home = dir.to_path_buf();
    std::thread::spawn(move || tensorgrid_consensus::node::run(&home));
    let node = format!("http://127.0.0.1:{rpc_port}");
    let rpc = RpcClient::new(&node);
    let started = Instant::now();
    let chain_id = loop {
        if let Ok(info) = rpc.chain_info().await {
            break info.chain_id;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the validator did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (node, rpc, chain_id)
}

/// Registers `key` as a provider whose API is the double at `addr`.
async fn register(rpc: &RpcClient, key: &SecretKey, addr: SocketAddr) {
    let msg = Msg::RegisterProvider {
        host_uri: format!("http://{addr}"),
        attributes: vec![Attribute::new("region", "test")],
        info: ProviderInfo { email: String::new(), website: String::new() },
        stake: Params::default().min_provider_stake,
        runtimes: Vec::new(),
        referee: false,
    };
    send(rpc, key, msg).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn send(rpc: &RpcClient, key: &SecretKey, msg: Msg) -> tensorgrid_types::block::Receipt {
    let submitted = rpc.send_msg(key, msg, Amount::tgr(1), true).await.unwrap();
    let record = submitted.committed.expect("committed");
    assert!(record.receipt.succeeded(), "{:?}", record.receipt);
    record.receipt
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn get(&self, path: &str) -> Value {
        let response =
            self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// `POST /v1/files` as multipart, the way OpenAI's client sends it.
    async fn upload(&self, name: &str, data: &str) -> (u16, Value) {
        let boundary = "tensorgrid-test-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n\
             {data}\r\n--{boundary}--\r\n"
        );
        let response = self
            .http
            .post(format!("{}/files", self.url))
            .bearer_auth(&self.token)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn signed(&self, channel: ChannelId) -> Amount {
        let channels: Value = self
            .http
            .get(format!("{}/channels", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entry = channels["data"].as_array().unwrap().iter().find(|c| c["id"] == channel).unwrap().clone();
        serde_json::from_value(entry["signed"].clone()).unwrap()
    }
}

async fn gateway(node: &str, key: ApiKey) -> Client {
    gateway_with(node, key, None).await
}

async fn gateway_with(node: &str, key: ApiKey, data_dir: Option<&std::path::Path>) -> Client {
    start_gateway(node, key, data_dir, true).await
}

async fn start_gateway(node: &str, key: ApiKey, data_dir: Option<&std::path::Path>, private: bool) -> Client {
    let token = key.token.clone();
    let running = tensorgrid_gateway::start(GatewayConfig {
        node: node.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        keys: vec![key],
        refresh: Duration::from_millis(200),
        data_dir: data_dir.map(std::path::Path::to_path_buf),
        models: Vec::new(),
        limits: FileLimits { files_per_key: 2, bytes_per_key: 4_096, batches_per_key: 1 },
        allow_private_providers: private,
    })
    .await
    .unwrap();
    Client { http: reqwest::Client::new(), url: format!("http://{}/v1", running.addr), token }
}

fn chat(max_tokens: u32) -> Value {
    json!({ "model": MODEL, "messages": [{ "role": "user", "content": "what is the answer" }], "max_tokens": max_tokens })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_provider_is_paid_exactly_the_gateways_own_count_at_the_price_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let liar = SecretKey::from_label("liar");
    let carol = SecretKey::from_label("carol");
    let params = Params { model_price_notice_ms: NOTICE_MS, ..Params::default() };
    let (node, rpc, chain_id) = chain(dir.path(), &[&liar, &carol], params).await;

    // The double registers, offers a model with its tokenizer, and carol opens a channel to it.
    let real = codec(None);
    let double = Arc::new(Mutex::new(Double {
        codec: codec(None),
        wrong_tokenizer: Some(codec(Some("extra")).bytes().to_vec()),
        tally: Tally::Forged,
        own_key: liar.clone(),
        chain_id: chain_id.clone(),
        generations: Vec::new(),
        vouchers: Vec::new(),
    }));
    let addr = serve(double.clone()).await;
    register(&rpc, &liar, addr).await;
    let offer = ModelOffer {
        model_hash: Hash::of(b"tiny-chat weights"),
        name: MODEL.into(),
        source_hash: Hash::of(b"tiny-chat source"),
        quantization: "f32".into(),
        tokenizer_hash: real.hash(),
        context_length: 4_096,
        price_input_per_m: Amount::tgr(1),
        price_output_per_m: Amount::tgr(4),
        throughput_tps: 100,
    };
    send(&rpc, &liar, Msg::AnnounceModel { offer: offer.clone() }).await;
    let opened =
        send(&rpc, &carol, Msg::OpenChannel { provider: liar.address(), deposit: Amount::tgr(10) }).await;
    let channel = opened.opened_channel().unwrap();
    let key = ApiKey {
        token: "tg-0123456789abcdef0123456789abcdef".into(),
        account: carol.clone(),
        channels: vec![channel],
        // Carol pays at most today's price.
        ceiling: Ceiling {
            input_per_m: Some(offer.price_input_per_m),
            output_per_m: Some(offer.price_output_per_m),
        },
    };
    let client = gateway(&node, key.clone()).await;

    // 1. A tokenizer file that is not the one the offer names is refused: no request, nothing signed.
    let (status, body) = client.post("/chat/completions", chat(16)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("tokenizer"), "{body}");
    assert!(double.lock().generations.is_empty());
    assert_eq!(client.signed(channel).await, Amount::ZERO);
    double.lock().wrong_tokenizer = None;

    // 2. Inflated counts, lying text, ids after the end: the client reads what the ids say up to the end,
    // and the gateway pays its own prompt count plus those ids, at the price it named.
    let prompt_tokens = real.encode("user what is the answer assistant").unwrap().len() as u64;
    let (status, body) = client.post("/chat/completions", chat(16)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "the answer is 4");
    assert_eq!(body["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(body["usage"]["completion_tokens"], 5, "four words and the end token");
    let one = offer.cost(prompt_tokens, 5).unwrap();
    assert_eq!(client.signed(channel).await, one);
    assert_eq!(double.lock().generations[0].price, offer.price());

    // 3. More ids than max_tokens: paid up to max_tokens only.
    let (status, body) = client.post("/chat/completions", chat(3)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "the answer is");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let two = one.checked_add(offer.cost(prompt_tokens, 3).unwrap()).unwrap();
    assert_eq!(client.signed(channel).await, two);

    // 4. Embeddings with a billion claimed tokens: paid for the gateway's own count.
    let (status, body) =
        client.post("/embeddings", json!({ "model": MODEL, "input": ["hello hello", "the answer"] })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let three = two.checked_add(offer.cost(4, 0).unwrap()).unwrap();
    assert_eq!(client.signed(channel).await, three);

    // 5. A price rise a hundredfold: until its notice has run, requests name and pay the old price...
    let dearer = ModelOffer {
        price_input_per_m: Amount::tgr(100),
        price_output_per_m: Amount::tgr(400),
        ..offer.clone()
    };
    send(&rpc, &liar, Msg::AnnounceModel { offer: dearer.clone() }).await;
    let announced = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = client.post("/chat/completions", chat(16)).await;
    assert_eq!(status, 200, "{body}");
    assert!(announced.elapsed() < Duration::from_millis(NOTICE_MS), "the check ran within the notice");
    assert_eq!(double.lock().generations.last().unwrap().price, offer.price());
    let four = three.checked_add(one).unwrap();
    assert_eq!(client.signed(channel).await, four);
    // ...and once it is in effect, carol's ceiling keeps her away from it: nothing is sent or signed.
    tokio::time::sleep(Duration::from_millis(NOTICE_MS + 800).saturating_sub(announced.elapsed())).await;
    let sent_before = double.lock().generations.len();
    let (status, body) = client.post("/chat/completions", chat(16)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("price ceiling"), "{body}");
    assert_eq!(double.lock().generations.len(), sent_before);
    assert_eq!(client.signed(channel).await, four);

    // 6. A restarted gateway asks the provider where the count stands. A claim of 1,000 TGR with a voucher
    // the provider signed itself is not believed: the count starts from what the chain says was redeemed.
    let no_ceiling = ApiKey { ceiling: Ceiling::default(), ..key.clone() };
    let restarted = gateway(&node, no_ceiling.clone()).await;
    assert_eq!(restarted.signed(channel).await, Amount::ZERO);
    // The real best voucher, carol's own signature, is taken.
    double.lock().tally = Tally::Honest;
    let again = gateway(&node, no_ceiling).await;
    assert_eq!(again.signed(channel).await, four);
    let best = double.lock().vouchers.iter().map(|v| v.cumulative).max().unwrap();
    assert_eq!(best, four, "every voucher the double holds adds up to the gateway's own count");
    assert!(four < Amount::tgr(1), "a few hundred tokens, not the thousand TGR claimed");

    // 7. A request without a valid key is answered before its body is read: a body that never comes does not
    // hold the gateway.
    let stalled =
        reqwest::Body::wrap_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        again
            .http
            .post(format!("{}/chat/completions", again.url))
            .bearer_auth("tg-not-a-key-not-a-key-not-a-key-000")
            .header("content-length", "15000000")
            .body(stalled)
            .send(),
    )
    .await
    .expect("answered without waiting for the body")
    .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // 8. Files and batches: per-key quotas, and a request in flight when the gateway stops is not sent (or
    // paid) again by the gateway that resumes the batch.
    let data = tempfile::tempdir().unwrap();
    let first = gateway_with(&node, no_ceiling_key(&key), Some(data.path())).await;
    let line = |id: &str, content: &str| {
        json!({ "custom_id": id, "method": "POST", "url": "/v1/chat/completions",
                "body": { "model": MODEL, "max_tokens": 16, "messages": [{ "role": "user", "content": content }] } })
        .to_string()
    };
    let input = format!("{}\n{}\n", line("answer", "what is the answer"), line("stuck", "hang"));
    let (status, file) = first.upload("requests.jsonl", &input).await;
    assert_eq!(status, 200, "{file}");
    let create = json!({ "input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h" });
    let (status, batch) = first.post("/batches", create.clone()).await;
    assert_eq!(status, 200, "{batch}");
    let (status, body) = first.post("/batches", create).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("batch_quota_exceeded")), "{body}");
    let (status, body) = first.upload("big.jsonl", &"x".repeat(5_000)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("file_quota_exceeded")), "{body}");
    assert_eq!(first.upload("second.jsonl", &line("a", "b")).await.0, 200);
    let (status, body) = first.upload("third.jsonl", &line("a", "b")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("file_quota_exceeded")), "{body}");
    let batch_path = format!("/batches/{}", batch["id"].as_str().unwrap());
    let waited = Instant::now();
    while first.get(&batch_path).await["request_counts"]["completed"] != 1 {
        assert!(waited.elapsed() < Duration::from_secs(30), "the batch's first request did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck = || {
        double
            .lock()
            .generations
            .iter()
            .filter(|g| serde_json::to_string(&g.prompt).unwrap().contains("hang"))
            .count()
    };
    assert_eq!(stuck(), 1, "the stuck request is in flight");
    // The gateway "crashes" (it is abandoned with the request in flight) and a new one resumes its data.
    let resumed = gateway_with(&node, no_ceiling_key(&key), Some(data.path())).await;
    let waited = Instant::now();
    let done = loop {
        let b = resumed.get(&batch_path).await;
        if b["status"] == "completed" {
            break b;
        }
        assert!(waited.elapsed() < Duration::from_secs(30), "the resumed batch did not complete: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["request_counts"], json!({ "total": 2, "completed": 1, "failed": 1 }));
    assert_eq!(stuck(), 1, "the request in flight at the crash was not sent again");
    let errors = resumed
        .http
        .get(format!("{}/files/{}/content", resumed.url, done["error_file_id"].as_str().unwrap()))
        .bearer_auth(&resumed.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(errors.contains("\"stuck\"") && errors.contains("may already have been paid"), "{errors}");
}

/// A provider registered at an address inside the gateway's network (here the loopback, as a cloud metadata
/// service's would be) is never called by a gateway that does not allow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_never_calls_a_provider_registered_at_an_internal_address() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, carol) = (SecretKey::from_label("inside"), SecretKey::from_label("carol"));
    let (node, rpc, chain_id) = chain(dir.path(), &[&provider, &carol], Params::default()).await;
    let real = codec(None);
    let double = Arc::new(Mutex::new(Double {
        codec: codec(None),
        wrong_tokenizer: None,
        tally: Tally::Honest,
        own_key: provider.clone(),
        chain_id,
        generations: Vec::new(),
        vouchers: Vec::new(),
    }));
    let addr = serve(double.clone()).await;
    register(&rpc, &provider, addr).await;
    let offer = ModelOffer {
        model_hash: Hash::of(b"inside weights"),
        name: MODEL.into(),
        source_hash: Hash::of(b"inside source"),
        quantization: "f32".into(),
        tokenizer_hash: real.hash(),
        context_length: 4_096,
        price_input_per_m: Amount::tgr(1),
        price_output_per_m: Amount::tgr(4),
        throughput_tps: 100,
    };
    send(&rpc, &provider, Msg::AnnounceModel { offer }).await;
    let opened =
        send(&rpc, &carol, Msg::OpenChannel { provider: provider.address(), deposit: Amount::tgr(10) }).await;
    let key = ApiKey {
        token: "tg-0123456789abcdef0123456789abcdef".into(),
        account: carol,
        channels: vec![opened.opened_channel().unwrap()],
        ceiling: Ceiling::default(),
    };
    let client = start_gateway(&node, key, None, false).await;
    let (status, body) = client.post("/chat/completions", chat(16)).await;
    assert_eq!(status, 404, "{body}");
    assert!(double.lock().generations.is_empty() && double.lock().vouchers.is_empty());
}

fn no_ceiling_key(key: &ApiKey) -> ApiKey {
    ApiKey { ceiling: Ceiling::default(), ..key.clone() }
}
