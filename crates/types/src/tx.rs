//! Transactions: what they say (`Msg`), who signs them and how they are encoded.
//!
//! Encoding: `SignedTx` is borsh of `Tx` followed by the 64-byte signature, and the signature covers
//! `"tensorgrid/tx\0" ‖ borsh(Tx)`, so a node verifies the bytes it received without re-encoding anything.
//! `Tx` starts with a 16-bit `version` and the decoder dispatches on those two bytes: version 1 has no tip,
//! version 2 carries one after `max_fee`. New messages are appended to `Msg` (borsh tags are declaration order), so old transactions keep
//! their meaning; a test pins the tags.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::channel::{ChannelId, Voucher};
use crate::codec::{self, DecodeError};
use crate::crypto::{self, Address, Hash, SecretKey, Signature, SignatureError};
use crate::job::{JobId, JobSpec};
use crate::limits::{self, Malformed};
use crate::market::{BidId, Dseq, GroupSpec, LeaseId, OrderId};
use crate::model::ModelOffer;
use crate::provider::{self, ProviderInfo};
use crate::resources::Attribute;

/// The transaction format new transactions use: version 2, with a tip. Version 1 (no tip) still decodes.
pub const TX_VERSION: u16 = 2;
/// The oldest format still accepted.
pub const TX_VERSION_MIN: u16 = 1;

/// Domain separation: a transaction signature can never be replayed as any other signed tensorgrid message.
pub const TX_SIGNING_DOMAIN: &[u8] = b"tensorgrid/tx\0";

/// Everything a transaction can ask the ledger to do.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    // --- bank
    Send {
        to: Address,
        amount: Amount,
    },

    // --- providers
    /// Registers the signer as a provider (or re-activates a deregistered one) and bonds `stake`.
    RegisterProvider {
        host_uri: String,
        attributes: Vec<Attribute>,
        info: ProviderInfo,
        stake: Amount,
        /// Job runtimes it runs (`wasi-p1`, ...).
        #[serde(default)]
        runtimes: Vec<String>,
        /// Whether it accepts referee committee seats for those runtimes.
        #[serde(default)]
        referee: bool,
    },
    /// Changes any of the given fields.
    UpdateProvider {
        host_uri: Option<String>,
        attributes: Option<Vec<Attribute>>,
        info: Option<ProviderInfo>,
        #[serde(default)]
        runtimes: Option<Vec<String>>,
        #[serde(default)]
        referee: Option<bool>,
    },
    /// Leaves the market: needs no active leases or job slots; all stake starts unbonding.
    DeregisterProvider,
    Bond {
        amount: Amount,
    },
    Unbond {
        amount: Amount,
    },
    /// Proof of life covering all the provider's leases.
    Heartbeat,

    // --- market
    CreateDeployment {
        groups: Vec<GroupSpec>,
        deposit: Amount,
        manifest_hash: Hash,
    },
    DepositDeployment {
        dseq: Dseq,
        amount: Amount,
    },
    CloseDeployment {
        dseq: Dseq,
    },
    CreateBid {
        order: OrderId,
        price: Amount,
    },
    CloseBid {
        bid: BidId,
    },
    AcceptBid {
        bid: BidId,
    },
    CloseLease {
        lease: LeaseId,
    },
    WithdrawLease {
        lease: LeaseId,
    },

    // --- jobs
    SubmitJob {
        spec: JobSpec,
    },
    BidJob {
        job: JobId,
        price: Amount,
    },
    CommitResult {
        job: JobId,
        commitment: Hash,
    },
    RevealResult {
        job: JobId,
        result_hash: Hash,
        salt: [u8; 32],
    },
    CancelJob {
        job: JobId,
    },
    /// By the client, within a single result's challenge period: a referee committee re-runs the job.
    /// `deposit` pays the members (at least `Params::dispute_deposit_for` the job's price); what is left of
    /// it goes back to the client if the result was wrong, to the accused provider if it was right.
    DisputeJob {
        job: JobId,
        deposit: Amount,
    },

    // --- payment channels (inference)
    /// Locks `deposit` from the signer (the client) for `provider`.
    OpenChannel {
        provider: Address,
        deposit: Amount,
    },
    TopUpChannel {
        channel: ChannelId,
        amount: Amount,
    },
    /// The provider takes what the client's voucher allows beyond what it already redeemed.
    RedeemVoucher {
        voucher: Voucher,
    },
    /// By the client: starts the challenge period. By the provider: closes at once and refunds the client.
    CloseChannel {
        channel: ChannelId,
    },

    // --- model offers (inference)
    /// Adds or replaces the signer's offer of a model (by model hash).
    AnnounceModel {
        offer: ModelOffer,
    },
    WithdrawModel {
        model_hash: Hash,
    },

    // --- jobs (continued)
    /// By an assigned provider: it holds the job's module and inputs, checked against their hashes, and has
    /// started. From this transaction on its slot's commit deadline runs, and missing it forfeits the bid
    /// deposit; before it, a slot that lapses costs the provider nothing (the client may never have uploaded).
    ConfirmJobContent {
        job: JobId,
    },
}

