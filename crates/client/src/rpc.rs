//! The typed client of a node's HTTP API, and the transaction builder on top of it.
//!
//! Every call returns the node's own types (`TxRecord`, `QueryResponse`, …) or an [`RpcError`] that keeps
//! the node's error code and message, so callers can tell "the node refused this" from "the node is not
//! there".

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tensorgrid_types::committee::{Committee, CommitteeId};
use tensorgrid_types::job::{Job, JobBid, JobId};
use tensorgrid_types::market::{Bid, Dseq, Lease, LeaseId, Order, OrderId};
use tensorgrid_types::provider::Provider;
use tensorgrid_types::query::{ChainInfo, DeploymentInfo, Page, Paged, Query, QueryResponse};
use tensorgrid_types::{
    Account, Address, Amount, BlockRecord, Hash, Msg, Params, SecretKey, StreamedBlock, Tx, TxError, TxRecord,
};

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The node answered with an error body.
    #[error("the node refused the request ({code}, HTTP {status}): {message}")]
    Node { status: u16, code: String, message: String, details: Value },
    /// The node could not be reached or the connection broke.
    #[error("cannot reach the node at {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The node answered something this client does not understand.
    #[error("unexpected answer from the node for {what}: {reason}")]
    Decode { what: String, reason: String },
    /// The node serves another chain than the one the caller named (`--chain-id`); nothing was signed.
    #[error("the node at {url} serves chain `{node}`, not `{expected}`; nothing was sent")]
    WrongChain { url: String, expected: String, node: String },
    /// The transaction was committed but its message failed: it paid its fee and used its nonce, and
    /// changed nothing else.
    #[error("transaction {} was committed in block {} but failed: {error}", .record.hash, .record.height)]
    Failed { error: TxError, record: Box<TxRecord> },
    /// The node gave up waiting for the commit; the transaction may still commit later.
    #[error("transaction {hash} was accepted but not committed in time; look it up later with its hash")]
    NotCommitted { hash: Hash },
}

impl RpcError {
    /// The node's error code (`mempool_full`, `bad_nonce`, …), if the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RpcError::Node { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What `POST /v1/tx` answered.
#[derive(Clone, Debug, Deserialize)]
pub struct Submitted {
    pub hash: Hash,
    /// Present when the call waited for the commit.
    pub committed: Option<TxRecord>,
}

/// A client of one node.
#[derive(Clone, Debug)]
pub struct RpcClient {
    base: String,
    http: reqwest::Client,
    /// The chain transactions must be signed for, if the caller insists on one.
    chain_id: Option<String>,
    /// Offered above the minimum fee by every transaction this client signs.
    tip: Amount,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
    #[serde(default)]
    details: Value,
}

impl RpcClient {
    /// A client of the node whose API is at `base` (like `http://127.0.0.1:26657`).
    pub fn new(base: impl Into<String>) -> RpcClient {
        let base = base.into().trim_end_matches('/').to_string();
        // Waiting for a commit can take up to the node's own limit (30 s); leave room beyond it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(45))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        RpcClient { base, http, chain_id: None, tip: Amount::ZERO }
    }

    /// Refuses to sign anything unless the node serves `chain_id` (`--chain-id`): a transaction for the
    /// wrong chain would be refused anyway, and a query answered by the wrong chain misleads.
    pub fn with_chain_id(mut self, chain_id: Option<String>) -> RpcClient {
        self.chain_id = chain_id;
        self
    }

    /// Offers `tip` above the minimum fee on every transaction this client signs, for a place earlier in
    /// blocks (they take transactions by tip per byte).
    pub fn with_tip(mut self, tip: Amount) -> RpcClient {
        self.tip = tip;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, RpcError> {
        let response = request
            .send()
            .await
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => RpcError::Node {
                    status: status.as_u16(),
                    code: body.error.code,
                    message: body.error.message,
                    details: body.error.details,
                },
                Err(_) => RpcError::Node {
                    status: status.as_u16(),
                    code: "http".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    details: Value::Null,
                },
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| RpcError::Decode { what: what.into(), reason: e.to_string() })
    }

    /// `GET /v1/status`, as the node's JSON document.
    pub async fn status(&self) -> Result<Value, RpcError> {
        self.call(self.http.get(format!("{}/v1/status", self.base)), "status").await
    }

