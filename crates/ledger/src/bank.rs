//! Balances and transfers. Funds held by the protocol (escrow, stake, deposits, job budgets, fees) sit in
//! module accounts, so the total supply is always the plain sum of all balances.

use tensorgrid_types::{Account, Address, Amount, Event, TxError};

use crate::error::{invariant, ExecResult};
use crate::keys;
use crate::state::State;
use crate::store::Store;

/// The module accounts and what each holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// Deployment escrows.
    Escrow,
    /// Provider stake, bonded and unbonding.
    Bonds,
    /// Order and job bid deposits.
    BidDeposits,
    /// Job budgets.
    Jobs,
    /// Transaction fees (shared with validators once staking exists).
    Fees,
    /// Payment channel deposits not yet redeemed or refunded.
    Channels,
    /// Storage deposits of the deployments, jobs and channels still stored.
    Storage,
    /// The audit pool: every job's audit fee, and reimbursements from slashes; pays committees that the
    /// protocol opens (audits and disagreements).
    Audits,
    /// What open referee committees hold: prepaid fees, dispute deposits, members' deposits.
    Committees,
}

impl Module {
    pub const ALL: [Module; 9] = [
        Module::Escrow,
        Module::Bonds,
        Module::BidDeposits,
        Module::Jobs,
        Module::Fees,
        Module::Channels,
        Module::Storage,
        Module::Audits,
        Module::Committees,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Escrow => "escrow",
            Module::Bonds => "bonds",
            Module::BidDeposits => "bid-deposits",
            Module::Jobs => "jobs",
            Module::Fees => "fee-collector",
            Module::Channels => "channels",
            Module::Storage => "storage-deposits",
            Module::Audits => "audit-pool",
            Module::Committees => "committees",
        }
    }

    pub fn address(self) -> Address {
        Address::module(self.name())
    }
}

impl<S: Store + ?Sized> State<'_, S> {
    pub(crate) fn account(&self, address: &Address) -> ExecResult<Option<Account>> {
        Ok(self.get(&keys::account(address))?)
    }

    pub(crate) fn balance(&self, address: &Address) -> ExecResult<Amount> {
        Ok(self.account(address)?.map(|a| a.balance).unwrap_or_default())
    }

    pub(crate) fn set_account(&mut self, address: &Address, account: &Account) {
        self.put(keys::account(address), account);
    }

    fn debit(&mut self, from: &Address, amount: Amount) -> ExecResult<()> {
        let mut account = self.account(from)?.unwrap_or_default();
        account.balance = account.balance.checked_sub(amount).ok_or(TxError::InsufficientFunds {
            account: *from,
            needed: amount,
            available: account.balance,
        })?;
        self.set_account(from, &account);
        Ok(())
    }

    fn credit(&mut self, to: &Address, amount: Amount) -> ExecResult<()> {
        let mut account = self.account(to)?.unwrap_or_default();
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or_else(|| invariant(format!("balance of {to} overflows: supply is fixed")))?;
        self.set_account(to, &account);
        Ok(())
    }

    /// Moves funds between accounts; fails with `InsufficientFunds` naming the payer.
    pub(crate) fn transfer(&mut self, from: &Address, to: &Address, amount: Amount) -> ExecResult<()> {
        if amount.is_zero() {
            return Ok(());
        }
        self.debit(from, amount)?;
        self.credit(to, amount)?;
        self.emit(Event::Transfer { from: *from, to: *to, amount });
        Ok(())
    }

    /// A user's transfer to another account. Module accounts take funds only through their own rules (a
    /// deposit, a stake, a budget): a plain send to one would sit outside every record and break the
    /// module's invariant, so it is refused.
    pub(crate) fn send(&mut self, from: &Address, to: &Address, amount: Amount) -> ExecResult<()> {
        if let Some(module) = Module::ALL.into_iter().find(|m| m.address() == *to) {
            return Err(TxError::SendToModule { to: *to, module: module.name().into() }.into());
        }
        self.transfer(from, to, amount)
    }

    /// A user locks funds into a module (escrow deposit, stake, bid deposit, budget).
    pub(crate) fn lock(&mut self, from: &Address, module: Module, amount: Amount) -> ExecResult<()> {
        self.transfer(from, &module.address(), amount)
    }

    /// Moves funds a module holds into another module (a slash into a committee's pot, a fee into the pool).
    pub(crate) fn move_between(&mut self, from: Module, to: Module, amount: Amount) -> ExecResult<()> {
        self.release_from(from, &to.address(), amount)
    }

    /// A module releases funds it holds. The module always holds enough unless the ledger has a bug, so a
    /// shortfall is fatal rather than a transaction error.
    pub(crate) fn release_from(&mut self, module: Module, to: &Address, amount: Amount) -> ExecResult<()> {
        let held = self.balance(&module.address())?;
        if held < amount {
            return Err(
                invariant(format!("module {} holds {held} but must pay {amount}", module.name())).into()
            );
        }
        self.transfer(&module.address(), to, amount)
    }
}