impl Msg {
    /// The message's name as it appears in JSON (`type`).
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Send { .. } => "send",
            Msg::RegisterProvider { .. } => "register_provider",
            Msg::UpdateProvider { .. } => "update_provider",
            Msg::DeregisterProvider => "deregister_provider",
            Msg::Bond { .. } => "bond",
            Msg::Unbond { .. } => "unbond",
            Msg::Heartbeat => "heartbeat",
            Msg::CreateDeployment { .. } => "create_deployment",
            Msg::DepositDeployment { .. } => "deposit_deployment",
            Msg::CloseDeployment { .. } => "close_deployment",
            Msg::CreateBid { .. } => "create_bid",
            Msg::CloseBid { .. } => "close_bid",
            Msg::AcceptBid { .. } => "accept_bid",
            Msg::CloseLease { .. } => "close_lease",
            Msg::WithdrawLease { .. } => "withdraw_lease",
            Msg::SubmitJob { .. } => "submit_job",
            Msg::BidJob { .. } => "bid_job",
            Msg::CommitResult { .. } => "commit_result",
            Msg::RevealResult { .. } => "reveal_result",
            Msg::CancelJob { .. } => "cancel_job",
            Msg::DisputeJob { .. } => "dispute_job",
            Msg::OpenChannel { .. } => "open_channel",
            Msg::TopUpChannel { .. } => "top_up_channel",
            Msg::RedeemVoucher { .. } => "redeem_voucher",
            Msg::CloseChannel { .. } => "close_channel",
            Msg::AnnounceModel { .. } => "announce_model",
            Msg::WithdrawModel { .. } => "withdraw_model",
            Msg::ConfirmJobContent { .. } => "confirm_job_content",
        }
    }

    /// The most this message can take from its signer's balance (besides the fee): what it sends, stakes,
    /// deposits or locks. A signer's balance only ever shrinks through its own transactions, so a mempool
    /// that admits an account's transactions only while its balance covers their fees and spends never
    /// offers a block a transaction that cannot pay.
    pub fn max_spend(&self, params: &crate::Params) -> Amount {
        match self {
            Msg::Send { amount, .. }
            | Msg::Bond { amount }
            | Msg::DepositDeployment { amount, .. }
            | Msg::TopUpChannel { amount, .. } => *amount,
            Msg::RegisterProvider { stake, .. } => *stake,
            Msg::CreateDeployment { deposit, .. } | Msg::OpenChannel { deposit, .. } => {
                deposit.saturating_add(params.storage_deposit)
            }
            Msg::CreateBid { .. } => params.bid_deposit,
            Msg::SubmitJob { spec } => spec
                .budget
                .saturating_add(params.storage_deposit)
                .saturating_add(params.audit_fee_for(spec.budget)),
            Msg::BidJob { price, .. } => params.job_bid_deposit_for(*price),
            Msg::DisputeJob { deposit, .. } => *deposit,
            Msg::UpdateProvider { .. }
            | Msg::DeregisterProvider
            | Msg::Unbond { .. }
            | Msg::Heartbeat
            | Msg::CloseDeployment { .. }
            | Msg::CloseBid { .. }
            | Msg::AcceptBid { .. }
            | Msg::CloseLease { .. }
            | Msg::WithdrawLease { .. }
            | Msg::CommitResult { .. }
            | Msg::RevealResult { .. }
            | Msg::CancelJob { .. }
            | Msg::ConfirmJobContent { .. }
            | Msg::RedeemVoucher { .. }
            | Msg::CloseChannel { .. }
            | Msg::AnnounceModel { .. }
            | Msg::WithdrawModel { .. } => Amount::ZERO,
        }
    }

    /// Checks everything that needs no state: sizes, non-zero amounts, well-formed names and URIs.
    pub fn validate(&self) -> Result<(), Malformed> {
        fn nonzero(field: &str, amount: Amount) -> Result<(), Malformed> {
            if amount.is_zero() {
                Err(Malformed::new(field, "is zero"))
            } else {
                Ok(())
            }
        }
        match self {
            Msg::Send { amount, .. } => nonzero("amount", *amount),
            Msg::RegisterProvider { host_uri, attributes, info, stake, runtimes, referee: _ } => {
                provider::validate_host_uri("host_uri", host_uri)?;
                provider::validate_attributes("attributes", attributes)?;
                provider::validate_info("info", info)?;
                provider::validate_runtimes("runtimes", runtimes)?;
                nonzero("stake", *stake)
            }
            Msg::UpdateProvider { host_uri, attributes, info, runtimes, referee } => {
                if host_uri.is_none()
                    && attributes.is_none()
                    && info.is_none()
                    && runtimes.is_none()
                    && referee.is_none()
                {
                    return Err(Malformed::new("update_provider", "changes nothing"));
                }
                if let Some(runtimes) = runtimes {
                    provider::validate_runtimes("runtimes", runtimes)?;
                }
                if let Some(uri) = host_uri {
                    provider::validate_host_uri("host_uri", uri)?;
                }
                if let Some(attributes) = attributes {
                    provider::validate_attributes("attributes", attributes)?;
                }
                if let Some(info) = info {
                    provider::validate_info("info", info)?;
                }
                Ok(())
            }
            Msg::Bond { amount } | Msg::Unbond { amount } => nonzero("amount", *amount),
            Msg::CreateDeployment { groups, deposit, .. } => {
                if groups.is_empty() {
                    return Err(Malformed::new("groups", "is empty; a deployment needs at least one group"));
                }
                limits::check_len("groups", groups.len(), limits::MAX_GROUPS)?;
                for (i, group) in groups.iter().enumerate() {
                    group.validate(&format!("groups[{i}]"))?;
                    if groups[..i].iter().any(|g| g.name == group.name) {
                        return Err(Malformed::new(
                            format!("groups[{i}].name"),
                            "repeats an earlier group's name",
                        ));
                    }
                }
                nonzero("deposit", *deposit)
            }
            Msg::DepositDeployment { amount, .. } => nonzero("amount", *amount),
            Msg::CreateBid { order, price } => {
                if order.gseq == 0 {
                    return Err(Malformed::new("order.gseq", "is zero; groups count from 1"));
                }
                nonzero("price", *price)
            }
            Msg::SubmitJob { spec } => spec.validate("spec"),
            Msg::BidJob { price, .. } => nonzero("price", *price),
            Msg::OpenChannel { deposit, .. } => nonzero("deposit", *deposit),
            Msg::TopUpChannel { amount, .. } => nonzero("amount", *amount),
            Msg::RedeemVoucher { voucher } => nonzero("voucher.cumulative", voucher.cumulative),
            Msg::AnnounceModel { offer } => offer.validate("offer"),
            Msg::CloseChannel { .. }
            | Msg::WithdrawModel { .. }
            | Msg::DeregisterProvider
            | Msg::Heartbeat
            | Msg::CloseDeployment { .. }
            | Msg::CloseBid { .. }
            | Msg::AcceptBid { .. }
            | Msg::CloseLease { .. }
            | Msg::WithdrawLease { .. }
            | Msg::CommitResult { .. }
            | Msg::RevealResult { .. }
            | Msg::CancelJob { .. }
            | Msg::ConfirmJobContent { .. } => Ok(()),
            Msg::DisputeJob { deposit, .. } => nonzero("deposit", *deposit),
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    pub version: u16,
    pub chain_id: String,
    pub signer: Address,
    /// Must equal the signer's next nonce: replays and gaps are refused.
    pub nonce: u64,
    /// The most the signer agrees to pay; the fee charged is `base_fee + fee_per_byte × size + tip`.
    pub max_fee: Amount,
    /// Paid on top of the minimum fee to be included sooner: blocks take transactions by tip per byte.
    /// Version 2 and later; a version-1 transaction has none.
    #[serde(default)]
    pub tip: Amount,
    #[serde(default)]
    pub memo: String,
    pub msg: Msg,
}

impl BorshSerialize for Tx {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.version, writer)?;
        BorshSerialize::serialize(&self.chain_id, writer)?;
        BorshSerialize::serialize(&self.signer, writer)?;
        BorshSerialize::serialize(&self.nonce, writer)?;
        BorshSerialize::serialize(&self.max_fee, writer)?;
        if self.version >= 2 {
            BorshSerialize::serialize(&self.tip, writer)?;
        }
        BorshSerialize::serialize(&self.memo, writer)?;
        BorshSerialize::serialize(&self.msg, writer)
    }
}