    /// Submits an encoded signed transaction; with `wait`, returns once it is committed.
    pub async fn submit(&self, raw: &[u8], wait: bool) -> Result<Submitted, RpcError> {
        let body = json!({ "tx": hex::encode(raw), "wait": wait });
        self.call(self.http.post(format!("{}/v1/tx", self.base)).json(&body), "submit").await
    }

    /// A committed transaction's record, or `None` if the node has not committed it.
    pub async fn tx(&self, hash: &Hash) -> Result<Option<TxRecord>, RpcError> {
        match self.call(self.http.get(format!("{}/v1/tx/{hash}", self.base)), "transaction").await {
            Ok(record) => Ok(Some(record)),
            Err(RpcError::Node { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A committed block's record (`None` asks for the latest).
    pub async fn block(&self, height: Option<u64>) -> Result<Option<BlockRecord>, RpcError> {
        let which = height.map(|h| h.to_string()).unwrap_or_else(|| "latest".into());
        match self.call(self.http.get(format!("{}/v1/blocks/{which}", self.base)), "block").await {
            Ok(record) => Ok(Some(record)),
            Err(RpcError::Node { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn query(&self, query: &Query) -> Result<QueryResponse, RpcError> {
        self.call(self.http.post(format!("{}/v1/query", self.base)).json(query), "query").await
    }

    /// The node's chain id, height and time; fails with [`RpcError::WrongChain`] if the client was told to
    /// expect another chain.
    pub async fn chain_info(&self) -> Result<ChainInfo, RpcError> {
        let info = match self.query(&Query::ChainInfo).await? {
            QueryResponse::ChainInfo(info) => info,
            other => return Err(unexpected("chain info", &other)),
        };
        match &self.chain_id {
            Some(expected) if *expected != info.chain_id => Err(RpcError::WrongChain {
                url: self.base.clone(),
                expected: expected.clone(),
                node: info.chain_id,
            }),
            _ => Ok(info),
        }
    }

    pub async fn params(&self) -> Result<Params, RpcError> {
        match self.query(&Query::Params).await? {
            QueryResponse::Params(params) => Ok(params),
            other => Err(unexpected("params", &other)),
        }
    }

    pub async fn account(&self, address: &Address) -> Result<Option<Account>, RpcError> {
        match self.query(&Query::Account { address: *address }).await? {
            QueryResponse::Account(account) => Ok(account),
            other => Err(unexpected("account", &other)),
        }
    }

    /// A page of the transactions `account` signed or that named it, newest first (`after` is the previous
    /// page's `next`).
    pub async fn account_txs(
        &self,
        account: &Address,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Paged<TxRecord>, RpcError> {
        let mut url = reqwest::Url::parse(&format!("{}/v1/accounts/{account}/txs", self.base))
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        if let Some(after) = after {
            url.query_pairs_mut().append_pair("after", after);
        }
        self.call(self.http.get(url), "account history").await
    }

    pub async fn provider(&self, address: &Address) -> Result<Option<Provider>, RpcError> {
        match self.query(&Query::Provider { address: *address }).await? {
            QueryResponse::Provider(provider) => Ok(provider),
            other => Err(unexpected("provider", &other)),
        }
    }

    pub async fn providers(&self, page: Page) -> Result<Paged<Provider>, RpcError> {
        match self.query(&Query::Providers { page }).await? {
            QueryResponse::Providers(providers) => Ok(providers),
            other => Err(unexpected("providers", &other)),
        }
    }

    pub async fn deployment(&self, dseq: Dseq) -> Result<Option<DeploymentInfo>, RpcError> {
        match self.query(&Query::Deployment { dseq }).await? {
            QueryResponse::Deployment(info) => Ok(info),
            other => Err(unexpected("deployment", &other)),
        }
    }

    pub async fn order(&self, order: OrderId) -> Result<Option<Order>, RpcError> {
        match self.query(&Query::Order { order }).await? {
            QueryResponse::Order(order) => Ok(order),
            other => Err(unexpected("order", &other)),
        }
    }

    pub async fn open_orders(&self, page: Page) -> Result<Paged<Order>, RpcError> {
        match self.query(&Query::OpenOrders { page }).await? {
            QueryResponse::Orders(orders) => Ok(orders),
            other => Err(unexpected("orders", &other)),
        }
    }

    /// Every bid on an order, open or not.
    pub async fn bids(&self, order: OrderId) -> Result<Vec<Bid>, RpcError> {
        match self.query(&Query::Bids { order }).await? {
            QueryResponse::Bids(bids) => Ok(bids),
            other => Err(unexpected("bids", &other)),
        }
    }

    pub async fn lease(&self, lease: LeaseId) -> Result<Option<Lease>, RpcError> {
        match self.query(&Query::Lease { lease }).await? {
            QueryResponse::Lease(lease) => Ok(lease),
            other => Err(unexpected("lease", &other)),
        }
    }

    pub async fn leases_by_provider(&self, provider: Address, page: Page) -> Result<Paged<Lease>, RpcError> {
        match self.query(&Query::LeasesByProvider { provider, page }).await? {
            QueryResponse::Leases(leases) => Ok(leases),
            other => Err(unexpected("leases", &other)),
        }
    }

    pub async fn job(&self, job: JobId) -> Result<Option<Job>, RpcError> {
        match self.query(&Query::Job { job }).await? {
            QueryResponse::Job(job) => Ok(job),
            other => Err(unexpected("job", &other)),
        }
    }

    /// A referee committee (a job's `checks` name them).
    pub async fn committee(&self, committee: CommitteeId) -> Result<Option<Committee>, RpcError> {
        match self.query(&Query::Committee { committee }).await? {
            QueryResponse::Committee(committee) => Ok(committee),
            other => Err(unexpected("committee", &other)),
        }
    }

    pub async fn job_bids(&self, job: JobId) -> Result<Vec<JobBid>, RpcError> {
        match self.query(&Query::JobBids { job }).await? {
            QueryResponse::JobBids(bids) => Ok(bids),
            other => Err(unexpected("job bids", &other)),
        }
    }

    pub async fn open_jobs(&self, page: Page) -> Result<Paged<Job>, RpcError> {
        match self.query(&Query::OpenJobs { page }).await? {
            QueryResponse::Jobs(jobs) => Ok(jobs),
            other => Err(unexpected("jobs", &other)),
        }
    }

    /// The node's event stream from now on: one item per committed block with the events of the given kinds
    /// (all when empty) that name `account` (any when `None`). The stream ends when the connection does;
    /// callers reconnect and catch up by querying state.
    pub async fn blocks(
        &self,
        kinds: &[&str],
        account: Option<&Address>,
    ) -> Result<impl futures_util::Stream<Item = Result<StreamedBlock, RpcError>> + Send + 'static, RpcError>
    {
        self.blocks_from(kinds, account, None).await
    }

    /// Like [`RpcClient::blocks`], replaying the committed blocks from height `from` first, so a subscriber
    /// that reconnects after the last height it handled misses nothing.
    pub async fn blocks_from(
        &self,
        kinds: &[&str],
        account: Option<&Address>,
        from: Option<u64>,
    ) -> Result<impl futures_util::Stream<Item = Result<StreamedBlock, RpcError>> + Send + 'static, RpcError>
    {
        use futures_util::StreamExt as _;
        let mut url = reqwest::Url::parse(&format!("{}/v1/events", self.base))
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        if !kinds.is_empty() {
            url.query_pairs_mut().append_pair("kind", &kinds.join(","));
        }
        if let Some(account) = account {
            url.query_pairs_mut().append_pair("account", &account.to_string());
        }
        if let Some(from) = from {
            url.query_pairs_mut().append_pair("from", &from.to_string());
        }
        // The stream lives as long as the node keeps it open, so it gets a client without the overall timeout.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|e| RpcError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            return Err(RpcError::Node {
                status,
                code: "events".into(),
                message: text,
                details: Value::Null,
            });
        }
        let base = self.base.clone();
        let bytes = response.bytes_stream();
        let stream = futures_util::stream::unfold(
            (bytes, String::new(), base),
            |(mut bytes, mut buf, base)| async move {
                loop {
                    // A server-sent event ends at a blank line; its `data:` lines carry the JSON.
                    if let Some(end) = buf.find("\n\n") {
                        let event: String = buf.drain(..end + 2).collect();
                        let data: Vec<&str> = event
                            .lines()
                            .filter_map(|l| l.strip_prefix("data:"))
                            .map(str::trim_start)
                            .collect();
                        if data.is_empty() {
                            continue;
                        }
                        let parsed = serde_json::from_str::<StreamedBlock>(&data.join("\n")).map_err(|e| {
                            RpcError::Decode { what: "event stream".into(), reason: e.to_string() }
                        });
                        return Some((parsed, (bytes, buf, base)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => {
                            buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"))
                        }
                        Some(Err(e)) => {
                            let error = RpcError::Transport { url: base.clone(), reason: e.to_string() };
                            return Some((Err(error), (bytes, String::new(), base)));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    pub async fn channel(
        &self,
        channel: tensorgrid_types::channel::ChannelId,
    ) -> Result<Option<tensorgrid_types::channel::Channel>, RpcError> {
        match self.query(&Query::Channel { channel }).await? {
            QueryResponse::Channel(channel) => Ok(channel),
            other => Err(unexpected("channel", &other)),
        }
    }

    /// Offers of one model (by hash), or of all models.
    pub async fn model_offers(
        &self,
        model_hash: Option<Hash>,
        page: Page,
    ) -> Result<Paged<tensorgrid_types::model::ListedOffer>, RpcError> {
        match self.query(&Query::ModelOffers { model_hash, page }).await? {
            QueryResponse::ModelOffers(offers) => Ok(offers),
            other => Err(unexpected("model offers", &other)),
        }
    }

    /// Signs `msg` from `key`, submits it and waits for the commit. A committed transaction whose message
    /// failed is [`RpcError::Failed`] (with its record: the fee was paid), so `Ok` always means it took
    /// effect.
    pub async fn execute(&self, key: &SecretKey, msg: Msg, max_fee: Amount) -> Result<TxRecord, RpcError> {
        let sent = self.send_msg(key, msg, max_fee, true).await?;
        let record = sent.committed.ok_or(RpcError::NotCommitted { hash: sent.hash })?;
        match record.receipt.error() {
            Some(error) => Err(RpcError::Failed { error: error.clone(), record: Box::new(record) }),
            None => Ok(record),
        }
    }

    /// Signs `msg` from `key` with the account's next committed nonce and submits it.
    pub async fn send_msg(
        &self,
        key: &SecretKey,
        msg: Msg,
        max_fee: Amount,
        wait: bool,
    ) -> Result<Submitted, RpcError> {
        let builder = TxBuilder::for_account(self, key).await?.with_tip(self.tip);
        self.submit(&builder.sign(key, msg, max_fee), wait).await
    }
}

fn unexpected(what: &str, got: &QueryResponse) -> RpcError {
    RpcError::Decode { what: what.into(), reason: format!("got {got:?}") }
}

/// Signs transactions for one account with consecutive nonces.
#[derive(Clone, Debug)]
pub struct TxBuilder {
    chain_id: String,
    signer: Address,
    next_nonce: u64,
    tip: Amount,
}

impl TxBuilder {
    pub fn new(chain_id: impl Into<String>, signer: Address, next_nonce: u64) -> TxBuilder {
        TxBuilder { chain_id: chain_id.into(), signer, next_nonce, tip: Amount::ZERO }
    }

    /// Offers `tip` above the minimum fee on what this builder signs.
    pub fn with_tip(mut self, tip: Amount) -> TxBuilder {
        self.tip = tip;
        self
    }

    /// A builder starting at the account's committed nonce on the node `client` talks to.
    pub async fn for_account(client: &RpcClient, key: &SecretKey) -> Result<TxBuilder, RpcError> {
        let chain = client.chain_info().await?;
        let nonce = client.account(&key.address()).await?.map(|a| a.nonce).unwrap_or(0);
        Ok(TxBuilder::new(chain.chain_id, key.address(), nonce))
    }

    pub fn next_nonce(&self) -> u64 {
        self.next_nonce
    }

    /// The encoded signed transaction of `msg`, with the next nonce.
    pub fn sign(&self, key: &SecretKey, msg: Msg, max_fee: Amount) -> Vec<u8> {
        Tx::new(self.chain_id.clone(), self.signer, self.next_nonce, max_fee, msg)
            .with_tip(self.tip)
            .sign(key)
            .encode()
    }

    /// [`TxBuilder::sign`], then moves on to the next nonce.
    pub fn sign_next(&mut self, key: &SecretKey, msg: Msg, max_fee: Amount) -> Vec<u8> {
        let raw = self.sign(key, msg, max_fee);
        self.next_nonce += 1;
        raw
    }
}
