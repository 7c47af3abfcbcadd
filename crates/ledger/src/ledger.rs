//! Genesis and block execution.

use rand_core::{CryptoRng, RngCore};
use tensorgrid_types::crypto::{self, SignatureError};
use tensorgrid_types::limits::{self, Malformed};
use tensorgrid_types::query::ChainInfo;
use tensorgrid_types::tx::signing_bytes_of_raw;
use tensorgrid_types::{
    Account, Address, Amount, BlockContext, BlockOutcome, Event, Genesis, Hash, Msg, Params, Receipt,
    SignedTx, TxError, TxOutcome,
};

use crate::bank::Module;
use crate::error::{invariant, ExecError, ExecResult, LedgerError};
use crate::keys;
use crate::providers::Referee;
use crate::state::State;
use crate::store::{Store, WriteBatch};
use crate::timers::Timer;

/// The tensorgrid state machine over a store. Deterministic: the same genesis and the same blocks give the
/// same state on every machine. It reads no clock and draws no randomness; the block context brings both.
#[derive(Debug)]
pub struct Ledger<S: Store> {
    store: S,
}

impl<S: Store> Ledger<S> {
    pub fn new(store: S) -> Self {
        Ledger { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn into_store(self) -> S {
        self.store
    }

    pub(crate) fn reader(&self) -> Result<State<'_, S>, LedgerError> {
        let info = self.chain_info()?;
        Ok(State::new(&self.store, self.params()?, info.time, Hash::ZERO))
    }

    pub fn chain_info(&self) -> Result<ChainInfo, LedgerError> {
        let st = State::new(&self.store, Params::default(), Default::default(), Hash::ZERO);
        st.get(keys::CHAIN)?.ok_or(LedgerError::NotInitialized)
    }

    /// An account as committed, read directly (no chain info or params decoded), for hot paths like the
    /// mempool's admission checks.
    pub fn account(&self, address: &Address) -> Result<Option<Account>, LedgerError> {
        let st = State::new(&self.store, Params::default(), Default::default(), Hash::ZERO);
        st.get(&keys::account(address))
    }

    pub fn params(&self) -> Result<Params, LedgerError> {
        let st = State::new(&self.store, Params::default(), Default::default(), Hash::ZERO);
        st.get(keys::PARAMS)?.ok_or(LedgerError::NotInitialized)
    }

    /// Writes the genesis state: params, balances and the total supply they add up to.
    pub fn init_genesis(&mut self, genesis: &Genesis) -> Result<(), LedgerError> {
        if self.store.get(keys::CHAIN)?.is_some() {
            return Err(LedgerError::AlreadyInitialized);
        }
        genesis.params.validate().map_err(LedgerError::Genesis)?;
        if genesis.chain_id.is_empty() || genesis.chain_id.len() > limits::MAX_CHAIN_ID_LEN {
            return Err(LedgerError::Genesis(Malformed::new(
                "chain_id",
                format!("must be 1 to {} bytes", limits::MAX_CHAIN_ID_LEN),
            )));
        }
        let mut st = State::new(&self.store, genesis.params.clone(), genesis.genesis_time, Hash::ZERO);
        let mut supply = Amount::ZERO;
        for (i, entry) in genesis.accounts.iter().enumerate() {
            let field = || format!("accounts[{i}]");
            if genesis.accounts.iter().take(i).any(|a| a.address == entry.address) {
                return Err(LedgerError::Genesis(Malformed::new(field(), "repeats an address")));
            }
            if Module::ALL.iter().any(|m| m.address() == entry.address) {
                return Err(LedgerError::Genesis(Malformed::new(field(), "is a module account")));
            }
            supply = supply
                .checked_add(entry.balance)
                .ok_or_else(|| LedgerError::Genesis(Malformed::new(field(), "total supply overflows")))?;
            st.set_account(&entry.address, &Account { balance: entry.balance, nonce: 0 });
        }
        st.put(keys::PARAMS.to_vec(), &genesis.params);
        st.put(keys::SUPPLY.to_vec(), &supply);
        st.put(
            keys::CHAIN.to_vec(),
            &ChainInfo { chain_id: genesis.chain_id.clone(), height: 0, time: genesis.genesis_time },
        );
        let (writes, _) = st.into_parts();
        self.store.write_batch(writes)?;
        Ok(())
    }

    /// Executes one block: first the deadlines its timestamp reached, then each transaction in order.
    ///
    /// `rng` supplies the random coefficients of batched signature verification. Under ZIP-215 the verdicts
    /// equal one-by-one verification whatever it yields, so execution stays deterministic; it only has to be
    /// unpredictable to whoever made the signatures.
    ///
    /// On `Err` nothing was written.
    pub fn execute_block<T, R>(
        &mut self,
        ctx: &BlockContext,
        txs: &[T],
        rng: R,
    ) -> Result<BlockOutcome, LedgerError>
    where
        T: AsRef<[u8]>,
        R: RngCore + CryptoRng,
    {
        let (outcome, writes) = self.simulate_block(ctx, txs, rng)?;
        self.store.write_batch(writes)?;
        Ok(outcome)
    }

    /// Commits the writes [`Ledger::simulate_block`] returned for the block after the last committed one.
    pub fn apply(&mut self, writes: WriteBatch) -> Result<(), LedgerError> {
        Ok(self.store.write_batch(writes)?)
    }

    /// Executes a block on top of the committed state without writing anything: returns what
    /// [`Ledger::execute_block`] would return and the writes it would apply. A proposer or a verifier uses it
    /// to learn a candidate block's outcome and state root (with the store's preview) before the block is
    /// final; applying the writes later with [`Store::write_batch`] is the same as executing the block.
    pub fn simulate_block<T, R>(
        &self,
        ctx: &BlockContext,
        txs: &[T],
        rng: R,
    ) -> Result<(BlockOutcome, WriteBatch), LedgerError>
    where
        T: AsRef<[u8]>,
        R: RngCore + CryptoRng,
    {
        self.simulate_block_with(ctx, txs, rng, &|_| false)
    }

    /// [`Ledger::simulate_block`] for a node that already verified some of the transactions' signatures
    /// (its mempool admitted them): `verified(raw)` says the exact bytes `raw` carry a valid signature, and
    /// those are not checked again. Since the bytes include the signature, the outcome is the same as
    /// checking them; only the work differs.
    pub fn simulate_block_with<T, R>(
        &self,
        ctx: &BlockContext,
        txs: &[T],
        rng: R,
        verified: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(BlockOutcome, WriteBatch), LedgerError>
    where
        T: AsRef<[u8]>,
        R: RngCore + CryptoRng,
    {
        let info = self.chain_info()?;
        if ctx.height != info.height.saturating_add(1) {
            return Err(LedgerError::WrongHeight { last: info.height, got: ctx.height });
        }
        if ctx.time <= info.time {
            return Err(LedgerError::TimeNotIncreasing { last: info.time, got: ctx.time });
        }
        let params = self.params()?;

        let decoded: Vec<Result<SignedTx, TxError>> =
            txs.iter().map(|raw| decode_tx(&params, raw.as_ref())).collect();
        let verdicts = verify_signatures(txs, &decoded, rng, verified);

        let mut st = State::new(&self.store, params, ctx.time, ctx.randomness);
        // Deadlines are handled in time order. Handling one can clear a later one (skipped here) or create one
        // that is already due (picked up by the next pass), so the loop ends when a pass finds nothing due.
        loop {
            let due = st.due_timers().map_err(fatal_in_deadline)?;
            if due.is_empty() {
                break;
            }
            for (key, at, timer) in due {
                if st.get_raw(&key)?.is_none() {
                    continue;
                }
                st.delete(key);
                run_deadline(&mut st, timer).map_err(|e| match e {
                    ExecError::Fatal(e) => e,
                    ExecError::Tx(e) => invariant(format!("deadline {timer:?} at {at} failed: {e}")),
                })?;
            }
        }
        st.release();

        let mut receipts = Vec::with_capacity(txs.len());
        for ((raw, tx), verdict) in txs.iter().zip(decoded).zip(verdicts) {
            receipts.push(execute_tx(&mut st, &info.chain_id, raw.as_ref(), tx, verdict)?);
        }
        st.put(
            keys::CHAIN.to_vec(),
            &ChainInfo { chain_id: info.chain_id, height: ctx.height, time: ctx.time },
        );
        let (writes, events) = st.into_parts();
        Ok((BlockOutcome { receipts, events }, writes))
    }
}

fn fatal_in_deadline(e: ExecError) -> LedgerError {
    match e {
        ExecError::Fatal(e) => e,
        ExecError::Tx(e) => invariant(format!("reading deadlines failed: {e}")),
    }
}

fn decode_tx(params: &Params, raw: &[u8]) -> Result<SignedTx, TxError> {
    if raw.len() > params.max_tx_bytes as usize {
        return Err(TxError::TooLarge { size: raw.len() as u64, max: u64::from(params.max_tx_bytes) });
    }
    SignedTx::decode(raw).map_err(|e| TxError::Undecodable { reason: e.reason })
}

/// One verdict per transaction (`None` where it did not decode), checked as one batch.
fn verify_signatures<T: AsRef<[u8]>, R: RngCore + CryptoRng>(
    raws: &[T],
    decoded: &[Result<SignedTx, TxError>],
    rng: R,
    verified: &dyn Fn(&[u8]) -> bool,
) -> Vec<Option<Result<(), SignatureError>>> {
    let known: Vec<bool> = raws.iter().map(|raw| verified(raw.as_ref())).collect();
    let messages: Vec<Option<Vec<u8>>> = raws
        .iter()
        .zip(decoded)
        .zip(&known)
        .map(|((raw, tx), known)| match (tx, known) {
            (Ok(_), false) => signing_bytes_of_raw(raw.as_ref()),
            _ => None,
        })
        .collect();
    let items: Vec<(&Address, &[u8], &tensorgrid_types::Signature)> = decoded
        .iter()
        .zip(&messages)
        .filter_map(|(tx, msg)| match (tx, msg) {
            (Ok(tx), Some(msg)) => Some((&tx.tx.signer, msg.as_slice(), &tx.signature)),
            _ => None,
        })
        .collect();
    let mut batch = crypto::verify_batch(items, rng).into_iter();
    messages
        .iter()
        .zip(decoded)
        .zip(known)
        .map(|((m, tx), known)| match (tx, known) {
            (Ok(_), true) => Some(Ok(())),
            _ => m.as_ref().and_then(|_| batch.next()),
        })
        .collect()
}

fn run_deadline<S: Store + ?Sized>(st: &mut State<'_, S>, timer: Timer) -> ExecResult<()> {
    match timer {
        Timer::ProviderLiveness(provider) => st.on_liveness_due(provider),
        Timer::Unbonding(provider) => st.on_unbonding_due(provider),
        Timer::EscrowDry(dseq) => st.on_escrow_dry_due(dseq),
        Timer::OrderWindow(order) => st.on_order_window_due(order),
        Timer::JobBidWindow(job) => st.on_job_bid_window_due(job),
        Timer::JobSlot(job, slot) => st.on_job_slot_due(job, slot),
        Timer::JobReveal(job) => st.on_job_reveal_due(job),
        Timer::JobChallenge(job) => st.on_job_challenge_due(job),
        Timer::ChannelClose(channel) => st.channel_challenge_ended(channel),
        Timer::RemoveRecord(record) => st.on_removal_due(record),
        Timer::CommitteeSeat(committee, seat) => st.on_seat_due(committee, seat),
        Timer::CommitteeReveal(committee) => st.on_committee_reveal_due(committee),
        Timer::ForgetModelPrice(model_hash, provider) => {
            st.forget_model_price(&model_hash, &provider);
            Ok(())
        }
    }
}

/// Admission checks, then the fee and nonce, then the message. A message failure rolls back only the
/// message's own writes.
fn execute_tx<S: Store + ?Sized>(
    st: &mut State<'_, S>,
    chain_id: &str,
    raw: &[u8],
    decoded: Result<SignedTx, TxError>,
    verdict: Option<Result<(), SignatureError>>,
) -> Result<Receipt, LedgerError> {
    let tx_hash = Hash::of(raw);
    let signed = match decoded {
        Ok(tx) => tx,
        Err(error) => return Ok(rejected(tx_hash, None, error)),
    };
    let signer = signed.tx.signer;
    let admitted = match admit(st, chain_id, &signed, raw.len(), verdict) {
        Ok(admitted) => admitted,
        Err(ExecError::Tx(error)) => return Ok(rejected(tx_hash, Some(signer), error)),
        Err(ExecError::Fatal(e)) => return Err(e),
    };
    let first_event = st.events.len();
    st.put(keys::account(&signer), &admitted.account);
    st.put(keys::account(&Module::Fees.address()), &admitted.fees_account);
    st.emit(Event::FeePaid { payer: signer, amount: admitted.fee });
    let checkpoint = st.checkpoint();
    let outcome = match dispatch(st, signer, signed.tx.msg) {
        Ok(()) => TxOutcome::Succeeded,
        Err(ExecError::Tx(error)) => {
            st.rollback(checkpoint);
            TxOutcome::Failed { error }
        }
        Err(ExecError::Fatal(e)) => return Err(e),
    };
    st.release();
    Ok(Receipt {
        tx_hash,
        signer: Some(signer),
        outcome,
        fee_paid: admitted.fee,
        events: st.events.get(first_event..).unwrap_or_default().to_vec(),
    })
}

struct Admitted {
    fee: Amount,
    /// The signer's account after paying the fee and using the nonce.
    account: Account,
    fees_account: Account,
}

fn admit<S: Store + ?Sized>(
    st: &State<'_, S>,
    chain_id: &str,
    signed: &SignedTx,
    size: usize,
    verdict: Option<Result<(), SignatureError>>,
) -> ExecResult<Admitted> {
    let tx = &signed.tx;
    tx.validate().map_err(|malformed| TxError::Malformed { malformed })?;
    if tx.chain_id != chain_id {
        return Err(TxError::WrongChainId { expected: chain_id.to_string(), got: tx.chain_id.clone() }.into());
    }
    if !matches!(verdict, Some(Ok(()))) {
        return Err(TxError::BadSignature { signer: tx.signer }.into());
    }
    let mut account = st.account(&tx.signer)?.ok_or(TxError::UnknownAccount { address: tx.signer })?;
    if tx.nonce < account.nonce {
        return Err(TxError::NonceReplayed { expected: account.nonce, got: tx.nonce }.into());
    }
    if tx.nonce > account.nonce {
        return Err(TxError::NonceGap { expected: account.nonce, got: tx.nonce }.into());
    }
    let fee = st
        .params
        .fee_with_tip(size, tx.tip)
        .ok_or(TxError::CannotPayFee { required: Amount(u128::MAX), available: account.balance })?;
    if tx.max_fee < fee {
        return Err(TxError::FeeTooLow { required: fee, offered: tx.max_fee }.into());
    }
    account.balance = account
        .balance
        .checked_sub(fee)
        .ok_or(TxError::CannotPayFee { required: fee, available: account.balance })?;
    account.nonce = account.nonce.saturating_add(1);
    let mut fees_account = st.account(&Module::Fees.address())?.unwrap_or_default();
    fees_account.balance =
        fees_account.balance.checked_add(fee).ok_or_else(|| invariant("fee collector overflows"))?;
    Ok(Admitted { fee, account, fees_account })
}

fn dispatch<S: Store + ?Sized>(st: &mut State<'_, S>, signer: Address, msg: Msg) -> ExecResult<()> {
    match msg {
        Msg::Send { to, amount } => st.send(&signer, &to, amount),
        Msg::RegisterProvider { host_uri, attributes, info, stake, runtimes, referee } => st
            .register_provider(
                signer,
                host_uri,
                attributes,
                info,
                stake,
                Referee { runtimes, opt_in: referee },
            ),
        Msg::UpdateProvider { host_uri, attributes, info, runtimes, referee } => {
            st.update_provider(signer, host_uri, attributes, info, (runtimes, referee))
        }
        Msg::DeregisterProvider => st.deregister_provider(signer),
        Msg::Bond { amount } => st.bond(signer, amount),
        Msg::Unbond { amount } => st.unbond(signer, amount),
        Msg::Heartbeat => st.heartbeat(signer),
        Msg::CreateDeployment { groups, deposit, manifest_hash } => {
            st.create_deployment(signer, groups, deposit, manifest_hash)
        }
        Msg::DepositDeployment { dseq, amount } => st.deposit_deployment(signer, dseq, amount),
        Msg::CloseDeployment { dseq } => st.close_deployment_by_owner(signer, dseq),
        Msg::CreateBid { order, price } => st.create_bid(signer, order, price),
        Msg::CloseBid { bid } => st.close_bid(signer, bid),
        Msg::AcceptBid { bid } => st.accept_bid(signer, bid),
        Msg::CloseLease { lease } => st.close_lease_by(signer, lease),
        Msg::WithdrawLease { lease } => st.withdraw_lease(signer, lease),
        Msg::SubmitJob { spec } => st.submit_job(signer, spec),
        Msg::BidJob { job, price } => st.bid_job(signer, job, price),
        Msg::CommitResult { job, commitment } => st.commit_result(signer, job, commitment),
        Msg::RevealResult { job, result_hash, salt } => st.reveal_result(signer, job, result_hash, salt),
        Msg::CancelJob { job } => st.cancel_job(signer, job),
        Msg::DisputeJob { job, deposit } => st.dispute_job(signer, job, deposit),
        Msg::ConfirmJobContent { job } => st.confirm_job_content(signer, job),
        Msg::OpenChannel { provider, deposit } => st.open_channel(signer, provider, deposit),
        Msg::TopUpChannel { channel, amount } => st.top_up_channel(signer, channel, amount),
        Msg::RedeemVoucher { voucher } => st.redeem_voucher(signer, voucher),
        Msg::CloseChannel { channel } => st.close_channel(signer, channel),
        Msg::AnnounceModel { offer } => st.announce_model(signer, offer),
        Msg::WithdrawModel { model_hash } => st.withdraw_model(signer, model_hash),
    }
}

fn rejected(tx_hash: Hash, signer: Option<Address>, error: TxError) -> Receipt {
    Receipt {
        tx_hash,
        signer,
        outcome: TxOutcome::Rejected { error },
        fee_paid: Amount::ZERO,
        events: Vec::new(),
    }
}