impl BorshDeserialize for Tx {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let version = u16::deserialize_reader(reader)?;
        let chain_id = String::deserialize_reader(reader)?;
        let signer = Address::deserialize_reader(reader)?;
        let nonce = u64::deserialize_reader(reader)?;
        let max_fee = Amount::deserialize_reader(reader)?;
        let tip = if version >= 2 { Amount::deserialize_reader(reader)? } else { Amount::ZERO };
        let memo = String::deserialize_reader(reader)?;
        let msg = Msg::deserialize_reader(reader)?;
        Ok(Tx { version, chain_id, signer, nonce, max_fee, tip, memo, msg })
    }
}

impl Tx {
    pub fn new(chain_id: impl Into<String>, signer: Address, nonce: u64, max_fee: Amount, msg: Msg) -> Self {
        Tx {
            version: TX_VERSION,
            chain_id: chain_id.into(),
            signer,
            nonce,
            max_fee,
            tip: Amount::ZERO,
            memo: String::new(),
            msg,
        }
    }

    /// The same transaction offering `tip` above the minimum fee.
    pub fn with_tip(mut self, tip: Amount) -> Self {
        self.tip = tip;
        self
    }

    /// The bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = TX_SIGNING_DOMAIN.to_vec();
        bytes.extend_from_slice(&codec::encode(self));
        bytes
    }

    pub fn sign(self, key: &SecretKey) -> SignedTx {
        let signature = key.sign(&self.signing_bytes());
        SignedTx { tx: self, signature }
    }

    /// Stateless checks: version, field sizes and shapes.
    pub fn validate(&self) -> Result<(), Malformed> {
        if !(TX_VERSION_MIN..=TX_VERSION).contains(&self.version) {
            return Err(Malformed::new(
                "version",
                format!("{} is not supported; use {TX_VERSION}", self.version),
            ));
        }
        if self.version < 2 && !self.tip.is_zero() {
            return Err(Malformed::new("tip", "needs transaction version 2"));
        }
        limits::check_str("chain_id", &self.chain_id, limits::MAX_CHAIN_ID_LEN)?;
        limits::check_str("memo", &self.memo, limits::MAX_MEMO_LEN)?;
        self.msg.validate()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    pub tx: Tx,
    pub signature: Signature,
}

impl SignedTx {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        codec::decode("transaction", bytes)
    }

    /// The transaction hash: blake3 of its encoded bytes.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    pub fn verify(&self) -> Result<(), SignatureError> {
        crypto::verify(&self.tx.signer, &self.tx.signing_bytes(), &self.signature)
    }
}

/// The message a signature in `raw` (an encoded `SignedTx`) covers, built from the bytes as received.
pub fn signing_bytes_of_raw(raw: &[u8]) -> Option<Vec<u8>> {
    let body = raw.len().checked_sub(64).map(|end| &raw[..end])?;
    let mut bytes = Vec::with_capacity(TX_SIGNING_DOMAIN.len() + body.len());
    bytes.extend_from_slice(TX_SIGNING_DOMAIN);
    bytes.extend_from_slice(body);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(msg: Msg) -> SignedTx {
        let key = SecretKey::from_label("alice");
        Tx::new("tg-test", key.address(), 0, Amount(1_000), msg).sign(&key)
    }

    #[test]
    fn roundtrips_and_verifies() {
        let tx = sample(Msg::Send { to: SecretKey::from_label("bob").address(), amount: Amount(5) });
        let bytes = tx.encode();
        let back = SignedTx::decode(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.verify(), Ok(()));
        assert_eq!(signing_bytes_of_raw(&bytes).unwrap(), tx.tx.signing_bytes());
        let json = serde_json::to_string(&tx).unwrap();
        assert!(json.contains("\"type\":\"send\""), "{json}");
        assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), tx);
    }

    #[test]
    fn trailing_and_truncated_bytes_are_refused() {
        let bytes = sample(Msg::Heartbeat).encode();
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedTx::decode(&longer).is_err());
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(SignedTx::decode(&[]).is_err());
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let mut tx = sample(Msg::Send { to: SecretKey::from_label("bob").address(), amount: Amount(5) });
        tx.tx.msg = Msg::Send { to: SecretKey::from_label("bob").address(), amount: Amount(5_000) };
        assert_eq!(tx.verify(), Err(SignatureError::Invalid));
    }

    /// Borsh tags are declaration order. This pins them: reordering or inserting a message in the middle
    /// would silently change what old, already-signed transactions mean.
    #[test]
    fn message_tags_are_stable() {
        let a = SecretKey::from_label("a").address();
        let bid = BidId { dseq: 1, gseq: 1, provider: a };
        let all = [
            (Msg::Send { to: a, amount: Amount(1) }, 0u8),
            (
                Msg::RegisterProvider {
                    host_uri: String::new(),
                    attributes: vec![],
                    info: ProviderInfo::default(),
                    stake: Amount(1),
                    runtimes: vec![],
                    referee: false,
                },
                1,
            ),
            (
                Msg::UpdateProvider {
                    host_uri: None,
                    attributes: None,
                    info: None,
                    runtimes: None,
                    referee: None,
                },
                2,
            ),
            (Msg::DeregisterProvider, 3),
            (Msg::Bond { amount: Amount(1) }, 4),
            (Msg::Unbond { amount: Amount(1) }, 5),
            (Msg::Heartbeat, 6),
            (Msg::CreateDeployment { groups: vec![], deposit: Amount(1), manifest_hash: Hash::ZERO }, 7),
            (Msg::DepositDeployment { dseq: 1, amount: Amount(1) }, 8),
            (Msg::CloseDeployment { dseq: 1 }, 9),
            (Msg::CreateBid { order: bid.order(), price: Amount(1) }, 10),
            (Msg::CloseBid { bid }, 11),
            (Msg::AcceptBid { bid }, 12),
            (Msg::CloseLease { lease: bid }, 13),
            (Msg::WithdrawLease { lease: bid }, 14),
            (Msg::BidJob { job: 1, price: Amount(1) }, 16),
            (Msg::CommitResult { job: 1, commitment: Hash::ZERO }, 17),
            (Msg::RevealResult { job: 1, result_hash: Hash::ZERO, salt: [0; 32] }, 18),
            (Msg::CancelJob { job: 1 }, 19),
            (Msg::DisputeJob { job: 1, deposit: Amount(1) }, 20),
            (Msg::OpenChannel { provider: a, deposit: Amount(1) }, 21),
            (Msg::TopUpChannel { channel: 1, amount: Amount(1) }, 22),
            (
                Msg::RedeemVoucher {
                    voucher: crate::channel::Voucher::sign(&SecretKey::from_label("a"), "c", 1, Amount(1)),
                },
                23,
            ),
            (Msg::CloseChannel { channel: 1 }, 24),
            (
                Msg::AnnounceModel {
                    offer: ModelOffer {
                        model_hash: Hash::ZERO,
                        name: "m".into(),
                        source_hash: Hash::ZERO,
                        quantization: String::new(),
                        tokenizer_hash: Hash::ZERO,
                        context_length: 1,
                        price_input_per_m: Amount(1),
                        price_output_per_m: Amount(1),
                        throughput_tps: 0,
                    },
                },
                25,
            ),
            (Msg::WithdrawModel { model_hash: Hash::ZERO }, 26),
            (Msg::ConfirmJobContent { job: 1 }, 27),
        ];
        for (msg, tag) in all {
            assert_eq!(codec::encode(&msg)[0], tag, "{}", msg.name());
        }
    }

    #[test]
    fn a_version_1_transaction_still_decodes_and_a_tip_needs_version_2() {
        let key = SecretKey::from_label("a");
        let mut v1 = Tx::new("c", key.address(), 3, Amount(500), Msg::Heartbeat);
        v1.version = 1;
        let signed = v1.clone().sign(&key);
        let bytes = signed.encode();
        let back = SignedTx::decode(&bytes).unwrap();
        assert_eq!(back.tx, v1);
        assert_eq!(back.encode(), bytes, "one encoding per transaction");
        assert!(back.tx.validate().is_ok());
        let v2 = Tx::new("c", key.address(), 3, Amount(500), Msg::Heartbeat).with_tip(Amount(7));
        let bytes2 = v2.clone().sign(&key).encode();
        assert_eq!(bytes2.len(), bytes.len() + 16, "the tip is the only difference");
        assert_eq!(SignedTx::decode(&bytes2).unwrap().tx.tip, Amount(7));
        let mut tipped_v1 = v1;
        tipped_v1.tip = Amount(1);
        assert_eq!(tipped_v1.validate().unwrap_err().field, "tip");
    }

    #[test]
    fn validation_names_the_field() {
        let too_long = Msg::RegisterProvider {
            host_uri: format!("https://{}", "a".repeat(300)),
            attributes: vec![],
            info: ProviderInfo::default(),
            stake: Amount(1),
            runtimes: vec![],
            referee: false,
        };
        let err = too_long.validate().unwrap_err();
        assert_eq!(err.field, "host_uri");
        let zero = Msg::Send { to: SecretKey::from_label("b").address(), amount: Amount(0) };
        assert_eq!(zero.validate().unwrap_err().field, "amount");
        let mut tx = sample(Msg::Heartbeat).tx;
        tx.version = 9;
        assert_eq!(tx.validate().unwrap_err().field, "version");
    }
}
